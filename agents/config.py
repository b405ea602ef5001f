"""Agent configs and the default hyperparameters per env family.

:class:`AgentConfig` is the frozen, JSON-round-trippable description of one training run; together
with the encoder's fingerprint it decides whether an existing output directory can be reused.
Defaults follow the RL Baselines3 Zoo conventions for Stable-Baselines3 (Raffin et al. 2021) and
are documented in ``docs/agents.md``; any of them can be overridden with ``hyperparams``.

Seed ranges (evaluation seeds are disjoint from training seeds): training env ``i`` of a run with
``seed`` resets first with seed ``seed + i`` (SB3's convention), and ``seed`` must be below
:data:`SEED_LIMIT`; periodic evaluation during training uses episode seeds in
``[TRAIN_EVAL_SEED_BASE, EVAL_SEED_BASE)`` and ``sparseshift evaluate`` seeds in
``[EVAL_SEED_BASE, EVAL_SEED_BASE + 2**30)``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sparseshift.envs.colours import parse_splits
from sparseshift.envs.errors import ConfigError, check_image_size, choice_error
from sparseshift.envs.registry import entry

ALGOS: tuple[str, ...] = ("ppo", "sac")
#: Encoder names that are not checkpoint directories.
BASELINES: tuple[str, ...] = ("pixels", "state", "random")
#: The learner (default config) that the ``random`` baseline instantiates untrained.
RANDOM_LEARNER = "beta_vae"

SEED_LIMIT = 2**31 - 1024
TRAIN_EVAL_SEED_BASE = 2**31
EVAL_SEED_BASE = 2**31 + 2**30
SEED_RANGE = 2**30

#: How evaluation picks actions: ``auto`` is deterministic (the mode) for continuous control and
#: sampled (seeded) for grid worlds, where argmax policies of MiniGrid-like tasks often loop
#: forever against a wall although the sampled policy succeeds.
EVAL_POLICIES: tuple[str, ...] = ("auto", "deterministic", "stochastic")
AUTO_DETERMINISTIC: Mapping[str, bool] = MappingProxyType({"trifinger": True, "grid": False})

#: Defaults per (family, algo); ``net_arch`` is the policy/value MLP on top of the features.
DEFAULTS: Mapping[tuple[str, str], Mapping[str, Any]] = MappingProxyType({
    ("grid", "ppo"): {
        "n_envs": 8, "n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 2.5e-4,
        "gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.01, "vf_coef": 0.5,
        "max_grad_norm": 0.5, "net_arch": (64, 64),
    },
    # n_steps 128 (1,024 transitions per update) and an initial action std of exp(-0.5) = 0.6:
    # PPO on ground-truth state then solves Reach (delta actions) in about 60k steps; with
    # n_steps 256 and std 1 it had not learnt after 100k.
    ("trifinger", "ppo"): {
        "n_envs": 8, "n_steps": 128, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4,
        "gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5,
        "max_grad_norm": 0.5, "net_arch": (256, 256), "log_std_init": -0.5,
    },
    ("trifinger", "sac"): {
        "n_envs": 1, "buffer_size": 300_000, "batch_size": 256, "learning_rate": 3e-4,
        "learning_starts": 1000, "tau": 0.005, "gamma": 0.99, "train_freq": 1,
        "gradient_steps": 1, "ent_coef": "auto", "net_arch": (256, 256),
    },
})
#: Replay buffers hold two uint8 frames per transition for the end-to-end ``pixels`` baseline.
PIXELS_SAC_BUFFER = 50_000
#: DeepSets (Zaheer et al. 2017) extractor defaults for set-valued latents.
DEEPSETS_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "deepsets_hidden": 128, "deepsets_set_features": 128, "deepsets_proprio_features": 64,
    "deepsets_pooling": "mean"})


def check_eval_policy(policy: str) -> str:
    if policy not in EVAL_POLICIES:
        raise choice_error("evaluation policy", policy, EVAL_POLICIES)
    return policy


def is_deterministic(policy: str, family: str) -> bool:
    """Whether evaluation with ``policy`` (see :data:`EVAL_POLICIES`) takes the mode action."""
    if check_eval_policy(policy) == "auto":
        return AUTO_DETERMINISTIC[family]
    return policy == "deterministic"


def _frozen_items(value: Any, what: str) -> tuple[tuple[str, Any], ...]:
    if isinstance(value, Mapping):
        value = tuple(value.items())
    try:
        items = tuple((str(k), v) for k, v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be key/value pairs, got {value!r}") from None
    for k, v in items:
        try:
            json.dumps(v)
        except TypeError:
            raise ConfigError(f"{what}[{k!r}] is not JSON-serialisable: {v!r}") from None
    return tuple(sorted(items))


@dataclass(frozen=True)
class AgentConfig:
    """One agent training run.

    ``encoder`` is a representation run directory (``sparseshift train-rep --out``) or one of
    :data:`BASELINES`: ``pixels`` (end-to-end NatureCNN), ``state`` (ground-truth state, the
    oracle), ``random`` (the default ``beta_vae`` encoder, untrained, initialised from ``seed``).
    ``env_kwargs`` and ``hyperparams`` are key/value pairs (a dict is accepted and frozen).
    """

    env_id: str
    encoder: str
    algo: str = "ppo"
    steps: int = 100_000
    seed: int = 0
    colours: str = "in"
    image_size: int = 64
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    hyperparams: tuple[tuple[str, Any], ...] = ()
    eval_every: int = 10_000
    eval_episodes: int = 10
    eval_policy: str = "auto"
    checkpoint_every: int = 50_000
    tensorboard: bool = True
    torch_threads: int = 1

    def __post_init__(self) -> None:
        fam = entry(self.env_id).family
        if self.algo not in ALGOS:
            raise choice_error("algo", self.algo, ALGOS)
        if (fam, self.algo) not in DEFAULTS:
            raise ConfigError(
                f"{self.algo} needs a continuous (Box) action space; {self.env_id} has discrete "
                f"actions (use --algo ppo)"
            )
        for name in ("steps", "eval_episodes", "torch_threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("eval_every", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be an integer >= 0 (0 disables), got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"seed must be an integer in [0, {SEED_LIMIT}), got {self.seed!r}")
        if not isinstance(self.encoder, str) or not self.encoder:
            raise ConfigError("encoder must be a run directory or one of " + ", ".join(BASELINES))
        check_image_size(self.image_size)
        check_eval_policy(self.eval_policy)
        object.__setattr__(self, "colours", "+".join(parse_splits(self.colours)))
        object.__setattr__(self, "env_kwargs", _frozen_items(self.env_kwargs, "env_kwargs"))
        object.__setattr__(self, "hyperparams", _frozen_items(self.hyperparams, "hyperparams"))
        reserved = {"obs_mode", "colours", "image_size", "shift"} & dict(self.env_kwargs).keys()
        if reserved:
            raise ConfigError(f"env_kwargs may not set {sorted(reserved)}; they follow from the "
                              "encoder, --colours, --image-size and the evaluation shift")
        self.resolved_hyperparams()  # validates override keys

    @property
    def family(self) -> str:
        return entry(self.env_id).family

    @property
    def encoder_kind(self) -> str:
        """``pixels``, ``state``, ``random`` or ``checkpoint``."""
        return self.encoder if self.encoder in BASELINES else "checkpoint"

    @property
    def obs_mode(self) -> str:
        return "state" if self.encoder == "state" else "pixels_proprio"

    def resolved_hyperparams(self) -> dict[str, Any]:
        """The family/algo defaults with ``hyperparams`` applied (unknown keys: ConfigError)."""
        hp = dict(DEFAULTS[(self.family, self.algo)])
        if self.algo == "sac" and self.encoder == "pixels":
            hp["buffer_size"] = PIXELS_SAC_BUFFER
        hp.update(DEEPSETS_DEFAULTS)
        for k, v in self.hyperparams:
            if k not in hp:
                raise ConfigError(f"unknown {self.algo} hyperparameter {k!r} for {self.family} "
                                  f"envs; valid: {', '.join(sorted(hp))}")
            hp[k] = v
        return hp

    def env_kwargs_for(self, colours: str, shift: str | None = None) -> dict[str, Any]:
        """Env kwargs for one colour split (and TriFinger image shift)."""
        kw: dict[str, Any] = dict(self.env_kwargs)
        kw.update(obs_mode=self.obs_mode, colours=colours, image_size=self.image_size)
        if shift is not None:
            kw["shift"] = shift
        return kw

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env_kwargs"] = dict(self.env_kwargs)
        d["hyperparams"] = dict(self.hyperparams)
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown AgentConfig field(s) {unknown}")
        return cls(**dict(data))
