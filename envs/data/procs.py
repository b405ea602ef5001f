"""Process plumbing shared by the collection helpers and the writer process."""

from __future__ import annotations

import multiprocessing as mp
import os
from multiprocessing.context import SpawnContext
from multiprocessing.queues import Queue
from typing import Any, NoReturn


def spawn_context() -> SpawnContext:
    """The context collection processes start in: fork is unsafe with GL contexts and threads."""
    return mp.get_context("spawn")


def exit_if_orphaned(parent: int) -> None:
    """Exit at once if the collecting process ``parent`` is gone (killed: a resumed run redoes
    whatever this process was doing)."""
    if os.getppid() != parent:
        os._exit(1)


def exit_reported(results: Queue[Any]) -> NoReturn:
    """Exit once everything put on ``results`` has reached the pipe, skipping the interpreter's
    teardown (which the collecting process would otherwise wait for)."""
    results.close()
    results.join_thread()
    os._exit(0)
