"""Process plumbing shared by the collection helpers and writer process
(:mod:`sparseshift.agents.collect`), the agents' subprocess envs (:mod:`sparseshift.agents.vecenv`)
and the study's pool workers. It sits at the lowest layer that uses it, next to the collect
subpackage rather than in it, so that nothing in ``agents`` imports ``agents.collect``."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
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


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """Make this worker process end when ``parent`` does, even on ``kill -9`` of the parent: on
    Linux the kernel sends SIGKILL (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread also
    checks the parent every ``poll_seconds``. Used as a process-pool initializer."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    exit_if_orphaned(parent)  # the parent may have died before the prctl

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            exit_if_orphaned(parent)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
