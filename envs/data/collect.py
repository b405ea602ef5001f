"""Resumable, parallel, deterministic collection of video and intervention-pair datasets.

The run is split into parts of ``part_rows`` rows that do not depend on the number of workers
(:mod:`envs.data.generate`). Finished parts go to ``OUT.parts/`` next to a manifest of the resolved
configuration; a run killed at any moment (even ``kill -9``) resumes from the parts that exist,
and a different configuration at the same output is refused. When every part exists they are
assembled into ``OUT`` (temp file + rename) and only then is ``OUT.parts/`` removed.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing as mp
import os
import queue
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from envs.data.config import CollectConfig, Resolved, make_env, resolve
from envs.data.generate import Progress, pairs_part, video_part
from envs.data.layout import dumps
from envs.data.policies import policy_factory
from envs.data.store import assemble, part_ok, part_path, write_json, write_part
from envs.errors import ConfigError


@dataclass(frozen=True)
class CollectResult:
    path: Path
    status: str  # "written" or "complete" (an identical finished file was already there)
    n: int
    fingerprint: str


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def existing_config(out: Path) -> tuple[dict[str, Any], str]:
    """The collector manifest and fingerprint of a finished dataset at ``out``."""
    try:
        with h5py.File(out, "r") as f:
            return json.loads(f.attrs["collector"]), str(f.attrs["fingerprint"])
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{out} exists and is not a sparseshift dataset ({exc}); "
                          "not overwriting it") from None


def _check_same(manifest: dict[str, Any], other: dict[str, Any], what: str) -> None:
    diff = _differences(manifest, other)
    if diff:
        raise ConfigError(f"{what} was collected with a different configuration (differs in "
                          f"{', '.join(diff)}); not overwriting it: choose another --out or "
                          "remove it")


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (released by the kernel even on kill -9)."""
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another collection is writing {directory}") from None
        yield
    finally:
        os.close(fd)


class _PartMaker:
    """Builds and writes the parts of one run with one env (one per worker process).

    Writing is synchronous: a writer thread was tried and lost, because every compressed chunk
    must re-acquire the GIL from the stepping thread (up to a 5 ms switch interval each).
    """

    def __init__(self, run: Resolved) -> None:
        self.run = run
        self.env: gym.Env[Any, Any] = make_env(run)
        self.factory = policy_factory(run.policy, self.env) if run.config.kind == "video" else None
        s = int(run.config.image_size)
        # one frame buffer reused for every part: a fresh one page-faults on every frame
        self._frames = np.empty((run.config.part_rows, s, s, 3), np.uint8) if self.factory else None

    def make(self, index: int, progress: Progress) -> dict[str, np.ndarray]:
        if self.factory is not None:
            return video_part(self.run, self.env, self.factory, index, progress, self._frames)
        return pairs_part(self.run, self.env, index, progress)

    def write(self, directory: Path, index: int, progress: Progress) -> None:
        """Generate part ``index`` and write it atomically."""
        arrays = self.make(index, progress)
        write_part(part_path(directory, index), arrays, self.run.config.part_rows)

    def close(self) -> None:
        self.env.close()


def _worker(
    manifest: dict[str, Any], directory: str, tasks: Any, results: Any, parent: int
) -> None:
    """Helper process: build parts from ``tasks`` until a ``None``; stop if the parent dies."""

    def report(k: int) -> None:
        if os.getppid() != parent:  # the collector was killed: leave the rest to a resumed run
            os._exit(1)
        results.put(("progress", k))

    try:
        maker = _PartMaker(Resolved.from_json(manifest))
        try:
            while (index := tasks.get()) is not None:
                maker.write(Path(directory), index, report)
        finally:
            maker.close()
        results.put(("finished", os.getpid()))
    except BaseException as exc:
        results.put(("error", isinstance(exc, ConfigError), f"{type(exc).__name__}: {exc}"))


class _Helpers:
    """``count`` helper processes sharing a task queue with the collecting process."""

    def __init__(self, run: Resolved, directory: Path, todo: list[int], count: int,
                 advance: Callable[[int], None]) -> None:
        ctx = mp.get_context("spawn")  # fork is unsafe with GL contexts and threads
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        for index in todo:
            self.tasks.put(index)
        for _ in range(count + 1):
            self.tasks.put(None)
        self.advance = advance
        self.running = count
        self.procs = [ctx.Process(target=_worker, daemon=True, args=(
            run.to_json(), str(directory), self.tasks, self.results, os.getpid()))
            for _ in range(count)]
        for p in self.procs:
            p.start()

    def poll(self, timeout: float | None = None) -> None:
        """Handle the helpers' messages (waiting up to ``timeout`` for the first)."""
        while self.running:
            try:
                msg = self.results.get(timeout=timeout) if timeout else self.results.get_nowait()
            except queue.Empty:
                if timeout and not any(p.is_alive() for p in self.procs):
                    raise RuntimeError("collection workers died without reporting") from None
                return
            if msg[0] == "progress":
                self.advance(msg[1])
            elif msg[0] == "finished":
                self.running -= 1
            else:
                raise (ConfigError if msg[1] else RuntimeError)(f"collection worker: {msg[2]}")

    def stop(self) -> None:
        for p in self.procs:
            if self.running and p.is_alive():
                p.terminate()
            p.join()


def _produce(run: Resolved, directory: Path, todo: list[int], workers: int,
             advance: Callable[[int], None]) -> None:
    """Build the parts ``todo``: this process works too, helped by ``workers - 1`` processes
    (so work starts at once while helpers spend a second or two importing and building envs)."""
    count = min(workers, len(todo)) - 1
    helpers = _Helpers(run, directory, todo, count, advance) if count > 0 else None

    def progress(k: int) -> None:
        advance(k)
        if helpers is not None:
            helpers.poll()

    try:
        maker = _PartMaker(run)
        try:
            own = iter(todo) if helpers is None else iter(helpers.tasks.get, None)
            for index in own:
                maker.write(directory, index, progress)
        finally:
            maker.close()
        while helpers is not None and helpers.running:
            helpers.poll(timeout=1.0)
    finally:
        if helpers is not None:
            helpers.stop()


def _attrs(run: Resolved) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str] = {"hdf5": h5py.version.hdf5_version}
    for pkg in ("sparseshift", "numpy", "h5py", "gymnasium", "mujoco", "stable-baselines3"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    cfg = run.config
    return {
        "env_id": cfg.env_id, "env_kwargs": run.env_kwargs, "colours": run.env_kwargs["colours"],
        "colour_scheme": run.env_info["colour_scheme"],
        "render_preset": run.env_kwargs.get("render_preset", "none"), "image_size": cfg.image_size,
        "factor_spec": run.env_info["factor_spec"], "seed": cfg.seed, "part_rows": cfg.part_rows,
        "collector": run.to_json(), "versions": versions,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def collect(
    cfg: CollectConfig, out: Path, workers: int = 1, progress: bool = True
) -> CollectResult:
    """Collect (or resume, or recognise as complete) the dataset ``cfg`` at ``out``."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    run = resolve(cfg)
    manifest = json.loads(dumps(run.to_json()))
    directory = parts_dir(out)
    if out.exists():
        existing, digest = existing_config(out)
        _check_same(manifest, existing, str(out))
        shutil.rmtree(directory, ignore_errors=True)  # left over if killed after the rename
        return CollectResult(out, "complete", cfg.n, digest)
    out.parent.mkdir(parents=True, exist_ok=True)
    directory.mkdir(exist_ok=True)
    with _locked(directory):
        mpath = directory / "manifest.json"
        if mpath.exists():
            _check_same(manifest, json.loads(mpath.read_text()), str(directory))
        else:
            write_json(mpath, manifest)
        def rows(i: int) -> int:
            return run.part_range(i)[1] - run.part_range(i)[0]

        todo = [i for i in range(run.n_parts)
                if not part_ok(part_path(directory, i), cfg.kind, rows(i))]
        done_rows = cfg.n - sum(rows(i) for i in todo)
        from tqdm import tqdm

        with tqdm(total=cfg.n, initial=done_rows, unit=" frames" if cfg.kind == "video" else
                  " pairs", desc=f"collect {out.name}", file=sys.stderr, disable=not progress,
                  smoothing=0.1) as bar:
            if todo:
                _produce(run, directory, todo, workers, bar.update)
        for stale in out.parent.glob(f".{out.name}.tmp*"):  # a killed assembly's temp file
            stale.unlink()
        parts = [part_path(directory, i) for i in range(run.n_parts)]
        digest = assemble(out, parts, cfg.kind, cfg.n, cfg.part_rows, _attrs(run))
    shutil.rmtree(directory)
    return CollectResult(out, "written", cfg.n, digest)
