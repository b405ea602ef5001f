"""Bad env kwargs and reset factors: one-line ConfigErrors naming the argument (issue 21, 4).

One table of malformed kwargs goes to every registered env id through both ``gymnasium.make`` and
``sparseshift.envs.registry.make``: both must refuse it with a
:class:`~sparseshift.envs.infra.errors.ConfigError` (not TypeError, ValueError, OverflowError or
MemoryError) whose one-line message names the kwarg, quickly and without allocating (the sizes
that allocate are bounded and checked before anything is built). A second table feeds malformed
``reset(options={"factors": ...})`` to every env: ConfigError naming the factor.
"""

from __future__ import annotations

import inspect
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import sparseshift  # noqa: F401  (registers the ids)
from sparseshift.envs import registry
from sparseshift.envs.core.factors import FactorSpec
from sparseshift.envs.infra.errors import MAX_IMAGE_SIZE, ConfigError
from sparseshift.envs.registry import env_class

#: A refusal must take less than this (seconds; generous for a loaded CI machine) ...
TIME_LIMIT_S = 2.0
#: ... and allocate less than this (bytes, traced by tracemalloc; numpy's buffers included).
PEAK_LIMIT = 50 * 2**20
#: One line, and not a page of it.
MAX_MESSAGE = 1000

NAN, INF = float("nan"), float("inf")
HUGE = 10**5000  # more digits than int -> str converts by default

#: (kwarg, value, label) refused by every env.
COMMON: tuple[tuple[str, Any, str], ...] = (
    ("image_size", 10**6, "10**6"),  # 2.7 TiB of observation-space bounds before the fix
    ("image_size", 2**20, "2**20"),
    ("image_size", 10**100, "10**100"),
    ("image_size", HUGE, "10**5000"),
    ("image_size", MAX_IMAGE_SIZE + 8, "max+8"),
    ("image_size", 0, "0"),
    ("image_size", -8, "-8"),
    ("image_size", 12, "12"),
    ("image_size", 63.5, "63.5"),
    ("image_size", "64", "str"),
    ("image_size", True, "True"),
    ("image_size", None, "None"),
    ("image_size", [64], "list"),
    ("image_size", NAN, "nan"),
    ("image_size", INF, "inf"),
    ("obs_mode", {}, "dict"),
    ("obs_mode", [], "list"),
    ("obs_mode", 1, "int"),
    ("obs_mode", None, "None"),
    ("obs_mode", "voxels", "unknown"),
    ("obs_mode", b"pixels", "bytes"),
    ("obs_mode", np.array(["pixels", "state"]), "array"),
    ("colours", {}, "dict"),
    ("colours", 1, "int"),
    ("colours", None, "None"),
    ("colours", "", "empty"),
    ("colours", "ood3", "unknown"),
    ("colours", ["in", "in"], "twice"),
    ("colours", [["in"]], "nested"),
    ("colours", [{}], "list-of-dict"),
    ("colours", b"in", "bytes"),
    ("colours", 1.5, "float"),
    ("colour_scheme", {}, "dict"),
    ("colour_scheme", [], "list"),
    ("colour_scheme", 1, "int"),
    ("colour_scheme", None, "None"),
    ("colour_scheme", "nope", "unknown"),
    ("colour_scheme", "x" * 100_000, "long"),
    ("colour_scheme", b"grid8", "bytes"),
    ("colour_seed", HUGE, "10**5000"),
    ("colour_seed", -HUGE, "-10**5000"),
    ("colour_seed", 10**100, "10**100"),
    ("colour_seed", 2**31, "2**31"),
    ("colour_seed", -1, "-1"),
    ("colour_seed", 1.5, "1.5"),
    ("colour_seed", "0", "str"),
    ("colour_seed", True, "True"),
    ("colour_seed", None, "None"),
    ("colour_seed", NAN, "nan"),
    ("colour_seed", [0], "list"),
    ("colour_seed", {}, "dict"),
    ("max_episode_steps", -1, "-1"),
    ("max_episode_steps", 0, "0"),
    ("max_episode_steps", -HUGE, "-10**5000"),
    ("max_episode_steps", HUGE, "10**5000"),
    ("max_episode_steps", 10**100, "10**100"),
    ("max_episode_steps", True, "True"),
    ("max_episode_steps", False, "False"),
    ("max_episode_steps", 1.5, "1.5"),
    ("max_episode_steps", 10.0, "10.0"),  # gymnasium's TimeLimit takes Python ints only
    ("max_episode_steps", np.int64(10), "np.int64"),
    ("max_episode_steps", "10", "str"),
    ("max_episode_steps", NAN, "nan"),
    ("max_episode_steps", INF, "inf"),
    ("max_episode_steps", [10], "list"),
    ("render_mode", "bogus", "unknown"),
    ("render_mode", "", "empty"),
    ("not_a_kwarg", 1, "unknown-kwarg"),
    ("image_sizes", 64, "typo"),
)

#: (kwarg, value, label) refused by the envs that take the kwarg.
SPECIFIC: tuple[tuple[str, Any, str], ...] = (
    ("camera", {}, "dict"),
    ("camera", 1, "int"),
    ("camera", None, "None"),
    ("camera", "nope", "unknown"),
    ("camera", ["camera60"], "list"),
    ("render_preset", {}, "dict"),
    ("render_preset", 1, "int"),
    ("render_preset", None, "None"),
    ("render_preset", "ugly", "unknown"),
    ("shift", {}, "dict"),
    ("shift", 1, "int"),
    ("shift", "fake", "unknown"),
    ("shift", True, "True"),
    ("shift", ["real"], "list"),
    ("shift", "real:0.5", "fractional-level"),
    ("shift", "real:9", "level-9"),
    ("shift", "real:0", "level-0"),
    ("shift", "real@7", "strength-7"),
    ("shift", "real@nan", "strength-nan"),
    ("shift", "real:3-1", "empty-range"),
    ("shift", "real:1-5", "range"),
    ("shift", "bogus", "bogus"),
    ("shift", 3, "3"),
    ("shift", HUGE, "10**5000"),
    ("shift", "ood2", "colour-split"),
    ("shift", "x" * 10**6, "megabyte"),
    ("goal_markers", "yes", "str"),
    ("goal_markers", 1, "int"),
    ("goal_markers", None, "None"),
    ("action_mode", {}, "dict"),
    ("action_mode", 1, "int"),
    ("action_mode", "fast", "unknown"),
    ("size", HUGE, "10**5000"),
    ("size", 10**100, "10**100"),
    ("size", 0, "0"),
    ("size", 33, "33"),
    ("size", 8.5, "8.5"),
    ("size", "8", "str"),
    ("size", True, "True"),
    ("size", None, "None"),
    ("n_objects", HUGE, "10**5000"),
    ("n_objects", 10**9, "10**9"),
    ("n_objects", 0, "0"),
    ("n_objects", "3", "str"),
    ("n_objects", True, "True"),
    ("n_objects", None, "None"),
    ("target_shape", {}, "dict"),
    ("target_shape", [], "list"),
    ("target_shape", 1, "int"),
    ("target_shape", "star", "unknown"),
    ("step_penalty", NAN, "nan"),
    ("step_penalty", INF, "inf"),
    ("step_penalty", "a", "str"),
    ("step_penalty", True, "True"),
    ("step_penalty", HUGE, "10**5000"),
    ("step_penalty", None, "None"),
    ("step_penalty", [0.1], "list"),
    ("distractor_penalty", NAN, "nan"),
    ("distractor_penalty", "a", "str"),
    ("distractor_penalty", HUGE, "10**5000"),
    ("agent", "yes", "str"),
    ("agent", 1, "int"),
    ("agent", None, "None"),
    ("drift", 1, "int"),
    ("split_xy", "no", "str"),
    ("minigrid_id", {}, "dict"),
    ("minigrid_id", [], "list"),
    ("minigrid_id", 1, "int"),
    ("minigrid_id", None, "None"),
    ("minigrid_id", "MiniGrid-Nope-v0", "unknown"),
)

#: render_mode values gymnasium.make itself fails on (it calls ``render_mode.endswith`` before
#: the env is constructed); sparseshift's make refuses them with a ConfigError.
RENDER_MODE_TYPES: tuple[Any, ...] = (1, {}, ["rgb_array"], True)


def _kwargs_of(env_id: str) -> frozenset[str]:
    return frozenset(inspect.signature(env_class(env_id)).parameters)


def _short(env_id: str) -> str:
    return env_id.removeprefix("sparseshift/")


KWARG_CASES = [
    pytest.param(env_id, kwarg, value, id=f"{_short(env_id)}-{kwarg}={label}")
    for env_id in registry.ENV_IDS
    for common, table in ((True, COMMON), (False, SPECIFIC))
    for kwarg, value, label in table
    if common or kwarg in _kwargs_of(env_id)
]

MAKERS: dict[str, Callable[..., gym.Env[Any, Any]]] = {
    "gymnasium.make": gym.make,
    "registry.make": registry.make,
}


def _attempt(maker: Callable[..., gym.Env[Any, Any]], env_id: str,
             kwargs: dict[str, Any]) -> tuple[BaseException | None, float, int]:
    """(what ``maker(env_id, **kwargs)`` raised or None, seconds, traced peak bytes)."""
    error: BaseException | None = None
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium warns about unknown render modes
            env = maker(env_id, **kwargs)
        env.close()
    except Exception as exc:  # the assertions below say what it was
        error = exc
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, seconds, peak


def _check_refusal(error: BaseException | None, name: str, what: str) -> None:
    """``error`` is a one-line ConfigError whose message contains ``name``."""
    assert error is not None, f"{what}: accepted"
    assert isinstance(error, ConfigError), f"{what}: {type(error).__name__}: {error}"[:500]
    msg = str(error)
    assert "\n" not in msg and len(msg) <= MAX_MESSAGE, f"{what}: not one short line: {msg[:500]}"
    assert name in msg, f"{what}: the message does not name {name!r}: {msg}"


@pytest.fixture(scope="module", autouse=True)
def _imported() -> None:
    """Import every env module first, so the time limit does not count imports."""
    for env_id in registry.ENV_IDS:
        env_class(env_id)


@pytest.mark.parametrize(("env_id", "kwarg", "value"), KWARG_CASES)
def test_bad_kwarg_is_a_one_line_config_error(env_id: str, kwarg: str, value: Any) -> None:
    for maker_name, maker in MAKERS.items():
        what = f"{maker_name}({env_id!r}, {kwarg}=...)"
        error, seconds, peak = _attempt(maker, env_id, {kwarg: value})
        _check_refusal(error, kwarg, what)
        assert seconds < TIME_LIMIT_S, f"{what}: took {seconds:.1f} s"
        assert peak < PEAK_LIMIT, f"{what}: allocated {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("env_id", registry.ENV_IDS)
def test_unknown_kwarg_lists_the_valid_ones(env_id: str) -> None:
    for maker in MAKERS.values():
        error, _, _ = _attempt(maker, env_id, {"not_a_kwarg": 1})
        _check_refusal(error, "not_a_kwarg", env_id)
        assert "image_size" in str(error) and "colour_scheme" in str(error)


@pytest.mark.parametrize("env_id", registry.ENV_IDS)
@pytest.mark.parametrize("value", RENDER_MODE_TYPES, ids=repr)
def test_render_mode_of_the_wrong_type(env_id: str, value: Any) -> None:
    error, _, _ = _attempt(registry.make, env_id, {"render_mode": value})
    _check_refusal(error, "render_mode", env_id)
    error, _, _ = _attempt(gym.make, env_id, {"render_mode": value})
    assert error is not None  # gymnasium's own parsing refuses it before the env is built


@pytest.mark.parametrize("env_id", registry.ENV_IDS)
def test_good_kwargs_are_accepted_by_both(env_id: str) -> None:
    """The checks refuse nothing valid: the bounds themselves and the defaults."""
    cases: list[dict[str, Any]] = [{}, {"max_episode_steps": 1}, {"colour_seed": 2**31 - 1024},
                                   {"colours": ["in", "ood1"]}, {"colours": "all"}]
    if env_id.startswith("sparseshift/TriFinger"):
        cases.append({"image_size": MAX_IMAGE_SIZE, "shift": "real:5"})
    cases += [{"shift": "noise@2.5"}, {"shift": "none"}, {"shift": "in"}, {"shift": "texture"}]
    for kwargs in cases:
        for maker in MAKERS.values():
            env = maker(env_id, obs_mode="state", **kwargs)
            env.close()


def test_max_episode_steps_minus_one_is_refused_by_gymnasium_make() -> None:
    """gymnasium.make's own ``max_episode_steps=-1`` ("no TimeLimit") is refused too: every
    sparseshift episode has a positive length."""
    for env_id in registry.ENV_IDS:
        with pytest.raises(ConfigError, match="max_episode_steps"):
            gym.make(env_id, max_episode_steps=-1)


# ---------------------------------------------------------------------------- reset factors


def _first(spec: FactorSpec) -> str:
    return spec.names[0]


def _colour(spec: FactorSpec) -> str:
    return next(g for g in spec.groups
                if spec.factors[spec.group_indices(g)[0]].kind == "colour")


def _vector(spec: FactorSpec, value: Any) -> list[Any]:
    vec: list[Any] = [f.low for f in spec.factors]
    vec[0] = value
    return vec


Options = Callable[[FactorSpec], Any]
Named = Callable[[FactorSpec], str]

#: (label, options for reset, what the message must name)
RESET: tuple[tuple[str, Options, Named], ...] = (
    *(
        (f"first={label}", (lambda v: lambda s: {"factors": {_first(s): v}})(value), _first)
        for label, value in (
            ("abc", "abc"), ("str-number", "0.1"), ("nan", NAN), ("inf", INF), ("-inf", -INF),
            ("1e9", 1e9), ("-1e9", -1e9), ("10**5000", HUGE), ("-10**5000", -HUGE),
            ("True", True), ("None", None), ("dict", {}), ("empty-list", []),
            ("two-values", [0.0, 0.0]), ("object", object()), ("bytes", b"1"),
            ("complex", 1j), ("str-array", np.array(["x"])), ("nested", [[0.0]]),
        )
    ),
    *(
        (f"colour={label}", (lambda v: lambda s: {"factors": {_colour(s): v}})(value), _colour)
        for label, value in (
            ("abc", "abc"), ("two", [0.1, 0.2]), ("str-item", [0.1, "x", 0.3]),
            ("out-of-range", [2.0, 0.0, 0.0]), ("nan-item", [NAN, 0.0, 0.0]),
            ("bool-item", [True, 0.0, 0.0]), ("scalar", 0.5), ("nested", [[0.1, 0.2, 0.3]]),
            ("huge-item", [HUGE, 0.0, 0.0]), ("long", [0.5] * 10**6),
        )
    ),
    ("unknown-name", lambda s: {"factors": {"no_such_factor": 0.0}}, lambda s: "no_such_factor"),
    ("long-name", lambda s: {"factors": {"z" * 100_000: 0.0}}, lambda s: "unknown factor"),
    ("int-key", lambda s: {"factors": {7: 0.0}}, lambda s: "7"),
    ("vector-nan", lambda s: {"factors": _vector(s, NAN)}, _first),
    ("vector-str", lambda s: {"factors": _vector(s, "x")}, _first),
    ("vector-huge", lambda s: {"factors": _vector(s, HUGE)}, _first),
    ("vector-short", lambda s: {"factors": [0.0]}, lambda s: "factor"),
    ("vector-scalar", lambda s: {"factors": 5}, lambda s: "factors"),
    ("vector-text", lambda s: {"factors": "abc"}, lambda s: "factors"),
    ("vector-set", lambda s: {"factors": {0.0}}, lambda s: "factors"),
    ("options-text", lambda s: "abc", lambda s: "options"),
    ("options-list", lambda s: [1], lambda s: "options"),
    ("options-unknown", lambda s: {"bogus": 1}, lambda s: "bogus"),
)


@pytest.fixture(scope="module")
def envs() -> Any:
    made: dict[str, gym.Env[Any, Any]] = {}
    yield made
    for env in made.values():
        env.close()


@pytest.mark.parametrize("env_id", registry.ENV_IDS, ids=_short)
@pytest.mark.parametrize(("label", "options", "named"), [pytest.param(*case, id=case[0])
                                                         for case in RESET])
def test_bad_reset_factors_are_a_one_line_config_error(
        envs: dict[str, gym.Env[Any, Any]], env_id: str, label: str, options: Options,
        named: Named) -> None:
    if env_id not in envs:
        envs[env_id] = registry.make(env_id, obs_mode="state")
    env = envs[env_id]
    spec: FactorSpec = env.unwrapped.factor_spec  # type: ignore[attr-defined]
    what = f"{env_id} reset with {label}"
    error: BaseException | None = None
    start = time.perf_counter()
    try:
        env.reset(seed=0, options=options(spec))
    except Exception as exc:  # checked below
        error = exc
    _check_refusal(error, named(spec), what)
    assert time.perf_counter() - start < TIME_LIMIT_S
    _, info = env.reset(seed=0)  # the env still works
    assert np.all(np.isfinite(info["factors"]))


def test_huge_seed_is_not_converted_to_text() -> None:
    """The 5000-digit seed is refused without ``str(int)`` (which raises ValueError)."""
    with pytest.raises(ConfigError, match="colour_seed") as err:
        registry.make("sparseshift/ColourGrid-v0", colour_seed=HUGE)
    assert len(str(err.value)) < 200
