"""Few-factor and moving ColourGrid scenes: ``sparseshift/ColourGridOne-v0`` and the ColourGridEnv
parameters it is built from (``agent``, ``target_shape=None``, ``drift``, ``split_xy``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest

from sparseshift.agents.collect.collect import collect
from sparseshift.envs.data.config import CollectConfig
from sparseshift.envs.grid.colourgrid import DRIFT_DIRECTIONS, OBJECT_SHAPES, ColourGridEnv
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.registry import entry, make

ONE = "sparseshift/ColourGridOne-v0"
GROUPS = ("object0.x", "object0.y", "object0.shape", "object0_colour", "background_colour")


def unwrapped(env: gym.Env[Any, Any]) -> ColourGridEnv:
    u = env.unwrapped
    assert isinstance(u, ColourGridEnv)
    return u


def test_one_has_five_factor_groups_and_no_agent() -> None:
    env = make(ONE)
    u = unwrapped(env)
    assert entry(ONE).family == "grid"
    assert u.factor_spec.groups == GROUPS and len(u.factor_spec.groups) <= 7
    assert u.object_names == ("background", "object0")
    assert env.action_space == gym.spaces.Discrete(1)
    assert env.observation_space.shape == (64, 64, 3)
    assert env.spec is not None and env.spec.max_episode_steps == 50
    _, info = env.reset(seed=0)
    shapes = set()
    for t in range(50):  # no task: reward 0, never terminates, truncates at 50
        _, r, term, trunc, info = env.step(0)
        assert (r, term, trunc, info["is_success"]) == (0.0, False, t == 49, False)
    for seed in range(60):  # every shape can occur (no target shape)
        shapes.add(int(env.reset(seed=seed)[1]["factors"][2]))
    assert shapes == set(range(len(OBJECT_SHAPES)))
    with pytest.raises(ConfigError, match="action must be an integer in \\[0, 0\\]"):
        env.step(1)


@pytest.mark.parametrize("split", ["in", "ood1", "ood2"])
def test_one_colours_come_from_the_split(split: str) -> None:
    env = make(ONE, colours=split)
    u = unwrapped(env)
    spec = u.factor_spec
    seen = set()
    for seed in range(30):
        f = env.reset(seed=seed)[1]["factors"]
        for group, obj in (("object0_colour", "object"), ("background_colour", "background")):
            rgb = f[list(spec.group_indices(group))]
            assert u.colour_scheme[obj].split_of(rgb) == split
            if group == "object0_colour":
                seen.add(tuple(rgb.tolist()))
    assert len(seen) == len(u.colour_scheme["object"].colours(split))


def test_one_frame_and_segmentation_show_the_object() -> None:
    env = make(ONE, obs_mode="pixels")
    u = unwrapped(env)
    obs, info = env.reset(seed=4, options={"factors": {"object0.x": 2, "object0.y": 5}})
    seg = u.segmentation()
    rows, cols = u.renderer.cell_box(2, 5)
    assert seg[rows, cols].any() and (seg > 0).sum() == seg[rows, cols].sum()
    colour = info["factors"][3:6].astype(np.float64)
    assert (obs[seg == 1] == np.rint(colour * 255)).all()


def test_split_xy_interventions_change_one_coordinate(tmp_path: Path) -> None:
    """Intervention pairs with k=1 change exactly one group; x and y are separate groups."""
    out = tmp_path / "pairs.h5"
    collect(CollectConfig(ONE, "pairs", n=128, k=1, part_rows=64), out, workers=1, progress=False)
    with h5py.File(out, "r") as f:
        changed, intervened = f["changed"][...], f["intervened"][...]
        assert json.loads(f.attrs["collector"])["groups"] == list(GROUPS)
    assert (intervened.sum(1) == 1).all()
    # changed factors lie exactly in the intervened group: x and y alone for the position groups
    assert np.array_equal(changed[:, 0], intervened[:, 0])
    assert np.array_equal(changed[:, 1], intervened[:, 1])
    assert intervened.any(0).all()


def test_drift_constant_velocity_and_bounce_off_walls() -> None:
    env = make(ONE, obs_mode="state")
    u = unwrapped(env)
    env.reset(seed=0, options={"factors": {"object0.x": 5, "object0.y": 1}})
    u.set_velocities([[1, -1]])
    path = []
    for _ in range(5):
        f = env.step(0)[4]["factors"]
        path.append((int(f[0]), int(f[1])))
    # (5,1) -> (6,0) -> x 7, y reflects -> (7,1) -> x reflects -> (6,2) -> (5,3) -> (4,4)
    assert path == [(6, 0), (7, 1), (6, 2), (5, 3), (4, 4)]
    assert u.velocities.tolist() == [[-1, 1]]
    # every reset draws a king-move direction; set_factors keeps it
    dirs = set()
    for seed in range(100):
        env.reset(seed=seed)
        dirs.add(tuple(u.velocities[0].tolist()))
    assert dirs == set(DRIFT_DIRECTIONS)
    before = u.velocities
    u.set_factors({"object0.x": 3})
    assert np.array_equal(u.velocities, before)


def test_drift_objects_bounce_off_each_other_and_the_agent() -> None:
    env = ColourGridEnv(n_objects=2, agent=False, target_shape=None, drift=True)
    env.reset(seed=0, options={"factors": {"object0_pos": (2, 3), "object1_pos": (4, 3)}})
    env.set_velocities([[1, 0], [-1, 0]])
    f = env.step(0)[4]["factors"]
    spec = env.factor_spec
    pos = [(int(f[spec.index(f"object{i}.x")]), int(f[spec.index(f"object{i}.y")]))
           for i in range(2)]
    # object0 moves to (3, 3); object1 would enter it and bounces back to (5, 3)
    assert pos == [(3, 3), (5, 3)]
    assert env.velocities.tolist() == [[1, 0], [1, 0]]
    grid = ColourGridEnv(n_objects=1, drift=True, target_shape=None)
    grid.reset(seed=0, options={"factors": {"agent_pos": (0, 0), "object0_pos": (2, 0)}})
    grid.set_velocities([[-1, 0]])
    _, _, term, _, info = grid.step(1)  # the agent moves down; the object drifts on
    assert info["factors"][2:4].tolist() == [1.0, 0.0] and not term
    grid.reset(seed=0, options={"factors": {"agent_pos": (0, 0), "object0_pos": (2, 0)}})
    grid.set_velocities([[-1, 0]])
    _, r, term, _, info = grid.step(0)  # the agent steps to (1, 0); the object bounces off it
    assert info["factors"][:4].tolist() == [1.0, 0.0, 3.0, 0.0] and (r, term) == (-0.01, False)
    assert grid.velocities.tolist() == [[1, 0]]


def test_target_shape_none_any_object_is_a_target() -> None:
    env = make("sparseshift/ColourGrid-v0", target_shape=None, n_objects=2)
    u = unwrapped(env)
    opts = {"factors": {"agent_pos": (0, 0), "object0_pos": (1, 0), "object1_pos": (5, 5),
                        "object0.shape": 3, "object1.shape": 3}}  # two equal shapes are valid
    env.reset(seed=0, options=opts)
    _, r, term, _, info = env.step(0)
    assert (r, term, info["is_success"]) == (1.0, True, True)
    obs = make("sparseshift/ColourGrid-v0", target_shape=None, obs_mode="pixels_proprio")
    assert obs.reset(seed=0)[0]["proprio"][2:].tolist() == [0.0] * len(OBJECT_SHAPES)
    assert u.target_id is None


def test_state_observation_layouts() -> None:
    one = make(ONE, obs_mode="state")
    s, info = one.reset(seed=2)
    f = info["factors"]
    u = unwrapped(one)
    # per object: absolute position / 7, drift direction, shape one-hot, colour; then background
    assert s.shape == (2 + 2 + 5 + 3 + 3,)
    assert np.allclose(s[:2], f[:2] / 7)
    assert np.array_equal(s[2:4], u.velocities[0])
    assert s[4:9].tolist() == np.eye(5)[int(f[2])].tolist()
    assert np.allclose(s[9:], f[3:])
    drift = make("sparseshift/ColourGrid-v0", obs_mode="state", drift=True)
    assert drift.observation_space.shape == (2 + 3 * 12 + 6,)
    drift.reset(seed=0)
    for _ in range(30):
        assert drift.observation_space.contains(drift.step(int(drift.action_space.sample()))[0])


def test_split_xy_with_the_agent_and_default_unchanged() -> None:
    u = unwrapped(make("sparseshift/ColourGrid-v0", split_xy=True, n_objects=1))
    assert u.factor_spec.groups[:4] == ("agent.x", "agent.y", "object0.x", "object0.y")
    default = unwrapped(make("sparseshift/ColourGrid-v0"))
    assert default.factor_spec.groups[:2] == ("agent_pos", "object0_pos")
    assert (default.has_agent, default.drift, default.split_xy) == (True, False, False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agent": False}, "target_shape=None"),
        ({"agent": "no"}, "agent must be True or False"),
        ({"drift": 1}, "drift must be True or False"),
        ({"split_xy": None}, "split_xy must be True or False"),
        ({"target_shape": "star"}, "None"),
        ({"agent": False, "target_shape": None, "n_objects": 65}, "n_objects"),
    ],
)
def test_bad_parameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ColourGridEnv(**kwargs)


def test_set_velocities_validated() -> None:
    env = make(ONE)
    u = unwrapped(env)
    env.reset(seed=0)
    for bad in ([[2, 0]], [[1, 0], [0, 1]], [[0.5, 0]], "x"):
        with pytest.raises(ConfigError, match="velocities"):
            u.set_velocities(bad)
    with pytest.raises(ConfigError, match="drift=True"):
        unwrapped(make("sparseshift/ColourGrid-v0")).set_velocities([[0, 1]] * 3)
