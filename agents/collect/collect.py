"""Resumable, parallel, deterministic collection of video and intervention-pair datasets.

The run is split into parts of ``part_rows`` rows that do not depend on the number of workers
(:mod:`sparseshift.envs.data.generate`). Finished parts go to ``OUT.parts/`` next to a manifest of
the resolved configuration; a run killed at any moment (even ``kill -9``) resumes from the parts
that exist, and a different configuration at the same output is refused. When every part exists
they are assembled into ``OUT`` (temp file + rename) and only then is ``OUT.parts/`` removed.

A collection removes only files it made, named exactly: the parts, manifest and buffers of its
run, and the temporary files of the processes it recorded in its lock's journal (a killed run's
are removed by the next run). ``OUT.parts`` may not be a symbolic link, and files of anyone else
in it (or next to ``OUT``) are left alone.

This module orchestrates a run. The collecting process makes parts with
:class:`~sparseshift.agents.collect.parts.PartMaker`, helped by the processes of
:mod:`sparseshift.agents.collect.workers` and optionally by the writer process of
:mod:`sparseshift.agents.collect.writer`; they talk through the messages of
:mod:`sparseshift.agents.collect.messages`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py

from sparseshift.agents.collect.parts import InOrder, PartMaker
from sparseshift.agents.collect.policies import policy_device
from sparseshift.agents.collect.resolve import resolve
from sparseshift.agents.collect.store import (
    Assembler,
    assemble,
    part_ok,
    part_path,
    write_json,
)
from sparseshift.agents.collect.workers import Helpers
from sparseshift.agents.collect.writer import SLOTS, Writer, slot_path
from sparseshift.envs.data.config import CollectConfig, Resolved
from sparseshift.envs.data.layout import FRAME_ARRAYS, dumps
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import (
    JOURNAL_FILE,
    LOCK_FILE,
    Journal,
    check_writable,
    disk_full,
    output_lock,
    remove_own_file,
)

__all__ = [
    "SLOTS",
    "WRITERS",
    "WRITER_MIN_ROWS",
    "CollectResult",
    "collect",
    "existing_config",
    "parts_dir",
]

#: Rows to make below which ``writer="auto"`` does not start a writer process (starting one
#: costs ~0.3 s of the other core; small runs are done before it could help).
WRITER_MIN_ROWS = 8192
#: Writer choices of :func:`collect`.
WRITERS: tuple[str, ...] = ("auto", "process", "inline")


@dataclass(frozen=True)
class CollectResult:
    """What :func:`collect` did: the dataset at ``path`` with ``n`` rows and its fingerprint."""

    path: Path
    status: str  # "written" or "complete" (an identical finished file was already there)
    n: int
    fingerprint: str


def parts_dir(out: Path) -> Path:
    """The folder holding the finished parts (and manifest) of an unfinished ``out``."""
    return out.with_name(out.name + ".parts")


def check_staging(out: Path) -> Path:
    """The staging folder of ``out`` (:func:`parts_dir`), refused (one-line ConfigError) when it
    is a symbolic link or a file: collect writes and removes files there."""
    directory = parts_dir(out)
    if directory.is_symlink():
        raise ConfigError(f"{directory} is a symbolic link; collect stages its parts in a folder "
                          "of its own there: remove the link or choose another --out")
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file, not a staging folder of collect: remove it "
                          "or choose another --out")
    return directory


def pid_temp(path: Path, pid: int) -> Path:
    """The temporary name process ``pid`` writes ``path`` under
    (:func:`sparseshift.agents.collect.store.tmp_name` in that process)."""
    return path.with_name(f".{path.name}.tmp{pid}")


def _recorded_pids(journal: Journal) -> set[int]:
    return {e["pid"] for e in journal.entries()
            if type(e.get("pid")) is int and 0 < e["pid"] < 1 << 22}


def _remove_pid_temps(directory: Path, out: Path, run: Resolved, pids: Iterable[int]) -> None:
    """Remove the temporary files the processes ``pids`` (recorded in the lock's journal) may
    have left: their temp names of this run's parts and of ``out``, exactly."""
    for pid in pids:
        remove_own_file(pid_temp(out, pid))
        for i in range(run.n_parts):
            remove_own_file(pid_temp(part_path(directory, i), pid))


def _remove_staging(directory: Path, run: Resolved) -> None:
    """Remove the files a collection of ``run`` keeps in its staging folder (exact names,
    regular files only; unlinking in parallel threads: each unlink of a freshly synced file
    waits ~4 ms on the filesystem journal, and concurrent ones share that wait), then the
    folder if nothing else is left in it."""
    from concurrent.futures import ThreadPoolExecutor

    names = [part_path(directory, i) for i in range(run.n_parts)]
    names += [slot_path(directory, k, n) for k in range(SLOTS) for n in run.arrays
              if n in FRAME_ARRAYS]
    names += [directory / "manifest.json", directory / JOURNAL_FILE, directory / LOCK_FILE]
    with ThreadPoolExecutor(min(16, len(names))) as pool:
        for _ in pool.map(remove_own_file, names):
            pass
    try:
        directory.rmdir()
    except OSError:
        pass  # someone else's files are in it: theirs to remove


def _finish_staging(directory: Path, out: Path, run: Resolved) -> None:
    """Remove the staging folder a finished collection left (killed after the rename)."""
    if not directory.is_dir():
        return
    try:
        with output_lock(directory) as journal:
            _remove_pid_temps(directory, out, run, _recorded_pids(journal))
    except ConfigError:
        return  # another collection of ``out`` holds it
    _remove_staging(directory, run)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) and check that it can be written (one-line
    ConfigError, before any work)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"cannot create {folder}: a file is in the way") from None
    except OSError as exc:
        what = "the disk is full" if disk_full(exc) else exc.strerror or str(exc)
        raise ConfigError(f"cannot create {folder} ({what}); use another --out") from None
    check_writable(folder)


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def existing_config(out: Path) -> tuple[dict[str, Any], str]:
    """The collector manifest and fingerprint of a finished dataset at ``out``."""
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; give the dataset's file path")
    try:
        with h5py.File(out, "r") as f:
            return json.loads(f.attrs["collector"]), str(f.attrs["fingerprint"])
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{out} exists and is not a sparseshift dataset ({exc}); "
                          "not overwriting it") from None


def _check_same(manifest: dict[str, Any], other: dict[str, Any], what: str) -> None:
    old = other.get("format_version")
    if isinstance(old, int) and old != manifest["format_version"]:
        raise ConfigError(f"{what} holds a format-{old} collection; this sparseshift collects "
                          f"format {manifest['format_version']} (and still reads format {old}): "
                          "choose another --out or remove it")
    diff = _differences(manifest, other)
    if diff:
        raise ConfigError(f"{what} was collected with a different configuration (differs in "
                          f"{', '.join(diff)}); not overwriting it: choose another --out or "
                          "remove it")


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
             advance: Callable[[int], None], writer: str, journal: Journal) -> str:
    """Build the parts ``todo`` and assemble ``out``; return its fingerprint.

    This process works too, helped by ``workers - 1`` processes (so work starts at once while
    helpers spend a second or two importing and building envs). With a writer process (see
    :func:`_use_writer`) this process's parts are compressed and written there and the writer
    builds the final file; otherwise this process writes its parts and builds the final file.
    Either way finished parts are added to the final file (in order) while others are still
    being made, so little is left to do at the end.

    The process id of every process started is recorded in ``journal`` as soon as it starts
    (it imports for a second or more before it writes anything), so that the temporary files
    it may leave are known exactly.
    """
    cfg = run.config
    count = min(workers, len(todo)) - 1
    sink = Writer(run, directory, out) if _use_writer(writer, run, todo, workers) else None
    if sink is not None and sink.proc.pid is not None:
        journal.record({"pid": sink.proc.pid})
    order: InOrder | None = None
    finished: Callable[[int], None]
    if sink is not None:
        finished = sink.file
    else:
        order = InOrder(Assembler(out, cfg.kind, cfg.n, cfg.part_rows, run.arrays), directory)
        finished = order.done
    helpers: Helpers | None = None
    try:
        for i in sorted(set(range(run.n_parts)) - set(todo)):
            finished(i)
        if count > 0:
            helpers = Helpers(run, directory, todo, count, advance, finished)
            for proc in helpers.procs:
                if proc.pid is not None:
                    journal.record({"pid": proc.pid})

        def progress(k: int) -> None:
            advance(k)
            if helpers is not None:
                helpers.poll()

        maker = PartMaker(run)
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
    """The root attributes of the final file (besides those the assembly adds)."""
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
    cfg: CollectConfig, out: str | os.PathLike[str], workers: int = 1, progress: bool = True,
    writer: str = "auto", device: str = "cpu",
) -> CollectResult:
    """Collect (or resume, or recognise as complete) the dataset ``cfg`` at ``out``.

    ``device``: the torch device a trained agent's policy runs on (auto, cpu, cuda, cuda:N, mps;
    checked before any work). Like ``workers`` it is a runtime setting, not part of the manifest
    or the fingerprint. An accelerator's floating-point results can differ from the CPU's in the
    last bits, which can flip an action at a near tie: the data are reproducible on one device,
    not necessarily across devices (and a run resumed on another device may mix both).

    ``writer``: ``"process"`` hands this process's parts to a writer process (compression,
    part files and the final file run there, beside the stepping), ``"inline"`` writes them
    here, ``"auto"`` (default) uses a writer process when there are two or more CPUs and at
    least :data:`WRITER_MIN_ROWS` rows to make. The output is the same either way.
    """
    out = Path(out)
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    torch_device = policy_device(device)
    if writer not in WRITERS:
        raise ConfigError(f"writer must be one of {', '.join(WRITERS)}, got {writer!r}")
    run = replace(resolve(cfg), device=torch_device)
    manifest = json.loads(dumps(run.to_json()))
    directory = check_staging(out)
    if out.exists():
        existing, digest = existing_config(out)
        _check_same(manifest, existing, str(out))
        _finish_staging(directory, out, run)  # left over if killed after the rename
        return CollectResult(out, "complete", cfg.n, digest)
    _make_folder(out.parent)
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory} ({exc.strerror or exc}); use another "
                          "--out") from None
    with output_lock(directory) as journal:
        # The temporary files a killed run's processes left: exactly their names, nothing else.
        _remove_pid_temps(directory, out, run, _recorded_pids(journal))
        journal.record({"pid": os.getpid()})
        try:
            digest = _collect(run, manifest, directory, out, workers, progress, writer, journal)
        finally:  # what a failed process left (they have all ended by now)
            _remove_pid_temps(directory, out, run, _recorded_pids(journal))
    _remove_staging(directory, run)
    return CollectResult(out, "written", cfg.n, digest)


def _collect(run: Resolved, manifest: dict[str, Any], directory: Path, out: Path, workers: int,
             progress: bool, writer: str, journal: Journal) -> str:
    """Make the missing parts of ``run`` in ``directory`` and assemble ``out`` (the lock on
    ``directory`` is held); return the fingerprint."""
    cfg = run.config
    mpath = directory / "manifest.json"
    if mpath.exists():
        _check_same(manifest, json.loads(mpath.read_text()), str(directory))
    else:
        write_json(mpath, manifest)

    def rows(i: int) -> int:
        return run.part_range(i)[1] - run.part_range(i)[0]

    todo = [i for i in range(run.n_parts)
            if not part_ok(part_path(directory, i), run.arrays, rows(i))]
    done_rows = cfg.n - sum(rows(i) for i in todo)
    from tqdm import tqdm

    parts = [part_path(directory, i) for i in range(run.n_parts)]
    with tqdm(total=cfg.n, initial=done_rows, unit=" frames" if cfg.kind == "video" else
              " pairs", desc=f"collect {out.name}", file=sys.stderr, disable=not progress,
              smoothing=0.1) as bar:
        if todo:
            return _produce(run, directory, out, todo, workers, bar.update, writer, journal)
        return assemble(out, parts, cfg.kind, cfg.n, cfg.part_rows, _attrs(run), run.arrays)
