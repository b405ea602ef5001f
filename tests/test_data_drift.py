"""Predictable-motion behaviour policies: ``straight`` (ColourGrid) and ``sinusoid`` (TriFinger).

Each is seeded (same Generator, same rollout), predictable (the next factor vector is better
predicted by linear extrapolation of the last two than by copying the last one), recorded with its
settings in the dataset, and byte-identical for any number of workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparseshift.agents.collect.collect import collect
from sparseshift.agents.collect.policies import (
    SinusoidPolicy,
    StraightLinePolicy,
    describe_policy,
    policy_factory,
)
from sparseshift.envs.data import open_dataset
from sparseshift.envs.data.config import CollectConfig
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.registry import make
from tests.test_data_helpers import raw_chunks

GRID, ONE = "sparseshift/ColourGrid-v0", "sparseshift/ColourGridOne-v0"
OBJECT_REACH, PUSH = "sparseshift/TriFingerObjectReach-v0", "sparseshift/TriFingerPush-v0"


def rollout(env_id: str, spec: str, steps: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(factors [steps+1, F], actions, episode index per row) of one policy from a fresh env."""
    env = make(env_id, obs_mode="state")
    policy = policy_factory(describe_policy(spec, env_id), env)(np.random.default_rng(seed))
    obs, info = env.reset(seed=seed)
    policy.reset()
    factors, actions, episode, e = [info["factors"]], [], [0], 0
    for _ in range(steps):
        action = policy.act(obs)
        actions.append(np.asarray(action))
        obs, _, term, trunc, info = env.step(action)
        if term or trunc:
            obs, info = env.reset()
            policy.reset()
            e += 1
        factors.append(info["factors"])
        episode.append(e)
    env.close()
    return np.array(factors, np.float64), np.array(actions), np.array(episode)


def extrapolation_errors(factors: np.ndarray, episode: np.ndarray,
                         cols: list[int]) -> tuple[float, float]:
    """MSE of predicting f[t+1] by 2 f[t] - f[t-1] and by f[t] (within episodes)."""
    f = factors[:, cols]
    same = episode[2:] == episode[:-2]
    linear = ((f[2:] - (2 * f[1:-1] - f[:-2])) ** 2)[same].mean()
    copy = ((f[2:] - f[1:-1]) ** 2)[same].mean()
    return float(linear), float(copy)


@pytest.mark.parametrize(("env_id", "spec", "steps"),
                         [(GRID, "straight", 300), (OBJECT_REACH, "sinusoid", 120)])
def test_seeded_determinism(env_id: str, spec: str, steps: int) -> None:
    a = rollout(env_id, spec, steps, seed=3)
    b = rollout(env_id, spec, steps, seed=3)
    c = rollout(env_id, spec, steps, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_straight_is_predictable_and_never_touches() -> None:
    factors, actions, episode = rollout(GRID, "straight", 1500)
    linear, copy = extrapolation_errors(factors, episode, [0, 1])  # the agent's x, y
    assert linear < 0.85 * copy
    f = factors[:, :2]
    same = episode[2:] == episode[:-2]
    exact = (f[2:] == 2 * f[1:-1] - f[:-2]).all(1)[same]
    assert exact.mean() > 0.7  # straight runs between bounces and rare turns
    steps = np.abs(np.diff(f, axis=0)).sum(1)[episode[1:] == episode[:-1]]
    assert (steps == 1).all()  # always one cell per step: bounces reverse, never stop
    assert episode[-1] == 1500 // 50  # no episode ends early: every one runs to 50 steps
    assert set(actions.tolist()) == {0, 1, 2, 3}
    # random motion is not predictable this way
    r_factors, _, r_episode = rollout(GRID, "random", 1500)
    r_linear, r_copy = extrapolation_errors(r_factors, r_episode, [0, 1])
    assert r_linear > 0.9 * r_copy


def test_straight_on_the_agentless_scene_takes_the_noop() -> None:
    factors, actions, episode = rollout(ONE, "straight", 200)
    assert set(actions.tolist()) == {0}
    linear, copy = extrapolation_errors(factors, episode, [0, 1])  # the drifting object
    assert linear < 0.7 * copy


@pytest.mark.parametrize("env_id", [OBJECT_REACH, PUSH])  # delta and absolute action modes
def test_sinusoid_is_predictable(env_id: str) -> None:
    factors, actions, episode = rollout(env_id, "sinusoid", 100)
    nj = 3 if env_id == OBJECT_REACH else 9
    linear, copy = extrapolation_errors(factors, episode, list(range(nj)))  # joint angles
    assert linear < 0.2 * copy
    assert np.abs(actions).max() <= 1.0
    assert np.ptp(factors[:, :nj], axis=0).min() > 0.02  # every joint moves


def test_sinusoid_starts_at_the_reset_pose_and_respects_delta_limits() -> None:
    env = make(OBJECT_REACH, obs_mode="state")
    policy = SinusoidPolicy(env, np.random.default_rng(0))
    for seed in range(5):
        env.reset(seed=seed)
        policy.reset()
        q0 = env.unwrapped.get_factors()[:3]  # type: ignore[attr-defined]
        np.testing.assert_allclose(policy.target(0), q0, atol=1e-5)
        t = np.arange(200)[:, None]
        curve = policy.centre + policy.amp * np.sin(policy.omega * t + policy.phase)
        assert (curve >= policy.low - 1e-9).all() and (curve <= policy.high + 1e-9).all()
        assert (np.abs(np.diff(curve, axis=0)) <= 0.9 * policy.delta_scale + 1e-9).all()
        actions = np.array([policy.act() for _ in range(50)])
        assert np.abs(actions).max() <= 0.9 + 1e-6  # never saturates: the target is followed
    period = 2 * np.pi / policy.omega
    assert ((period >= 30) & (period <= 60)).all()


def test_policies_refuse_other_envs() -> None:
    with pytest.raises(ConfigError, match="needs a ColourGrid env"):
        describe_policy("straight", PUSH)
    with pytest.raises(ConfigError, match="needs a TriFinger env"):
        describe_policy("sinusoid", "sparseshift/MiniGrid-Empty-Random-6x6-v0")
    with pytest.raises(ConfigError, match="needs a ColourGrid env"):
        StraightLinePolicy(make("sparseshift/MiniGrid-Empty-Random-6x6-v0"),
                           np.random.default_rng(0))
    with pytest.raises(ConfigError, match="random, straight, sinusoid, scripted"):
        describe_policy("wander", GRID)


def _collect(path: Path, env_id: str, policy: str, n: int, workers: int, **kw: Any) -> Path:
    cfg = CollectConfig(env_id, "video", n=n, policy=policy, part_rows=64, **kw)
    collect(cfg, path, workers=workers, progress=False)
    return path


@pytest.mark.parametrize(("env_id", "policy", "settings"), [
    (ONE, "straight", {"turn_prob": 0.05}),
    (OBJECT_REACH, "sinusoid", {"period": [30.0, 60.0], "amplitude": [0.1, 0.4]}),
])
def test_collect_records_settings_and_is_identical_for_any_workers(
    tmp_path: Path, env_id: str, policy: str, settings: dict[str, Any]
) -> None:
    one = _collect(tmp_path / "w1.h5", env_id, policy, 192, 1, seed=5)
    two = _collect(tmp_path / "w2.h5", env_id, policy, 192, 2, seed=5)
    assert raw_chunks(one) == raw_chunks(two)
    ds = open_dataset(one)
    assert ds.attrs["collector"]["policy"] == {"type": policy, **settings}
    # the same command over a complete output finds it complete (the manifest round-trips)
    _collect(tmp_path / "w1.h5", env_id, policy, 192, 1, seed=5)
    assert raw_chunks(one) == raw_chunks(two)
