"""Building (vectorised) envs for agents: colour splits, shifts, Monitor, frozen-encoder wrapper.

Every shift an agent is trained or evaluated under comes from the shift registry
(:mod:`sparseshift.envs.shifts.registry`): a colour split of the OOD protocol (``in``, ``ood1``,
``ood2``; Dittadi et al., ICLR 2021; Traeuble, Dittadi et al., ICLR 2022), a graded rendering
nuisance (``lighting:3``, ``noise@2.5``), a composition such as ``real``, or a user's shift file.
:func:`parse_shifts` resolves a list in the severity grammar
(:mod:`sparseshift.envs.shifts.severity`) and checks that the env supports each shift;
:func:`make_env` builds the env of one resolved shift (its colour split as ``colours``, its
nuisances as the env's ``shift`` kwarg). :func:`training_shifts` resolves a training run's shifts
once: the colour splits it trains on and the one its periodic evaluation runs under.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sparseshift.agents.config import AgentConfig
from sparseshift.agents.encoding import FrozenEncoder
from sparseshift.agents.standardize import STATS_EPISODES, STATS_STEPS, LatentStats, stats_of
from sparseshift.agents.wrapper import EncodedVecEnv
from sparseshift.envs.infra.io import strict_json
from sparseshift.envs.registry import make
from sparseshift.envs.shifts.registry import (
    COLOUR_SPLITS,
    ResolvedShift,
    ShiftRegistry,
    default_registry,
)
from sparseshift.envs.shifts.severity import ShiftRequest
from sparseshift.representations.base import Learner


def parse_shifts(spec: str | Sequence[str] | Iterable[ShiftRequest], env_id: str,
                 registry: ShiftRegistry | None = None) -> tuple[ResolvedShift, ...]:
    """``"in,lighting:1-3,real"`` -> resolved shifts, in order (``registry``: the default one
    unless given, e.g. with user plugins). Bad tokens, unknown names, a shift listed twice and a
    shift the env does not support (``real`` on a grid env) are one-line ConfigErrors."""
    from sparseshift.envs.registry import scene_offer

    reg = registry if registry is not None else default_registry()
    return reg.resolve_all(spec, scene_offer(env_id))


def train_shifts(config: AgentConfig, registry: ShiftRegistry | None = None
                 ) -> tuple[ResolvedShift, ...]:
    """The colour splits ``config`` trains on (``colours`` ``in+ood1`` is two), resolved."""
    reg = registry if registry is not None else default_registry()
    return tuple(reg.resolve(ShiftRequest(c)) for c in config.colours.split("+"))


#: The shift periodic evaluation during training runs under: the IN colours.
PERIODIC_EVAL_SHIFT = COLOUR_SPLITS[0]


@dataclass(frozen=True)
class TrainingShifts:
    """The shifts of one training run, resolved once: the colour splits its envs train on
    (``in+ood1`` is two) and the one its periodic evaluation runs under (None when it is off)."""

    train: tuple[ResolvedShift, ...]
    periodic_eval: ResolvedShift | None

    def records(self) -> dict[str, Any]:
        """What ``agent.json`` records of them: one record per training colour split, each as
        :meth:`~sparseshift.envs.shifts.registry.ResolvedShift.record` gives it (definition and
        SHA-256 included), and the periodic evaluation's (``periodic_eval``; None when off)."""
        return strict_json({
            "train": [s.record() for s in self.train],
            "periodic_eval": self.periodic_eval.record() if self.periodic_eval else None,
        })


def training_shifts(config: AgentConfig, registry: ShiftRegistry | None = None
                    ) -> TrainingShifts:
    """The shifts ``config`` trains and periodically evaluates under, resolved."""
    reg = registry if registry is not None else default_registry()
    return TrainingShifts(train_shifts(config, reg),
                          reg.resolve(PERIODIC_EVAL_SHIFT) if config.eval_every else None)


def make_env(config: AgentConfig, shift: ResolvedShift | None = None) -> gym.Env[Any, Any]:
    """One env of ``config``: its training colours (``shift=None``) or the colour split and
    nuisances of a resolved evaluation ``shift``."""
    if shift is None:
        return make(config.env_id, **config.env_kwargs_for(config.colours))
    return make(config.env_id, **config.env_kwargs_for(shift.colours, shift.env_shift()))


@dataclass(frozen=True)
class EnvFactory:
    """Builds one Monitor-wrapped training env of ``config`` (picklable, so worker processes
    can), recorded for exact resume (the outermost
    :class:`~sparseshift.agents.resume.ReplayRecorder`)."""

    config: AgentConfig
    shift: ResolvedShift | None = None

    def __call__(self) -> gym.Env[Any, Any]:
        from sparseshift.agents.resume import ReplayRecorder

        return ReplayRecorder(Monitor(make_env(self.config, self.shift)))


def make_vec_env(config: AgentConfig, n_envs: int, learner: Learner | None,
                 stats: LatentStats | None = None) -> VecEnv:
    """The training envs: ``n_envs`` Monitor-wrapped envs on ``config.colours``, stepped in this
    process (``env_workers`` 1 with the sync collector: a DummyVecEnv) or in ``env_workers``
    processes (:class:`~sparseshift.agents.vecenv.WorkerVecEnv`, identical results; grouped for
    the pipelined collector, :mod:`sparseshift.agents.pipeline`), wrapped in
    :class:`EncodedVecEnv` when ``learner`` is given: the frozen encoder batches the envs in this
    process either way."""
    fns: list[Callable[[], gym.Env[Any, Any]]] = [EnvFactory(config) for _ in range(n_envs)]
    if config.collector == "pipelined":
        from sparseshift.agents.pipeline import GROUPS
        from sparseshift.agents.vecenv import WorkerVecEnv

        venv: VecEnv = WorkerVecEnv(fns, config.env_workers, groups=GROUPS)
    elif config.env_workers > 1:
        from sparseshift.agents.vecenv import WorkerVecEnv

        venv = WorkerVecEnv(fns, config.env_workers)
    else:
        venv = DummyVecEnv(fns)
    return EncodedVecEnv(venv, learner, stats) if learner is not None else venv


def measure_stats(learner: Learner, config: AgentConfig, seed: int,
                  episodes: int = STATS_EPISODES, steps: int = STATS_STEPS) -> LatentStats:
    """Latent statistics of ``learner`` on the training env of ``config`` (its colours): seeded
    episodes of uniformly random actions, the first ``steps`` frames of each (stateful encoders
    carry their state through each episode). Deterministic for a given seed."""
    env = make_env(config)
    encoder = FrozenEncoder(learner, env.observation_space)
    rng = np.random.default_rng([seed, 0x5D])
    env.action_space.seed(int(rng.integers(2**31)))
    rows: list[np.ndarray] = []
    try:
        for _ in range(episodes):
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            batch = [obs]
            for _ in range(steps - 1):
                obs, _, term, trunc, _ = env.step(env.action_space.sample())
                batch.append(obs)
                if term or trunc:
                    break
            if encoder.stateful:
                state = encoder.initial_state(1)
                for o in batch:
                    z, state = encoder.latents(encoder.stack([o]), state)
                    rows.append(z)
            else:
                rows.append(encoder.latents(encoder.stack(batch))[0])
    finally:
        env.close()
    z = np.concatenate(rows)
    if encoder.set_shape is not None:
        z = z.reshape(len(z), *encoder.set_shape)
    return stats_of(z, seed, config.colours)
