"""Resumable, parallel, deterministic collection of video and intervention-pair datasets.

The run is split into parts of ``part_rows`` rows that do not depend on the number of workers
(:mod:`sparseshift.envs.data.generate`). Finished parts go to ``OUT.parts/`` next to a manifest of
the resolved
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

from sparseshift.envs.data.config import CollectConfig, Resolved, make_env, resolve
from sparseshift.envs.data.generate import Progress, pairs_part, video_part
from sparseshift.envs.data.layout import FRAME_ARRAYS, arrays_of, dumps
from sparseshift.envs.data.policies import policy_factory
from sparseshift.envs.data.store import (
    Assembler,
    assemble,
    part_ok,
    part_path,
    remove_tree,
    write_json,
    write_part,
)
from sparseshift.envs.errors import ConfigError

#: Part buffers shared with the writer process: the collecting process renders a part into a
#: free one while the writer compresses and writes the earlier ones.
SLOTS = 3
#: Rows to make below which ``writer="auto"`` does not start a writer process (starting one
#: costs ~0.3 s of the other core; small runs are done before it could help).
WRITER_MIN_ROWS = 8192
#: Writer choices of :func:`collect`.
WRITERS: tuple[str, ...] = ("auto", "process", "inline")


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

    :meth:`write` compresses and writes in this process; the collecting process can hand its
    parts to a :class:`_Writer` process instead (a writer *thread* was tried and lost, because
    every compressed chunk must re-acquire the GIL from the stepping thread).
    """

    def __init__(self, run: Resolved) -> None:
        self.run = run
        self.env: gym.Env[Any, Any] = make_env(run)
        self.factory = policy_factory(run.policy, self.env) if run.config.kind == "video" else None
        s = int(run.config.image_size)
        # one frame buffer reused for every part: a fresh one page-faults on every frame
        self._frames = np.empty((run.config.part_rows, s, s, 3), np.uint8) if self.factory else None

    def make(self, index: int, progress: Progress,
             buffers: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The arrays of part ``index`` (frames rendered into ``buffers`` when given)."""
        if self.factory is not None:
            frames = buffers["frames"] if buffers else self._frames
            return video_part(self.run, self.env, self.factory, index, progress, frames)
        return pairs_part(self.run, self.env, index, progress, buffers)

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

    # llvmpipe (Mesa's CPU GL) rasterises in one thread per core by default: with a process per
    # core those threads only contend, so workers render in their own thread (unless set).
    os.environ.setdefault("LP_NUM_THREADS", "0")
    try:
        maker = _PartMaker(Resolved.from_json(manifest))
        try:
            while (index := tasks.get()) is not None:
                maker.write(Path(directory), index, report)
                results.put(("part", index))
        finally:
            maker.close()
        results.put(("finished", os.getpid()))
    except BaseException as exc:
        results.put(("error", isinstance(exc, ConfigError), f"{type(exc).__name__}: {exc}"))
    else:
        results.close()
        results.join_thread()
        os._exit(0)  # done: skip the interpreter's teardown, which the collector awaits


class _Helpers:
    """``count`` helper processes sharing a task queue with the collecting process."""

    def __init__(self, run: Resolved, directory: Path, todo: list[int], count: int,
                 advance: Callable[[int], None], finished: Callable[[int], None]) -> None:
        ctx = mp.get_context("spawn")  # fork is unsafe with GL contexts and threads
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        for index in todo:
            self.tasks.put(index)
        for _ in range(count + 1):
            self.tasks.put(None)
        self.advance, self.finished = advance, finished
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
            elif msg[0] == "part":
                self.finished(msg[1])
            elif msg[0] == "finished":
                self.running -= 1
            else:
                raise (ConfigError if msg[1] else RuntimeError)(f"collection worker: {msg[2]}")

    def stop(self) -> None:
        if self.running:  # unread tasks must not block this process's exit
            self.tasks.cancel_join_thread()
        for p in self.procs:
            if self.running and p.is_alive():
                p.terminate()
            p.join()


class _InOrder:
    """Adds finished parts to an :class:`Assembler` in index order, as soon as each one and all
    before it are on disk."""

    def __init__(self, asm: Assembler, directory: Path) -> None:
        self.asm, self.directory = asm, directory
        self.ready: set[int] = set()

    def done(self, index: int) -> None:
        self.ready.add(index)

    def drain(self) -> None:
        while self.asm.added in self.ready:
            self.ready.discard(self.asm.added)
            self.asm.add(part_path(self.directory, self.asm.added))


def _writer_main(manifest: dict[str, Any], directory: str, out: str,
                 slots: list[dict[str, str]], inbox: Any, free: Any, results: Any,
                 parent: int) -> None:
    """The writer process: write the parts it is sent, add finished parts to the final file in
    index order, and finish it when told; exit if the collecting process dies."""
    try:
        run = Resolved.from_json(manifest)
        cfg = run.config
        s, rows = int(cfg.image_size), cfg.part_rows
        bufs = [{name: np.memmap(path, np.uint8, "r", shape=(rows, s, s, 3)).view(np.ndarray)
                 for name, path in slot.items()} for slot in slots]
        asm = Assembler(Path(out), cfg.kind, cfg.n, rows)
        order = _InOrder(asm, Path(directory))
        try:
            while True:
                try:
                    msg = inbox.get(timeout=1.0)
                except queue.Empty:
                    if os.getppid() != parent:  # killed: a resumed run redoes the assembly
                        os._exit(1)
                    continue
                if msg[0] == "part":
                    _, index, slot, small = msg
                    start, stop = run.part_range(index)
                    arrays = {name: bufs[slot][name][: stop - start] if name in FRAME_ARRAYS
                              else small[name] for name in arrays_of(cfg.kind)}
                    write_part(part_path(Path(directory), index), arrays, rows)
                    free.put(slot)
                    order.done(index)
                elif msg[0] == "file":
                    order.done(msg[1])
                order.drain()
                if msg[0] == "finish":
                    if asm.added != run.n_parts:
                        raise RuntimeError(f"writer: {asm.added} of {run.n_parts} parts arrived")
                    results.put(("finished", asm.finish(msg[1])))
                    results.close()
                    results.join_thread()
                    os._exit(0)  # done: skip the interpreter's teardown, which the collector awaits
        except BaseException:
            asm.abort()
            raise
    except BaseException as exc:
        results.put(("error", isinstance(exc, ConfigError), f"{type(exc).__name__}: {exc}"))


class _Writer:
    """A process that compresses and writes the collecting process's parts and builds the final
    file while parts are still being made, so the collecting process only steps its env.

    Frames are rendered straight into one of :data:`SLOTS` buffers (files in the parts folder,
    memory-mapped by both processes: nothing is copied); the rest of a part (small) is sent
    through a queue. When no buffer is free the collecting process writes the part itself, so
    it never waits for the writer (which takes a moment to start).
    """

    def __init__(self, run: Resolved, directory: Path, out: Path) -> None:
        ctx = mp.get_context("spawn")
        self.inbox, self.free, self.results = ctx.Queue(), ctx.Queue(), ctx.Queue()
        cfg = run.config
        s = int(cfg.image_size)
        names = [n for n in arrays_of(cfg.kind) if n in FRAME_ARRAYS]
        paths = [{n: str(directory / f"slot{k}-{n}.buf") for n in names} for k in range(SLOTS)]
        shape = (cfg.part_rows, s, s, 3)
        self.slots: list[dict[str, np.ndarray]] = [
            {n: np.memmap(p, np.uint8, "w+", shape=shape).view(np.ndarray)
             for n, p in slot.items()}
            for slot in paths]
        self._idle = list(range(SLOTS))
        self.out = out
        self.proc = ctx.Process(target=_writer_main, daemon=True, args=(
            run.to_json(), str(directory), str(out), paths, self.inbox, self.free, self.results,
            os.getpid()))
        self.proc.start()
        self.done = False

    def slot(self) -> int | None:
        """A free buffer, or None if every one is still being written."""
        self._check()
        if not self._idle:
            try:
                self._idle.append(self.free.get_nowait())
            except queue.Empty:
                return None
        return self._idle.pop()

    def part(self, index: int, slot: int, arrays: dict[str, np.ndarray]) -> None:
        """Part ``index`` is in buffer ``slot`` (frames) and ``arrays`` (everything else)."""
        small = {k: v for k, v in arrays.items() if k not in FRAME_ARRAYS}
        self.inbox.put(("part", index, slot, small))

    def file(self, index: int) -> None:
        """Part ``index`` is on disk."""
        self.inbox.put(("file", index))

    def finish(self, attrs: dict[str, Any]) -> str:
        """Have the writer finish the final file; return its fingerprint."""
        self.inbox.put(("finish", attrs))
        while True:
            try:
                msg = self.results.get(timeout=1.0)
            except queue.Empty:
                if not self.proc.is_alive():
                    raise RuntimeError("the collection writer died without reporting") from None
                continue
            self._raise(msg)
            self.done = True
            return str(msg[1])

    def _check(self) -> None:
        try:
            self._raise(self.results.get_nowait())
        except queue.Empty:
            pass

    @staticmethod
    def _raise(msg: tuple[Any, ...]) -> None:
        if msg[0] == "error":
            raise (ConfigError if msg[1] else RuntimeError)(f"collection writer: {msg[2]}")

    def stop(self) -> None:
        if not self.done:
            # Messages the writer will never read must not block this process's exit (the
            # queue's feeder thread would wait forever on a pipe nobody drains).
            self.inbox.cancel_join_thread()
            if self.proc.is_alive():
                self.proc.terminate()
        self.proc.join()
        if not self.done and self.proc.pid is not None:
            tmp = self.out.with_name(f".{self.out.name}.tmp{self.proc.pid}")
            tmp.unlink(missing_ok=True)


def _use_writer(writer: str, run: Resolved, todo: list[int], workers: int) -> bool:
    """Whether the collecting process hands its parts to a writer process: with ``auto``, when
    a CPU is left over by the workers and there is enough to do."""
    if writer != "auto":
        return writer == "process"
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return (cpus > min(workers, len(todo)) and len(todo) > 1
            and len(todo) * run.config.part_rows >= WRITER_MIN_ROWS)


def _produce(run: Resolved, directory: Path, out: Path, todo: list[int], workers: int,
             advance: Callable[[int], None], writer: str) -> str:
    """Build the parts ``todo`` and assemble ``out``; return its fingerprint.

    This process works too, helped by ``workers - 1`` processes (so work starts at once while
    helpers spend a second or two importing and building envs). With a writer process (see
    :func:`_use_writer`) this process's parts are compressed and written there and the writer
    builds the final file; otherwise this process writes its parts and builds the final file.
    Either way finished parts are added to the final file (in order) while others are still
    being made, so little is left to do at the end.
    """
    cfg = run.config
    count = min(workers, len(todo)) - 1
    sink = _Writer(run, directory, out) if _use_writer(writer, run, todo, workers) else None
    order: _InOrder | None = None
    finished: Callable[[int], None]
    if sink is not None:
        finished = sink.file
    else:
        order = _InOrder(Assembler(out, cfg.kind, cfg.n, cfg.part_rows), directory)
        finished = order.done
    helpers: _Helpers | None = None
    try:
        for i in sorted(set(range(run.n_parts)) - set(todo)):
            finished(i)
        if count > 0:
            helpers = _Helpers(run, directory, todo, count, advance, finished)

        def progress(k: int) -> None:
            advance(k)
            if helpers is not None:
                helpers.poll()

        maker = _PartMaker(run)
        try:
            own = iter(todo) if helpers is None else iter(helpers.tasks.get, None)
            for index in own:
                slot = sink.slot() if sink is not None else None
                if sink is not None and slot is not None:
                    sink.part(index, slot, maker.make(index, progress, sink.slots[slot]))
                    continue
                maker.write(directory, index, progress)
                finished(index)
                if order is not None:
                    order.drain()
        finally:
            maker.close()
        while helpers is not None and helpers.running:
            helpers.poll(timeout=1.0)
        if sink is not None:
            return sink.finish(_attrs(run))
        assert order is not None
        order.drain()
        if order.asm.added != run.n_parts:
            raise RuntimeError(f"{order.asm.added} of {run.n_parts} parts were made")
        return order.asm.finish(_attrs(run))
    except BaseException:
        if order is not None:
            order.asm.abort()
        raise
    finally:
        if helpers is not None:
            helpers.stop()
        if sink is not None:
            sink.stop()


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
    cfg: CollectConfig, out: Path, workers: int = 1, progress: bool = True, writer: str = "auto"
) -> CollectResult:
    """Collect (or resume, or recognise as complete) the dataset ``cfg`` at ``out``.

    ``writer``: ``"process"`` hands this process's parts to a writer process (compression,
    part files and the final file run there, beside the stepping), ``"inline"`` writes them
    here, ``"auto"`` (default) uses a writer process when there are two or more CPUs and at
    least :data:`WRITER_MIN_ROWS` rows to make. The output is the same either way.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if writer not in WRITERS:
        raise ConfigError(f"writer must be one of {', '.join(WRITERS)}, got {writer!r}")
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

        for stale in out.parent.glob(f".{out.name}.tmp*"):  # a killed assembly's temp file
            stale.unlink()
        parts = [part_path(directory, i) for i in range(run.n_parts)]
        with tqdm(total=cfg.n, initial=done_rows, unit=" frames" if cfg.kind == "video" else
                  " pairs", desc=f"collect {out.name}", file=sys.stderr, disable=not progress,
                  smoothing=0.1) as bar:
            if todo:
                digest = _produce(run, directory, out, todo, workers, bar.update, writer)
            else:
                digest = assemble(out, parts, cfg.kind, cfg.n, cfg.part_rows, _attrs(run))
    remove_tree(directory)
    return CollectResult(out, "written", cfg.n, digest)
