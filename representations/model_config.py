"""A learner's own options: the base of every learner config (:class:`LearnerConfig`), the
learning-rate schedule (:class:`LRSchedule`), the parameter-count bounds checked before any layer
is built, and the ``KEY=VALUE`` parser of ``--model``.

Below the learners (each learner's config subclasses :class:`LearnerConfig`) and below
:mod:`sparseshift.representations.config`, whose :class:`~sparseshift.representations.config.
TrainConfig` looks its learner up in the registry. Imports neither torch nor any learner module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from sparseshift.envs.infra.config import Config, field_types, opt, parse_typed_assignments
from sparseshift.envs.infra.errors import ConfigError, check_image_size, safe_repr

#: Most parameters a learner may have: 2**28 (268M) is 1 GiB of float32 weights, and training
#: holds about four times that (gradients and Adam's two moments). Every built-in learner's
#: config estimates its parameter count from its fields (exactly) and refuses more, before any
#: layer is built (:meth:`LearnerConfig.check_params`).
MAX_PARAMS = 2**28
#: Upper bound of every config field that sizes a layer's width (units, channels); each
#: learner's config declares its bounds in its fields (:func:`~sparseshift.envs.infra.config.opt`).
MAX_WIDTH = 65536
#: Most channels of one conv layer.
MAX_CHANNELS = 2048
#: Most layers a config may list (conv stacks).
MAX_LAYERS = 16

#: Reconstruction losses of the conv decoders (:func:`.nets.reconstruction_loss`).
ReconLoss = Literal["bernoulli", "gaussian"]

#: Parameters of a learner by part: ``{part: (count, the config fields that size it)}``.
ParamParts = dict[str, tuple[int, tuple[str, ...]]]


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    """Parameters of ``nn.Linear(n_in, n_out)``."""
    return n_in * n_out + (n_out if bias else 0)


def conv_params(c_in: int, c_out: int, kernel: int, bias: bool = True) -> int:
    """Parameters of a square ``nn.Conv2d`` or ``nn.ConvTranspose2d``."""
    return c_in * c_out * kernel * kernel + (c_out if bias else 0)


def gru_cell_params(n_in: int, hidden: int) -> int:
    """Parameters of ``nn.GRUCell(n_in, hidden)``."""
    return 3 * hidden * (n_in + hidden) + 6 * hidden


@dataclass(frozen=True)
class LearnerConfig(Config):
    """Fields every learner config has; learners subclass this with their own hyperparameters.

    A subclass bounds its fields with :func:`~sparseshift.envs.infra.config.opt` (sizes within
    :data:`MAX_WIDTH`, :data:`MAX_CHANNELS`, at most :data:`MAX_LAYERS` layers), derives and
    checks what involves several fields in :meth:`validate` (calling this class's first), and
    estimates its learner's parameters in :meth:`param_parts`, checked against
    :data:`MAX_PARAMS` by :meth:`check_params` (the built-in configs call it at the end of
    ``validate``; :func:`~sparseshift.representations.registry.make_learner` calls it again
    before it builds any learner).
    """

    image_size: int = opt(64, "image size the model expects (a positive multiple of 8)")

    def validate(self) -> None:
        check_image_size(self.image_size)

    def param_parts(self) -> ParamParts:
        """The learner's parameters by part (see :data:`ParamParts`); empty when unknown (a
        config that does not say)."""
        return {}

    def param_count(self) -> int:
        """The learner's parameter count estimated from the config (0 when unknown)."""
        return sum(count for count, _ in self.param_parts().values())

    def check_params(self, budget: int = MAX_PARAMS) -> None:
        """A one-line :class:`ConfigError` when the learner would have more than ``budget``
        parameters, naming the fields that size its largest part."""
        parts = self.param_parts()
        total = sum(count for count, _ in parts.values())
        if total <= budget:
            return
        part, (count, fields) = max(parts.items(), key=lambda kv: kv[1][0])
        values = ", ".join(f"{f}={safe_repr(getattr(self, f))}" for f in fields)
        raise ConfigError(
            f"this {self.name_for_messages()} would build a model of {total:,} parameters, more "
            f"than the {budget:,} (2**{budget.bit_length() - 1}) allowed; its largest part, "
            f"{part} ({count:,}), is sized by {values}: lower {fields[0]}")


@dataclass(frozen=True)
class LRSchedule(Config):
    """Multiplier of the base learning rate at 0-based training step ``t``.

    ``factor(t) = min(1, (t + 1) / warmup_steps) * decay_rate ** (t / decay_steps)``: a linear
    warm-up over ``warmup_steps`` (0: none), then (and during it) exponential decay by
    ``decay_rate`` every ``decay_steps`` steps (0: no decay). ``LRSchedule()`` is the constant
    rate. Slot Attention's reference schedule (Locatello et al. 2020) is
    ``LRSchedule(warmup_steps=10_000, decay_steps=100_000, decay_rate=0.5)``.

    The factor is a pure function of the step, so a resumed run needs no scheduler state.
    """

    config_name: ClassVar[str] = "lr schedule"

    warmup_steps: int = opt(0, "linear warm-up steps (0: none)", min=0)
    decay_steps: int = opt(0, "steps per decay by decay_rate (0: no decay)", min=0)
    decay_rate: float = opt(1.0, "factor per decay_steps", gt=0.0, max=1.0)

    @property
    def constant(self) -> bool:
        """True when the factor is 1 at every step."""
        return self.warmup_steps == 0 and (self.decay_steps == 0 or self.decay_rate == 1.0)

    def factor(self, step: int) -> float:
        """The learning-rate multiplier for the update made at 0-based ``step``."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        decay = self.decay_rate ** (step / self.decay_steps) if self.decay_steps > 0 else 1.0
        return warm * decay

    def text(self) -> str:
        """The command-line form, the inverse of :meth:`parse`."""
        return "constant" if self.constant else \
            f"{self.warmup_steps}:{self.decay_steps}:{self.decay_rate:g}"

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
        except (ValueError, ConfigError):
            raise ConfigError(f"lr schedule must be 'constant' or WARMUP:DECAY_STEPS:DECAY_RATE "
                              f"(e.g. 10000:100000:0.5), got {text!r}") from None


def parse_config_options(config_cls: type[LearnerConfig], items: Sequence[str],
                         flag: str = "--model") -> dict[str, Any]:
    """``KEY=VALUE`` strings -> config options, each value parsed as its dataclass field's type
    (tuples as comma-separated items, e.g. ``channels=32,32,64,64``; ``X | None`` fields take
    ``none``). Unknown keys (listing the valid ones), malformed items, repeated keys and values of
    the wrong type are a one-line :class:`ConfigError`."""
    return parse_typed_assignments(items, field_types(config_cls), flag,
                                   f"{config_cls.__name__} option")
