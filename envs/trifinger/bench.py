"""Speed measurements of the TriFinger envs, for ``sparseshift bench envs`` and the docs.

:func:`env_steps_per_second` times ``env.step`` (resetting when an episode ends);
:func:`~envs.trifinger.render.raw_render_loop` times the bare MuJoCo loop it is compared with.
Timings on a shared machine are noisy: compare ratios from interleaved runs (:func:`compare`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from envs.trifinger.model import DEFAULT_Q, target_to_action
from envs.trifinger.render import raw_render_loop
from envs.trifinger.tasks import TriFingerPushEnv, TriFingerReachEnv

TASKS = {"reach": TriFingerReachEnv, "push": TriFingerPushEnv}


def env_steps_per_second(
    task: str = "push", n_steps: int = 500, seed: int = 0, **env_kwargs: Any
) -> float:
    """Env steps/s of ``task`` with constant default-pose actions (random poses vary the cost)."""
    env = TASKS[task](**env_kwargs)
    try:
        env.reset(seed=seed)
        action = target_to_action(DEFAULT_Q)
        start = time.perf_counter()
        for _ in range(n_steps):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        return n_steps / (time.perf_counter() - start)
    finally:
        env.close()


def compare(image_size: int = 64, n_steps: int = 500, repeats: int = 3) -> dict[str, float]:
    """Median env and raw-loop steps/s over interleaved repeats, and their ratio."""
    env_fps, raw_fps = [], []
    for _ in range(repeats):
        raw_fps.append(raw_render_loop(image_size, n_steps))
        env_fps.append(env_steps_per_second("push", n_steps, image_size=image_size))
    e, r = float(np.median(env_fps)), float(np.median(raw_fps))
    return {"env_steps_per_s": e, "raw_steps_per_s": r, "ratio": e / r}


if __name__ == "__main__":  # python -m envs.trifinger.bench
    for size in (64, 128):
        print(size, compare(size))
