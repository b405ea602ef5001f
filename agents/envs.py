"""Building (vectorised) envs for agents: colour splits, shifts, Monitor, frozen-encoder wrapper.

Shifts of the OOD protocol (Dittadi et al., ICLR 2021; Traeuble, Dittadi et al., ICLR 2022):
``in`` (the colours the policy trained on), ``ood1`` (seen by the encoder, not by the policy),
``ood2`` (seen by neither), and ``real`` (IN colours with the TriFinger sim-to-real image shift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import gymnasium as gym
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sparseshift.agents.config import AgentConfig
from sparseshift.agents.standardize import LatentStats
from sparseshift.agents.wrapper import EncodedVecEnv
from sparseshift.envs.errors import ConfigError, choice_error
from sparseshift.envs.registry import entry, make
from sparseshift.representations.base import Learner

#: shift name -> (colour split, image shift)
SHIFTS: MappingProxyType[str, tuple[str, str | None]] = MappingProxyType({
    "in": ("in", None),
    "ood1": ("ood1", None),
    "ood2": ("ood2", None),
    "real": ("in", "real"),
})


def parse_shifts(spec: str | list[str] | tuple[str, ...], env_id: str) -> tuple[str, ...]:
    """``"in,ood1"`` -> ``("in", "ood1")``; unknown names and ``real`` on grid envs: ConfigError."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"no shifts given; valid: {', '.join(SHIFTS)}")
    for n in names:
        if n not in SHIFTS:
            raise choice_error("shift", n, tuple(SHIFTS))
    if len(set(names)) != len(names):
        raise ConfigError(f"shift listed twice in {spec!r}")
    if "real" in names and entry(env_id).family != "trifinger":
        raise ConfigError(
            f"shift 'real' (sim-to-real) exists for TriFinger envs only, not {env_id}"
        )
    return tuple(names)


def make_env(config: AgentConfig, shift: str | None = None) -> gym.Env[Any, Any]:
    """One env of ``config``: its training colours (``shift=None``) or an evaluation shift."""
    if shift is None:
        return make(config.env_id, **config.env_kwargs_for(config.colours))
    colours, image_shift = SHIFTS[shift]
    return make(config.env_id, **config.env_kwargs_for(colours, image_shift))


@dataclass(frozen=True)
class EnvFactory:
    """Builds one Monitor-wrapped env of ``config`` (picklable, so worker processes can)."""

    config: AgentConfig
    shift: str | None = None

    def __call__(self) -> gym.Env[Any, Any]:
        return Monitor(make_env(self.config, self.shift))


def env_factory(config: AgentConfig, shift: str | None = None
                ) -> Callable[[], gym.Env[Any, Any]]:
    return EnvFactory(config, shift)


def make_vec_env(config: AgentConfig, n_envs: int, learner: Learner | None,
                 stats: LatentStats | None = None) -> VecEnv:
    """The training envs: ``n_envs`` Monitor-wrapped envs on ``config.colours``, stepped in this
    process (``env_workers`` 1: a DummyVecEnv) or in ``env_workers`` processes
    (:class:`~sparseshift.agents.vecenv.WorkerVecEnv`, identical results), wrapped in
    :class:`EncodedVecEnv` when ``learner`` is given: the frozen encoder batches all envs in this
    process either way."""
    fns = [env_factory(config) for _ in range(n_envs)]
    if config.env_workers > 1:
        from sparseshift.agents.vecenv import WorkerVecEnv

        venv: VecEnv = WorkerVecEnv(fns, config.env_workers)
    else:
        venv = DummyVecEnv(fns)
    return EncodedVecEnv(venv, learner, stats) if learner is not None else venv
