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

import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

from sparseshift.envs.infra.config import (
    Config,
    check_choice,
    check_int,
    check_number,
    opt,
    parse_assignments,
    parse_text,
)
from sparseshift.envs.infra.errors import ConfigError, check_image_size, choice_error, safe_repr
from sparseshift.envs.registry import entry
from sparseshift.envs.shifts.colours import parse_splits
from sparseshift.envs.shifts.registry import COLOUR_SPLITS, EnvShift
from sparseshift.envs.shifts.severity import parse_requests

ALGOS: tuple[str, ...] = ("ppo", "sac")
#: Encoder names that are baselines, not an encoder of the user's: ``pixels`` (end to end),
#: ``state`` (the oracle), ``random`` (an untrained encoder) and ``sensors`` (proprioception and
#: goal only, no image: the floor that a useful image encoder must beat).
BASELINES: tuple[str, ...] = ("pixels", "state", "random", "sensors")
#: Baselines without a frozen encoder.
NO_ENCODER: tuple[str, ...] = ("pixels", "state", "sensors")
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


#: Type and bounds of every hyperparameter (``--hp KEY=VALUE`` is parsed and checked by these).
HYPER_TYPES: Mapping[str, Any] = MappingProxyType({
    "n_envs": int, "n_steps": int, "batch_size": int, "n_epochs": int, "learning_rate": float,
    "gamma": float, "gae_lambda": float, "clip_range": float, "ent_coef": float | str,
    "vf_coef": float, "max_grad_norm": float, "net_arch": tuple[int, ...],
    "log_std_init": float, "buffer_size": int, "learning_starts": int, "tau": float,
    "train_freq": int, "gradient_steps": int, "deepsets_hidden": int,
    "deepsets_set_features": int, "deepsets_proprio_features": int, "deepsets_pooling": str,
})
_INT_BOUNDS: Mapping[str, tuple[int, int]] = MappingProxyType({
    "n_envs": (1, 256), "n_steps": (1, 1_000_000), "batch_size": (1, 1_000_000),
    "n_epochs": (1, 1000), "buffer_size": (1, 10_000_000), "learning_starts": (0, 10**9),
    "train_freq": (1, 1_000_000), "gradient_steps": (1, 10_000), "deepsets_hidden": (1, 4096),
    "deepsets_set_features": (1, 4096), "deepsets_proprio_features": (1, 4096),
})
#: (low, high, low excluded) of the float hyperparameters.
_FLOAT_BOUNDS: Mapping[str, tuple[float, float, bool]] = MappingProxyType({
    "learning_rate": (0.0, 1.0, True), "gamma": (0.0, 1.0, False),
    "gae_lambda": (0.0, 1.0, False), "clip_range": (0.0, 10.0, True),
    "vf_coef": (0.0, 100.0, False),
    "max_grad_norm": (0.0, 1e6, True), "log_std_init": (-20.0, 5.0, False),
    "tau": (0.0, 1.0, True),
})


#: Most hidden layers of a policy or value MLP (``net_arch``), each at most
#: :data:`NET_ARCH_MAX_WIDTH` units, and most weights between them all together (2**26: 256 MiB
#: of float32 per network, e.g. two layers of 8192). The whole policy, with its input and output
#: layers, is checked against the spaces it is built for (:data:`~sparseshift.agents.policy_io.
#: MAX_POLICY_PARAMETERS`) before it is built.
NET_ARCH_MAX_LAYERS = 16
NET_ARCH_MAX_WIDTH = 65536
NET_ARCH_MAX_PARAMS = 2**26


def check_net_arch(name: str, value: Any) -> tuple[int, ...]:
    """Layer widths: a non-empty list of at most :data:`NET_ARCH_MAX_LAYERS` integers in
    ``[1, NET_ARCH_MAX_WIDTH]`` whose hidden-to-hidden weights number at most
    :data:`NET_ARCH_MAX_PARAMS` (checked before anything is allocated)."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{name} must be a list of layer widths, got {safe_repr(value)}")
    if len(value) > NET_ARCH_MAX_LAYERS:
        raise ConfigError(f"{name} must have at most {NET_ARCH_MAX_LAYERS} layers, got "
                          f"{len(value)}")
    widths = tuple(check_int(name, v, 1, NET_ARCH_MAX_WIDTH) for v in value)
    total = sum(a * b for a, b in itertools.pairwise(widths))
    if total > NET_ARCH_MAX_PARAMS:
        raise ConfigError(f"{name} {list(widths)} has {total:,} weights between its layers "
                          f"(about {total * 4 / 2**30:.1f} GiB per network); at most "
                          f"{NET_ARCH_MAX_PARAMS:,}")
    return widths


def check_hyperparam(key: str, value: Any) -> Any:
    """``value`` checked against the type and bounds of hyperparameter ``key``."""
    name = f"hyperparameter {key}"
    if key in _INT_BOUNDS:
        return check_int(name, value, *_INT_BOUNDS[key])
    if key in _FLOAT_BOUNDS:
        low, high, open_low = _FLOAT_BOUNDS[key]
        return check_number(name, value, low, high, low_open=open_low)
    if key == "ent_coef":
        if isinstance(value, str) and (value == "auto" or value.startswith("auto_")):
            return value
        return check_number(name, value, 0.0, 100.0)
    if key == "net_arch":
        return check_net_arch(name, value)
    if key == "deepsets_pooling":
        return check_choice(name, value, ("mean", "sum", "max"))
    return value


def parse_hyperparams(items: Sequence[str], flag: str = "--hp") -> dict[str, Any]:
    """``KEY=VALUE`` overrides parsed by each hyperparameter's type (unknown names are checked
    against the env family and algorithm by :meth:`AgentConfig.resolved_hyperparams`)."""
    raw = parse_assignments(items, flag)
    out: dict[str, Any] = {}
    for key, text in raw.items():
        try:
            out[key] = parse_text(HYPER_TYPES.get(key, Any), text)
        except ValueError as exc:
            raise ConfigError(f"{flag} {key}={text!r}: expects {exc}") from None
    return out


def parse_env_kwargs(items: Sequence[str], flag: str = "--env-kwarg") -> dict[str, Any]:
    """``KEY=VALUE`` env options; values are JSON where they parse, else strings (the env
    checks them when it is made)."""
    return {k: parse_text(Any, v) for k, v in parse_assignments(items, flag).items()}


def _json_mapping(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    for k, v in value.items():
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise ConfigError(f"{what}[{safe_repr(k)}] is not a finite JSON value: "
                              f"{safe_repr(v)}") from None
    return dict(sorted(value.items()))


def check_path_text(name: str, value: str | None) -> None:
    """Refuse text that no file system takes as a path (a NUL byte, a name over 255 bytes, over
    4096 bytes in all), so that looking it up is a one-line error, not an OSError."""
    if value is None:
        return
    try:
        raw = os.fsencode(value)
    except UnicodeEncodeError:
        raw = b"\0"
    if b"\0" in raw or len(raw) > 4096 or any(len(part) > 255 for part in raw.split(b"/")):
        raise ConfigError(f"{name} {safe_repr(value)} is not a path or name any file system "
                          "takes (a NUL byte, or a name over 255 bytes)")


#: AgentConfig fields that do not change what an agent learns (not part of its identity): where
#: and how fast it runs, and what it logs.
RUNTIME_FIELDS: tuple[str, ...] = ("env_workers", "device", "policy_device", "torch_threads",
                                   "tensorboard", "encoder_weights")


@dataclass(frozen=True)
class AgentConfig(Config):
    """One agent training run.

    ``encoder`` is a representation run directory (``sparseshift train-rep --out``) or one of
    :data:`BASELINES`: ``pixels`` (end-to-end NatureCNN), ``state`` (ground-truth state, the
    oracle), ``random`` (the default ``beta_vae`` encoder, untrained, initialised from ``seed``).
    ``env_kwargs`` and ``hyperparams`` are mappings (stored sorted by key).
    """

    env_id: str = opt(help="env id, e.g. sparseshift/TriFingerReach-v0", flag="--env")
    encoder: str = opt(help="a run folder, an export-encoder folder, package.module:factory (your "
                       "own nn.Module), an installed encoder entry point, or a baseline: random, "
                       "sensors, pixels, state")
    encoder_weights: str | None = opt(None, "safetensors weights for an encoder named by its "
                                      "factory", metavar="W.safetensors")
    algo: Literal["ppo", "sac"] = opt("ppo", "ppo, or sac (Box actions only)")
    steps: int = opt(100_000, "env steps to train for", min=1, max=10**10)
    seed: int = opt(0, "seed of everything", min=0, max=SEED_LIMIT - 1)
    colours: str = opt(COLOUR_SPLITS[0], "training colour split (e.g. in, or in+ood1)")
    image_size: int = opt(64, "env image size", min=8, max=512)
    env_kwargs: Mapping[str, Any] = opt(factory=dict, cli=False,
                                        help="extra env kwargs (--env-kwarg KEY=VALUE)")
    hyperparams: Mapping[str, Any] = opt(factory=dict, cli=False,
                                         help="hyperparameter overrides (--hp KEY=VALUE)")
    eval_every: int = opt(10_000, "env steps between evaluations on IN colours (0: off)", min=0)
    eval_episodes: int = opt(10, "episodes per evaluation", min=1, max=100_000)
    eval_policy: Literal["auto", "deterministic", "stochastic"] = opt(
        "auto", "evaluation actions: auto (deterministic on TriFinger, sampled with a seed on grid "
        "worlds), deterministic or stochastic")
    checkpoint_every: int = opt(50_000, "env steps between checkpoints: policy weights, and the "
                                "training state an interrupted run resumes from (0: off; the "
                                "final state is always saved)", min=0)
    tensorboard: bool = opt(True, "CSV logs only", flag="--no-tensorboard", invert=True)
    torch_threads: int = opt(1, "torch threads", flag="--threads", min=1, max=1024)
    env_workers: int = opt(1, "processes that step the training envs (sync collector: 1 is this "
                           "process; results are identical for any number)", min=1, max=256)
    collector: Literal["sync", "pipelined"] = opt(
        "sync", "how PPO collects rollouts: sync (SB3's), or pipelined (--env-workers processes "
        "step half of the envs while this process encodes and acts for the other half; equal to "
        "sync up to float rounding)")
    device: str = opt("auto", "device of the frozen encoder: auto (an accelerator if one is "
                      "available, else cpu), cpu, cuda, cuda:N or mps")
    policy_device: str = opt("cpu", "device of the SB3 policy (a small MLP is fastest on the "
                             "CPU; auto, cpu, cuda, cuda:N or mps)")

    def validate(self) -> None:
        fam = self.family  # looked up once, here (unknown ids: a ConfigError naming valid ones)
        if (fam, self.algo) not in DEFAULTS:
            raise ConfigError(
                f"{self.algo} needs a continuous (Box) action space; {self.env_id} has discrete "
                f"actions (use --algo ppo)"
            )
        if not self.encoder:
            raise ConfigError("encoder must be a run directory or one of " + ", ".join(BASELINES))
        if self.collector == "pipelined" and (self.algo != "ppo" or self.encoder == "pixels"):
            raise ConfigError("the pipelined collector is for ppo on an encoder or the state and "
                              "sensors baselines (not sac, not the pixels baseline)")
        for name in ("encoder", "encoder_weights"):
            check_path_text(name, getattr(self, name))
        if self.encoder_weights is not None and self.encoder in BASELINES:
            raise ConfigError(f"--encoder-weights does not apply to the {self.encoder} baseline")
        check_image_size(self.image_size)
        object.__setattr__(self, "colours", "+".join(parse_splits(self.colours)))
        object.__setattr__(self, "env_kwargs", _json_mapping(self.env_kwargs, "env_kwargs"))
        object.__setattr__(self, "hyperparams", _json_mapping(self.hyperparams, "hyperparams"))
        reserved = {"obs_mode", "colours", "image_size", "shift"} & self.env_kwargs.keys()
        if reserved:
            raise ConfigError(f"env_kwargs may not set {sorted(reserved)}; they follow from the "
                              "encoder, --colours, --image-size and the evaluation shift")
        self.resolved_hyperparams()  # validates override keys, types and bounds

    @cached_property
    def family(self) -> str:
        """The env's family (``grid``, ``trifinger``), looked up when the config is built."""
        return entry(self.env_id).family

    @property
    def encoder_kind(self) -> str:
        """A baseline name (``pixels``, ``state``, ``random``, ``sensors``) or ``checkpoint`` for
        any encoder of the user's."""
        return self.encoder if self.encoder in BASELINES else "checkpoint"

    @property
    def obs_mode(self) -> str:
        return {"state": "state", "sensors": "proprio"}.get(self.encoder, "pixels_proprio")

    def resolved_hyperparams(self) -> dict[str, Any]:
        """The family/algo defaults with ``hyperparams`` applied (unknown keys, wrong types and
        out-of-range values: ConfigError)."""
        hp = dict(DEFAULTS[(self.family, self.algo)])
        if self.algo == "sac" and self.encoder == "pixels":
            hp["buffer_size"] = PIXELS_SAC_BUFFER
        hp.update(DEEPSETS_DEFAULTS)
        for k, v in self.hyperparams.items():
            if k not in hp:
                raise ConfigError(f"unknown {self.algo} hyperparameter {k!r} for {self.family} "
                                  f"envs; valid: {', '.join(sorted(hp))}")
            hp[k] = check_hyperparam(k, v)
        if self.algo != "sac" and isinstance(hp.get("ent_coef"), str):
            raise ConfigError(f"ent_coef {hp['ent_coef']!r} (automatic entropy tuning) is for "
                              "sac; ppo takes a number")
        return hp

    def env_kwargs_for(self, colours: str, shift: EnvShift | None = None) -> dict[str, Any]:
        """Env kwargs for one colour split and the nuisances of a shift (the env's ``shift``
        kwarg, left out when None)."""
        kw: dict[str, Any] = dict(self.env_kwargs)
        kw.update(obs_mode=self.obs_mode, colours=colours, image_size=self.image_size)
        if shift is not None:
            kw["shift"] = shift
        return kw

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentConfig:
        """Inverse of :meth:`to_json`; agent configs written before format 2 stored
        ``env_kwargs``/``hyperparams`` as lists of pairs, which are accepted too."""
        d = dict(data) if isinstance(data, Mapping) else data
        if isinstance(d, dict):
            for k in ("env_kwargs", "hyperparams"):
                if isinstance(d.get(k), list | tuple):
                    try:
                        d[k] = {str(a): b for a, b in d[k]}
                    except (TypeError, ValueError):
                        raise ConfigError(f"{k} must be an object of key/value pairs") from None
        return super().from_json(d)


@dataclass(frozen=True)
class EvaluateConfig(Config):
    """How ``sparseshift evaluate`` runs an agent: shifts, episodes, seed, videos, action policy."""

    shifts: tuple[str, ...] = opt(
        COLOUR_SPLITS, "comma-separated shifts, each NAME, NAME:LEVEL (1-5), NAME:A-B (every "
        "level) or NAME@STRENGTH (0-5), e.g. in,ood2,lighting:1-5,real:3; NAME is a registered "
        "shift (list them with `sparseshift shifts`; docs/shifts.md) or a shift file (.toml/.json)",
        metavar="SHIFTS")
    episodes: int = opt(50, "episodes per shift", min=1, max=1_000_000)
    seed: int = opt(0, "evaluation seed", min=0, max=SEED_LIMIT - 1)
    video: int = opt(0, "write mp4 videos of the first N episodes of each shift", min=0,
                     max=10_000, metavar="N")
    resamples: int = opt(2000, "bootstrap resamples of the 95% CIs", min=1, max=1_000_000,
                         cli=False)
    policy: Literal["auto", "deterministic", "stochastic"] | None = opt(
        None, "mode or sampled (seeded) actions; none: the agent's setting (auto: deterministic "
        "on TriFinger, stochastic on grid worlds)")
    device: str | None = opt(None, "device of the frozen encoder (auto, cpu, cuda, cuda:N, mps); "
                             "none: the agent's setting")

    def validate(self) -> None:
        # the grammar here (one line when the config is made); names, files and what the env
        # supports when the agent's env and the user's registry are known (before any episode)
        parse_requests(self.shifts)
