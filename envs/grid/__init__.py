"""Grid worlds with colour-shift factors: ColourGrid and MiniGrid tasks re-rendered by sparseshift.

Modules: :mod:`~envs.grid.render` (vectorised numpy tile renderer), :mod:`~envs.grid.colourgrid`
(``sparseshift/ColourGrid-v0``), :mod:`~envs.grid.minigrid_adapter` (``sparseshift/MiniGrid-*``),
:mod:`~envs.grid.bench` (step-rate benchmarks). Env modules are imported lazily by
``gymnasium.make``; importing this package imports neither MiniGrid nor the envs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym


def make(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gymnasium.make`` for the grid ids that hands ``max_episode_steps`` to the env itself.

    ``gymnasium.make(id, max_episode_steps=n)`` never passes ``n`` to the env: it wraps the env in
    ``TimeLimit(n)``, on top of the env's own limit (ColourGrid: 50 steps, MiniGrid: its
    ``max_steps``), so the shorter one wins. This helper instead sets the env's own
    ``max_episode_steps`` kwarg, so the limit is exactly ``n``.
    """
    import envs  # noqa: F401  (registers the ids)

    steps = kwargs.pop("max_episode_steps", None)
    spec = gym.spec(env_id)
    if steps is not None:
        spec = dataclasses.replace(spec, kwargs={**spec.kwargs, "max_episode_steps": steps})
    return gym.make(spec, **kwargs)
