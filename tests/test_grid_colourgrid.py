"""sparseshift/ColourGrid-v0: API checks, factors, colours, rewards and fuzzing."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sparseshift  # noqa: F401  (registers the ids)
from sparseshift.envs.grid.colourgrid import OBJECT_SHAPES, ColourGridEnv
from sparseshift.envs.grid.fuzz import fuzz_env
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.registry import make as grid_make

ID = "sparseshift/ColourGrid-v0"
MODES = ("pixels", "state", "pixels_proprio")


def make(**kwargs: Any) -> gym.Env[Any, Any]:
    """``gymnasium.make`` with ``max_episode_steps`` routed to the env (see
    ``sparseshift.envs.registry.make``)."""
    return grid_make(ID, **kwargs)


def unwrapped(env: gym.Env[Any, Any]) -> ColourGridEnv:
    u = env.unwrapped
    assert isinstance(u, ColourGridEnv)
    return u


def layout(agent: tuple[int, int], objects: list[tuple[int, int, str]]) -> dict[str, Any]:
    """Factor dict placing the agent and objects ``(x, y, shape)``."""
    out: dict[str, Any] = {"agent_pos": agent}
    for i, (x, y, shape) in enumerate(objects):
        out[f"object{i}_pos"] = (x, y)
        out[f"object{i}.shape"] = OBJECT_SHAPES.index(shape)
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scheme", ["grid8", "grid-cw"])
def test_env_checkers_pass_without_warnings(mode: str, scheme: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = make(obs_mode=mode, colour_scheme=scheme, render_mode="rgb_array")
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert info["factors"].dtype == np.float32
        frame = env.render()
        assert isinstance(frame, np.ndarray) and frame.shape == (64, 64, 3)


def test_spaces_and_defaults() -> None:
    env = make()
    u = unwrapped(env)
    assert env.action_space == gym.spaces.Discrete(4)
    assert env.observation_space.shape == (64, 64, 3)
    assert (u.size, u.n_objects, u.target_shape) == (8, 3, "circle")
    assert env.spec is not None and env.spec.max_episode_steps == 50  # gymnasium's TimeLimit
    assert u.object_names == ("background", "agent", "object0", "object1", "object2")
    assert u.colours == ("in",)
    state = make(obs_mode="state").observation_space.shape
    assert state == (2 + 3 * (2 + len(OBJECT_SHAPES) + 3) + 6,)


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_rollout(mode: str) -> None:
    a, b = make(obs_mode=mode), make(obs_mode=mode)
    oa, ia = a.reset(seed=7)
    ob, ib = b.reset(seed=7)
    rng = np.random.default_rng(0)
    for _ in range(60):
        for x, y in ((oa, ob), (ia["factors"], ib["factors"])):
            if isinstance(x, dict):
                assert all(np.array_equal(x[k], y[k]) for k in x)
            else:
                assert np.array_equal(x, y)
        act = int(rng.integers(4))
        oa, _, ta, tra, ia = a.step(act)
        ob, _, _, _, ib = b.step(act)
        if ta or tra:
            oa, ia = a.reset()
            ob, ib = b.reset()
    assert not np.array_equal(_f(7), _f(8))  # different seeds, different scenes


def _f(seed: int) -> np.ndarray:
    factors: np.ndarray = make().reset(seed=seed)[1]["factors"]
    return factors


def test_reset_factors_round_trip() -> None:
    env = make()
    u = unwrapped(env)
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        f = info["factors"]
        obs2, info2 = env.reset(seed=1000 + seed, options={"factors": f})
        assert np.array_equal(info2["factors"], f)
        assert np.array_equal(obs2, obs)
        # by name: a subset is set exactly, the rest stays valid
        sub = {"agent_pos": (0, 0), "object0_colour": (0.25, 0.5, 0.75)}
        _, info3 = env.reset(seed=seed, options={"factors": sub})
        d = u.factor_spec.as_dict(info3["factors"])
        assert (d["agent.x"], d["agent.y"]) == (0.0, 0.0)
        assert np.allclose([d[f"object0_colour.{c}"] for c in "rgb"], (0.25, 0.5, 0.75))
        assert u._violation(info3["factors"].astype(np.float64)) is None


@pytest.mark.parametrize(
    ("factors", "match"),
    [
        ({"agent_pos": (1, 1), "object0_pos": (1, 1)}, "both on cell"),
        ({"object0.shape": 0, "object1.shape": 0}, "target shape"),
        ({"object0.shape": 1, "object1.shape": 1, "object2.shape": 2}, "no object"),
        ({"object0.shape": 7}, "must be one of"),
        ({"agent.x": 8}, "must be one of"),
        ({"agent.x": 0.5}, "must be one of"),
        ({"object1_colour": (0.1, 1.5, 0.2)}, r"\[0, 1\]"),
        ({"object1_colour": (0.1, float("nan"), 0.2)}, "finite"),
        ({"object1_colour": (0.1, 0.2)}, "takes 3"),
        ({"nope": 1}, "unknown factor"),
    ],
)
def test_invalid_factors_raise(factors: dict[str, Any], match: str) -> None:
    env = make()
    u = unwrapped(env)
    env.reset(seed=0)
    before = u.get_factors()
    with pytest.raises(ConfigError, match=match):
        env.reset(seed=0, options={"factors": factors})
    with pytest.raises(ConfigError, match=match):
        u.set_factors(factors)
    assert np.array_equal(u.get_factors(), before)


def test_set_factors_keeps_unspecified_and_rejects_overlap() -> None:
    env = make()
    u = unwrapped(env)
    env.reset(seed=3)
    f = u.get_factors()
    ox, oy = f[u.factor_spec.index("object1.x")], f[u.factor_spec.index("object1.y")]
    with pytest.raises(ConfigError, match="both on cell"):
        u.set_factors({"agent_pos": (ox, oy)})
    u.set_factors({"background_colour": (0.2, 0.2, 0.2)})
    g = u.get_factors()
    changed = ~np.isclose(f, g)
    assert set(np.flatnonzero(changed)) <= set(u.factor_spec.group_indices("background_colour"))
    with pytest.raises(ConfigError, match="both on cell"):
        u.set_factors(np.zeros(len(f)))  # full vector: everything on (0, 0)
    with pytest.raises(ConfigError):
        u.set_factors(np.zeros(3))


def test_sample_factors_valid_and_respects_groups() -> None:
    env = make(n_objects=5, size=4)
    u = unwrapped(env)
    env.reset(seed=0)
    spec = u.factor_spec
    rng = np.random.default_rng(0)
    base = u.get_factors()
    for g in spec.groups:
        for _ in range(20):
            v = u.sample_factors(rng, base, [g])
            assert v.dtype == np.float32
            assert u._violation(v.astype(np.float64)) is None
            keep = ~spec.group_mask([g])
            assert np.array_equal(v[keep], base[keep]), g
            u.set_factors(v)  # every sample is settable
            u.set_factors(base)
    # the only target keeps the target shape when its shape alone is resampled
    target = next(i for i in range(5) if base[spec.index(f"object{i}.shape")] == u.target_id)
    for _ in range(10):
        v = u.sample_factors(rng, base, [f"object{target}.shape"])
        assert v[spec.index(f"object{target}.shape")] == u.target_id
    full = [u.sample_factors(rng) for _ in range(50)]
    assert all(u._violation(v.astype(np.float64)) is None for v in full)
    with pytest.raises(ConfigError, match="unknown factor or group"):
        u.sample_factors(rng, base, ["object9_pos"])


def test_exactly_one_target_shape_every_reset() -> None:
    env = make(n_objects=4, target_shape="diamond")
    u = unwrapped(env)
    tid = OBJECT_SHAPES.index("diamond")
    env.reset(seed=0)
    for _ in range(100):
        _, info = env.reset()
        shapes = info["factors"][u._shape_idx]
        assert (shapes == tid).sum() == 1


def test_pixels_show_exact_colours_and_segmentation_matches_positions() -> None:
    env = make(colour_scheme="grid-cw")
    u = unwrapped(env)
    spec = u.factor_spec
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        f = info["factors"]
        seg = u.segmentation()
        assert seg.dtype == np.int32 and seg.shape == (64, 64)
        bg = np.rint(f[list(spec.group_indices("background_colour"))] * 255)
        assert (obs[seg == 0] == bg).all()
        for label, name in enumerate(u.object_names[1:], start=1):
            colour = f[list(spec.group_indices(f"{name}_colour"))].astype(np.float64)
            x, y = int(f[spec.index(f"{name}.x")]), int(f[spec.index(f"{name}.y")])
            rows, cols = u.renderer.cell_box(x, y)
            mask = seg == label
            assert mask.any() and mask[rows, cols].sum() == mask.sum()  # all inside its cell
            assert (obs[mask] == np.rint(colour * 255)).all()
            if name != "agent":  # filled shapes: the cell centre has the object's colour
                t = u.renderer.tile
                assert (obs[rows, cols][t // 2, t // 2] == np.rint(colour * 255)).all()


def test_changing_one_colour_changes_only_that_object() -> None:
    env = make()
    u = unwrapped(env)
    env.reset(seed=5)
    before = u.render_frame()
    seg = u.segmentation()
    for label, group in ((2, "object0_colour"), (1, "agent_colour"), (0, "background_colour")):
        old = u.get_factors()[list(u.factor_spec.group_indices(group))]
        u.set_factors({group: 1.0 - old})
        after = u.render_frame()
        changed = (after != before).any(axis=-1)
        assert np.array_equal(changed, seg == label), group
        assert np.array_equal(u.segmentation(), seg)
        u.set_factors({group: old})
        assert np.array_equal(u.render_frame(), before)


@pytest.mark.parametrize("scheme", ["grid8", "grid-cw"])
@pytest.mark.parametrize("split", ["in", "ood1", "ood2"])
def test_colour_splits_respected(scheme: str, split: str) -> None:
    env = make(colours=split, colour_scheme=scheme)
    u = unwrapped(env)
    spec = u.factor_spec
    env.reset(seed=0)
    seen: set[tuple[float, ...]] = set()
    for _ in range(100):
        f = env.reset()[1]["factors"].astype(np.float64)
        for name, obj in [(f"object{i}", "object") for i in range(3)] + [
            ("agent", "agent"),
            ("background", "background"),
        ]:
            rgb = f[list(spec.group_indices(f"{name}_colour"))]
            assert u.colour_scheme[obj].split_of(rgb) == split, (name, rgb)
            seen.add(tuple(rgb))
    if scheme == "grid8" and split == "in":  # every IN object colour shows up
        pal = u.colour_scheme["object"].colours("in")
        assert all(any(np.allclose(c, s, atol=1e-6) for s in seen) for c in pal)


def test_rewards_termination_and_truncation() -> None:
    env = make(max_episode_steps=5, distractor_penalty=0.5)
    opts = {"factors": layout((0, 0), [(1, 0, "circle"), (0, 1, "square"), (5, 5, "cross")])}
    env.reset(seed=0, options=opts)
    _, r, term, trunc, info = env.step(1)  # down into the distractor: blocked
    assert (r, term, trunc, info["is_success"]) == (pytest.approx(-0.51), False, False, False)
    assert info["factors"][:2].tolist() == [0.0, 0.0]
    _, r, term, trunc, info = env.step(3)  # up off the grid: stays
    assert r == pytest.approx(-0.01) and info["factors"][:2].tolist() == [0.0, 0.0]
    _, r, term, trunc, info = env.step(np.int64(0))  # right into the target
    assert (r, term, trunc, info["is_success"]) == (1.0, True, False, True)
    assert info["factors"][:2].tolist() == [0.0, 0.0]  # touching, never overlapping
    env.reset(seed=0, options=opts)
    for k in range(5):
        _, _, term, trunc, info = env.step(2)
        assert not term and trunc == (k == 4) and not info["is_success"]


def test_actions_move_agent() -> None:
    env = make()
    u = unwrapped(env)
    env.reset(
        seed=0,
        options={"factors": layout((3, 3), [(7, 7, "circle"), (0, 0, "cross"), (7, 0, "square")])},
    )
    for a, (dx, dy) in enumerate(((1, 0), (0, 1), (-1, 0), (0, -1))):
        x, y = u.get_factors()[:2]
        env.step(a)
        assert u.get_factors()[:2].tolist() == [x + dx, y + dy]


@pytest.mark.parametrize("mode", MODES)
def test_random_and_invalid_action_fuzz(mode: str) -> None:
    episodes = fuzz_env(make(obs_mode=mode, size=5, n_objects=6, max_episode_steps=20), 1000, 1)
    assert episodes > 10


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_random_and_invalid_action_fuzz_long(mode: str) -> None:
    fuzz_env(make(obs_mode=mode, colour_scheme="grid-cw", colours="all"), 10_000, seed=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 1}, "size"),
        ({"size": 8.5}, "size"),
        ({"n_objects": 0}, "n_objects"),
        ({"n_objects": 64}, "n_objects"),
        ({"target_shape": "star"}, "circle"),
        ({"image_size": 60}, "multiple of 8"),
        ({"image_size": 32}, "px per cell"),
        ({"obs_mode": "rgb"}, "pixels_proprio"),
        ({"colours": "test"}, "ood2"),
        ({"colour_scheme": "nope"}, "grid8"),
        ({"colour_seed": -1}, "colour seed must be an integer in"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
        ({"step_penalty": float("inf")}, "finite"),
        ({"distractor_penalty": "a"}, "finite"),
    ],
)
def test_bad_kwargs(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make(**kwargs)
    with pytest.raises(ConfigError, match=match):
        ColourGridEnv(**kwargs)


def test_bad_render_mode() -> None:
    with pytest.raises(ConfigError, match="rgb_array"):
        ColourGridEnv(render_mode="human")  # gymnasium.make turns "human" into a wrapper


@pytest.mark.parametrize("maker", ["registry", "gymnasium"])
def test_max_episode_steps_is_exact(maker: str) -> None:
    env = make(max_episode_steps=7) if maker == "registry" else gym.make(ID, max_episode_steps=7)
    assert unwrapped(gym.make(ID)).max_episode_steps is None  # TimeLimit owns the default (50)
    env.reset(
        seed=0,
        options={"factors": layout((0, 0), [(7, 7, "circle"), (5, 5, "cross"), (6, 6, "square")])},
    )
    truncs = [env.step(2)[3] for _ in range(7)]
    assert truncs == [False] * 6 + [True]


def test_reset_rejects_unknown_option() -> None:
    env = make()
    with pytest.raises(ConfigError, match="factors"):
        env.reset(options={"factor": {}})


def test_pixels_proprio_and_state_content() -> None:
    env = make(obs_mode="pixels_proprio", target_shape="cross")
    obs, info = env.reset(seed=0)
    assert np.array_equal(obs["pixels"], env.unwrapped.render_frame())  # type: ignore[attr-defined]
    f = info["factors"]
    assert np.allclose(obs["proprio"][:2], f[:2] / 7)
    assert obs["proprio"][2:].tolist() == np.eye(5)[OBJECT_SHAPES.index("cross")].tolist()
    st = make(obs_mode="state")
    s, info = st.reset(seed=0)
    assert np.allclose(s[:2], info["factors"][:2] / 7)
    assert np.allclose(s[-6:], info["factors"][-6:])


def test_seeded_colour_scheme_permutes() -> None:
    a = unwrapped(make(colour_seed=0)).colour_scheme["object"].colours("in")
    b = unwrapped(make(colour_seed=3)).colour_scheme["object"].colours("in")
    assert a.shape == b.shape and not np.array_equal(a, b)
