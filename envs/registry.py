"""The env registry: every sparseshift id, registered with gymnasium by string entry point.

Entry points are strings, so importing :mod:`envs` imports neither MuJoCo nor MiniGrid; the module
of an env is imported by ``gymnasium.make`` only when that env is made.

Episode length: TriFinger and ColourGrid have no limit of their own when made through gymnasium;
their documented defaults are registered as gymnasium's ``TimeLimit``, so
``gymnasium.make(id, max_episode_steps=n)`` gives exactly ``n``. MiniGrid tasks keep MiniGrid's
own ``max_steps`` (MiniGrid's reward depends on it); :func:`make` routes ``max_episode_steps`` to
it, while plain ``gymnasium.make`` would add a ``TimeLimit`` on top (the shorter limit wins).

Bad arguments: :func:`make` and ``gymnasium.make`` accept and refuse the same kwargs, with the same
one-line :class:`~sparseshift.envs.infra.errors.ConfigError` naming the kwarg, raised before
anything is built (the env classes check them, see
:func:`sparseshift.envs.core.base.checked_init`); that includes
``max_episode_steps``, which must be an integer in [1, ``MAX_EPISODE_STEPS``] either way
(gymnasium's ``-1``, "no TimeLimit", is refused). One exception: a ``render_mode`` that is not a
string is a ConfigError here, but plain ``gymnasium.make`` fails on it itself (it calls
``render_mode.endswith``) before the env class is reached.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from sparseshift.envs.infra.errors import check_episode_steps, choice_error

if TYPE_CHECKING:
    from sparseshift.envs.core.base import FactorEnv
    from sparseshift.envs.core.factors import FactorSpec
    from sparseshift.envs.shifts.registry import SceneOffer, ShiftRegistry


@dataclass(frozen=True)
class EnvEntry:
    """One registered env: id, entry point, episode limit and default kwargs."""

    id: str
    entry_point: str
    max_episode_steps: int | None  # gymnasium TimeLimit; None: the env's own limit (MiniGrid)
    family: str  # "trifinger" or "grid"
    kwargs: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    #: The scene features the env offers its shifts (docs/shifts.md): what decides which shifts
    #: it supports, read without importing the env (its class declares the same
    #: ``SHIFT_FEATURES``; tests/test_env_shifts.py checks they agree).
    shift_features: frozenset[str] = frozenset({"frame"})


#: Scene features of the MuJoCo TriFinger envs and of the grid worlds.
TRIFINGER_FEATURES = frozenset({"frame", "lights", "camera", "surfaces"})
GRID_FEATURES = frozenset({"frame", "surfaces"})

ENTRIES: tuple[EnvEntry, ...] = (
    EnvEntry(
        "sparseshift/TriFingerReach-v0",
        "sparseshift.envs.trifinger.tasks:TriFingerReachEnv",
        75,
        "trifinger",
        summary="move the three fingertips to three goal points (TriFingerPro, MuJoCo)",
        shift_features=TRIFINGER_FEATURES,
    ),
    EnvEntry(
        "sparseshift/TriFingerPush-v0",
        "sparseshift.envs.trifinger.tasks:TriFingerPushEnv",
        150,
        "trifinger",
        summary="push the 6.5 cm cube to a goal position on the arena (TriFingerPro, MuJoCo)",
        shift_features=TRIFINGER_FEATURES,
    ),
    EnvEntry(
        "sparseshift/TriFingerObjectReach-v0",
        "sparseshift.envs.trifinger.objectreach:TriFingerObjectReachEnv",
        50,
        "trifinger",
        summary="touch the cube with the one moving finger; the 7 factors of the Dittadi et al. "
        "2021 dataset (TriFingerPro, MuJoCo)",
        shift_features=TRIFINGER_FEATURES,
    ),
    EnvEntry(
        "sparseshift/ColourGrid-v0",
        "sparseshift.envs.grid.colourgrid:ColourGridEnv",
        50,
        "grid",
        summary="reach the object of the target shape; colours are free factors",
        shift_features=GRID_FEATURES,
    ),
    EnvEntry(
        "sparseshift/ColourGridOne-v0",
        "sparseshift.envs.grid.colourgrid:ColourGridEnv",
        50,
        "grid",
        {"n_objects": 1, "agent": False, "target_shape": None, "drift": True, "split_xy": True},
        summary="one object drifting at constant velocity, no agent and no task: 5 factor groups "
        "(x, y, shape, colour, background colour) for disentanglement and video",
        shift_features=GRID_FEATURES,
    ),
    EnvEntry(
        "sparseshift/MiniGrid-DoorKey-8x8-v0",
        "sparseshift.envs.grid.minigrid_adapter:MiniGridColourEnv",
        None,
        "grid",
        {"minigrid_id": "MiniGrid-DoorKey-8x8-v0"},
        summary="MiniGrid DoorKey 8x8 re-rendered with sparseshift colours",
        shift_features=GRID_FEATURES,
    ),
    EnvEntry(
        "sparseshift/MiniGrid-Empty-Random-6x6-v0",
        "sparseshift.envs.grid.minigrid_adapter:MiniGridColourEnv",
        None,
        "grid",
        {"minigrid_id": "MiniGrid-Empty-Random-6x6-v0"},
        summary="MiniGrid Empty 6x6 (random start) re-rendered with sparseshift colours",
        shift_features=GRID_FEATURES,
    ),
)

ENV_IDS: tuple[str, ...] = tuple(e.id for e in ENTRIES)


def entry(env_id: str) -> EnvEntry:
    """The registry entry of ``env_id``; unknown ids list the valid ones."""
    for e in ENTRIES:
        if e.id == env_id:
            return e
    raise choice_error("env id", env_id, ENV_IDS)


def register_envs() -> None:
    """Register every sparseshift id with gymnasium (idempotent)."""
    for e in ENTRIES:
        if e.id in gym.registry:
            continue
        gym.register(
            id=e.id,
            entry_point=e.entry_point,
            max_episode_steps=e.max_episode_steps,
            kwargs=dict(e.kwargs),
        )


def make(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gymnasium.make`` for sparseshift ids, with a clear error for unknown ids.

    ``max_episode_steps`` sets the episode length of every env, MiniGrid's included. Bad kwargs
    are a :class:`~sparseshift.envs.infra.errors.ConfigError` naming the kwarg (module docstring).
    """
    e = entry(env_id)
    register_envs()
    render_mode = kwargs.get("render_mode")
    if render_mode is not None and not isinstance(render_mode, str):
        raise choice_error("render_mode", render_mode, ("None", "rgb_array"))
    steps = kwargs.pop("max_episode_steps", None)
    if steps is not None:
        steps = check_episode_steps(steps)
    if steps is not None and e.max_episode_steps is None:
        routed = {**e.kwargs, "max_episode_steps": steps}
        spec = dataclasses.replace(gym.spec(env_id), kwargs=routed)
        return gym.make(spec, **kwargs)
    return gym.make(env_id, max_episode_steps=steps, **kwargs)


def env_class(env_id: str) -> type[FactorEnv[Any, Any]]:
    """The env class of a registered sparseshift id (gymnasium's entry-point loader imports its
    module; no env is made)."""
    from gymnasium.envs.registration import load_env_creator

    from sparseshift.envs.core.base import FactorEnv

    cls: Any = load_env_creator(entry(env_id).entry_point)
    if not (isinstance(cls, type) and issubclass(cls, FactorEnv)):
        raise TypeError(f"{env_id}: {cls!r} is not a FactorEnv")
    return cls


def task_factors(env_id: str, spec: FactorSpec | None = None) -> tuple[str, ...]:
    """The task factors (:attr:`FactorEnv.task_factors`) of ``env_id``, resolved against
    ``spec`` (e.g. the factor spec a dataset or proxy frame set recorded). Without ``spec``: the
    class's ``FACTOR_SPEC`` if it has one (TriFinger), else the spec of the env made with its
    registry defaults. Empty when the env declares none."""
    cls = env_class(env_id)
    if not cls.task_factors:
        return ()
    if spec is None:
        spec = getattr(cls, "FACTOR_SPEC", None)
    if spec is None:
        env = make(env_id)
        try:
            spec = env.unwrapped.factor_spec  # type: ignore[attr-defined]
        finally:
            env.close()
    assert spec is not None
    return cls.resolve_task_factors(spec)


def env_features(env_id: str) -> frozenset[str]:
    """The scene features an env offers, from its registry entry (``shift_features``; nothing
    is imported, so configs are checked without loading MuJoCo)."""
    return frozenset(entry(env_id).shift_features)


def scene_offer(env_id: str) -> SceneOffer:
    """``env_id`` with its scene features, for
    :meth:`~sparseshift.envs.shifts.registry.ShiftRegistry.resolve_all` and
    :meth:`~sparseshift.envs.shifts.registry.ShiftRegistry.supported`."""
    from sparseshift.envs.shifts.registry import SceneOffer

    return SceneOffer(env_id, env_features(env_id))


def default_shifts(env_id: str, registry: ShiftRegistry | None = None) -> tuple[str, ...]:
    """The shifts a study, the demo, the scorecard and the proxy task use on ``env_id`` when none
    are given (:meth:`~sparseshift.envs.shifts.registry.ShiftRegistry.defaults`; ``registry``:
    the shipped one unless given)."""
    from sparseshift.envs.shifts.registry import default_registry

    return (registry or default_registry()).defaults(scene_offer(env_id))
