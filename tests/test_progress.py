"""Progress that tells the truth (issue 20): heartbeats from long stages, periodic lines for
running tasks, and times left that come from measured rates only."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from stable_baselines3.common.logger import Logger

from sparseshift.envs.infra.config import Config
from sparseshift.envs.infra.heartbeat import (
    HEARTBEAT_FILE,
    Heartbeat,
    find_heartbeat,
    read_heartbeat,
)
from sparseshift.experiments.study.graph import ProgressPrinter, Task, run_local


@dataclass(frozen=True)
class Job(Config):
    steps: int = 100
    seconds: float = 0.0
    fail: bool = False


def slow_stage(config: Job, inputs: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Works ``config.seconds`` seconds, reporting into ``out/work/`` (one folder below)."""
    beat = Heartbeat(out / "work" / HEARTBEAT_FILE, config.steps, "step", every_s=0.05)
    (out / "work").mkdir(exist_ok=True)
    n = 20
    for i in range(n):
        time.sleep(config.seconds / n)
        beat.update((i + 1) * config.steps // n, latest=f"loss {1.0 / (i + 1):.2f}")
        if config.fail and i == n // 2:
            raise RuntimeError("boom")
    return {"steps": config.steps}


def task(stage: str = "slow", steps: int = 100, seconds: float = 0.0, label: str = "",
         deps: tuple[Task, ...] = (), fail: bool = False) -> Task:
    return Task(stage, slow_stage, Job(steps, seconds, fail), deps=deps,
                label=label or f"{stage}{steps}")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def no_progress_threads() -> bool:
    return not any(t.name == "sparseshift-progress" and t.is_alive()
                   for t in threading.enumerate())


# -- the heartbeat file --------------------------------------------------------------------------

def test_heartbeat_writes_at_most_every_every_s_with_measured_rate(tmp_path: Path) -> None:
    clock = Clock(100.0)
    calls: list[int] = []

    def latest() -> str:
        calls.append(1)
        return "eval@40: success 0.50"

    path = tmp_path / HEARTBEAT_FILE
    beat = Heartbeat(path, 1000, "step", every_s=5.0, start=200, clock=clock)
    assert beat.update(200, latest)  # the first update writes: nothing done here yet
    first = json.loads(path.read_text())
    assert first == {"done": 200, "total": 1000, "unit": "step", "rate": None,
                     "latest": "eval@40: success 0.50", "time": 100.0}
    clock.now = 102.0
    assert not beat.update(300, latest) and len(calls) == 1  # not due: latest() not called
    clock.now = 110.0
    assert beat.update(600, latest)
    rep = read_heartbeat(path)
    assert rep is not None and rep.done == 600 and rep.rate == pytest.approx(40.0)  # 400 / 10 s
    assert rep.remaining_s(110.0) == pytest.approx(10.0)  # 400 left at 40/s
    assert rep.remaining_s(114.0) == pytest.approx(6.0)  # less the time since the write
    assert rep.remaining_s(200.0) == 0.0
    assert beat.update(601, force=True)  # forced: written although not due


def test_find_heartbeat_reads_the_folder_and_one_below_newest_first(tmp_path: Path) -> None:
    assert find_heartbeat(tmp_path / "missing") is None
    (tmp_path / "agent").mkdir()
    Heartbeat(tmp_path / HEARTBEAT_FILE, 10, clock=lambda: 5.0).update(1)
    Heartbeat(tmp_path / "agent" / HEARTBEAT_FILE, 10, clock=lambda: 7.0).update(2)
    (tmp_path / "agent" / "deeper").mkdir()
    Heartbeat(tmp_path / "agent" / "deeper" / HEARTBEAT_FILE, 10, clock=lambda: 9.0).update(3)
    rep = find_heartbeat(tmp_path)
    assert rep is not None and rep.done == 2 and rep.path.parent.name == "agent"
    assert find_heartbeat(tmp_path, since=8.0) is None  # older than the task: an earlier run's
    (tmp_path / "agent" / HEARTBEAT_FILE).write_text("{not json")
    rep = find_heartbeat(tmp_path)
    assert rep is not None and rep.done == 1


def test_sb3_heartbeat_callback_writes_during_learn(tmp_path: Path) -> None:
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList

    from sparseshift.agents.heartbeat import HeartbeatCallback, eval_summary, latest_eval

    path = tmp_path / "agent" / HEARTBEAT_FILE
    path.parent.mkdir()
    seen: list[dict[str, Any]] = []

    class Peek(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % 64 == 0:
                seen.append(json.loads(path.read_text()))
            return True

    evaluator = SimpleNamespace(history=[{"step": 128, "return": {"mean": 21.5},
                                          "success": {"mean": 0.25}}])
    model = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=32, n_epochs=1,
                seed=0, device="cpu")
    beat = HeartbeatCallback(path, 256, every_s=0, latest=latest_eval(evaluator))
    model.set_logger(Logger(None, []))  # SB3's default logger makes a folder in /tmp
    model.learn(total_timesteps=256, callback=CallbackList([beat, Peek()]))
    during = [s for s in seen if 0 < s["done"] < 256]
    assert during and all(s["total"] == 256 and s["unit"] == "step" for s in during)
    assert all(s["rate"] is not None and s["rate"] > 0 for s in during)
    final = json.loads(path.read_text())
    assert final["done"] == model.num_timesteps == 256 and final["rate"] > 0
    assert final["latest"] == "eval@128: success 0.25, return 21.5"
    assert abs(final["time"] - time.time()) < 60
    assert eval_summary([]) == "" and latest_eval(None)() == ""


# -- the printer ---------------------------------------------------------------------------------

def lines(stream: io.StringIO) -> list[str]:
    out = stream.getvalue().splitlines()
    stream.seek(0)
    stream.truncate()
    return out


def test_printer_eta_from_the_heartbeat_rate_by_hand(tmp_path: Path) -> None:
    clock, stream = Clock(1000.0), io.StringIO()
    a1, a2 = task("agent", 100), task("agent", 200)
    ev = task("eval", 10, deps=(a1,))
    printer = ProgressPrinter([ev, a2], jobs=1, stream=stream, clock=clock)
    printer.root = tmp_path

    printer("start", a1)  # nothing measured yet: no number anywhere
    (start,) = lines(stream)
    assert start.startswith("[0/3] started   agent") and start.endswith("left ?")
    clock.now = 1004.0
    printer.tick()
    (line,) = lines(stream)
    assert line.startswith("  agent      agent100: running 4s, no progress report yet")
    assert "stage left ?" in line and line.endswith("| elapsed 4s, left ?")
    assert not re.search(r"left ~|\d+ steps/s", line)

    out = a1.artifact(tmp_path).path / "agent"
    out.mkdir(parents=True)
    beat = Heartbeat(out / HEARTBEAT_FILE, 100, "step", clock=clock)  # starts at 1004
    clock.now = 1009.0
    beat.update(25, "eval@20: success 0.40")  # 25 steps in 5 s: 5 steps/s
    clock.now = 1012.0
    printer.tick()
    (line,) = lines(stream)
    # a1: 75 steps left at 5/s, written 3 s ago -> 12 s. a2 (queued, same stage, 200 steps): a1's
    # projected whole run (12 s so far + 12 s) x 200/100 = 48 s. eval: never measured.
    assert line == ("  agent      agent100: 25/100 steps, 5.0 steps/s, eval@20: success 0.40, "
                    "stage left ~12s | elapsed 12s, left ~1m00s + ? (1 eval untimed)")

    clock.now = 1000.0
    par = ProgressPrinter([ev, a2], jobs=2, stream=io.StringIO(), clock=clock)
    par.root = tmp_path
    par("start", a1)
    clock.now = 1012.0
    assert par.eta() == "~48s + ? (1 eval untimed)"  # a2 runs beside a1: max(12, 48)

    clock.now = 1030.0
    printer("done", a1)  # took 30 s: the finished duration now wins over projections
    printer("start", ev)
    lines(stream)
    clock.now = 1035.0
    printer.tick()
    (line,) = lines(stream)
    assert line.startswith("  eval       eval10: running 5s, no progress report yet, stage left ?")
    assert line.endswith("left ~1m00s + ? (1 eval untimed)")  # a2: 30 s x 200/100 = 60 s
    clock.now = 1040.0
    printer("done", ev)
    printer("start", a2)
    clock.now = 1050.0
    printer.tick()
    (*_, line) = lines(stream)
    assert line.endswith("stage left ~50s | elapsed 50s, left ~50s")  # 60 s less 10 s run
    printer("done", a2)
    assert lines(stream)[-1].endswith("left ~0s")


def test_printer_prints_periodic_lines_for_an_in_process_task(tmp_path: Path) -> None:
    stream = io.StringIO()
    slow = task("slow", 400, seconds=1.2)
    printer = ProgressPrinter([slow], stream=stream, interval_s=0.1)
    run_local([slow], tmp_path, printer, jobs=1)
    assert no_progress_threads()
    out = stream.getvalue().splitlines()
    ticks = [s for s in out if s.startswith("  slow")]
    assert out[0].startswith("[0/1] started") and out[-1].startswith("[1/1] done")
    assert len(ticks) >= 3, out
    measured = [s for s in ticks if "steps/s" in s]
    assert measured and all(re.search(r"\d+/400 steps, [\d.,]+ steps/s, loss ", s)
                            for s in measured)
    assert all("left ~" in s for s in measured)
    for s in ticks:  # every number said is measured: no rate, no time left
        if "steps/s" not in s:
            assert "stage left ?" in s and s.endswith("left ?")


def test_printer_prints_periodic_lines_for_tasks_in_worker_processes(tmp_path: Path) -> None:
    stream = io.StringIO()
    a, b = task("slow", 200, seconds=1.5), task("slow", 300, seconds=1.5)
    printer = ProgressPrinter([a, b], jobs=2, stream=stream, interval_s=0.2)
    run_local([a, b], tmp_path, printer, jobs=2)
    assert no_progress_threads()
    out = stream.getvalue().splitlines()
    assert sum(s.startswith("[") and " done " in s for s in out) == 2
    measured = [s for s in out if s.startswith("  slow") and "steps/s" in s]
    assert {s.split(":")[0].split()[-1] for s in measured} == {"slow200", "slow300"}, out


def test_printer_thread_stops_when_a_task_fails(tmp_path: Path) -> None:
    stream = io.StringIO()
    bad = task("slow", 100, seconds=0.4, fail=True)
    printer = ProgressPrinter([bad], stream=stream, interval_s=0.05)
    with pytest.raises(RuntimeError, match="boom"):
        run_local([bad], tmp_path, printer, jobs=1)
    assert no_progress_threads()
    assert "FAILED" in stream.getvalue().splitlines()[-1]
