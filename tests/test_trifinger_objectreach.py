"""TriFinger ObjectReach (Traeuble, Dittadi et al. 2022): the 7 factors of the Dittadi et al. 2021
dataset, one moving finger, proprio blind to the cube, reward/success, determinism, splits."""

from __future__ import annotations

from typing import Any

import sparseshift  # noqa: F401  (registers the ids)

# isort: split

import gymnasium as gym
import numpy as np
import pytest

from sparseshift.envs.registry import ENV_IDS, entry
from sparseshift.envs.trifinger import model as M
from sparseshift.envs.trifinger.objectreach import (
    JOINT_HIGH,
    JOINT_LOW,
    PARKED_FINGER_Q,
    START_MIN_TIP_HEIGHT,
    START_SPREAD,
    SUCCESS_RADIUS,
    TriFingerObjectReachEnv,
    box_closest_point,
    touching_joints,
)

ID = "sparseshift/TriFingerObjectReach-v0"
CUBE = M.OBJECT_NAMES.index("cube")
H = M.CUBE_HALF_WIDTH


def make(**kwargs: Any) -> TriFingerObjectReachEnv:
    env = gym.make(ID, **kwargs).unwrapped
    assert isinstance(env, TriFingerObjectReachEnv)
    return env


def test_registered_with_the_seven_dataset_factors() -> None:
    assert ID in ENV_IDS and entry(ID).family == "trifinger"
    assert gym.spec(ID).max_episode_steps == 50
    env = make(obs_mode="state")
    spec = env.factor_spec
    assert spec.groups == ("finger0.upper", "finger0.middle", "finger0.lower",
                           "cube.x", "cube.y", "cube.yaw", "cube_colour")
    assert spec.names[6:] == ("cube_colour.r", "cube_colour.g", "cube_colour.b")
    np.testing.assert_allclose(spec.low[:6], [*JOINT_LOW, -0.104, -0.104, 0.0], atol=1e-6)
    np.testing.assert_allclose(spec.high[:6], [*JOINT_HIGH, 0.104, 0.104, np.pi / 2], atol=1e-6)
    assert np.all(JOINT_LOW >= M.JOINT_LOW[:3]) and np.all(JOINT_HIGH <= M.JOINT_HIGH[:3])
    assert env.action_space.shape == (3,) and env.action_mode == "delta"
    assert env.colour_objects == {"cube_colour": "cube"}


def test_proprio_is_blind_to_the_cube_and_pixels_are_not() -> None:
    a, b = make(obs_mode="pixels_proprio"), make(obs_mode="pixels_proprio")
    oa, _ = a.reset(seed=3, options={"factors": {"cube.x": -0.1, "cube.y": -0.1}})
    ob, _ = b.reset(seed=3, options={"factors": {"cube.x": 0.05, "cube.y": -0.02}})
    assert oa["proprio"].shape == (9,)  # joint positions 3, velocities 3, fingertip 3
    np.testing.assert_array_equal(oa["proprio"], ob["proprio"])
    assert not np.array_equal(oa["pixels"], ob["pixels"])
    act = np.array([0.3, -0.2, 0.1], dtype=np.float32)  # moves away from both cubes
    for _ in range(3):
        oa, *_ = a.step(act)
        ob, *_ = b.step(act)
    np.testing.assert_array_equal(oa["proprio"], ob["proprio"])
    assert not np.array_equal(oa["pixels"], ob["pixels"])


def test_state_is_the_oracle_with_the_cube_pose() -> None:
    env = make(obs_mode="state")
    obs, info = env.reset(seed=0, options={"factors": {"cube.x": 0.04, "cube.y": -0.07,
                                                        "cube.yaw": 0.3}})
    assert obs.shape == env.observation_space.shape == (19,)
    np.testing.assert_allclose(obs[:3], env.joint_positions[:3], atol=1e-6)
    np.testing.assert_allclose(obs[6:9], env.tip_position, atol=1e-6)
    np.testing.assert_allclose(obs[9:12], [0.04, -0.07, H], atol=1e-6)
    np.testing.assert_allclose(obs[12:16], M.yaw_to_quat(0.3), atol=1e-6)
    np.testing.assert_allclose(obs[16:19], 10 * (env.closest_cube_point() - env.tip_position),
                               atol=1e-5)
    np.testing.assert_allclose(info["factors"][3:6], [0.04, -0.07, 0.3], atol=1e-6)


def test_yaw_reads_back_in_the_dataset_range() -> None:
    env = make(obs_mode="state")
    env.reset(seed=0)
    for yaw in (0.0, 0.3, 1.5, np.pi / 2 - 1e-7, np.pi / 2):
        env.set_factors({"cube.yaw": yaw})
        assert env.get_factors()[5] == pytest.approx(yaw, abs=1e-6)
    a = env.index.cube_qpos
    for raw, wrapped in ((2.0, 2.0 - np.pi / 2), (-0.4, np.pi / 2 - 0.4), (-3.0, np.pi - 3.0)):
        env.data.qpos[a + 3 : a + 7] = M.yaw_to_quat(raw)
        assert env.get_factors()[5] == pytest.approx(wrapped, abs=1e-6)


def test_reward_and_success_on_constructed_states() -> None:
    env = make(obs_mode="state")
    env.reset(seed=0)
    # Default pose: the tip hovers 7.9 cm above the table; a cube right under it is touched.
    tip = M.REFERENCE_DEFAULT_TIPS[0]
    env.set_factors({"finger0.upper": 0.0, "finger0.middle": 0.9, "finger0.lower": -1.7,
                     "cube.x": tip[0], "cube.y": tip[1], "cube.yaw": 0.0})
    reward, success = env._reward()
    assert reward == pytest.approx(-(env.tip_position[2] - 2 * H), abs=1e-9)
    assert success and -reward < SUCCESS_RADIUS
    # Cube far away: the distance to the closest point of the axis-aligned box, not the centre.
    env.set_factors({"cube.x": -0.1, "cube.y": -0.1})
    lo, hi = np.array([-0.1 - H, -0.1 - H, 0.0]), np.array([-0.1 + H, -0.1 + H, 2 * H])
    expected = np.linalg.norm(env.tip_position - np.clip(env.tip_position, lo, hi))
    reward, success = env._reward()
    assert reward == pytest.approx(-expected, abs=1e-9) and not success
    _, r, *_ = env.step(np.zeros(3, dtype=np.float32))
    assert r < -0.1
    # A rotated box: a point inside is at distance 0; one outside a face by 3 cm at 0.03.
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    c = np.array([0.02, 0.0, H])
    np.testing.assert_allclose(box_closest_point(c + 0.01, c, rot, H), c + 0.01)
    up = np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(box_closest_point(c + (H + 0.03) * up, c, rot, H), c + H * up)


@pytest.mark.parametrize("cube", [(-0.104, -0.104, 0.3), (0.104, -0.104, 1.2),
                                  (-0.104, 0.104, 0.0), (0.104, 0.104, 0.7)])
def test_extreme_cube_poses_are_touchable_within_the_joint_ranges(
    cube: tuple[float, float, float],
) -> None:
    env = make(obs_mode="state")
    env.reset(seed=0)
    q = touching_joints(env, cube, grid=24)
    assert q is not None and np.all(q >= JOINT_LOW) and np.all(q <= JOINT_HIGH)
    env.set_factors(np.concatenate([q, cube, env.get_factors()[6:]]))
    assert env._reward()[1]


def test_start_near_default_above_the_cube_and_parked_fingers_stay() -> None:
    env = make(obs_mode="state")
    for seed in range(10):
        _, info = env.reset(seed=seed)
        q = env.joint_positions
        assert np.all(np.abs(q[:3] - M.DEFAULT_Q[:3]) <= START_SPREAD + 1e-9)
        assert env.tip_position[2] >= START_MIN_TIP_HEIGHT and not info["is_success"]
        np.testing.assert_allclose(q[3:], np.tile(PARKED_FINGER_Q, 2))
    rng = np.random.default_rng(0)
    for _ in range(30):
        env.step(rng.uniform(-1, 1, 3).astype(np.float32))
    assert np.abs(env.joint_positions[3:] - np.tile(PARKED_FINGER_Q, 2)).max() < 0.02
    with pytest.raises(ValueError, match=r"\(3,\)"):
        env.step(np.zeros(9, dtype=np.float32))


def test_seeded_determinism() -> None:
    a, b = make(obs_mode="pixels_proprio"), make(obs_mode="pixels_proprio")
    oa, ia = a.reset(seed=21)
    ob, ib = b.reset(seed=21)
    np.testing.assert_array_equal(ia["factors"], ib["factors"])
    rng = np.random.default_rng(1)
    for _ in range(8):
        act = rng.uniform(-1, 1, 3).astype(np.float32)
        oa, ra, *_ = a.step(act)
        ob, rb, *_ = b.step(act)
        assert ra == rb
        np.testing.assert_array_equal(oa["pixels"], ob["pixels"])
        np.testing.assert_array_equal(oa["proprio"], ob["proprio"])
    _, ic = a.reset(seed=22)
    assert not np.array_equal(ic["factors"], ib["factors"])


def test_splits_change_only_the_cube_colour() -> None:
    physical = {"finger0.upper": 0.2, "finger0.middle": 0.9, "finger0.lower": -1.8,
                "cube.x": 0.0, "cube.y": -0.03, "cube.yaw": 0.4}
    frames, masks = [], []
    for split in ("in", "ood1", "ood2"):
        env = make(colours=split)
        obs, info = env.reset(seed=0, options={"factors": physical})
        np.testing.assert_allclose(info["factors"][:6], list(physical.values()), atol=1e-6)
        assert env.colour_scheme["cube"].split_of(info["factors"][6:]) == split
        for mat in ("stage", "fingers"):  # the scene's colours, whatever the split
            np.testing.assert_allclose(env.model.mat_rgba[env.index.materials[mat], :3],
                                       M.load_model().mat_rgba[env.index.materials[mat], :3])
        frames.append(obs)
        masks.append(env.segmentation() == CUBE)
    assert masks[0].sum() > 20 and all(np.array_equal(masks[0], m) for m in masks)
    for f in frames[1:]:
        assert np.array_equal(f[~masks[0]], frames[0][~masks[0]])
        assert not np.array_equal(f[masks[0]], frames[0][masks[0]])


def test_real_shift_applies() -> None:
    fac = {"cube.x": 0.0, "cube.y": 0.0}
    plain, _ = make().reset(seed=5, options={"factors": fac})
    a, _ = make(shift="real").reset(seed=5, options={"factors": fac})
    b, _ = make(shift="real").reset(seed=5, options={"factors": fac})
    assert np.array_equal(a, b) and np.abs(a.astype(int) - plain.astype(int)).mean() > 2.0
