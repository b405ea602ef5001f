"""Step-rate benchmarks of the grid envs against MiniGrid's own pixel observations.

The baseline is MiniGrid's ``RGBImgObsWrapper(gym.make("MiniGrid-DoorKey-8x8-v0"))`` with tile size
8 (a 64x64 full-grid frame; Chevalier-Boisvert et al. 2023, *Minigrid & Miniworld*). Every function
makes its env with ``gymnasium.make`` (so the same wrappers a user gets are timed), steps it with
pre-drawn uniformly random actions, resets when an episode ends (resets are timed too) and returns
env steps per second. :func:`compare` interleaves the three and reports medians over repeats,
since other processes make single timings noisy.

Run ``python -m envs.grid.bench`` for a table.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np


def steps_per_s(env: gym.Env[Any, Any], n_steps: int = 2000, seed: int = 0) -> float:
    """Time ``n_steps`` random steps of ``env`` (with resets at episode ends); steps per second."""
    n = env.action_space.n  # type: ignore[attr-defined]
    actions = np.random.default_rng(seed).integers(n, size=n_steps).tolist()
    env.reset(seed=seed)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return n_steps / (time.perf_counter() - start)


def minigrid_rgb_steps_per_s(
    n_steps: int = 2000,
    seed: int = 0,
    minigrid_id: str = "MiniGrid-DoorKey-8x8-v0",
    tile_size: int = 8,
) -> float:
    """MiniGrid's ``RGBImgObsWrapper`` (full-grid RGB frames) steps per second: the baseline."""
    import minigrid  # noqa: F401  (registers the MiniGrid ids)
    from minigrid.wrappers import RGBImgObsWrapper

    env = RGBImgObsWrapper(gym.make(minigrid_id), tile_size=tile_size)
    try:
        return steps_per_s(env, n_steps, seed)
    finally:
        env.close()


def colourgrid_steps_per_s(
    n_steps: int = 2000, seed: int = 0, obs_mode: str = "pixels", **kwargs: Any
) -> float:
    """``sparseshift/ColourGrid-v0`` steps per second (pixels by default, 64x64)."""
    import envs  # noqa: F401  (registers the ids)

    env = gym.make("sparseshift/ColourGrid-v0", obs_mode=obs_mode, **kwargs)
    try:
        return steps_per_s(env, n_steps, seed)
    finally:
        env.close()


def adapter_steps_per_s(
    n_steps: int = 2000,
    seed: int = 0,
    env_id: str = "sparseshift/MiniGrid-DoorKey-8x8-v0",
    obs_mode: str = "pixels",
    **kwargs: Any,
) -> float:
    """A sparseshift MiniGrid adapter id (DoorKey 8x8 by default) steps per second."""
    import envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id, obs_mode=obs_mode, **kwargs)
    try:
        return steps_per_s(env, n_steps, seed)
    finally:
        env.close()


BENCHES: dict[str, Callable[..., float]] = {
    "minigrid_rgb": minigrid_rgb_steps_per_s,
    "colourgrid_pixels": colourgrid_steps_per_s,
    "doorkey_adapter_pixels": adapter_steps_per_s,
}


def compare(n_steps: int = 2000, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """Median steps/s of every bench in :data:`BENCHES`, interleaved over ``repeats`` rounds,
    plus ``<name>/minigrid_rgb`` ratios of the medians."""
    runs: dict[str, list[float]] = {k: [] for k in BENCHES}
    for r in range(repeats):
        for name, fn in BENCHES.items():
            runs[name].append(fn(n_steps=n_steps, seed=seed + r))
    med = {k: statistics.median(v) for k, v in runs.items()}
    base = med["minigrid_rgb"]
    out = dict(med)
    for k in BENCHES:
        if k != "minigrid_rgb":
            out[f"{k}/minigrid_rgb"] = med[k] / base
    return out


def main() -> None:
    for k, v in compare().items():
        print(f"{k:40s} {v:10.2f}")


if __name__ == "__main__":
    main()
