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
"""

from __future__ import annotations

import abc
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from sparseshift.envs.errors import ConfigError, check_image_size

BatchKind = Literal["singles", "pairs", "sequences"]

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LearnerConfig:
    """Fields every learner config has; learners subclass this with their own hyperparameters."""

    image_size: int = 64

    def __post_init__(self) -> None:
        check_image_size(self.image_size)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LearnerConfig:
        """Inverse of :meth:`to_json`; unknown keys are a :class:`ConfigError`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} option(s) {unknown}; valid: {', '.join(sorted(fields))}"
            )
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in data.items()}
        return cls(**kwargs)


@dataclass(frozen=True)
class LRSchedule:
    """Multiplier of the base learning rate at 0-based training step ``t``.

    ``factor(t) = min(1, (t + 1) / warmup_steps) * decay_rate ** (t / decay_steps)``: a linear
    warm-up over ``warmup_steps`` (0: none), then (and during it) exponential decay by
    ``decay_rate`` every ``decay_steps`` steps (0: no decay). ``LRSchedule()`` is the constant
    rate. Slot Attention's reference schedule (Locatello et al. 2020) is
    ``LRSchedule(warmup_steps=10_000, decay_steps=100_000, decay_rate=0.5)``.

    The factor is a pure function of the step, so a resumed run needs no scheduler state.
    """

    warmup_steps: int = 0
    decay_steps: int = 0
    decay_rate: float = 1.0

    def __post_init__(self) -> None:
        for name in ("warmup_steps", "decay_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"lr schedule {name} must be an integer >= 0, got {value!r}")
        rate = self.decay_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise ConfigError(f"lr schedule decay_rate must be in (0, 1], got {rate!r}")
        object.__setattr__(self, "decay_rate", float(rate))

    @property
    def constant(self) -> bool:
        """True when the factor is 1 at every step."""
        return self.warmup_steps == 0 and (self.decay_steps == 0 or self.decay_rate == 1.0)

    def factor(self, step: int) -> float:
        """The learning-rate multiplier for the update made at 0-based ``step``."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        decay = self.decay_rate ** (step / self.decay_steps) if self.decay_steps > 0 else 1.0
        return warm * decay

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LRSchedule:
        """Inverse of :meth:`to_json`; unknown keys are a :class:`ConfigError`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigError(f"unknown lr schedule option(s) {unknown}; valid: "
                              f"{', '.join(sorted(fields))}")
        return cls(**dict(data))

    @classmethod
    def parse(cls, text: str) -> LRSchedule:
        """``constant`` or ``WARMUP:DECAY_STEPS:DECAY_RATE`` (e.g. ``10000:100000:0.5``)."""
        if text.strip() == "constant":
            return cls()
        parts = text.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            return cls(int(parts[0]), int(parts[1]), float(parts[2]))
        except ValueError:
            raise ConfigError(f"lr schedule must be 'constant' or WARMUP:DECAY_STEPS:DECAY_RATE "
                              f"(e.g. 10000:100000:0.5), got {text!r}") from None


def _parse_value(tp: Any, text: str) -> Any:
    """``text`` as a value of type ``tp`` (int, float, str, bool, Literal, ``X | None``,
    ``tuple[X, ...]`` as comma-separated items); ValueError with what was expected."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.strip().lower() in ("none", "null"):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse_value(inner, text)
    if origin is Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise ValueError(f"one of {', '.join(str(a) for a in args)}")
    if origin is tuple:
        item = args[0] if args else str
        parts = [t.strip() for t in text.split(",")] if text.strip() else []
        try:
            return tuple(_parse_value(item, t) for t in parts)
        except ValueError as exc:
            raise ValueError(f"comma-separated items, each {exc}") from None
    if tp is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError("true or false")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("a number") from None
    if tp is str:
        return text
    raise ValueError(f"a {tp} (not settable from the command line)")


def parse_config_options(config_cls: type[LearnerConfig], items: Sequence[str],
                         flag: str = "--model") -> dict[str, Any]:
    """``KEY=VALUE`` strings -> config options, each value parsed as its dataclass field's type
    (tuples as comma-separated items, e.g. ``channels=32,32,64,64``; ``X | None`` fields take
    ``none``). Unknown keys (listing the valid ones), malformed items, repeated keys and values of
    the wrong type are a one-line :class:`ConfigError`."""
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        if key not in hints or key not in names:
            raise ConfigError(f"{flag}: unknown {config_cls.__name__} option {key!r}; valid: "
                              f"{', '.join(sorted(names))}")
        if key in options:
            raise ConfigError(f"{flag}: option {key!r} given twice")
        try:
            options[key] = _parse_value(hints[key], text)
        except ValueError as exc:
            raise ConfigError(f"{flag} {key}={text!r}: {config_cls.__name__}.{key} expects "
                              f"{exc}") from None
    return options


def frames_to_tensor(frames: torch.Tensor | np.ndarray, device: torch.device | None = None
                     ) -> torch.Tensor:
    """uint8 frames ``[..., H, W, 3]`` (numpy or torch) as a uint8 tensor, without copying."""
    t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if t.dtype != torch.uint8 or t.shape[-1] != 3:
        raise ConfigError(f"frames must be uint8 [..., H, W, 3], got {t.dtype} {tuple(t.shape)}")
    return t if device is None else t.to(device)


def to_float_chw(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, H, W]`` in [0, 1]."""
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


class Learner(nn.Module, abc.ABC):
    """Base class of all representation learners.

    Subclasses set the class attributes, take their config in ``__init__`` and implement
    :meth:`loss` and :meth:`encode`. Stateful learners set ``stateful = True`` and override
    :meth:`initial_state` and :meth:`encode_step`.
    """

    #: Registry name (set by :func:`sparseshift.representations.registry.register_learner`).
    name: ClassVar[str] = ""
    #: The frozen dataclass this learner is built from.
    config_cls: ClassVar[type[LearnerConfig]] = LearnerConfig
    #: The batch kind :meth:`loss` consumes.
    batch_kind: ClassVar[BatchKind] = "singles"
    #: True when encoding a frame depends on earlier frames (``encode_step`` carries a state).
    stateful: ClassVar[bool] = False
    #: The learning-rate schedule :func:`sparseshift.representations.train.train` uses unless the
    # run sets
    #: one (``None``: constant).
    default_lr_schedule: ClassVar[LRSchedule | None] = None

    def __init__(self, config: LearnerConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_cls):
            raise ConfigError(
                f"learner {self.name!r} needs a {self.config_cls.__name__}, "
                f"got {type(config).__name__}"
            )
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
        """uint8 frames ``[B, H, W, 3]`` -> latents ``[B, *latent_shape]`` (deterministic)."""

    def initial_state(self, batch: int) -> Any:
        """Initial encoder state for ``batch`` parallel streams (``None`` when stateless)."""
        return None

    def encode_step(self, frames: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Encode one frame per stream given the previous state; stateless learners ignore it."""
        return self.encode(frames), state

    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        """Reconstruction of uint8 frames as floats ``[B, H, W, 3]`` in [0, 1] (if supported)."""
        raise NotImplementedError(f"learner {self.name!r} does not reconstruct")

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images ``[B, H, W, 3]`` in [0, 1] from latents (used for traversals, if supported)."""
        raise NotImplementedError(f"learner {self.name!r} does not decode")

    def check_frames(self, frames: torch.Tensor) -> None:
        """Raise :class:`ConfigError` unless frames have this learner's image size."""
        size = self.config.image_size
        if tuple(frames.shape[-3:]) != (size, size, 3):
            raise ConfigError(
                f"frames are {tuple(frames.shape[-3:-1])} but learner {self.name!r} was configured "
                f"for image size {size}x{size}"
            )
