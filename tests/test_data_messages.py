"""The messages between collection processes, and the one conversion of a remote failure."""

from __future__ import annotations

import dataclasses
import os
import pickle
import queue
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparseshift.agents.collect.messages import (
    WORKER,
    WRITER,
    Assembled,
    Failed,
    Finish,
    PartInSlot,
    PartWritten,
    RowsDone,
    SlotFree,
    WorkerDone,
)
from sparseshift.agents.collect.workers import worker_main
from sparseshift.agents.collect.writer import writer_main
from sparseshift.agents.procs import spawn_context
from sparseshift.envs.infra.errors import ConfigError

SIMPLE = [RowsDone(64), PartWritten(3), WorkerDone(), Finish({"seed": 5, "env_id": "x"}),
          SlotFree(2), Assembled("abc123"), Failed(WORKER, "KeyError: 'n'", False)]


@pytest.mark.parametrize("msg", SIMPLE, ids=lambda m: type(m).__name__)
def test_messages_pickle_and_are_frozen(msg: Any) -> None:
    assert pickle.loads(pickle.dumps(msg)) == msg
    field = next(iter(dataclasses.fields(msg)), None)
    if field is not None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(msg, field.name, None)


def test_part_in_slot_crosses_a_process_queue() -> None:
    arrays = {"actions": np.arange(6, dtype=np.float32).reshape(3, 2),
              "terminated": np.array([False, True, False])}
    q = spawn_context().Queue()
    q.put(PartInSlot(4, 1, arrays))
    got = q.get(timeout=10)
    assert isinstance(got, PartInSlot) and (got.index, got.slot) == (4, 1)
    assert got.arrays.keys() == arrays.keys()
    for k, v in arrays.items():
        assert got.arrays[k].dtype == v.dtype and np.array_equal(got.arrays[k], v)


def test_config_error_stays_a_config_error() -> None:
    exc = Failed.of(WORKER, ConfigError("unknown colours 'x'; valid: in, all")).exception()
    assert type(exc) is ConfigError
    assert str(exc) == "collection worker: ConfigError: unknown colours 'x'; valid: in, all"


def test_anything_else_is_a_runtime_error_naming_the_process() -> None:
    failed = Failed.of(WRITER, ValueError("boom"))
    assert failed == Failed("collection writer", "ValueError: boom", False)
    exc = pickle.loads(pickle.dumps(failed)).exception()
    assert type(exc) is RuntimeError and str(exc) == "collection writer: ValueError: boom"


def test_failing_processes_report_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process entry points, run here on a broken manifest, report a Failed naming
    themselves (and return, rather than raise)."""
    monkeypatch.setenv("LP_NUM_THREADS", "0")  # worker_main sets it when unset
    ctx = spawn_context()
    tasks, results = ctx.Queue(), ctx.Queue()
    worker_main({}, str(tmp_path), tasks, results, os.getppid())
    got = results.get(timeout=10)
    assert isinstance(got, Failed) and got.where == WORKER and not got.is_config_error
    assert type(got.exception()) is RuntimeError
    inbox, free, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    writer_main({}, str(tmp_path), str(tmp_path / "out.h5"), [], inbox, free, results,
                os.getppid())
    got = results.get(timeout=10)
    assert isinstance(got, Failed) and got.where == WRITER
    assert str(got.exception()).startswith("collection writer: KeyError: ")
    with pytest.raises(queue.Empty):
        free.get_nowait()
