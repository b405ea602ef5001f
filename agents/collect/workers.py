"""Helper processes: each builds and writes parts from a shared task queue with its own env."""

from __future__ import annotations

import os
import queue
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any, TypeAlias

from sparseshift.agents.collect.messages import (
    WORKER,
    Failed,
    PartWritten,
    RowsDone,
    WorkerDone,
    WorkerMessage,
)
from sparseshift.agents.collect.parts import PartMaker
from sparseshift.agents.procs import exit_if_orphaned, exit_reported, spawn_context
from sparseshift.envs.data.config import Resolved

#: The task queue: part indexes to make, then one ``None`` per reader ("no more parts").
Tasks: TypeAlias = "Queue[int | None]"


def worker_main(manifest: dict[str, Any], directory: str, tasks: Tasks,
                results: Queue[WorkerMessage], parent: int, device: str = "cpu") -> None:
    """Helper process: build parts from ``tasks`` until a ``None``; stop if the parent dies.
    ``device`` is where an agent policy runs (:attr:`Resolved.device`, not in the manifest)."""

    def report(rows: int) -> None:
        exit_if_orphaned(parent)  # the collector was killed: leave the rest to a resumed run
        results.put(RowsDone(rows))

    # llvmpipe (Mesa's CPU GL) rasterises in one thread per core by default: with a process per
    # core those threads only contend, so workers render in their own thread (unless set).
    os.environ.setdefault("LP_NUM_THREADS", "0")
    try:
        maker = PartMaker(replace(Resolved.from_json(manifest), device=device))
        try:
            while (index := tasks.get()) is not None:
                maker.write(Path(directory), index, report)
                results.put(PartWritten(index))
        finally:
            maker.close()
        results.put(WorkerDone())
    except BaseException as exc:
        results.put(Failed.of(WORKER, exc))
    else:
        exit_reported(results)  # done: skip the teardown, which the collector awaits


class Helpers:
    """``count`` helper processes sharing a task queue with the collecting process.

    The collecting process takes its own tasks from :attr:`tasks` too, and calls :meth:`poll`
    to hand the helpers' progress to ``advance`` and their finished parts to ``finished``.
    """

    def __init__(self, run: Resolved, directory: Path, todo: list[int], count: int,
                 advance: Callable[[int], None], finished: Callable[[int], None]) -> None:
        ctx = spawn_context()
        self.tasks: Tasks = ctx.Queue()
        self.results: Queue[WorkerMessage] = ctx.Queue()
        for index in todo:
            self.tasks.put(index)
        for _ in range(count + 1):
            self.tasks.put(None)
        self.advance, self.finished = advance, finished
        self.running = count
        self.procs = [ctx.Process(target=worker_main, daemon=True, args=(
            run.to_json(), str(directory), self.tasks, self.results, os.getpid(), run.device))
            for _ in range(count)]
        for p in self.procs:
            p.start()

    def poll(self, timeout: float | None = None) -> None:
        """Handle the helpers' messages (waiting up to ``timeout`` for the first); raise the
        error a helper reported."""
        while self.running:
            try:
                msg = self.results.get(timeout=timeout) if timeout else self.results.get_nowait()
            except queue.Empty:
                if timeout and not any(p.is_alive() for p in self.procs):
                    raise RuntimeError("collection workers died without reporting") from None
                return
            if isinstance(msg, RowsDone):
                self.advance(msg.rows)
            elif isinstance(msg, PartWritten):
                self.finished(msg.index)
            elif isinstance(msg, WorkerDone):
                self.running -= 1
            else:
                raise msg.exception()

    def stop(self) -> None:
        """End the helpers (at once if they have not finished) and wait for them."""
        if self.running:  # unread tasks must not block this process's exit
            self.tasks.cancel_join_thread()
        for p in self.procs:
            if self.running and p.is_alive():
                p.terminate()
            p.join()
