"""The interface every representation learner implements.

A learner is a :class:`torch.nn.Module` built from a frozen dataclass config. The training loop
(:mod:`sparseshift.representations.train`) only calls :meth:`Learner.loss` on batches of the kind
the learner
declares in :attr:`Learner.batch_kind`; agents and metrics only call :meth:`Learner.encode` (or
:meth:`Learner.encode_step` for stateful encoders such as the Neural Wave Machine).

Batch kinds (all tensors; frames are uint8 ``[..., H, W, 3]`` and become floats in [0, 1] inside
the model):

* ``"singles"``: ``{"x": [B, H, W, 3]}``
* ``"pairs"``: ``{"x1": [B, H, W, 3], "x2": [B, H, W, 3]}`` (intervention or temporal pairs)
* ``"sequences"``: ``{"x": [B, T, H, W, 3]}``

Latents are ``[B, *latent_shape]``: ``(D,)`` for VAEs, ``(K, D)`` for set-valued latents (slots).

What a learner offers beyond ``loss`` and ``encode`` (per-dimension codes or slots, masks, a
stateful sheet, reconstructions, decoding) is declared by its class as a set of
:class:`Capability` values in :attr:`Learner.capabilities`; callers ask for a capability, never
for a learner's name.
"""

from __future__ import annotations

import abc
import enum
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.model_config import LearnerConfig, LRSchedule, parse_config_options  # noqa: F401  (re-exported)

BatchKind = Literal["singles", "pairs", "sequences"]

Batch = dict[str, torch.Tensor]


#: What :meth:`Learner.encode` accepts, for error messages.
#: uint8 channels last: env observations and datasets; float channels first: torchvision and
#: SB3 policies (which divide images by 255 and move channels first).
FRAME_LAYOUTS = ("uint8 [B, H, W, 3]", "float [B, 3, H, W] in [0, 1]")


def _layout_error(shape: tuple[int, ...], dtype: object, why: str) -> ConfigError:
    name = str(dtype).removeprefix("torch.")
    return ConfigError(f"frames must be {FRAME_LAYOUTS[0]} or {FRAME_LAYOUTS[1]}; got {name} "
                       f"{list(shape)}: {why}")


def frame_layout(frames: torch.Tensor) -> Literal["uint8_hwc", "float_chw"]:
    """Which of the two accepted frame layouts ``frames`` has (a one-line :class:`ConfigError`
    naming both layouts otherwise; float frames are checked to be finite and in [0, 1])."""
    if not isinstance(frames, torch.Tensor):
        raise ConfigError(f"frames must be a torch.Tensor, got {type(frames).__name__} (numpy: "
                          "torch.from_numpy(frames))")
    shape, dtype = tuple(frames.shape), frames.dtype
    if len(shape) < 3:
        raise _layout_error(shape, dtype, "too few dimensions")
    if dtype == torch.uint8:
        if shape[-1] != 3:
            why = ("uint8 frames are channels last; use frames.permute(0, 2, 3, 1)"
                   if shape[-3] == 3 else "the last dimension must be the 3 RGB channels")
            raise _layout_error(shape, dtype, why)
        return "uint8_hwc"
    if frames.is_floating_point():
        if shape[-3] != 3:
            why = ("float frames are channels first; use frames.permute(0, 3, 1, 2)"
                   if shape[-1] == 3 else "dimension -3 must be the 3 RGB channels")
            raise _layout_error(shape, dtype, why)
        if frames.numel():
            lo, hi = float(frames.min()), float(frames.max())
            if not (0.0 <= lo and hi <= 1.0):  # also false for NaN
                raise _layout_error(shape, dtype, f"values span [{lo:.3g}, {hi:.3g}], not [0, 1] "
                                    "(uint8 images: divide by 255)")
        return "float_chw"
    raise _layout_error(shape, dtype, "only uint8 or floating-point frames are accepted")


def frames_to_tensor(frames: torch.Tensor | np.ndarray, device: torch.device | None = None
                     ) -> torch.Tensor:
    """Frames (numpy or torch) as a tensor, without copying: uint8 ``[..., H, W, 3]`` or float
    ``[..., 3, H, W]`` in [0, 1] (:data:`FRAME_LAYOUTS`); anything else is a one-line
    :class:`ConfigError` naming the accepted layouts."""
    t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    frame_layout(t)
    return t if device is None else t.to(device)


def frame_size(frames: torch.Tensor) -> tuple[int, int]:
    """``(H, W)`` of frames in either accepted layout (:func:`frame_layout`)."""
    if frame_layout(frames) == "uint8_hwc":
        return int(frames.shape[-3]), int(frames.shape[-2])
    return int(frames.shape[-2]), int(frames.shape[-1])


def to_float_chw(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, H, W]`` in [0, 1]; float frames (already
    ``[B, 3, H, W]`` in [0, 1], see :func:`frame_layout`) pass through as float32."""
    if frames.is_floating_point():
        return frames.float()
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


class Capability(str, enum.Enum):
    """What a learner offers beyond :meth:`Learner.loss` and :meth:`Learner.encode`.

    Every learner class declares its set in :attr:`Learner.capabilities`. The evaluator
    (:func:`sparseshift.representations.evaluate.evaluate`), the training loop's image grids, the
    figures and the agents ask for capabilities instead of checking a learner's name, the rank of
    its latents or whether a method raises :class:`NotImplementedError`.
    """

    #: Latents ``(D,)`` whose dimensions are individual variables: the per-dimension
    #: disentanglement metrics (MIG, DCI, SAP, modularity, FactorVAE score) apply.
    VECTOR_CODE = "vector_code"
    #: Latents ``(K, D)``, an unordered set of ``K`` slots (Locatello et al. 2020, *Object-Centric
    #: Learning with Slot Attention*): no dimension order; agents pool them with Deep Sets.
    SET_LATENTS = "set_latents"
    #: Per-slot decoder alpha masks, ``masks(frames, num_slots)`` and ``forward_slots(frames,
    #: num_slots)`` (Locatello et al. 2020): FG-ARI against the env's segmentations and slot
    #: figures (:mod:`sparseshift.representations.slot_eval`).
    SLOT_MASKS = "slot_masks"
    #: Encoding depends on earlier frames: :meth:`Learner.initial_state` and
    #: :meth:`Learner.encode_step` carry a state (e.g. the Neural Wave Machine's sheet).
    STATEFUL = "stateful"
    #: A recurrent sheet whose waves and forecasts :func:`sparseshift.representations.waves.
    #: analyse_waves` measures: ``rollout(frames, n_free, trace=True)``, ``substeps`` and the
    #: config's ``forecast_steps`` and ``cell`` (Keller & Welling 2023, *Neural Wave Machines*).
    WAVES = "waves"
    #: :meth:`Learner.reconstruct`: reconstruction grids and the reconstruction error.
    RECONSTRUCT = "reconstruct"
    #: :meth:`Learner.decode` inverts :meth:`Learner.encode`: latent traversals of a vector code
    #: (Higgins et al. 2017, *beta-VAE*).
    DECODE = "decode"


#: Exactly one of these describes a learner's latents.
LATENT_KINDS: frozenset[Capability] = frozenset({Capability.VECTOR_CODE, Capability.SET_LATENTS})


def derived_capabilities(cls: type[Learner]) -> frozenset[Capability]:
    """The capabilities of a learner class that declares none: a vector code, ``STATEFUL`` when it
    sets ``stateful = True``, ``RECONSTRUCT`` / ``DECODE`` when it overrides
    :meth:`Learner.reconstruct` / :meth:`Learner.decode`."""
    caps = {Capability.VECTOR_CODE}
    if cls.stateful:
        caps.add(Capability.STATEFUL)
    if cls.reconstruct is not Learner.reconstruct:
        caps.add(Capability.RECONSTRUCT)
    if cls.decode is not Learner.decode:
        caps.add(Capability.DECODE)
    return frozenset(caps)


def _check_capabilities(cls: type[Learner]) -> None:
    """TypeError (a programming error, raised when the class is defined) unless the declared
    capabilities are consistent and backed by the methods they promise."""
    caps, where = cls.capabilities, f"learner class {cls.__qualname__}"
    if not all(isinstance(c, Capability) for c in caps):
        raise TypeError(f"{where}: capabilities must be Capability values, got {sorted(caps)}")
    if len(caps & LATENT_KINDS) != 1:
        raise TypeError(f"{where}: capabilities must hold exactly one of "
                        f"{', '.join(sorted(c.value for c in LATENT_KINDS))}")
    needs = {
        Capability.RECONSTRUCT: cls.reconstruct is not Learner.reconstruct,
        Capability.DECODE: cls.decode is not Learner.decode,
        Capability.STATEFUL: cls.encode_step is not Learner.encode_step,
        Capability.SLOT_MASKS: Capability.SET_LATENTS in caps and callable(
            getattr(cls, "masks", None)) and callable(getattr(cls, "forward_slots", None)),
        Capability.WAVES: Capability.STATEFUL in caps and callable(getattr(cls, "rollout", None)),
    }
    for cap, ok in needs.items():
        if cap in caps and not ok:
            raise TypeError(f"{where} declares capability {cap.value!r} without what it needs "
                            f"(see Capability.{cap.name})")


class Learner(nn.Module, abc.ABC):
    """Base class of all representation learners.

    Subclasses declare their ``name``, ``config_cls``, ``batch_kind`` and ``capabilities``, take
    their config in ``__init__`` and implement :meth:`loss` and :meth:`encode`. Stateful learners
    declare :attr:`Capability.STATEFUL` and override :meth:`initial_state` and
    :meth:`encode_step`.
    """

    #: Registry name, declared by each class (the built-in table in
    #: :mod:`sparseshift.representations.registry` maps it to the class).
    name: ClassVar[str] = ""
    #: The frozen dataclass this learner is built from.
    config_cls: ClassVar[type[LearnerConfig]] = LearnerConfig
    #: The batch kind :meth:`loss` consumes.
    batch_kind: ClassVar[BatchKind] = "singles"
    #: True when encoding a frame depends on earlier frames (``encode_step`` carries a state);
    #: always ``Capability.STATEFUL in capabilities`` (set from them for each class).
    stateful: ClassVar[bool] = False
    #: What the learner offers (:class:`Capability`), declared by the class. A class that declares
    #: none inherits its parent's declaration, else gets :func:`derived_capabilities`.
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.VECTOR_CODE})
    _capabilities_declared: ClassVar[bool] = False
    #: The learning-rate schedule :func:`sparseshift.representations.train.train` uses unless the
    # run sets
    #: one (``None``: constant).
    default_lr_schedule: ClassVar[LRSchedule | None] = None
    #: Adam learning rate and batch size of a run that sets none (``TrainConfig.lr``/``batch``).
    default_lr: ClassVar[float] = 1e-4
    default_batch: ClassVar[int] = 64
    #: True when bf16 autocast was checked to leave this learner's results within seed noise, so
    #: ``--precision auto`` may pick it (:func:`sparseshift.representations.runtime.
    #: resolve_precision`); False keeps ``auto`` at fp32 for the class.
    bf16_checked: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "capabilities" in cls.__dict__:
            cls.capabilities = frozenset(cls.capabilities)
            cls._capabilities_declared = True
        elif not cls._capabilities_declared:
            cls.capabilities = derived_capabilities(cls)
        stateful = Capability.STATEFUL in cls.capabilities
        if "stateful" in cls.__dict__ and bool(cls.__dict__["stateful"]) != stateful:
            raise TypeError(f"learner class {cls.__qualname__} sets stateful = "
                            f"{cls.__dict__['stateful']} but its capabilities "
                            f"{'include' if stateful else 'lack'} 'stateful'")
        cls.stateful = stateful
        _check_capabilities(cls)

    @classmethod
    def supports(cls, *needed: Capability) -> bool:
        """True when the learner has every capability in ``needed``."""
        return frozenset(needed) <= cls.capabilities

    @classmethod
    def missing(cls, *needed: Capability) -> str:
        """``""`` when the learner has every capability in ``needed``, else why not (one line,
        for skip reasons and errors)."""
        lacking = [c.value for c in needed if c not in cls.capabilities]
        if not lacking:
            return ""
        return f"learner {cls.name or cls.__name__!r} lacks {', '.join(lacking)}"

    def __init__(self, config: LearnerConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_cls):
            raise ConfigError(
                f"learner {self.name!r} needs a {self.config_cls.__name__}, "
                f"got {type(config).__name__}"
            )
        # every construction path (the registry, the training loop, a user's own code) checks
        # the model's size against the parameter budget before any layer is built
        config.check_params()
        self.config = config

    @property
    @abc.abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one example's latents: ``(D,)`` or ``(K, D)`` for set-valued latents."""

    @abc.abstractmethod
    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        """Loss terms of one batch; ``"loss"`` is the total that is minimised.

        Scalar entries are logged as they are; 1-D entries (e.g. ``"kl_per_dim"``) are logged per
        element. ``generator`` drives all sampling noise so training is reproducible.
        """

    @abc.abstractmethod
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames -> latents ``[B, *latent_shape]`` (deterministic). Frames are uint8
        ``[B, H, W, 3]`` or float ``[B, 3, H, W]`` in [0, 1] (:data:`FRAME_LAYOUTS`; the same
        image gives the same latents in either); anything else is a :class:`ConfigError`."""

    #: The 0-based training step of the next :meth:`loss` call (set by the training loop through
    #: :meth:`set_step`; step-dependent terms such as a KL warm-up read it, so resumed runs
    #: follow them exactly).
    step: int = 0

    @property
    def device(self) -> torch.device:
        """The device of the learner's parameters (the CPU for a learner without any)."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def set_step(self, step: int) -> None:
        """Tell the learner which training step the next :meth:`loss` belongs to."""
        self.step = int(step)

    def initial_state(self, batch: int) -> Any:
        """Initial encoder state for ``batch`` parallel streams (``None`` when stateless)."""
        return None

    def encode_step(self, frames: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Encode one frame per stream given the previous state; stateless learners ignore it."""
        return self.encode(frames), state

    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        """Reconstruction of uint8 frames as floats ``[B, H, W, 3]`` in [0, 1]; offered by
        learners with :attr:`Capability.RECONSTRUCT` (callers check it first)."""
        raise NotImplementedError(f"learner {self.name!r} does not reconstruct")

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images ``[B, H, W, 3]`` in [0, 1] from latents (latent traversals); offered by learners
        with :attr:`Capability.DECODE` (callers check it first)."""
        raise NotImplementedError(f"learner {self.name!r} does not decode")

    def check_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` on this learner's device; a one-line :class:`ConfigError` unless they are
        uint8 ``[B, H, W, 3]`` or float ``[B, 3, H, W]`` in [0, 1] (:func:`frame_layout`) of this
        learner's image size."""
        size = self.config.image_size
        h, w = frame_size(frames)
        if (h, w) != (size, size):
            raise ConfigError(
                f"frames are {h}x{w} but learner {self.name!r} was trained on {size}x{size} "
                f"images (got {frames.dtype} {list(frames.shape)})"
            )
        return frames.to(self.device, non_blocking=True)
