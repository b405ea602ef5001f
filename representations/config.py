"""Configs of a representation run: training (:class:`TrainConfig`), evaluation
(:class:`EvalConfig`) and the OOD proxy task (:class:`ProxyConfig`); a learner's own options are
in :mod:`sparseshift.representations.model_config`.

These frozen dataclasses (:class:`sparseshift.envs.infra.config.Config`) import neither torch
nor any learner module, so the command line can derive its flags from them without loading torch;
:class:`TrainConfig` looks its learner up (and so imports it) only when it is built, once: the
class and the learner's defaults it resolves are attributes of the config from then on.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import MISSING, dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from sparseshift.envs.infra.config import (
    SEED_MAX,
    Config,
    opt,
)
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.model_config import LRSchedule

if TYPE_CHECKING:
    from sparseshift.representations.base import Learner

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
            from sparseshift.representations.splits import check_splits

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
            from sparseshift.representations.splits import check_splits

            check_splits(self.splits)

    @classmethod
    def of(cls, cfg: EvalConfig) -> ProxyConfig:
        """The proxy frames of an eval config: ``proxy_train`` / ``proxy_test`` capped at
        ``num_train`` / ``num_test`` (at least 10), its seed and ``proxy_splits``."""
        return cls(min(cfg.proxy_train, max(cfg.num_train, 10)),
                   min(cfg.proxy_test, max(cfg.num_test, 10)), cfg.seed, cfg.proxy_splits)
