"""Configs of the representation layer: learner base config, learning-rate schedule, training.

These frozen dataclasses (:class:`sparseshift.envs.infra.config.Config`) import neither torch
nor any learner module, so the command line can derive its flags from them without loading torch;
:class:`TrainConfig` looks its learner up (and so imports it) only when it is built, once: the
class and the learner's defaults it resolves are attributes of the config from then on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import MISSING, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from sparseshift.envs.infra.config import (
    SEED_MAX,
    Config,
    field_types,
    opt,
    parse_typed_assignments,
)
from sparseshift.envs.infra.errors import ConfigError, check_image_size, safe_repr

if TYPE_CHECKING:
    from sparseshift.representations.base import Learner

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


@dataclass(frozen=True)
class TrainConfig(Config):
    """Everything that defines a training run.

    ``model`` holds the learner's options (see its config dataclass, e.g.
    :class:`sparseshift.representations.vae.VAEConfig`); ``image_size`` defaults to the dataset's.
    ``pairs`` is ``None`` (intervention pairs for pairs learners on pairs datasets),
    ``"intervention"`` or ``"temporal"`` (frames t and t+gap of one episode; ``gap`` is an int or an
    inclusive range ``(lo, hi)``). ``seq_len`` is the sequence length of sequence learners
    (e.g. ``nwm``). ``lr_schedule`` multiplies ``lr`` per step: an :class:`LRSchedule`, its JSON
    dict, ``"constant"`` or ``"WARMUP:DECAY_STEPS:DECAY_RATE"``; ``None`` takes the learner's
    ``default_lr_schedule`` (constant for the VAEs and the NWM, the reference warm-up and halving
    for ``slot_attention``). :attr:`schedule` is the resolved one.
    """

    learner: str = opt("beta_vae", "the learner: a built-in learner's name or "
                       "package.module:Class (an external learner)", metavar="NAME")
    model: Mapping[str, Any] = opt(factory=dict, cli=False,
                                   help="options of the learner's config dataclass")
    steps: int = opt(1000, "total optimisation steps", min=1, max=10**9)
    seed: int = opt(0, "seed of everything random", min=0, max=SEED_MAX)
    batch: int | None = opt(None, "batch size, pairs per batch for pair learners (none: the "
                            "learner's default_batch)", min=1, max=65536)
    lr: float | None = opt(None, "Adam learning rate (none: the learner's default_lr)", gt=0.0)
    pairs: Literal["intervention", "temporal"] | None = opt(
        None, "pair learners: intervention pairs (pairs dataset, the default) or temporal pairs "
        "(frames t and t+gap of a video dataset)")
    gap: int | tuple[int, int] = opt(1, "temporal pairs: gap K or an inclusive range LO:HI",
                                     cli=False)
    seq_len: int = opt(8, "sequence learners (batch kind 'sequences'): frames per training "
                       "sequence (must exceed the forecast steps)", min=1, max=10_000,
                       metavar="T")
    log_every: int = opt(50, "TensorBoard scalars every N steps", min=1)
    image_every: int = opt(1000, "image grids every N steps", min=1)
    ckpt_every: int = opt(1000, "checkpoint every N steps", min=1)
    progress: bool = opt(True, "no progress bar", flag="--quiet", invert=True)
    tensorboard: bool = opt(True, "do not write TensorBoard logs", flag="--no-tensorboard",
                            invert=True)
    lr_schedule: LRSchedule | None = opt(
        None, "learning-rate schedule: 'constant' or WARMUP:DECAY_STEPS:DECAY_RATE (linear "
        "warm-up, then lr * DECAY_RATE ** (step / DECAY_STEPS)); none: the learner's "
        "default_lr_schedule", metavar="SCHEDULE")
    threads: int | None = opt(None, "torch threads (none: torch's default)", min=1, max=1024)
    device: str = opt("auto", "torch device: auto (an accelerator if one is available, else "
                      "cpu), cpu, cuda, cuda:N or mps")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = opt(
        "auto", "mixed precision for the forward pass (autocast): auto (bf16 where the CPU or GPU "
        "computes bf16 natively and the learner was checked with it, else fp32), fp32 (off), "
        "bf16, fp16 (CUDA only); run.json records what ran")
    channels_last: bool = opt(False, "channels-last memory format for the conv nets (often "
                              "faster on GPUs)")

    @classmethod
    def from_json(cls, data: Mapping[str, Any],
                  learner_cls: type[Learner] | None = None) -> TrainConfig:
        """Inverse of :meth:`to_json`. ``learner_cls`` is the class of ``data``'s learner when the
        caller resolved it already (the command line does, to parse ``--model``): it is used as
        it is, not looked up again."""
        if learner_cls is None or not isinstance(data, Mapping):
            return super().from_json(data)
        field = cls.__dataclass_fields__["learner"]
        name = data.get("learner", field.default if field.default is not MISSING else None)
        token = _GIVEN_LEARNER.set((name, learner_cls))
        try:
            return super().from_json(data)
        finally:
            _GIVEN_LEARNER.reset(token)

    def validate(self) -> None:
        given = _GIVEN_LEARNER.get()
        if given is not None and given[0] == self.learner:
            cls = given[1]
        else:
            from sparseshift.representations.registry import learner_class

            cls = learner_class(self.learner)  # unknown names -> ConfigError listing the valid ones
        # resolved once, here: the learner's class and the defaults the run takes from it
        object.__setattr__(self, "learner_cls", cls)
        lo, hi = self.gap_range
        if lo < 1 or hi < lo:
            raise ConfigError(f"gap must be >= 1 (or a range lo <= hi), got {self.gap!r}")
        for name in ("learning_rate", "batch_size", "schedule"):
            getattr(self, name)

    @cached_property
    def learner_cls(self) -> type[Learner]:
        """The run's learner class (:func:`~sparseshift.representations.registry.learner_class`
        of :attr:`learner`), resolved when the config was built."""
        from sparseshift.representations.registry import learner_class

        return learner_class(self.learner)

    @cached_property
    def learning_rate(self) -> float:
        """``lr``, else the learner's ``default_lr``."""
        return float(self.lr if self.lr is not None else self.learner_cls.default_lr)

    @cached_property
    def batch_size(self) -> int:
        """``batch``, else the learner's ``default_batch``."""
        return int(self.batch if self.batch is not None else self.learner_cls.default_batch)

    @cached_property
    def schedule(self) -> LRSchedule:
        """The learning-rate schedule of the run: ``lr_schedule``, else the learner's default,
        else constant."""
        if self.lr_schedule is not None:
            return self.lr_schedule
        default: LRSchedule | None = self.learner_cls.default_lr_schedule
        return default or LRSchedule()

    @cached_property
    def gap_range(self) -> tuple[int, int]:
        if isinstance(self.gap, int):
            return (self.gap, self.gap)
        lo, hi = self.gap
        return (int(lo), int(hi))


#: ``(learner name, class)`` that :meth:`TrainConfig.from_json` was given for the config it builds.
_GIVEN_LEARNER: ContextVar[tuple[Any, type[Learner]] | None] = ContextVar("_GIVEN_LEARNER",
                                                                          default=None)


@dataclass(frozen=True)
class EvalConfig(Config):
    """Evaluation protocol options (:mod:`sparseshift.representations.evaluate`; the defaults are
    disentanglement_lib's: 10,000 / 5,000 samples, 20 histogram bins)."""

    num_train: int = opt(10000, "frames the metrics and probes are fitted on", min=1,
                         max=10_000_000)
    num_test: int = opt(5000, "frames they are scored on", min=1, max=10_000_000)
    seed: int = opt(0, "seed of the sampling and the probes", min=0, max=SEED_MAX)
    bins: int = opt(20, "histogram bins of continuous factors and codes", min=2, max=1000)
    dci_estimators: int = opt(30, "boosted trees per factor in DCI", min=1, max=10_000)
    dci_max_train: int | None = opt(2000, "DCI fits on at most this many frames (none: all)",
                                    min=1)
    factor_vae: Literal["auto", "env", "grouping", "off"] = opt(
        "auto", "FactorVAE score batches: rendered by the env, grouped dataset frames, auto or off")
    factor_vae_batch: int = opt(64, "FactorVAE batch size", min=2, max=100_000)
    factor_vae_train: int = opt(10000, "FactorVAE votes to fit (grouping)", min=1)
    factor_vae_eval: int = opt(5000, "FactorVAE votes to score (grouping)", min=1)
    factor_vae_env_train: int = opt(100, "FactorVAE votes to fit (env rendering)", min=1)
    factor_vae_env_eval: int = opt(50, "FactorVAE votes to score (env rendering)", min=1)
    probes: bool = opt(True, "skip the linear and MLP probes", flag="--no-probes", invert=True)
    encode_batch: int = opt(256, "frames per encoder batch", min=1, max=100_000)
    proxy: bool = opt(True, "skip the OOD proxy task (per-group probes trained on IN colours, "
                      "scored on IN, OOD1, OOD2 and real frames rendered by the env)",
                      flag="--no-proxy", invert=True)
    proxy_train: int = opt(2000, "proxy task: IN-colour frames the probes are fitted on (at "
                           "most num_train)", min=10, max=1_000_000)
    proxy_test: int = opt(500, "proxy task: frames scored per split (at most num_test)", min=10,
                          max=1_000_000)
    proxy_splits: tuple[str, ...] | None = opt(
        None, "proxy task: shifts scored, in the shift syntax ('in,ood2,lighting:1-5,real:3'; "
        "see 'sparseshift shifts'); none: the colour splits and every composition the env "
        "supports; shifts an env cannot render are left out for that env")
    device: str = opt("auto", "torch device that encodes the frames: auto, cpu, cuda, cuda:N or "
                      "mps (the metrics themselves run on the CPU)")
    max_code_dims: int | None = opt(
        None, "skip the per-dimension metrics (MIG, DCI, SAP, modularity, FactorVAE) for codes "
        "wider than this (none: never); DCI's boosted trees grow with the dimension", min=1)

    def validate(self) -> None:
        if self.proxy_splits is not None:
            from sparseshift.representations.proxy import check_splits

            check_splits(self.proxy_splits)


@dataclass(frozen=True)
class ProxyConfig(Config):
    """Frames of the OOD proxy task (:mod:`sparseshift.representations.proxy`), rendered once per
    dataset and shared by every encoder evaluated on it."""

    n_train: int = opt(2000, "IN-colour frames the probes are fitted on", min=10)
    n_test: int = opt(500, "frames scored per shift", min=10)
    seed: int = opt(0, "seed of the sampled states", min=0, max=SEED_MAX)
    splits: tuple[str, ...] | None = opt(
        None, "shifts rendered, in the list syntax of every command (in,ood2,lighting:1-5,"
        "real:3; none: the colour splits and real where the env has it); shifts an env cannot "
        "render are left out")

    def validate(self) -> None:
        if self.splits is not None:  # names, severities and files, before any frame is drawn
            from sparseshift.representations.proxy import check_splits

            check_splits(self.splits)

    @classmethod
    def of(cls, cfg: EvalConfig) -> ProxyConfig:
        """The proxy frames of an eval config: ``proxy_train`` / ``proxy_test`` capped at
        ``num_train`` / ``num_test`` (at least 10), its seed and ``proxy_splits``."""
        return cls(min(cfg.proxy_train, max(cfg.num_train, 10)),
                   min(cfg.proxy_test, max(cfg.num_test, 10)), cfg.seed, cfg.proxy_splits)
