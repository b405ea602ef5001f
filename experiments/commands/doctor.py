"""``sparseshift doctor``: what a user needs to know when something is slow or broken.

Versions (Python, sparseshift, torch, MuJoCo, Stable-Baselines3, gymnasium), torch's threads and
the devices it can use, the headless GL backend MuJoCo renders with and the OpenGL vendor and
renderer behind it (``llvmpipe`` is Mesa's software rasteriser: every frame is drawn by the CPU),
and two short speed probes: env steps of TriFingerObjectReach with 64 px pixels, and training
steps of the default conv VAE on the chosen device.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

NAME = "doctor"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="print versions, devices, the GL renderer and quick speed probes",
        description=("Print what matters when sparseshift is slow or broken: versions, torch "
                     "threads and devices, the GL backend with its vendor/renderer string, and "
                     "a 2-second render and training speed probe."),
    )
    p.add_argument("--device", default="auto",
                   help="device of the training probe (auto, cpu, cuda, cuda:N, mps; default auto)")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="seconds per speed probe (default 1)")
    p.set_defaults(func=run)


def gl_info() -> dict[str, str]:
    """MuJoCo's GL backend and the OpenGL vendor/renderer/version of a context it creates."""
    import sparseshift.envs.trifinger  # noqa: F401  (selects the backend)

    info = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "?"),
            "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", "(unset)")}
    import mujoco

    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='0.1'/></worldbody>"
                                           "</mujoco>")
    renderer = mujoco.Renderer(model, 16, 16)
    try:
        from OpenGL import GL

        for key, enum in (("vendor", GL.GL_VENDOR), ("renderer", GL.GL_RENDERER),
                          ("version", GL.GL_VERSION)):
            raw = GL.glGetString(enum)
            info[key] = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception as exc:  # the backend works but cannot be queried: say so, do not fail
        info["renderer"] = f"unknown ({type(exc).__name__}: {exc})"
    finally:
        renderer.close()
    return info


def render_probe(seconds: float) -> float:
    """TriFingerObjectReach steps/s with 64 px pixel observations."""
    import numpy as np

    from sparseshift.envs.registry import make

    env = make("sparseshift/TriFingerObjectReach-v0", obs_mode="pixels")
    try:
        env.reset(seed=0)
        action = np.zeros(env.action_space.shape or (), dtype=np.float32)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            _, _, term, trunc, _ = env.step(action)
            n += 1
            if term or trunc:
                env.reset()
        return n / (time.perf_counter() - t0)
    finally:
        env.close()


def train_probe(device: str, seconds: float) -> tuple[str, float]:
    """Images/s of the default conv VAE's training step (batch 64) on ``device``."""
    import torch

    from sparseshift.representations.registry import make_learner
    from sparseshift.representations.runtime import resolve_device

    dev = resolve_device(device)
    learner = make_learner("beta_vae").to(dev)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (64, 64, 64, 3), dtype=torch.uint8, device=dev)
    gen = torch.Generator().manual_seed(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        loss = learner.loss({"x": x}, generator=gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += 1
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return str(dev), 64 * n / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> int:
    from importlib import metadata

    import torch

    from sparseshift.envs.infra.config import check_number
    from sparseshift.representations.runtime import available_devices

    seconds = check_number("--seconds", args.seconds, 0.1, 60.0)
    rows: list[tuple[str, str]] = [("python", platform.python_version()),
                                   ("platform", platform.platform())]
    for dist in ("sparseshift", "torch", "mujoco", "stable-baselines3", "gymnasium", "numpy"):
        try:
            rows.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            rows.append((dist, "not installed"))
    rows.append(("cpus", str(os.cpu_count())))
    rows.append(("torch threads", str(torch.get_num_threads())))
    cuda = torch.version.cuda or "none (CPU build)"
    rows.append(("torch CUDA", cuda))
    devices = available_devices()
    names = [d if not d.startswith("cuda") else
             f"{d} ({torch.cuda.get_device_name(int(d.split(':')[1]))})" for d in devices]
    rows.append(("devices", ", ".join(names)))
    for key, value in gl_info().items():
        rows.append((f"GL {key}", value))
    rows.append(("render probe", f"{render_probe(seconds):.0f} steps/s "
                                 "(TriFingerObjectReach, 64 px pixels)"))
    dev, rate = train_probe(args.device, seconds)
    rows.append(("train probe", f"{rate:.0f} images/s (conv VAE, batch 64, {dev})"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
