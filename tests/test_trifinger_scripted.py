"""The scripted TriFinger pusher really moves the cube (and often reaches the goal)."""

from __future__ import annotations

import sparseshift  # noqa: F401  (registers the ids)

# isort: split

import gymnasium as gym
import numpy as np
import pytest

from sparseshift.envs.trifinger.scripted import ScriptedPusher

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


def test_reach_goals_are_reachable_by_the_goal_configuration() -> None:
    """Commanding the joint configuration a Reach goal came from succeeds in every episode: goals
    lie above the cube and near each finger's rest position, so nothing is in the way."""
    from sparseshift.envs.trifinger.model import target_to_action
    from sparseshift.envs.trifinger.tasks import TriFingerReachEnv

    env = TriFingerReachEnv(obs_mode="state", action_mode="absolute")
    for seed in range(20):
        env.reset(seed=seed)
        action = target_to_action(env.goal_joints)
        for _ in range(40):
            _, _, _, _, info = env.step(action)
        assert info["is_success"], seed


def test_reach_starts_near_the_default_pose_unless_joints_are_given() -> None:
    from sparseshift.envs.trifinger.model import DEFAULT_Q
    from sparseshift.envs.trifinger.tasks import (
        REACH_MIN_HEIGHT,
        REACH_START_SPREAD,
        TriFingerReachEnv,
    )

    env = TriFingerReachEnv(obs_mode="state")
    starts = []
    for seed in range(20):
        env.reset(seed=seed)
        q = env.joint_positions
        assert np.all(np.abs(q - DEFAULT_Q) <= REACH_START_SPREAD + 1e-6), seed
        assert env.goal.reshape(3, 3)[:, 2].min() >= REACH_MIN_HEIGHT
        starts.append(q)
    assert np.std(starts, axis=0).min() > 0.02  # the start really varies
    given = {"finger0.upper": 0.7}
    env.reset(seed=0, options={"factors": given})
    assert env.joint_positions[0] == pytest.approx(0.7)
