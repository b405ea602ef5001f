"""sparseshift/MiniGrid-*: MiniGrid tasks re-rendered with our colours, factors, palettes."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sparseshift  # noqa: F401  (registers the ids)
from sparseshift.envs.grid.fuzz import fuzz_env
from sparseshift.envs.grid.minigrid_adapter import SUPPORTED, MiniGridColourEnv
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.registry import make as grid_make

DOORKEY = "sparseshift/MiniGrid-DoorKey-8x8-v0"
EMPTY = "sparseshift/MiniGrid-Empty-Random-6x6-v0"
IDS = (DOORKEY, EMPTY)
MODES = ("pixels", "state", "pixels_proprio")


def unwrapped(env: gym.Env[Any, Any]) -> MiniGridColourEnv:
    u = env.unwrapped
    assert isinstance(u, MiniGridColourEnv)
    return u


def colour_of(u: MiniGridColourEnv, group: str) -> np.ndarray:
    f = u.get_factors()
    return np.rint(f[list(u.factor_spec.group_indices(group))].astype(np.float64) * 255)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("env_id", IDS)
def test_env_checkers_pass_without_warnings(env_id: str, mode: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, obs_mode=mode, render_mode="rgb_array")
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert info["factors"].dtype == np.float32 and not info["is_success"]
        assert env.action_space == gym.spaces.Discrete(7)


def test_all_supported_ids_build_and_render() -> None:
    for mg_id in SUPPORTED:
        u = MiniGridColourEnv(minigrid_id=mg_id)
        u.reset(seed=1)
        frame = u.render_frame()
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
        seg = u.segmentation()
        assert (seg == 1).any() and (seg == u.object_names.index("wall")).any()


def test_unknown_minigrid_id_lists_supported() -> None:
    with pytest.raises(ConfigError, match="MiniGrid-DoorKey-8x8-v0"):
        MiniGridColourEnv(minigrid_id="MiniGrid-Nope-v0")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"obs_mode": "rgb"}, "pixels_proprio"),
        ({"colours": "in+bad"}, "ood1"),
        ({"colour_scheme": "trifinger8"}, "no colours for"),
        ({"image_size": 36}, "multiple of 8"),
        ({"image_size": 48}, "px per cell"),  # 6 px tiles for 8x8
        ({"render_mode": "human"}, "rgb_array"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
    ],
)
def test_bad_kwargs(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MiniGridColourEnv(**kwargs)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_frames_and_round_trip(env_id: str) -> None:
    a, b = gym.make(env_id), gym.make(env_id)
    rng = np.random.default_rng(0)
    oa, ia = a.reset(seed=11)
    ob, ib = b.reset(seed=11)
    for _ in range(100):
        assert np.array_equal(oa, ob) and np.array_equal(ia["factors"], ib["factors"])
        act = int(rng.integers(7))
        oa, ra, ta, tra, ia = a.step(act)
        ob, rb, tb, trb, ib = b.step(act)
        assert (ra, ta, tra) == (rb, tb, trb)
        if ta or tra:
            oa, ia = a.reset()
            ob, ib = b.reset()
    # reset(options=factors) reproduces a state of the same layout exactly
    u = unwrapped(a)
    a.reset(seed=3)
    for _ in range(5):
        a.step(int(rng.integers(3)))
    f, frame = u.get_factors(), u.render_frame()
    obs2, info2 = a.reset(seed=3, options={"factors": f})
    assert np.array_equal(info2["factors"], f) and np.array_equal(obs2, frame)


def test_minigrid_colors_untouched_and_palettes_are_per_instance() -> None:
    from minigrid.core import constants

    snapshot = copy.deepcopy(constants.COLORS)
    a = gym.make(DOORKEY, colours="in")
    b = gym.make(DOORKEY, colours="ood2")
    oa, ia = a.reset(seed=4)
    ob, ib = b.reset(seed=4)
    ua, ub = unwrapped(a), unwrapped(b)
    # same layout and pose (factors before the colour groups agree) ...
    n_layout = ua.factor_spec.index("agent_colour.r")
    assert np.array_equal(ia["factors"][:n_layout], ib["factors"][:n_layout])
    assert np.array_equal(ua.segmentation(), ub.segmentation())
    # ... in different colours; MiniGrid's own colours never appear as our wall/agent
    assert not np.array_equal(oa, ob)
    for u, obs in ((ua, oa), (ub, ob)):
        seg = u.segmentation()
        for name in ("agent", "wall", "background", "key", "door", "goal"):
            mask = seg == u.object_names.index(name)
            assert mask.any(), name
            assert (obs[mask] == colour_of(u, f"{name}_colour")).all(), name
    for _ in range(20):
        a.step(2)
        b.step(2)
    assert all(np.array_equal(constants.COLORS[k], v) for k, v in snapshot.items())
    assert set(constants.COLORS) == set(snapshot)


def test_changing_a_palette_changes_only_that_type() -> None:
    env = gym.make(DOORKEY)
    u = unwrapped(env)
    env.reset(seed=2)
    before, seg = u.render_frame(), u.segmentation()
    for name in ("wall", "key", "door", "goal", "agent", "background"):
        group = f"{name}_colour"
        old = u.get_factors()[list(u.factor_spec.group_indices(group))]
        u.set_factors({group: 1.0 - old})
        changed = (u.render_frame() != before).any(axis=-1)
        assert np.array_equal(changed, seg == u.object_names.index(name)), name
        u.set_factors({group: old})
    assert np.array_equal(u.render_frame(), before)


@pytest.mark.parametrize("scheme", ["grid8", "grid-cw"])
@pytest.mark.parametrize("split", ["in", "ood2"])
def test_colour_splits_respected(scheme: str, split: str) -> None:
    env = gym.make(DOORKEY, colours=split, colour_scheme=scheme)
    u = unwrapped(env)
    env.reset(seed=0)
    sets = {
        "agent": "agent",
        "wall": "wall",
        "background": "background",
        "key": "object",
        "door": "object",
        "goal": "object",
    }
    for _ in range(60):
        f = env.reset()[1]["factors"].astype(np.float64)
        for name, obj in sets.items():
            rgb = f[list(u.factor_spec.group_indices(f"{name}_colour"))]
            assert u.colour_scheme[obj].split_of(rgb) == split, (name, rgb)


def test_factors_follow_minigrid_state() -> None:
    env = gym.make(DOORKEY)
    u = unwrapped(env)
    env.reset(seed=0)
    mg = u._mg
    spec = u.factor_spec
    d = spec.as_dict(u.get_factors())
    assert (d["agent.x"], d["agent.y"], d["agent.dir"]) == (*mg.agent_pos, mg.agent_dir)
    assert mg.grid.get(int(d["key.x"]), int(d["key.y"])).type == "key"
    assert mg.grid.get(int(d["door.x"]), int(d["door.y"])).type == "door"
    assert mg.grid.get(int(d["goal.x"]), int(d["goal.y"])).type == "goal"
    assert d["door.state"] == 2 and d["carrying"] == 0
    # walk up to the key: stand next to it on a free cell, face it, pick it up
    kx, ky = int(d["key.x"]), int(d["key.y"])
    for dir_, (dx, dy) in enumerate(((1, 0), (0, 1), (-1, 0), (0, -1))):
        cell = (kx - dx, ky - dy)
        if mg.grid.get(*cell) is None:
            u.set_factors({"agent_pos": cell, "agent.dir": dir_})
            break
    _, _, _, _, info = env.step(3)  # pickup
    d = spec.as_dict(info["factors"])
    assert d["carrying"] == 1 and (d["key.x"], d["key.y"]) == (-1, -1)
    assert not (u.segmentation() == u.object_names.index("key")).any()


def test_reaching_goal_is_success() -> None:
    env = gym.make(EMPTY)
    u = unwrapped(env)
    _, info = env.reset(seed=0)
    d = u.factor_spec.as_dict(info["factors"])
    gx, gy = int(d["goal.x"]), int(d["goal.y"])
    env.reset(seed=0, options={"factors": {"agent_pos": (gx - 1, gy), "agent.dir": 0}})
    _, r, term, trunc, info = env.step(2)  # forward
    assert term and not trunc and float(r) > 0 and info["is_success"]


def test_agent_pose_settable_layout_read_only() -> None:
    env = gym.make(DOORKEY)
    u = unwrapped(env)
    env.reset(seed=0)
    f = u.get_factors()
    assert set(u.settable_groups) >= {"agent_pos", "agent.dir", "wall_colour", "key_colour"}
    with pytest.raises(ConfigError, match="read-only for MiniGrid"):
        u.set_factors({"key_pos": (1, 1)})
    with pytest.raises(ConfigError, match="read-only for MiniGrid"):
        u.set_factors({"door.state": 0})
    with pytest.raises(ConfigError, match="read-only for MiniGrid"):
        env.reset(seed=0, options={"factors": {"carrying": 1}})
    with pytest.raises(ConfigError, match="read-only for MiniGrid"):
        u.sample_factors(np.random.default_rng(0), f, ["goal_pos"])
    with pytest.raises(ConfigError, match="cannot stand"):
        u.set_factors({"agent_pos": (0, 0)})  # a wall
    with pytest.raises(ConfigError, match="must be one of"):
        u.set_factors({"agent.dir": 4})
    with pytest.raises(ConfigError, match="unknown factor"):
        u.set_factors({"lava_colour": (0, 0, 0)})
    assert np.array_equal(u.get_factors(), f)
    u.set_factors(f)  # a full vector with the current layout is accepted
    # setting the pose moves MiniGrid's agent and the drawn agent
    cells = [(x, y) for x in range(8) for y in range(8) if u._mg.grid.get(x, y) is None]
    x, y = next(c for c in cells if c != tuple(int(v) for v in u._mg.agent_pos))
    u.set_factors({"agent_pos": (x, y), "agent.dir": 3})
    assert tuple(int(v) for v in u._mg.agent_pos) == (x, y) and u._mg.agent_dir == 3
    rows, cols = u.renderer.cell_box(x, y)
    seg = u.segmentation()
    assert (seg == 1).sum() == (seg[rows, cols] == 1).sum() > 0


def test_sample_factors_only_settable_and_valid() -> None:
    env = gym.make(DOORKEY)
    u = unwrapped(env)
    env.reset(seed=5)
    base = u.get_factors()
    spec = u.factor_spec
    rng = np.random.default_rng(0)
    settable = spec.group_mask(u.settable_groups)
    for _ in range(50):
        v = u.sample_factors(rng)
        assert np.array_equal(v[~settable], base[~settable])
        u.set_factors(v)
        u.set_factors(base)
    for g in u.settable_groups:
        v = u.sample_factors(rng, base, [g])
        keep = ~spec.group_mask([g])
        assert np.array_equal(v[keep], base[keep]), g
        u.set_factors(v)
        u.set_factors(base)
    # sampled agent cells stay on the key side of the locked door
    door_x = int(base[spec.index("door.x")])
    xs = {int(u.sample_factors(rng, base, ["agent_pos"])[0]) for _ in range(100)}
    assert max(xs) < door_x


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("env_id", IDS)
def test_random_and_invalid_action_fuzz(env_id: str, mode: str) -> None:
    fuzz_env(gym.make(env_id, obs_mode=mode), 1000, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", IDS)
def test_random_and_invalid_action_fuzz_long(env_id: str) -> None:
    fuzz_env(gym.make(env_id, obs_mode="pixels_proprio", colours="all"), 10_000, seed=4)


def test_state_and_proprio() -> None:
    env = gym.make(EMPTY, obs_mode="pixels_proprio")
    u = unwrapped(env)
    obs, info = env.reset(seed=0)
    d = u.factor_spec.as_dict(info["factors"])
    p = obs["proprio"]
    assert np.allclose(p[:2], [d["agent.x"] / 5, d["agent.y"] / 5])
    assert p[2:6].tolist() == np.eye(4)[int(d["agent.dir"])].tolist() and p[6] == 0
    st = gym.make(EMPTY, obs_mode="state")
    s, _ = st.reset(seed=0)
    assert s.shape == (2 * 36 + 7,) and np.array_equal(s[-7:], p)


def test_max_episode_steps_is_minigrid_max_steps() -> None:
    env = grid_make(EMPTY, max_episode_steps=4)
    u = unwrapped(env)
    assert u.max_episode_steps == 4 == u._mg.max_steps
    env.reset(seed=0)
    truncs = [env.step(0)[3] for _ in range(4)]  # turning left never ends the episode
    assert truncs == [False, False, False, True]
    assert unwrapped(gym.make(DOORKEY)).max_episode_steps == 640
