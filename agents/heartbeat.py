"""A Stable-Baselines3 callback that writes a heartbeat while an agent trains.

:class:`HeartbeatCallback` writes :data:`~sparseshift.envs.infra.heartbeat.HEARTBEAT_FILE`
(the protocol is in :mod:`sparseshift.envs.infra.heartbeat`) during ``model.learn``: env
steps done, the planned total, steps/s measured since training started, and a ``latest`` text
(:func:`latest_eval` gives the last periodic evaluation), at most every ``every_s`` seconds and
once more when training ends. A study's progress printer reads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from sparseshift.envs.infra.heartbeat import EVERY_S, Heartbeat


def eval_summary(history: Sequence[dict[str, Any]]) -> str:
    """``"eval@40000: success 0.55, return 12.3"`` for the last row of a
    :class:`~sparseshift.agents.train.PeriodicEval` history; ``""`` before the first."""
    if not history:
        return ""
    last = history[-1]
    return (f"eval@{last['step']}: success {last['success']['mean']:.2f}, "
            f"return {last['return']['mean']:.3g}")


def latest_eval(evaluator: Any | None) -> Callable[[], str]:
    """A ``latest`` function for :class:`HeartbeatCallback` reading ``evaluator.history`` (a
    :class:`~sparseshift.agents.train.PeriodicEval`, or None for no evaluations)."""
    def latest() -> str:
        return eval_summary(getattr(evaluator, "history", None) or [])
    return latest


class HeartbeatCallback(BaseCallback):
    """Writes the heartbeat ``path`` during ``model.learn`` (``total``: the planned env steps)."""

    def __init__(self, path: str | Path, total: int, every_s: float = EVERY_S,
                 latest: Callable[[], str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.path, self.total, self.every_s = Path(path), total, every_s
        self.latest = latest
        self.clock = clock
        self.heartbeat: Heartbeat | None = None

    def _text(self) -> str:
        return self.latest() if self.latest is not None else ""

    def _on_training_start(self) -> None:
        start = int(self.model.num_timesteps)
        self.heartbeat = Heartbeat(self.path, self.total, "step", self.every_s, start=start,
                                   clock=self.clock)
        self.heartbeat.update(start, self._text, force=True)

    def _on_step(self) -> bool:
        if self.heartbeat is not None:
            self.heartbeat.update(self.num_timesteps, self._text)
        return True

    def _on_training_end(self) -> None:
        self.report()

    def report(self) -> None:
        """Write now (e.g. after a final evaluation that runs after ``learn``)."""
        if self.heartbeat is not None:
            self.heartbeat.update(int(self.model.num_timesteps), self._text, force=True)
