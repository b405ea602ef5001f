"""The scripted TriFinger pusher really moves the cube (and often reaches the goal)."""

from __future__ import annotations

import envs  # noqa: F401  (registers the ids, selects the GL backend)

# isort: split

import gymnasium as gym
import numpy as np
import pytest

from envs.trifinger.scripted import ScriptedPusher

SEEDS = range(6)


def _run(seed: int, steps: int = 150) -> tuple[float, bool]:
    env = gym.make("sparseshift/TriFingerPush-v0", obs_mode="state")
    policy = ScriptedPusher(env, np.random.default_rng(seed))
    obs, _ = env.reset(seed=seed)
    policy.reset()
    base = env.unwrapped
    start = np.array(base.cube_position[:2])  # type: ignore[attr-defined]
    success = False
    for _ in range(steps):
        action = policy.act(obs)
        assert action.shape == (9,) and action.dtype == np.float32
        assert np.all(np.abs(action) <= 1.0)
        obs, _, _, _, info = env.step(action)
        success = bool(info["is_success"])
    moved = float(np.linalg.norm(base.cube_position[:2] - start))  # type: ignore[attr-defined]
    return moved, success


def test_scripted_pusher_moves_the_cube_in_most_seeds() -> None:
    results = [_run(s) for s in SEEDS]
    moved = [m for m, _ in results]
    assert sum(m > 0.03 for m in moved) >= 5, moved
    assert sum(s for _, s in results) >= 3, results


def test_scripted_pusher_needs_a_push_env() -> None:
    with pytest.raises(TypeError):
        ScriptedPusher(gym.make("sparseshift/TriFingerReach-v0", obs_mode="state"))
