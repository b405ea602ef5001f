"""Random + invalid-action fuzzing of a :class:`~sparseshift.envs.core.base.FactorEnv` (used by
the grid tests).

Valid random actions must always give observations inside the observation space with finite
values (and finite rewards and factors); invalid actions (out of range, non-integer, wrong shape)
must raise :class:`~sparseshift.envs.infra.errors.ConfigError` and leave the state untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from sparseshift.envs.infra.errors import ConfigError


def _finite(obs: Any) -> bool:
    parts = obs.values() if isinstance(obs, dict) else [obs]
    return all(bool(np.isfinite(np.asarray(p)).all()) for p in parts)


def invalid_actions(n: int) -> list[Any]:
    """Actions a ``Discrete(n)`` env must reject."""
    return [-1, n, n + 100, 1.5, "up", None, [0, 1], np.array([[1]]), np.float32(1.0)]


def fuzz_env(
    env: gym.Env[Any, Any],
    n_steps: int = 1000,
    seed: int = 0,
    invalid_rate: float = 0.1,
    invalid: Sequence[Any] | None = None,
) -> int:
    """Step ``env`` ``n_steps`` times; raise AssertionError on any violation. Returns episodes."""
    space = env.action_space
    assert isinstance(space, gym.spaces.Discrete)
    bad = list(invalid_actions(int(space.n)) if invalid is None else invalid)
    rng = np.random.default_rng(seed)
    u: Any = env.unwrapped
    env.reset(seed=seed)
    episodes = 0
    for _ in range(n_steps):
        if rng.random() < invalid_rate:
            before = u.get_factors()
            action = bad[int(rng.integers(len(bad)))]
            try:
                u.step(action)
            except ConfigError:
                pass
            else:
                raise AssertionError(f"invalid action {action!r} was accepted")
            assert np.array_equal(u.get_factors(), before), "a rejected action changed the state"
            continue
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(int(space.n))))
        assert env.observation_space.contains(obs), "observation outside the observation space"
        assert _finite(obs), "non-finite observation"
        assert np.isfinite(float(reward)) and np.isfinite(info["factors"]).all(), (
            "non-finite reward"
        )
        if terminated or truncated:
            episodes += 1
            env.reset()
    return episodes
