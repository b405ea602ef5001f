"""The writer process: compresses and writes the collecting process's parts and builds the final
file while parts are still being made, so the collecting process only steps its env."""

from __future__ import annotations

import os
import queue
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import numpy as np

from sparseshift.agents.collect.messages import (
    WRITER,
    Assembled,
    Failed,
    Finish,
    PartInSlot,
    PartWritten,
    SlotFree,
    WriterCommand,
    WriterReport,
)
from sparseshift.agents.collect.parts import InOrder, write_part_or_nothing
from sparseshift.agents.collect.store import Assembler, part_path
from sparseshift.agents.procs import exit_if_orphaned, exit_reported, spawn_context
from sparseshift.envs.data.config import Resolved
from sparseshift.envs.data.layout import FRAME_ARRAYS
from sparseshift.envs.infra.errors import ConfigError

#: Part buffers shared with the writer process: the collecting process renders a part into a
#: free one while the writer compresses and writes the earlier ones.
SLOTS = 3


def slot_path(directory: Path, slot: int, name: str) -> Path:
    """The file backing array ``name`` of part buffer ``slot`` in the parts folder."""
    return directory / f"slot{slot}-{name}.buf"


def writer_main(manifest: dict[str, Any], directory: str, out: str,
                slots: list[dict[str, str]], inbox: Queue[WriterCommand], free: Queue[SlotFree],
                results: Queue[WriterReport], parent: int) -> None:
    """The writer process: write the parts it is sent, add finished parts to the final file in
    index order, and finish it when told; exit if the collecting process dies."""
    try:
        run = Resolved.from_json(manifest)
        cfg = run.config
        s, rows = int(cfg.image_size), cfg.part_rows
        bufs = [{name: np.memmap(path, np.uint8, "r", shape=(rows, s, s, 3)).view(np.ndarray)
                 for name, path in slot.items()} for slot in slots]
        asm = Assembler(Path(out), cfg.kind, cfg.n, rows, run.arrays)
        order = InOrder(asm, Path(directory))
        try:
            while True:
                try:
                    msg = inbox.get(timeout=1.0)
                except queue.Empty:
                    exit_if_orphaned(parent)  # killed: a resumed run redoes the assembly
                    continue
                if isinstance(msg, PartInSlot):
                    start, stop = run.part_range(msg.index)
                    arrays = {name: bufs[msg.slot][name][: stop - start] if name in FRAME_ARRAYS
                              else msg.arrays[name] for name in run.arrays}
                    write_part_or_nothing(part_path(Path(directory), msg.index), arrays, rows)
                    free.put(SlotFree(msg.slot))
                    order.done(msg.index)
                elif isinstance(msg, PartWritten):
                    order.done(msg.index)
                order.drain()
                if isinstance(msg, Finish):
                    if asm.added != run.n_parts:
                        raise RuntimeError(f"writer: {asm.added} of {run.n_parts} parts arrived")
                    results.put(Assembled(asm.finish(msg.attrs)))
                    exit_reported(results)  # done: skip the teardown, which the collector awaits
        except BaseException:
            asm.abort()
            raise
    except BaseException as exc:
        results.put(Failed.of(WRITER, exc))


def shared_buffer(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 array backed by ``path``, its blocks allocated on disk first: a full disk is a
    one-line ConfigError here, not a SIGBUS when a page of the mapping is first written."""
    nbytes = int(np.prod(shape))
    try:  # never through a link planted in the parts folder
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot create {path} ({exc.strerror}); use another "
                          "--out") from None
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot allocate {nbytes / 1e6:.0f} MB for {path} "
                          f"({exc.strerror}); free disk space or use another --out") from None
    os.close(fd)
    return np.memmap(path, np.uint8, "r+", shape=shape).view(np.ndarray)


class Writer:
    """Starts and talks to the writer process (:func:`writer_main`).

    Frames are rendered straight into one of :data:`SLOTS` buffers (files in the parts folder,
    memory-mapped by both processes: nothing is copied); the rest of a part (small) is sent
    through a queue. When no buffer is free the collecting process writes the part itself, so
    it never waits for the writer (which takes a moment to start).
    """

    def __init__(self, run: Resolved, directory: Path, out: Path) -> None:
        ctx = spawn_context()
        self.inbox: Queue[WriterCommand] = ctx.Queue()
        self.free: Queue[SlotFree] = ctx.Queue()
        self.results: Queue[WriterReport] = ctx.Queue()
        cfg = run.config
        s = int(cfg.image_size)
        names = [n for n in run.arrays if n in FRAME_ARRAYS]
        paths = [{n: str(slot_path(directory, k, n)) for n in names} for k in range(SLOTS)]
        shape = (cfg.part_rows, s, s, 3)
        self.slots: list[dict[str, np.ndarray]] = [
            {n: shared_buffer(Path(p), shape) for n, p in slot.items()} for slot in paths]
        self._idle = list(range(SLOTS))
        self.out = out
        self.proc = ctx.Process(target=writer_main, daemon=True, args=(
            run.to_json(), str(directory), str(out), paths, self.inbox, self.free, self.results,
            os.getpid()))
        self.proc.start()
        self.done = False

    def slot(self) -> int | None:
        """A free buffer, or None if every one is still being written."""
        self._check()
        if not self._idle:
            try:
                self._idle.append(self.free.get_nowait().slot)
            except queue.Empty:
                return None
        return self._idle.pop()

    def part(self, index: int, slot: int, arrays: dict[str, np.ndarray]) -> None:
        """Part ``index`` is in buffer ``slot`` (frames) and ``arrays`` (everything else)."""
        small = {k: v for k, v in arrays.items() if k not in FRAME_ARRAYS}
        self.inbox.put(PartInSlot(index, slot, small))

    def file(self, index: int) -> None:
        """Part ``index`` is on disk."""
        self.inbox.put(PartWritten(index))

    def finish(self, attrs: dict[str, Any]) -> str:
        """Have the writer finish the final file; return its fingerprint."""
        self.inbox.put(Finish(attrs))
        while True:
            try:
                msg = self.results.get(timeout=1.0)
            except queue.Empty:
                if not self.proc.is_alive():
                    raise RuntimeError("the collection writer died without reporting") from None
                continue
            if isinstance(msg, Failed):
                raise msg.exception()
            self.done = True
            return msg.fingerprint

    def _check(self) -> None:
        """Raise the error the writer reported, if any (nothing else arrives before
        :meth:`finish`)."""
        try:
            msg = self.results.get_nowait()
        except queue.Empty:
            return
        if isinstance(msg, Failed):
            raise msg.exception()

    def stop(self) -> None:
        """End the writer (at once if it has not finished), wait for it and remove the temporary
        final file of an unfinished one."""
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
