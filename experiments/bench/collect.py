"""``sparseshift bench collect``: collection, storage and sampling speed, as ratios to limits
measured in the same run.

* collection (``sparseshift collect --kind video``, 1 worker) vs the raw env step+render loop with
  pre-sampled actions: goal >= 0.9x; 2 workers vs 1: goal >= 1.8x (the machine has 2 cores);
* the Sampler's images/s vs a conv VAE's training rate (750 images/s, reference/speeds.md):
  goal >= 20x, i.e. >= 234 batches/s of 64;
* storage: frames written with gzip-1 / lzf / no compression and 1, 8 or 32 frames per chunk:
  size ratio, full-load speed and random single-frame reads (the numbers in docs/datasets.md).

Envs that cannot be built yet are skipped with a note.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparseshift.experiments.bench.timing import Rate, format_row, interleaved

DESCRIPTION = "collection frames/s vs the raw env loop, 2 workers vs 1, sampler vs a conv VAE"
VAE_IMAGES_PER_S = 750.0  # disentanglement_lib conv VAE, batch 64, 2 threads (speeds.md)
#: Frames per measurement. ColourGrid collects ~15k frames/s, so 30k frames (2 s) were mostly
#: fixed costs (the writer process's start, the final flush); 150k frames (~10 s) measure the rate
#: of a dataset of realistic size. TriFinger: 4 parts, so two workers have work to share.
ENVS: dict[str, int] = {"sparseshift/ColourGrid-v0": 150_000,
                        "sparseshift/TriFingerPush-v0": 4_000}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply the frames per measurement (default 1.0)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    p.add_argument("--only", choices=("grid", "trifinger"), default=None, help="one env only")
    p.add_argument("--skip-storage", action="store_true", help="skip the compression table")


def raw_loop(env_id: str) -> Callable[[int], None]:
    """The limit: the env stepped with pre-sampled actions, rendering every frame."""
    from sparseshift.envs.registry import make

    env = make(env_id, colours="in+ood1", image_size=64)
    u: Any = env.unwrapped
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(256)]
    obs, _ = env.reset(seed=0)
    needs_render = not (isinstance(obs, np.ndarray) and obs.shape == (64, 64, 3))

    def run(n: int) -> None:
        for i in range(n):
            _, _, term, trunc, _ = env.step(actions[i % 256])
            if needs_render:
                u.render_frame()
            if term or trunc:
                env.reset()

    return run


def collect_loop(env_id: str, workers: int, root: Path) -> Callable[[int], None]:
    """Full ``collect`` runs (parts, compression, assembly) into fresh files under ``root``."""
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    def run(n: int) -> None:
        out = root / f"w{workers}-{time.monotonic_ns()}.h5"
        collect(CollectConfig(env_id, "video", n=n, colours="in+ood1"), out, workers=workers,
                progress=False)
        out.unlink()

    return run


def _loop(fn: Callable[[], object], images: int) -> Callable[[int], None]:
    """Call ``fn`` (which yields ``images`` images) often enough for ``n`` images."""

    def run(n: int) -> None:
        for _ in range(max(1, n // images)):
            fn()

    return run


def sampler_rates(path: Path, repeats: int) -> dict[str, Rate]:
    """Images/s of each Sampler method (batch 64; sequences 8 x 8) on an in-RAM video."""
    from sparseshift.envs.data import Sampler, open_dataset

    s = Sampler(open_dataset(path), seed=0)
    fns = {
        "sampler frames(64)": _loop(lambda: s.frames(64), 64),
        "sampler temporal_pairs(64, (1, 5)) (2 img)": _loop(
            lambda: s.temporal_pairs(64, (1, 5)), 128),
        "sampler sequences(8, 8)": _loop(lambda: s.sequences(8, 8), 64),
    }
    return interleaved(fns, "images/s", 64_000, repeats)


def storage_table(frames: np.ndarray, root: Path) -> list[str]:
    """Size, write, load and random-read speed of ``frames`` per compression and chunk size."""
    import h5py

    n = len(frames)
    rows_out = [f"  {'filter':<6} {'chunk':>5} {'ratio':>7} {'write f/s':>10} {'load f/s':>10} "
                f"{'random f/s':>10}"]
    idx = np.random.default_rng(0).integers(0, n, size=512)
    for comp, opts in (("gzip", 1), ("lzf", None), ("none", None)):
        for rows in (1, 8, 32):
            path = root / f"{comp}{rows}.h5"
            t0 = time.perf_counter()
            with h5py.File(path, "w") as f:
                f.create_dataset("frames", data=frames, chunks=(rows, *frames.shape[1:]),
                                 compression=None if comp == "none" else comp,
                                 compression_opts=opts)
            write = n / (time.perf_counter() - t0)
            loads, reads = [], []
            out = np.empty_like(frames)
            with h5py.File(path, "r") as f:
                d = f["frames"]
                for _ in range(3):
                    t0 = time.perf_counter()
                    d.read_direct(out)
                    loads.append(n / (time.perf_counter() - t0))
                    t0 = time.perf_counter()
                    for i in idx:
                        d.read_direct(out[:1], np.s_[i : i + 1])
                    reads.append(len(idx) / (time.perf_counter() - t0))
            ratio = frames.nbytes / os.path.getsize(path)
            rows_out.append(f"  {comp:<6} {rows:>5} {ratio:>6.1f}x {write:>10.0f} "
                            f"{np.median(loads):>10.0f} {np.median(reads):>10.0f}")
            path.unlink()
    return rows_out


def bench_env(env_id: str, n: int, repeats: int, storage: bool, root: Path) -> None:
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data import open_dataset
    from sparseshift.envs.data.config import CollectConfig

    print(f"\n== {env_id}: video collection, {n} frames per measurement, 64x64, random policy")
    rates = interleaved({"raw env step+render loop": raw_loop(env_id),
                         "collect, 1 worker": collect_loop(env_id, 1, root),
                         "collect, 2 workers": collect_loop(env_id, 2, root)},
                        "frames/s", n, repeats)
    raw = rates["raw env step+render loop"]
    print(format_row(raw))
    print(format_row(rates["collect, 1 worker"], raw, goal=0.9))
    print(format_row(rates["collect, 2 workers"], rates["collect, 1 worker"], goal=1.8))
    data = root / "sample.h5"
    collect(CollectConfig(env_id, "video", n=min(n, 20_000)), data, progress=False)
    vae = Rate("conv VAE training (reference)", "images/s", (VAE_IMAGES_PER_S,))
    for rate in sampler_rates(data, repeats).values():
        print(format_row(rate, vae, goal=20.0))
    if storage:
        frames = open_dataset(data).frames[:2048]
        print(f"storage of {len(frames)} frames ({frames.nbytes / 1e6:.1f} MB): compression "
              "ratio, write, full load (in RAM), random single-frame reads")
        print("\n".join(storage_table(frames, root)))
    data.unlink()


def run(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    try:
        for env_id, n in ENVS.items():
            if args.only and args.only not in env_id.lower():
                continue
            try:
                from sparseshift.envs.registry import make

                make(env_id).close()
            except Exception as exc:  # an env still being written: skip it, say why
                print(f"\n== {env_id}: skipped ({type(exc).__name__}: {exc})")
                continue
            bench_env(env_id, max(64, int(n * args.scale)), args.repeats,
                      not args.skip_storage, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0
