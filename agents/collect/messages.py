"""The messages that collection processes send each other through multiprocessing queues.

:mod:`sparseshift.agents.collect.collect` runs the collecting process, optional helper processes
(:mod:`sparseshift.agents.collect.workers`) and an optional writer process
(:mod:`sparseshift.agents.collect.writer`). Everything they exchange is one of the frozen
dataclasses below (picklable as they are), so both sides of a queue agree on its fields by name:

* helper -> collector (``Helpers.results``): :class:`RowsDone`, :class:`PartWritten`,
  :class:`WorkerDone`, :class:`Failed`;
* collector -> writer (``Writer.inbox``): :class:`PartInSlot`, :class:`PartWritten`,
  :class:`Finish`;
* writer -> collector: :class:`SlotFree` (``Writer.free``), :class:`Assembled` and
  :class:`Failed` (``Writer.results``).

The helpers' task queue carries plain part indexes, then one ``None`` per reader meaning "no
more parts". :meth:`Failed.exception` is the one place a failure in another process becomes an
exception in the collecting process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import disk_full, disk_full_message

#: Names of the processes, as failures report them.
WORKER = "collection worker"
WRITER = "collection writer"


@dataclass(frozen=True)
class RowsDone:
    """A helper made ``rows`` more rows (progress bar)."""

    rows: int


@dataclass(frozen=True)
class PartWritten:
    """Part ``index`` is complete on disk (its file written atomically)."""

    index: int


@dataclass(frozen=True)
class WorkerDone:
    """A helper ran out of tasks and is exiting."""


@dataclass(frozen=True)
class PartInSlot:
    """Part ``index`` is ready for the writer: its frames in shared buffer ``slot``, every other
    array (the small ones) in ``arrays``."""

    index: int
    slot: int
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Finish:
    """Every part has been sent: finish the final file with root attributes ``attrs``."""

    attrs: dict[str, Any]


@dataclass(frozen=True)
class SlotFree:
    """The writer is done with shared buffer ``slot``; the collector may render into it again."""

    slot: int


@dataclass(frozen=True)
class Assembled:
    """The writer finished the final file, whose fingerprint is ``fingerprint``."""

    fingerprint: str


@dataclass(frozen=True)
class Failed:
    """Process ``where`` stopped on an exception: ``message`` is ``"TypeName: text"``;
    ``is_config_error`` says whether it was a :class:`~sparseshift.envs.infra.errors.ConfigError`
    (a bad configuration, reported to the user as such) rather than a bug or crash."""

    where: str
    message: str
    is_config_error: bool

    @classmethod
    def of(cls, where: str, exc: BaseException) -> Failed:
        """The report of ``exc`` raised in process ``where``."""
        if disk_full(exc):  # a user's condition, not a crash: one line, exit 2
            return cls(where, disk_full_message(exc), True)
        return cls(where, f"{type(exc).__name__}: {exc}", isinstance(exc, ConfigError))

    def exception(self) -> Exception:
        """The exception to raise in the collecting process: a ConfigError stays a ConfigError,
        anything else is a RuntimeError; either names the process that failed."""
        kind = ConfigError if self.is_config_error else RuntimeError
        return kind(f"{self.where}: {self.message}")


#: What a helper process puts on its results queue.
WorkerMessage: TypeAlias = RowsDone | PartWritten | WorkerDone | Failed
#: What the collecting process puts in the writer's inbox.
WriterCommand: TypeAlias = PartInSlot | PartWritten | Finish
#: What the writer process puts on its results queue.
WriterReport: TypeAlias = Assembled | Failed
