"""A small task graph for studies, run in process or as Ray tasks.

A :class:`Task` names its stage, its resolved config, the tasks it depends on, and its stage
function ``fn(config, inputs, out_dir) -> result``, the function itself. It must be defined at
module level: the process pool and Ray send it to their workers by reference (its module and
name), and the workers import it from there. The modules that build tasks import their stage
functions and this module; this module imports none of them (calls go one way). Keys are content
hashes of the stage, config and inputs (:mod:`sparseshift.experiments.study.artifacts`), never of
the function; finished tasks are skipped. The local and the Ray executor call the same functions
with the same configs and seeds, so they give the same results.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparseshift.envs.infra.config import Config
from sparseshift.envs.infra.heartbeat import Report, find_heartbeat
from sparseshift.experiments.study.artifacts import Artifact, check_result, config_key

StageFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Task:
    """One unit of study work: its stage's config object, hashed by its JSON."""

    stage: str
    #: The stage function, defined at module level (workers import it by reference).
    fn: StageFn
    config: Config
    deps: tuple[Task, ...] = ()
    label: str = ""
    #: Where the task runs (e.g. ``{"device": "cuda"}``): passed to the stage function, not
    #: hashed (a study's artifacts do not depend on the machine that made them).
    runtime: Mapping[str, Any] = field(default_factory=dict, compare=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        inputs = {d.stage + ":" + d.label: d.key for d in self.deps}
        object.__setattr__(self, "key", config_key(self.stage, self.config.to_json(), inputs))

    def artifact(self, root: Path) -> Artifact:
        return Artifact(root, self.stage, self.key)


def execute(fn: StageFn, stage: str, key: str, root: str, config: Config,
            inputs: Mapping[str, dict[str, Any]],
            runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run one task unless its artifact is complete; return its result. Runs in any process.

    Results name their files relative to their own artifact folder (``result["files"]``); the
    stage function sees its inputs' files as absolute paths under this study's ``root``, so a
    study can be moved or copied and still reads its own files.
    """
    art = Artifact(Path(root), stage, key)
    if art.done:
        return art.result()
    out = art.prepare(config.to_json())
    t0 = time.perf_counter()
    args = (config, resolve_inputs(Path(root), inputs), out)
    result = dict(fn(*args, runtime=dict(runtime)) if runtime else fn(*args))
    result.setdefault("seconds", round(time.perf_counter() - t0, 2))
    result["artifact"] = f"{stage}/{key}"
    art.finish(result)
    return result


def resolve_inputs(root: Path, inputs: Mapping[str, dict[str, Any]]
                   ) -> dict[str, dict[str, Any]]:
    """Inputs with their ``files`` as absolute paths under ``root``; a result whose artifact or
    files lead out of its folder, or are not text, is a one-line ConfigError
    (:func:`~sparseshift.experiments.study.artifacts.check_result`)."""
    out = {}
    for name, result in inputs.items():
        where = f"the result of {name.rstrip(':')} ({root}/{result.get('artifact', '?')})" \
            if isinstance(result, dict) else f"the result of {name.rstrip(':')}"
        paths = check_result(root, result, where)
        out[name] = {**result, "files": {k: str(p) for k, p in paths.items()}}
    return out


def _execute_with_deps(fn: StageFn, stage: str, key: str, root: str, config: Config,
                       runtime: Mapping[str, Any], names: Sequence[str],
                       *values: dict[str, Any]) -> dict[str, Any]:
    return execute(fn, stage, key, root, config, dict(zip(names, values, strict=True)),
                   runtime)


def topo_order(targets: Sequence[Task]) -> list[Task]:
    """All tasks reachable from ``targets``, dependencies first, each once (by key)."""
    order: list[Task] = []
    seen: set[str] = set()

    def visit(t: Task) -> None:
        if t.key in seen:
            return
        for d in t.deps:
            visit(d)
        seen.add(t.key)
        order.append(t)

    for t in targets:
        visit(t)
    return order


#: ``progress(event, task)`` with event ``start``, ``cached`` (finished earlier, reused),
#: ``done``, ``failed`` or ``interrupted`` (stopped by Ctrl-C or a killed worker: it resumes on
#: the next run). A progress object with a ``watching(root)`` context manager (as
#: :class:`ProgressPrinter`) is entered by :func:`run_local` around the run.
ProgressFn = Callable[[str, Task], None]


def _no_progress(event: str, task: Task) -> None:
    """The progress callback when none is given."""


def _steps(task: Task) -> float | None:
    """The task's planned step budget (``config.steps``), if its config has one."""
    steps = getattr(task.config, "steps", None)
    return float(steps) if isinstance(steps, int | float) and steps > 0 else None


def schedule_order(order: Sequence[Task]) -> list[Task]:
    """The order in which a pool starts ready tasks: tasks that more work waits on first (collect,
    then training), then those with larger step budgets (long agent runs must not start last);
    ties keep the sequential (``order``) order."""
    below: dict[str, set[str]] = {t.key: set() for t in order}
    for t in reversed(order):
        for d in t.deps:
            below[d.key] |= below[t.key] | {t.key}
    rank = {t.key: i for i, t in enumerate(order)}
    return sorted(order, key=lambda t: (-len(below[t.key]), -(_steps(t) or 0.0), rank[t.key]))


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}" if rate >= 1 else f"{rate:.2g}"


def _count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


class ProgressPrinter:
    """Progress of a study on a stream (stderr by default), flushed line by line.

    One line per stage event (``[3/8] done      agent  learned  2m10s | elapsed 4m02s, left
    ~3m10s``), and while :meth:`watching` a study folder, every ``interval_s`` seconds one line
    per running task from its heartbeat (:mod:`sparseshift.envs.infra.heartbeat`, written
    by the stage into its artifact folder or one folder below)::

        agent      learned: 42,000/100,352 steps, 410 steps/s, eval@40000: success 0.55,
        stage left ~2m22s | elapsed 1m50s, left ~4m10s

    Every time left is measured, never guessed: a running task's from its heartbeat's rate (or
    the measured durations of finished tasks of its stage), a queued task's from the durations of
    finished tasks of its stage, else the projected durations of running ones, scaled by step
    budgets (``config.steps``) when both have one; queued and running tasks are then laid out
    over the ``jobs`` parallel slots in the pool's order, dependencies respected. Work with no
    measurement behind it shows as ``?`` (``left ?``, or ``left ~3m10s + ? (2 eval_agent
    untimed)``). ``clock`` is the wall clock (:func:`time.time`, as heartbeats use).
    """

    #: A heartbeat older than this many seconds is said to be (``last report 45s ago``).
    STALE_S = 30.0

    def __init__(self, tasks: Sequence[Task], jobs: int = 1, stream: Any = None,
                 interval_s: float = 15.0, clock: Callable[[], float] = time.time) -> None:
        self.order = topo_order(tasks)
        self.total = len(self.order)
        self.jobs = max(1, jobs)
        self.queue = schedule_order(self.order) if self.jobs > 1 else list(self.order)
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self.clock = clock
        self.t0 = clock()
        self.root: Path | None = None
        self.started: dict[str, float] = {}  # running tasks: when they started
        self.ended: set[str] = set()  # done, failed or reused
        self.took: dict[str, list[tuple[float, float | None]]] = {}  # stage: (seconds, steps)
        self.reports: dict[str, Report] = {}  # running tasks' last heartbeats
        self.finished = 0
        self._lock = threading.RLock()

    # -- measurements ---------------------------------------------------------------------------

    def poll(self) -> None:
        """Read the running tasks' heartbeats (needs :attr:`root`, set by :meth:`watching`)."""
        if self.root is None:
            return
        with self._lock:
            running = [(t, self.started[t.key]) for t in self.order if t.key in self.started]
        for t, since in running:
            rep = find_heartbeat(t.artifact(self.root).path, since)
            with self._lock:
                if rep is not None and t.key in self.started:
                    self.reports[t.key] = rep

    def _projected(self, task: Task, now: float) -> float | None:
        """A running task's whole duration from its heartbeat's rate; None without one."""
        rep = self.reports.get(task.key)
        left = rep.remaining_s(now) if rep is not None else None
        if left is None:
            return None
        return now - self.started[task.key] + left

    def estimate(self, task: Task, now: float) -> float | None:
        """Measured seconds ``task`` takes in all: the mean duration of finished tasks of its
        stage, else the projected durations of its running ones, each scaled by the ratio of
        step budgets when both have one; None when its stage has no measurement."""
        samples = list(self.took.get(task.stage, []))
        if not samples:
            for t in self.order:
                if t.stage == task.stage and t.key != task.key and t.key in self.started:
                    whole = self._projected(t, now)
                    if whole is not None:
                        samples.append((whole, _steps(t)))
        if not samples:
            return None
        mine = _steps(task)
        scaled = [s * (mine / steps if mine and steps else 1.0) for s, steps in samples]
        return sum(scaled) / len(scaled)

    def task_left(self, task: Task, now: float) -> float | None:
        """Seconds a running task has left: from its heartbeat's rate, else its stage's measured
        duration less the time it has run; None without a measurement."""
        rep = self.reports.get(task.key)
        left = rep.remaining_s(now) if rep is not None else None
        if left is not None:
            return left
        whole = self.estimate(task, now)
        return None if whole is None else max(0.0, whole - (now - self.started[task.key]))

    def eta(self, now: float | None = None) -> str:
        """Time left for the whole graph (see the class docstring), or ``?``; reads the
        heartbeats first."""
        self.poll()
        now = self.clock() if now is None else now
        with self._lock:
            return self._eta(now)

    def _eta(self, now: float) -> str:
        unknown: dict[str, int] = {}
        known = False

        def length(seconds: float | None, task: Task) -> float:
            nonlocal known
            if seconds is None:
                unknown[task.stage] = unknown.get(task.stage, 0) + 1
                return 0.0
            known = True
            return seconds

        ends = {t.key: length(self.task_left(t, now), t) for t in self.order
                if t.key in self.started}
        finished = set(self.ended)
        queue = [t for t in self.queue if t.key not in self.ended and t.key not in self.started]
        if self.root is not None:  # finished earlier: reused at no cost
            finished |= {t.key for t in queue if t.artifact(self.root).done}
            queue = [t for t in queue if t.key not in finished]
        slots = max(self.jobs, len(ends))
        clock = 0.0
        while queue or ends:
            for t in list(queue):
                if len(ends) >= slots:
                    break
                if all(d.key in finished for d in t.deps):
                    queue.remove(t)
                    ends[t.key] = clock + length(self.estimate(t, now), t)
            if not ends:  # dependencies outside the graph: nothing more can start
                break
            key = min(ends, key=lambda k: ends[k])
            clock = ends.pop(key)
            finished.add(key)
        if not unknown:
            return "~" + _clock(clock)
        if not known:
            return "?"
        what = ", ".join(f"{n} {stage}" for stage, n in unknown.items())
        return f"~{_clock(clock)} + ? ({what} untimed)"

    # -- lines ----------------------------------------------------------------------------------

    def _print(self, line: str) -> None:
        with self._lock:
            print(line, file=self.stream, flush=True)

    def _tail(self, now: float) -> str:
        return f"elapsed {_clock(now - self.t0)}, left {self._eta(now)}"

    def __call__(self, event: str, task: Task) -> None:
        self.poll()
        with self._lock:
            now = self.clock()
            name = f"{task.stage:<10} {task.label:<36}"
            if event == "start":
                self.started[task.key] = now
                line = f"started   {name}"
            else:
                self.finished += 1
                start = self.started.pop(task.key, None)
                self.reports.pop(task.key, None)
                self.ended.add(task.key)
                if event == "cached":
                    line = f"reused    {name} (finished earlier)"
                else:
                    took = now - (self.t0 if start is None else start)
                    if event == "done":
                        self.took.setdefault(task.stage, []).append((took, _steps(task)))
                    verb = {"done": "done     ", "interrupted": "stopped  "}.get(event,
                                                                          "FAILED   ")
                    line = f"{verb} {name} {_clock(took)}"
            self._print(f"[{self.finished}/{self.total}] {line} | {self._tail(now)}")

    def status_line(self, task: Task, now: float) -> str:
        """The periodic line of a running task (without the elapsed/left tail)."""
        rep = self.reports.get(task.key)
        parts: list[str] = []
        if rep is None:
            parts.append(f"running {_clock(now - self.started[task.key])}, no progress report "
                         "yet")
        else:
            total = f"/{_count(rep.total)}" if rep.total is not None else ""
            parts.append(f"{_count(rep.done)}{total} {rep.unit}s")
            parts.append(f"{_rate(rep.rate)} {rep.unit}s/s" if rep.rate else
                         "rate not measured yet")
            if rep.latest:
                parts.append(rep.latest)
            if now - rep.time > self.STALE_S:
                parts.append(f"last report {_clock(now - rep.time)} ago")
        left = self.task_left(task, now)
        parts.append("stage left " + ("?" if left is None else "~" + _clock(left)))
        return f"  {task.stage:<10} {task.label}: " + ", ".join(parts)

    def tick(self) -> None:
        """Print one line per running task (its heartbeat, its time left and the graph's)."""
        self.poll()
        with self._lock:
            now = self.clock()
            running = [t for t in self.order if t.key in self.started]
            if not running:
                return
            tail = self._tail(now)
            for t in running:
                self._print(f"{self.status_line(t, now)} | {tail}")

    @contextlib.contextmanager
    def watching(self, root: Path) -> Iterator[None]:
        """Within the block, read heartbeats under the study folder ``root`` and print the
        running tasks' lines every ``interval_s`` seconds from a background thread (stopped and
        joined on leaving the block, also on an exception)."""
        self.root = Path(root)
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.interval_s):
                self.tick()

        thread = threading.Thread(target=loop, name="sparseshift-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _inputs(task: Task, results: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d.stage + ":" + d.label: results[d.key] for d in task.deps}


def run_local(targets: Sequence[Task], root: Path, progress: ProgressFn | None = None,
              jobs: int = 1) -> dict[str, dict[str, Any]]:
    """Run the graph on this machine; returns results by task key.

    ``jobs == 1`` runs every task in this process, in dependency order. ``jobs > 1`` runs up to
    ``jobs`` ready tasks at a time in a pool of ``jobs`` worker processes (``spawn``): the same
    functions, configs and seeds, one torch thread each, so results equal the sequential run.
    A ``progress`` with a ``watching(root)`` context manager (:class:`ProgressPrinter`) watches
    the run's heartbeats meanwhile.
    """
    order = topo_order(targets)
    progress = progress or _no_progress
    watch = getattr(progress, "watching", None)
    with watch(root) if callable(watch) else contextlib.nullcontext():
        if jobs <= 1:
            return _run_sequential(order, root, progress)
        return _run_pool(order, root, progress, jobs)


def _run_sequential(order: list[Task], root: Path, progress: ProgressFn
                    ) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for t in order:
        if t.artifact(root).done:
            results[t.key] = t.artifact(root).result()
            progress("cached", t)
            continue
        progress("start", t)
        try:
            results[t.key] = execute(t.fn, t.stage, t.key, str(root), t.config,
                                     _inputs(t, results), t.runtime)
        except BaseException as exc:
            progress(_ended(exc), t)
            raise
        progress("done", t)
    return results


def _run_pool(order: list[Task], root: Path, progress: ProgressFn, jobs: int
              ) -> dict[str, dict[str, Any]]:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    results: dict[str, dict[str, Any]] = {}
    pending = schedule_order(order)
    running: dict[Future[dict[str, Any]], Task] = {}
    from sparseshift.agents.procs import die_with_parent

    # Workers die with this process (kill -9 included): no orphaned ~450 MB interpreters.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        while pending or running:
            for t in list(pending):
                if not all(d.key in results for d in t.deps):
                    continue
                cached = t.artifact(root).done
                if not cached and len(running) >= jobs:
                    continue
                pending.remove(t)
                if cached:  # finished earlier: no process needed
                    results[t.key] = t.artifact(root).result()
                    progress("cached", t)
                    continue
                progress("start", t)
                fut = pool.submit(execute, t.fn, t.stage, t.key, str(root), t.config,
                                  _inputs(t, results), t.runtime)
                running[fut] = t
            if not running:
                if pending and not any(all(d.key in results for d in t.deps) for t in pending):
                    raise RuntimeError("study graph has tasks whose dependencies never finish")
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                t = running.pop(fut)
                try:
                    results[t.key] = fut.result()  # a failed task raises here
                except BaseException as exc:
                    progress(_ended(exc), t)
                    raise
                progress("done", t)
    return results


def _ended(exc: BaseException) -> str:
    """The progress event of a task that raised: ``interrupted`` when the study was stopped
    (Ctrl-C, or its worker process killed under it), else ``failed``."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, KeyboardInterrupt | BrokenProcessPool | SystemExit):
        return "interrupted"
    return "failed"


def run_ray(targets: Sequence[Task], root: Path, address: str | None,
            progress: ProgressFn | None = None) -> dict[str, dict[str, Any]]:
    """Run independent tasks as Ray tasks (local Ray by default, or a cluster ``address``)."""
    from sparseshift.envs.infra.errors import ConfigError

    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs the ray extra: pip install 'sparseshift[ray]'") from None
    started_here = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                # Local workers see the driver's import path (e.g. a source checkout).
                path = os.pathsep.join(p for p in sys.path if p)
                ray.init(include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": path}})
            started_here = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot reach Ray at {address or 'local'}: {exc}") from None
    try:
        remote = ray.remote(num_cpus=1)(_execute_with_deps)
        gpu_remote = ray.remote(num_cpus=1, num_gpus=1)(_execute_with_deps)
        order = topo_order(targets)
        refs: dict[str, Any] = {}
        for t in order:
            if progress:
                progress("cached" if t.artifact(root).done else "start", t)
            names = [d.stage + ":" + d.label for d in t.deps]
            # Ray resolves object refs passed as top-level arguments before the task runs.
            # Stages placed on a GPU ask Ray for one; the others stay on CPU workers.
            fn = gpu_remote if str(t.runtime.get("device", "")).startswith("cuda") else remote
            refs[t.key] = fn.remote(t.fn, t.stage, t.key, str(root), t.config,
                                    dict(t.runtime), names, *[refs[d.key] for d in t.deps])
        values = ray.get([refs[t.key] for t in order])
        if progress:
            for t in order:
                if t.key in refs and not t.artifact(root).done:
                    progress("failed", t)
        return {t.key: v for t, v in zip(order, values, strict=True)}
    finally:
        if started_here:
            ray.shutdown()
