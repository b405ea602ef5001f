"""TriFinger Reach/Push envs: API checkers, factors, determinism, rendering, shift, robustness."""

from __future__ import annotations

import warnings
from typing import Any

import sparseshift  # noqa: F401  (registers the ids)

# isort: split

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.trifinger import model as M
from sparseshift.envs.trifinger.env import FACTOR_SPEC, TriFingerEnv
from sparseshift.envs.trifinger.tasks import TriFingerPushEnv, TriFingerReachEnv

IDS = ("sparseshift/TriFingerReach-v0", "sparseshift/TriFingerPush-v0")
CUBE = M.OBJECT_NAMES.index("cube")


def make(env_id: str = IDS[1], **kwargs: Any) -> TriFingerEnv:
    env = gym.make(env_id, **kwargs).unwrapped
    assert isinstance(env, TriFingerEnv)
    return env


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("obs_mode", ["pixels", "state", "pixels_proprio"])
def test_env_checkers_pass_without_warnings(env_id: str, obs_mode: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, obs_mode=obs_mode, render_mode="rgb_array")
        gym_check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(env.unwrapped, warn=True)
        # The wrapped env (passive checker, order enforcing) also runs warning-free.
        env.reset(seed=1)
        for _ in range(3):
            env.step(env.action_space.sample())
        env.close()


def test_registered_entry_points_and_defaults() -> None:
    reach, push = make(IDS[0]), make(IDS[1])
    assert isinstance(reach, TriFingerReachEnv) and isinstance(push, TriFingerPushEnv)
    assert gym.spec(IDS[0]).max_episode_steps == 75  # gymnasium's TimeLimit owns the default
    assert gym.spec(IDS[1]).max_episode_steps == 150
    assert reach.max_episode_steps is None  # no limit of its own
    assert push.observation_space.shape == (64, 64, 3)
    assert push.action_space.shape == (9,)
    assert push.camera == "camera60" and push.render_preset.name == "fast"


def test_truncation_after_max_episode_steps() -> None:
    direct = TriFingerPushEnv(obs_mode="state", max_episode_steps=5)
    made = gym.make(IDS[1], obs_mode="state", max_episode_steps=5)
    longer = gym.make(IDS[1], obs_mode="state", max_episode_steps=160)  # beyond the default
    for env in (direct, made):
        env.reset(seed=0)
        flags = [env.step(env.action_space.sample())[3] for _ in range(5)]
        assert flags == [False] * 4 + [True]
    longer.reset(seed=0)
    flags = [longer.step(longer.action_space.sample())[3] for _ in range(160)]
    assert flags == [False] * 159 + [True]


def test_obs_modes_shapes() -> None:
    reach = make(IDS[0], obs_mode="state")
    obs, _ = reach.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (9 + 9 + 9 + 3 + 4 + 9 + 9,)
    np.testing.assert_allclose(obs[-18:-9], reach.goal, atol=1e-6)
    np.testing.assert_allclose(obs[-9:], 10 * (reach.goal - reach.tip_positions.ravel()), atol=1e-5)
    np.testing.assert_allclose(obs[18:27], reach.tip_positions.ravel(), atol=1e-6)
    push = make(obs_mode="pixels_proprio")
    obs, _ = push.reset(seed=0)
    assert obs["pixels"].dtype == np.uint8 and obs["pixels"].shape == (64, 64, 3)
    assert obs["proprio"].shape == (11,)
    np.testing.assert_allclose(obs["proprio"][:9], push.get_factors()[:9], atol=1e-6)


def test_same_seed_gives_identical_frames_and_different_seed_does_not() -> None:
    a, b, c = make(), make(), make()
    fa, _ = a.reset(seed=7)
    fb, _ = b.reset(seed=7)
    fc, _ = c.reset(seed=8)
    assert np.array_equal(fa, fb) and not np.array_equal(fa, fc)
    rng = np.random.default_rng(0)
    for _ in range(10):
        act = rng.uniform(-1, 1, 9).astype(np.float32)
        fa, ra, *_ = a.step(act)
        fb, rb, *_ = b.step(act)
    assert np.array_equal(fa, fb) and ra == rb


def test_reset_sets_factors_exactly_and_round_trips() -> None:
    env = make()
    rng = np.random.default_rng(3)
    target = env.sample_factors(rng)
    _, info = env.reset(seed=0, options={"factors": target})
    np.testing.assert_allclose(info["factors"], target, atol=1e-6)
    np.testing.assert_allclose(env.get_factors(), target, atol=1e-6)
    np.testing.assert_array_equal(env.data.qvel, 0.0)
    assert env.cube_position[2] == pytest.approx(M.CUBE_HALF_WIDTH)
    # A subset by factor and by group name; the rest is sampled.
    sub = {"finger120.middle": 0.4, "cube.yaw": -0.5, "cube_colour": [0.1, 0.2, 0.3]}
    _, info = env.reset(seed=1, options={"factors": sub})
    f = FACTOR_SPEC.as_dict(info["factors"])
    assert f["finger120.middle"] == pytest.approx(0.4)
    assert f["cube.yaw"] == pytest.approx(-0.5)
    assert (f["cube_colour.r"], f["cube_colour.g"], f["cube_colour.b"]) == pytest.approx(
        (0.1, 0.2, 0.3)
    )
    # set_factors keeps the others.
    before = env.get_factors()
    env.set_factors({"cube.x": 0.05})
    after = env.get_factors()
    assert after[FACTOR_SPEC.index("cube.x")] == pytest.approx(0.05)
    mask = np.ones(len(before), dtype=bool)
    mask[FACTOR_SPEC.index("cube.x")] = False
    np.testing.assert_allclose(after[mask], before[mask], atol=1e-6)


def test_factor_spec_layout() -> None:
    names = FACTOR_SPEC.names
    assert names[:9] == M.JOINT_NAMES
    assert names[9:12] == ("cube.x", "cube.y", "cube.yaw")
    assert {"cube_colour", "stage_colour", "fingers_colour"} <= set(FACTOR_SPEC.groups)
    assert len(names) == 21


@pytest.mark.parametrize(
    "bad",
    [
        {"finger0.upper": 1.5},
        {"finger0.lower": 0.1},
        {"cube.x": 0.5},
        {"cube.yaw": 2.0},
        {"cube_colour": [1.2, 0.0, 0.0]},
        {"nonexistent": 0.0},
    ],
)
def test_out_of_range_factors_raise(bad: dict[str, Any]) -> None:
    env = make(obs_mode="state")
    with pytest.raises(ConfigError):
        env.reset(seed=0, options={"factors": bad})
    with pytest.raises(ConfigError):
        env.set_factors(bad)


def test_unknown_reset_option_raises() -> None:
    with pytest.raises(ConfigError, match="factors"):
        make(obs_mode="state").reset(seed=0, options={"factor": {}})


def test_sample_factors_respects_ranges_splits_and_groups() -> None:
    env = make(obs_mode="state", colours="in")
    rng = np.random.default_rng(0)
    scheme = env.colour_scheme
    for _ in range(20):
        v = env.sample_factors(rng)
        FACTOR_SPEC.check_vector(v)
        assert env._penetration_free(v.astype(np.float64))
        for group, obj in (("cube_colour", "cube"), ("stage_colour", "stage")):
            rgb = v[list(FACTOR_SPEC.group_indices(group))]
            assert scheme[obj].split_of(rgb) == "in"
    base = env.sample_factors(rng)
    v = env.sample_factors(rng, base=base, groups=["cube_colour"])
    keep = ~FACTOR_SPEC.group_mask(["cube_colour"])
    np.testing.assert_array_equal(v[keep], base[keep])


def test_yaw_is_wrapped_into_factor_range_after_steps() -> None:
    env = make(obs_mode="state")
    env.reset(seed=0, options={"factors": {"cube.yaw": np.pi / 4}})
    assert env.get_factors()[11] == pytest.approx(np.pi / 4, abs=1e-6)
    import mujoco

    a = env.index.cube_qpos
    env.data.qpos[a + 3 : a + 7] = M.yaw_to_quat(1.2)  # 1.2 - pi/2 = -0.371
    mujoco.mj_forward(env.model, env.data)
    assert env.get_factors()[11] == pytest.approx(1.2 - np.pi / 2, abs=1e-6)
    for _ in range(5):
        _, _, _, _, info = env.step(env.action_space.sample())
        assert -np.pi / 4 - 1e-6 <= info["factors"][11] <= np.pi / 4 + 1e-6
        FACTOR_SPEC.check_vector(info["factors"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_raises(bad: float) -> None:
    env = make(obs_mode="state")
    env.reset(seed=0)
    qpos = env.data.qpos.copy()
    act = np.zeros(9, dtype=np.float32)
    act[4] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(act)
    np.testing.assert_array_equal(env.data.qpos, qpos)  # physics untouched
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(8))


def _fuzz(env: TriFingerEnv, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for t in range(n):
        kind = t % 3
        if kind == 0:
            act = rng.uniform(-1, 1, 9)
        elif kind == 1:
            act = rng.choice([-1e9, 1e9, -1.0, 1.0], size=9)
        else:
            act = rng.normal(0, 1e30, 9)
        obs, reward, _, truncated, info = env.step(act)
        assert np.isfinite(obs).all() and np.isfinite(reward)
        assert env.observation_space.contains(obs)
        FACTOR_SPEC.check_vector(info["factors"])
        if truncated:
            env.reset()
    counts = [int(w.number) for w in env.data.warning]
    assert counts == [0] * len(counts), counts


def test_fuzz_random_and_huge_actions() -> None:
    _fuzz(make(obs_mode="state"), 1000, seed=0)


@pytest.mark.slow
def test_fuzz_random_and_huge_actions_long() -> None:
    _fuzz(make(obs_mode="state"), 10_000, seed=1)


def test_penetrating_factors_are_stable_when_stepped() -> None:
    """Explicitly set factors are not rejected; stepping out of a penetration stays finite."""
    env = make(obs_mode="state")
    # finger0 pointing straight down: its tip is below the table top.
    f = {"finger0.upper": 0.0, "finger0.middle": 0.0, "finger0.lower": 0.0}
    env.reset(seed=0, options={"factors": f})
    for _ in range(50):
        obs, *_ = env.step(np.zeros(9, dtype=np.float32))
        assert np.isfinite(obs).all()
    assert env.tip_positions[0, 2] > 0.0


def test_segmentation_contains_objects() -> None:
    env = make()
    env.reset(seed=0, options={"factors": {"cube.x": 0.0, "cube.y": 0.0}})
    seg = env.segmentation()
    assert seg.dtype == np.int32 and seg.shape == (64, 64)
    present = set(np.unique(seg).tolist())
    assert {M.OBJECT_NAMES.index(n) for n in ("arena", "cube")} <= present
    assert present & {3, 4, 5}
    assert present <= set(range(len(M.OBJECT_NAMES)))
    assert env.object_names == M.OBJECT_NAMES


def test_colour_factor_changes_cube_pixels_only_and_frames_are_reproducible() -> None:
    env = make()
    fac = {"cube.x": 0.0, "cube.y": 0.0, "cube_colour": [0.9, 0.1, 0.1]}
    env.reset(seed=0, options={"factors": fac})
    red = env.render_frame()
    assert np.array_equal(red, env.render_frame())  # same state -> identical frame
    mask = env.segmentation() == CUBE
    assert mask.sum() > 20
    env.set_factors({"cube_colour": [0.1, 0.1, 0.9]})
    blue = env.render_frame()
    r_mean, b_mean = red[mask].mean(axis=0), blue[mask].mean(axis=0)
    assert r_mean[0] > r_mean[2] + 40 and b_mean[2] > b_mean[0] + 40
    assert np.array_equal(red[~mask], blue[~mask])
    env.set_factors({"cube_colour": [0.9, 0.1, 0.1]})
    assert np.array_equal(red, env.render_frame())


def test_real_shift_changes_frames_and_is_deterministic() -> None:
    plain = make()
    a, b = make(shift="real"), make(shift="real")
    fac = {"cube.x": 0.0, "cube.y": 0.0}
    p, _ = plain.reset(seed=5, options={"factors": fac})
    fa, _ = a.reset(seed=5, options={"factors": fac})
    fb, _ = b.reset(seed=5, options={"factors": fac})
    assert np.array_equal(fa, fb)
    assert np.abs(fa.astype(int) - p.astype(int)).mean() > 2.0
    act = np.zeros(9, dtype=np.float32)
    assert np.array_equal(a.step(act)[0], b.step(act)[0])
    weak = make(shift="real@0")  # strength 0: no shift at all
    fw, _ = weak.reset(seed=5, options={"factors": fac})
    assert np.array_equal(fw, p) and weak.unwrapped.shift_label is None


def test_image_size_128_and_pretty_preset() -> None:
    env = make(image_size=128, render_preset="pretty", render_mode="rgb_array", camera="camera180")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (128, 128, 3) and obs.std() > 10
    assert env.segmentation().shape == (128, 128)
    frame = env.render()
    assert frame is not None and frame.shape == (128, 128, 3)


def test_goal_markers_are_drawn_only_when_enabled() -> None:
    fac = {"cube.x": 0.1, "cube.y": 0.1}
    off, on = make(), make(goal_markers=True)
    f_off, _ = off.reset(seed=2, options={"factors": fac})
    f_on, _ = on.reset(seed=2, options={"factors": fac})
    assert not np.array_equal(f_off, f_on)
    assert np.array_equal(off.segmentation(), on.segmentation())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"camera": "camera90"},
        {"render_preset": "ugly"},
        {"shift": "sim"},
        {"shift": "real:0.5"},
        {"shift": "real:9"},
        {"shift_strength": 1.0},
        {"obs_mode": "rgb"},
        {"image_size": 60},
        {"image_size": 0},
        {"colours": "in+ood3"},
        {"colour_scheme": "nope"},
    ],
)
def test_bad_kwargs_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        gym.make(IDS[0], **kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"max_episode_steps": 0}, {"max_episode_steps": 2.5}, {"render_mode": "human"}]
)
def test_bad_direct_kwargs_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        TriFingerReachEnv(**kwargs)


def test_rewards_and_success() -> None:
    reach = make(IDS[0], obs_mode="state")
    reach.reset(seed=0)
    r, success = reach._reward()
    dist = np.linalg.norm(reach.tip_positions - reach.goal.reshape(3, 3), axis=1)
    assert r == pytest.approx(-dist.sum()) and not success
    # Goals are reachable: put the fingers at a goal configuration's tips.
    assert reach.goal.reshape(3, 3)[:, 2].min() >= 0.03
    push = make(obs_mode="state")
    push.reset(seed=0)
    g = push.goal
    push.set_factors({"cube.x": float(g[0]), "cube.y": float(g[1])})
    r2, success2 = push._reward()
    assert success2 and r2 < 0
    assert np.hypot(*g) <= 0.11 + 1e-9


def test_action_modes() -> None:
    """Reach moves joint targets by at most DELTA_SCALE per step by default; Push (and
    ``action_mode="absolute"``) maps actions onto the joint range; bad modes are refused."""
    from sparseshift.envs.trifinger.env import DELTA_SCALE
    from sparseshift.envs.trifinger.model import DEFAULT_Q, JOINT_HIGH, JOINT_LOW

    reach = make(IDS[0], obs_mode="state")
    assert reach.action_mode == "delta" and make(obs_mode="state").action_mode == "absolute"
    reach.reset(seed=0)
    q0 = reach.joint_positions
    reach.step(np.ones(9, dtype=np.float32))
    np.testing.assert_allclose(reach.data.ctrl, np.minimum(q0 + DELTA_SCALE, JOINT_HIGH))
    for _ in range(3):
        reach.step(np.ones(9, dtype=np.float32))
    np.testing.assert_allclose(reach.data.ctrl, np.minimum(q0 + 4 * DELTA_SCALE, JOINT_HIGH))
    reach.step(np.zeros(9, dtype=np.float32))  # zero holds the target
    np.testing.assert_allclose(reach.data.ctrl, np.minimum(q0 + 4 * DELTA_SCALE, JOINT_HIGH))
    reach.reset(seed=1)  # the target restarts at the new joint positions
    reach.step(np.zeros(9, dtype=np.float32))
    assert np.abs(reach.data.ctrl - DEFAULT_Q).max() < 0.25
    reach.set_factors({"finger0.upper": 0.5})  # set joints: delta continues from them
    reach.step(np.zeros(9, dtype=np.float32))
    assert reach.data.ctrl[0] == pytest.approx(0.5)
    absolute = make(IDS[0], obs_mode="state", action_mode="absolute")
    absolute.reset(seed=0)
    absolute.step(-np.ones(9, dtype=np.float32))
    np.testing.assert_allclose(absolute.data.ctrl, JOINT_LOW)
    with pytest.raises(ConfigError, match="action_mode"):
        make(IDS[0], action_mode="velocity")
