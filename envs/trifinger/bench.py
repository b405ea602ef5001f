"""Speed measurements of the TriFinger envs, for ``sparseshift bench envs`` and the docs.

:func:`env_steps_per_second` times ``env.step`` (resetting when an episode ends);
:func:`~envs.trifinger.render.raw_render_loop` times the bare MuJoCo loop it is compared with;
:func:`compare` interleaves the two in chunks, because timings on a shared machine drift.
"""

from __future__ import annotations

import time
from typing import Any

import mujoco
import numpy as np

from envs.trifinger.model import DEFAULT_Q, SUBSTEPS, ModelIndex, load_model, target_to_action
from envs.trifinger.render import configure_model, get_preset, raw_render_loop
from envs.trifinger.tasks import TriFingerPushEnv, TriFingerReachEnv

__all__ = ["compare", "env_steps_per_second", "raw_render_loop"]

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


def compare(
    image_size: int = 64, n_steps: int = 1000, chunk: int = 50, camera: str = "camera60"
) -> dict[str, float]:
    """Env vs. bare-loop steps/s, measured in alternating chunks of ``chunk`` steps.

    Interleaving makes both see the same load on a shared machine, so the ratio is meaningful even
    when the absolute numbers drift.
    """
    model = load_model()
    configure_model(model, get_preset("fast"), image_size)
    data = mujoco.MjData(model)
    index = ModelIndex.build(model)
    data.qpos[index.joint_qpos] = DEFAULT_Q
    data.ctrl[:] = DEFAULT_Q
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, image_size, image_size)
    cam = index.cameras[camera]
    out = np.empty((image_size, image_size, 3), dtype=np.uint8)
    env = TriFingerPushEnv(image_size=image_size, camera=camera)
    env.reset(seed=0)
    action = target_to_action(DEFAULT_Q)
    t_env = t_raw = 0.0
    try:
        for _ in range(max(1, n_steps // chunk)):
            start = time.perf_counter()
            for _ in range(chunk):
                mujoco.mj_step(model, data, SUBSTEPS)
                renderer.update_scene(data, cam)
                renderer.render(out=out)
            t_raw += time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(chunk):
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()
            t_env += time.perf_counter() - start
    finally:
        renderer.close()
        env.close()
    n = max(1, n_steps // chunk) * chunk
    return {"env_steps_per_s": n / t_env, "raw_steps_per_s": n / t_raw, "ratio": t_raw / t_env}


if __name__ == "__main__":  # python -m envs.trifinger.bench
    for size in (64, 128):
        print(size, compare(size))
