"""Your own encoder, first class: any ``torch.nn.Module`` as a frozen sparseshift encoder.

The contract (``docs/representations.md``, "Your own encoder"): a module maps a batch of images
to latents ``[B, D]``; an :class:`EncoderSpec` says what it expects: the image size, the layout
(``float_chw`` as torchvision models take, ``float_hwc`` or ``uint8_hwc``), the value range
(``unit`` [0, 1], ``byte`` [0, 255], ``signed`` [-1, 1] or ``imagenet``: [0, 1] normalised with
the ImageNet mean and std) and the latent size. :class:`ModuleEncoder` adapts such a module to
:class:`~sparseshift.representations.base.Learner`, so every consumer (agents, the VecEnv
wrapper, ``evaluate``, ``eval-rep``'s probes, the proxy task and the code-only metrics) takes it
exactly as it takes a trained sparseshift learner. It cannot be trained (``loss`` refuses).

Where the code comes from is never a file's choice (the trust rule: files are data, never code):

* from Python, pass the module (:func:`as_encoder`);
* from the command line or a study config the user wrote: ``--encoder package.module:factory``
  (a callable returning the module; the user named it, so it is imported), optionally with
  ``--encoder-weights W.safetensors`` (loaded with safetensors, never pickle);
* from an installed package: an entry point in the group :data:`ENCODER_GROUP` whose name is
  then used as ``--encoder NAME``;
* a folder written by ``sparseshift export-encoder`` (``encoder.json`` + ``weights.safetensors``)
  names its factory, and loading it imports that factory only when the user allowed its module
  (``--plugin MODULE``, :class:`Plugins`) or it is an installed entry point; anything else is a
  one-line :class:`~sparseshift.envs.infra.errors.ConfigError` naming the module and how to allow
  it.

The encoder's fingerprint covers the factory, the spec and the content digest of the weights, so
an agent refuses a changed encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from sparseshift.envs.infra.config import opt
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.base import (
    Batch,
    Capability,
    Learner,
    LearnerConfig,
    frame_layout,
    to_float_chw,
)
from sparseshift.representations.plugins import (
    ENCODER_GROUP,
    Plugins,
    entry_point_spec,
    entry_points,
    import_object,
    is_code_spec,
    refuse,
)

#: The files of an exported encoder folder.
ENCODER_FILE = "encoder.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "sparseshift-encoder"
FORMAT_VERSION = 1

LAYOUTS: tuple[str, ...] = ("float_chw", "float_hwc", "uint8_hwc")
RANGES: tuple[str, ...] = ("unit", "byte", "signed", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Largest latent an external encoder may declare (a bound checked before anything is built).
MAX_LATENT = 1 << 16


@dataclass(frozen=True)
class EncoderSpec(LearnerConfig):
    """What an external encoder expects and returns (its declared contract)."""

    config_name: ClassVar[str] = "encoder spec"

    layout: Literal["float_chw", "float_hwc", "uint8_hwc"] = opt(
        "float_chw", "input layout: float_chw (torchvision), float_hwc or uint8_hwc")
    value_range: Literal["unit", "byte", "signed", "imagenet"] = opt(
        "unit", "input values: unit [0, 1], byte [0, 255], signed [-1, 1] or imagenet ([0, 1] "
        "normalised by the ImageNet mean and std)")
    latent_dim: int = opt(0, "latent size D (0: measured by one forward pass)", min=0,
                          max=MAX_LATENT)
    #: ``module:factory`` that built the module, or "" when it was passed from Python.
    factory: str = opt("", "package.module:factory that builds the module")


def _spec_from_module(module: nn.Module, image_size: int) -> EncoderSpec:
    declared = getattr(module, "encoder_spec", None)
    if declared is None:
        return EncoderSpec(image_size=image_size)
    if isinstance(declared, EncoderSpec):
        return declared
    if isinstance(declared, dict):
        return EncoderSpec.from_json({"image_size": image_size, **declared})
    raise ConfigError("a module's encoder_spec must be an EncoderSpec or a dict, got "
                      f"{type(declared).__name__}")


class ModuleEncoder(Learner):
    """A user's ``nn.Module`` behind the :class:`Learner` interface (frozen, eval mode).

    :meth:`encode` takes frames in either sparseshift layout (uint8 ``[B, H, W, 3]`` or float
    ``[B, 3, H, W]`` in [0, 1]), converts them to what :attr:`spec` declares and returns the
    module's output as float32 ``[B, D]``.
    """

    name: ClassVar[str] = "external"
    config_cls: ClassVar[type[LearnerConfig]] = EncoderSpec
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.VECTOR_CODE})

    def __init__(self, config: LearnerConfig, module: nn.Module | None = None) -> None:
        super().__init__(config)
        if module is None:
            raise ConfigError("an external encoder needs its module")
        self.spec: EncoderSpec = config  # type: ignore[assignment]
        self.module = module
        self.module.eval()
        self.module.requires_grad_(False)
        if self.spec.latent_dim == 0:
            measured = self._measure_latent()
            self.config = self.spec = EncoderSpec.from_json(
                {**self.spec.to_json(), "latent_dim": measured})

    def _measure_latent(self) -> int:
        size = self.spec.image_size
        with torch.no_grad():
            z = self._forward(torch.zeros(1, size, size, 3, dtype=torch.uint8))
        return int(z.shape[1])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (int(self.spec.latent_dim),)

    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        raise ConfigError("an external encoder is frozen: sparseshift does not train it")

    def train(self, mode: bool = True) -> ModuleEncoder:
        super().train(False)  # frozen: always in eval mode
        return self

    def _inputs(self, frames: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        frames = frames.to(self.device)
        if spec.layout == "uint8_hwc":
            if frame_layout(frames) == "uint8_hwc":
                return frames
            return (frames.permute(0, 2, 3, 1) * 255.0).round().clamp(0, 255).to(torch.uint8)
        x = to_float_chw(frames)  # [B, 3, H, W] in [0, 1]
        if spec.value_range == "byte":
            x = x * 255.0
        elif spec.value_range == "signed":
            x = x * 2.0 - 1.0
        elif spec.value_range == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x.permute(0, 2, 3, 1).contiguous() if spec.layout == "float_hwc" else x

    def _forward(self, frames: torch.Tensor) -> torch.Tensor:
        out = self.module(self._inputs(frames))
        if isinstance(out, tuple | list):  # (mu, logvar)-style outputs: the first is the code
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ConfigError(f"the encoder returned {type(out).__name__}, not a tensor")
        z = out.reshape(out.shape[0], -1).float()
        if z.shape[0] != frames.shape[0]:
            raise ConfigError(f"the encoder returned {z.shape[0]} rows for {frames.shape[0]} "
                              "frames")
        return z

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        frames = self.check_frames(frames)
        with torch.no_grad():
            z = self._forward(frames)
        if self.spec.latent_dim and z.shape[1] != self.spec.latent_dim:
            raise ConfigError(f"the encoder returned latents of size {z.shape[1]}, its spec "
                              f"declares {self.spec.latent_dim}")
        return z


def as_encoder(module: nn.Module | Learner, image_size: int = 64,
               spec: EncoderSpec | None = None) -> Learner:
    """A sparseshift :class:`Learner` is returned as it is; any other ``nn.Module`` is wrapped
    in a :class:`ModuleEncoder` with ``spec`` (default: the module's ``encoder_spec`` attribute,
    else float ``[B, 3, H, W]`` in [0, 1] at ``image_size`` and a measured latent size)."""
    if isinstance(module, Learner):
        return module
    if not isinstance(module, nn.Module):
        raise ConfigError(f"an encoder must be a torch.nn.Module, got {type(module).__name__}")
    return ModuleEncoder(spec or _spec_from_module(module, image_size), module)


def load_weights(module: nn.Module, path: str | os.PathLike[str]) -> str:
    """Load a safetensors file into ``module`` (strict); returns the weights' content digest."""
    from sparseshift.representations.checkpoint import CorruptFileError, _load, tensor_digest

    try:
        tensors, _ = _load(Path(path))
    except CorruptFileError as exc:
        raise ConfigError(str(exc)) from None
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"weights {path} do not fit the encoder: {first}") from None
    return tensor_digest(tensors)


def encoder_fingerprint(encoder: Learner) -> str:
    """SHA-256 of the encoder's kind, config (for an external one its spec and factory) and the
    content digest of its weights."""
    from sparseshift.representations.checkpoint import tensor_digest

    payload = json.dumps({"learner": encoder.name, "model": encoder.config.to_json(),
                          "weights": tensor_digest(encoder.state_dict())},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def build_from_factory(factory: str, plugins: Plugins, image_size: int,
                       weights: str | os.PathLike[str] | None = None,
                       spec: EncoderSpec | None = None, where: str = "") -> ModuleEncoder:
    """Call ``factory`` (``module:callable``, or an entry-point name of :data:`ENCODER_GROUP`)
    and wrap its module; ``where`` names the file that named the factory ("" when the user
    named it, in which case it is allowed)."""
    resolved = factory if is_code_spec(factory) else entry_point_spec(factory, ENCODER_GROUP)
    if resolved is None:
        names = ", ".join(ep.name for ep in entry_points(ENCODER_GROUP)) or "none installed"
        raise ConfigError(f"encoder {factory!r} is neither package.module:factory nor an "
                          f"installed {ENCODER_GROUP} entry point ({names})")
    if where and not plugins.allows(resolved, ENCODER_GROUP):
        raise refuse(resolved, "encoder factory", where)
    make: Callable[[], Any] = import_object(resolved, "encoder factory")
    if not callable(make):
        raise ConfigError(f"encoder factory {resolved!r} is not callable")
    module = make()
    if not isinstance(module, nn.Module):
        raise ConfigError(f"encoder factory {resolved!r} returned {type(module).__name__}, not a "
                          "torch.nn.Module")
    if weights is not None:
        load_weights(module, weights)
    base = spec if spec is not None else _spec_from_module(module, image_size)
    return ModuleEncoder(EncoderSpec.from_json({**base.to_json(), "factory": resolved}), module)


def export_encoder(encoder: Learner, out_dir: str | os.PathLike[str]) -> Path:
    """Write a portable encoder folder: :data:`ENCODER_FILE` (spec, factory, digest, versions)
    and :data:`WEIGHTS_FILE`. Only external encoders built from a named factory can be
    exported this way (a sparseshift run folder is already portable: ``export-rep``)."""
    from sparseshift.envs.infra.io import (
        output_dir,
        output_lock,
        package_versions,
        write_json_atomic,
    )
    from sparseshift.representations.checkpoint import write_tensors

    if not isinstance(encoder, ModuleEncoder) or not encoder.spec.factory:
        raise ConfigError("export-encoder exports an encoder built by a named factory "
                          "(--encoder package.module:factory); a run folder is exported with "
                          "export-rep")
    out = output_dir(out_dir, ENCODER_FILE)
    with output_lock(out):
        tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.module.state_dict().items()}
        digest = write_tensors(out / WEIGHTS_FILE, tensors, {"format": FORMAT})
        write_json_atomic(out / ENCODER_FILE, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "spec": encoder.spec.to_json(),
            "weights": WEIGHTS_FILE, "weights_digest": digest,
            "fingerprint": encoder_fingerprint(encoder), "versions": package_versions()})
    return out


def read_encoder_file(folder: Path) -> dict[str, Any]:
    """The checked ``encoder.json`` of an exported encoder folder: read through the gate of
    :mod:`sparseshift.envs.infra.io`, its fields typed (the spec by :class:`EncoderSpec`), and its
    weights file inside the folder (not a symbolic link out of it); one line otherwise."""
    from sparseshift.envs.infra.io import DIGEST, check_schema, inside, read_json

    where = str(folder / ENCODER_FILE)
    data = read_json(folder / ENCODER_FILE, "encoder file")
    if data.get("format") != FORMAT:
        raise ConfigError(f"{folder / ENCODER_FILE} is not a sparseshift encoder file")
    if data.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{folder / ENCODER_FILE} has format version "
                          f"{data.get('format_version')!r}; this sparseshift reads "
                          f"{FORMAT_VERSION}")
    if not isinstance(data.get("spec"), dict) or not isinstance(data.get("weights_digest"), str):
        raise ConfigError(f"{folder / ENCODER_FILE} lacks its spec or weights digest")
    if data.get("weights") != WEIGHTS_FILE:
        raise ConfigError(f"{folder / ENCODER_FILE}: weights must be {WEIGHTS_FILE!r}")
    check_schema(data, {"spec": dict, "weights_digest": DIGEST, "fingerprint?": str}, where)
    inside(folder, data["weights"], where, "weights")
    try:
        EncoderSpec.from_json(data["spec"])
    except ConfigError as exc:
        raise ConfigError(f"{where}: spec: {exc}") from None
    return data


def load_exported(folder: str | os.PathLike[str], plugins: Plugins) -> ModuleEncoder:
    """The encoder of an ``export-encoder`` folder; its factory is imported only when
    ``plugins`` allows it (:meth:`Plugins.allows`), and its weights must match the recorded
    digest."""
    from sparseshift.representations.checkpoint import CorruptFileError, read_tensors

    d = Path(folder)
    data = read_encoder_file(d)
    spec = EncoderSpec.from_json(data["spec"])
    if not spec.factory:
        raise ConfigError(f"{d / ENCODER_FILE} names no factory")
    if not plugins.allows(spec.factory, ENCODER_GROUP):
        raise refuse(spec.factory, "encoder factory", str(d / ENCODER_FILE))
    try:
        read_tensors(d / WEIGHTS_FILE, expect_digest=data["weights_digest"])
    except CorruptFileError as exc:
        raise ConfigError(str(exc)) from None
    return build_from_factory(spec.factory, plugins, spec.image_size, d / WEIGHTS_FILE, spec)


def open_encoder(spec: str | os.PathLike[str], plugins: Plugins = Plugins(),
                 weights: str | os.PathLike[str] | None = None, image_size: int = 64,
                 device: str | torch.device = "cpu") -> Learner:
    """Any encoder the command line can name, as a frozen :class:`Learner` in eval mode:

    * a sparseshift run folder (``run.json``: :func:`~sparseshift.representations.checkpoint.
      load_learner`, whose learner must be built in, an installed entry point or allowed);
    * an ``export-encoder`` folder (``encoder.json``: :func:`load_exported`);
    * ``package.module:factory`` or an installed :data:`ENCODER_GROUP` entry point name (named
      by the user: imported), with optional safetensors ``weights``.
    """
    from sparseshift.representations.checkpoint import RUN_FILE, load_learner
    from sparseshift.representations.runtime import resolve_device

    text = os.fspath(spec)
    path = Path(text).expanduser()
    learner: Learner
    if path.is_dir() and (path / RUN_FILE).is_file():
        if weights is not None:
            raise ConfigError("--encoder-weights is for an encoder named by its factory; a run "
                              "folder has its own checkpoint")
        learner = load_learner(path, plugins=plugins)
    elif path.is_dir() and (path / ENCODER_FILE).is_file():
        if weights is not None:
            raise ConfigError("--encoder-weights is for an encoder named by its factory; an "
                              "exported folder has its own weights")
        learner = load_exported(path, plugins)
    elif is_code_spec(text) or entry_point_spec(text, ENCODER_GROUP) is not None:
        learner = build_from_factory(text, plugins.with_spec(text), image_size, weights)
    else:
        installed = ", ".join(ep.name for ep in entry_points(ENCODER_GROUP))
        raise ConfigError(
            f"encoder {text!r} is not a representation run directory (no {RUN_FILE}), an exported "
            f"encoder folder "
            f"(no {ENCODER_FILE}), package.module:factory or an installed encoder entry point"
            + (f" ({installed})" if installed else ""))
    learner.to(resolve_device(device))
    return learner.eval()


__all__: Sequence[str] = (
    "ENCODER_FILE", "WEIGHTS_FILE", "EncoderSpec", "ModuleEncoder", "as_encoder",
    "build_from_factory", "encoder_fingerprint", "export_encoder", "load_exported",
    "open_encoder",
)
