"""Heartbeats: how a long stage tells the study how far it is, measured, while it runs.

A stage that runs for more than a few seconds writes a tiny JSON file, :data:`HEARTBEAT_FILE`,
atomically, into the folder it writes its own outputs to, at most every ``every_s`` seconds::

    {"done": 42000, "total": 100352, "unit": "step", "rate": 410.3,
     "latest": "eval@40000: success 0.55", "time": 1767225600.0}

``done``/``total`` count ``unit`` (``total`` may be null when unknown), ``rate`` is the measured
``unit`` per second since the writer started (null until something was done), ``latest`` a short
free text (the last evaluation or loss), ``time`` the wall clock (:func:`time.time`) of the write.

Where: the stage's artifact folder ``<root>/<stage>/<key>/`` or **one folder below it** (the agent
stage trains into ``<key>/agent/``, the representation stage into ``<key>/rep/``: each trainer
writes the heartbeat into its own output folder). :func:`find_heartbeat` reads the newest of
those; :class:`sparseshift.experiments.study.graph.ProgressPrinter` polls it for every running
task. A heartbeat older than the task's start is ignored (an interrupted earlier run's).

This module imports nothing heavy (the trainers in :mod:`sparseshift.agents` and
:mod:`sparseshift.representations` import it), and a failed write never stops training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import read_json, write_json_atomic

#: The heartbeat's file name, in the folder the stage writes its outputs to.
HEARTBEAT_FILE = "heartbeat.json"
#: Seconds between writes by default.
EVERY_S = 5.0

Latest = str | Callable[[], str]


class Heartbeat:
    """Writes :data:`HEARTBEAT_FILE`-style progress to ``path``: call :meth:`update` as often as
    convenient (it is cheap unless a write is due), with ``force=True`` at the end.

    ``start`` is where a resumed run starts counting (the rate counts only work done here);
    ``clock`` is the wall clock (tests inject one)."""

    def __init__(self, path: str | Path, total: int | float | None, unit: str = "step",
                 every_s: float = EVERY_S, start: int | float = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.total = total
        self.unit = unit
        self.every_s = every_s
        self.clock = clock
        self.start = start
        self.t0 = clock()
        self._last_write = -math.inf

    def due(self) -> bool:
        """Whether the next :meth:`update` would write."""
        return self.clock() - self._last_write >= self.every_s

    def rate(self, done: int | float, now: float) -> float | None:
        """Measured ``unit`` per second since this heartbeat started; None before any work."""
        if done <= self.start or now <= self.t0:
            return None
        return (done - self.start) / (now - self.t0)

    def update(self, done: int | float, latest: Latest = "", force: bool = False) -> bool:
        """Write the heartbeat if ``every_s`` passed since the last write (or ``force``);
        ``latest`` may be a function, called only when writing. True if it wrote."""
        now = self.clock()
        if not force and now - self._last_write < self.every_s:
            return False
        self._last_write = now
        text = latest() if callable(latest) else latest
        try:
            write_json_atomic(self.path, {"done": done, "total": self.total, "unit": self.unit,
                                          "rate": self.rate(done, now), "latest": text,
                                          "time": now})
        except OSError:  # progress is advisory: a full disk must not end a training run here
            return False
        return True


@dataclass(frozen=True)
class Report:
    """One heartbeat as read back."""

    done: float
    total: float | None
    unit: str
    rate: float | None
    latest: str
    time: float
    path: Path

    def remaining_s(self, now: float) -> float | None:
        """Seconds left at ``rate`` from the heartbeat's time, less the time since; None without
        a measured rate or a total."""
        if self.total is None or not self.rate or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate - max(0.0, now - self.time))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def read_heartbeat(path: Path) -> Report | None:
    """The heartbeat at ``path``; None if it is missing or not a heartbeat."""
    try:  # through the bounded reader: a heartbeat is a small JSON object
        data = read_json(path, "heartbeat", max_bytes=64 * 1024)
    except (ConfigError, OSError):
        return None
    done, when = _number(data.get("done")), _number(data.get("time"))
    if done is None or when is None:
        return None
    return Report(done, _number(data.get("total")), str(data.get("unit") or "step"),
                  _number(data.get("rate")), str(data.get("latest") or ""), when, path)


def find_heartbeat(folder: Path, since: float = -math.inf) -> Report | None:
    """The newest heartbeat in ``folder`` or one folder below it written at or after ``since``
    (wall clock); None if there is none."""
    found: list[Report] = []
    try:
        paths = [folder / HEARTBEAT_FILE, *folder.glob(f"*/{HEARTBEAT_FILE}")]
    except OSError:
        return None
    for p in paths:
        rep = read_heartbeat(p)
        if rep is not None and rep.time >= since:
            found.append(rep)
    return max(found, key=lambda r: r.time, default=None)
