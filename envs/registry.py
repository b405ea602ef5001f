"""The env registry: every sparseshift id, registered with gymnasium by string entry point.

Entry points are strings, so importing :mod:`envs` imports neither MuJoCo nor MiniGrid; the module
of an env is imported by ``gymnasium.make`` only when that env is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from envs.errors import choice_error


@dataclass(frozen=True)
class EnvEntry:
    """One registered env: id, entry point, episode limit and default kwargs."""

    id: str
    entry_point: str
    max_episode_steps: int | None
    family: str  # "trifinger" or "grid"
    kwargs: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


ENTRIES: tuple[EnvEntry, ...] = (
    EnvEntry(
        "sparseshift/TriFingerReach-v0",
        "envs.trifinger.tasks:TriFingerReachEnv",
        None,
        "trifinger",
        summary="move the three fingertips to three goal points (TriFingerPro, MuJoCo)",
    ),
    EnvEntry(
        "sparseshift/TriFingerPush-v0",
        "envs.trifinger.tasks:TriFingerPushEnv",
        None,
        "trifinger",
        summary="push the 6.5 cm cube to a goal position on the arena (TriFingerPro, MuJoCo)",
    ),
    EnvEntry(
        "sparseshift/ColourGrid-v0",
        "envs.grid.colourgrid:ColourGridEnv",
        None,
        "grid",
        summary="reach the object of the target shape; colours are free factors",
    ),
    EnvEntry(
        "sparseshift/MiniGrid-DoorKey-8x8-v0",
        "envs.grid.minigrid_adapter:MiniGridColourEnv",
        None,
        "grid",
        {"minigrid_id": "MiniGrid-DoorKey-8x8-v0"},
        summary="MiniGrid DoorKey 8x8 re-rendered with sparseshift colours",
    ),
    EnvEntry(
        "sparseshift/MiniGrid-Empty-Random-6x6-v0",
        "envs.grid.minigrid_adapter:MiniGridColourEnv",
        None,
        "grid",
        {"minigrid_id": "MiniGrid-Empty-Random-6x6-v0"},
        summary="MiniGrid Empty 6x6 (random start) re-rendered with sparseshift colours",
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
    """``gymnasium.make`` for sparseshift ids with a clear error for unknown ids."""
    entry(env_id)
    register_envs()
    return gym.make(env_id, **kwargs)
