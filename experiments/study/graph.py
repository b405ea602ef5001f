"""A small task graph for studies, run in process or as Ray tasks.

A :class:`Task` names its stage, its resolved config, the tasks it depends on, and a function
``fn(config, inputs, out_dir) -> result`` that is importable by name (a ``"module:function"``
string) so Ray workers can run it. Keys are content hashes
(:mod:`sparseshift.experiments.study.artifacts`);
finished tasks are skipped. The local and the Ray executor call the same functions with the same
configs and seeds, so they give the same results.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparseshift.envs.config import Config
from sparseshift.experiments.study.artifacts import Artifact, config_key

StageFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Task:
    """One unit of study work: its stage's config object, hashed by its JSON."""

    stage: str
    fn: str  # "module:function"
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


def resolve(fn: str) -> StageFn:
    module, _, name = fn.partition(":")
    func: StageFn = getattr(importlib.import_module(module), name)
    return func


def execute(task_fn: str, stage: str, key: str, root: str, config: Config,
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
    fn = resolve(task_fn)
    args = (config, resolve_inputs(Path(root), inputs), out)
    result = dict(fn(*args, runtime=dict(runtime)) if runtime else fn(*args))
    result.setdefault("seconds", round(time.perf_counter() - t0, 2))
    result["artifact"] = f"{stage}/{key}"
    art.finish(result)
    return result


def resolve_inputs(root: Path, inputs: Mapping[str, dict[str, Any]]
                   ) -> dict[str, dict[str, Any]]:
    """Inputs with their ``files`` as absolute paths under ``root``."""
    out = {}
    for name, result in inputs.items():
        base = root / str(result.get("artifact", ""))
        files = {k: str(base / v) for k, v in dict(result.get("files", {})).items()}
        out[name] = {**result, "files": files}
    return out


def _execute_with_deps(task_fn: str, stage: str, key: str, root: str, config: Config,
                       runtime: Mapping[str, Any], names: Sequence[str],
                       *values: dict[str, Any]) -> dict[str, Any]:
    return execute(task_fn, stage, key, root, config, dict(zip(names, values, strict=True)),
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
#: ``done`` or ``failed``.
ProgressFn = Callable[[str, Task], None]


def _no_progress(event: str, task: Task) -> None:
    """The progress callback when none is given."""


class ProgressPrinter:
    """One line per stage event on stderr: what started, what finished and how long it took,
    elapsed time and an estimate of what is left (mean duration of finished stages of the same
    kind, spread over the parallel jobs)."""

    def __init__(self, tasks: Sequence[Task], jobs: int = 1, stream: Any = None) -> None:
        self.total = len(topo_order(tasks))
        self.jobs = max(1, jobs)
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self.started: dict[str, float] = {}
        self.took: dict[str, list[float]] = {}
        self.left: dict[str, int] = {}
        for t in topo_order(tasks):
            self.left[t.stage] = self.left.get(t.stage, 0) + 1
        self.finished = 0

    @staticmethod
    def _clock(seconds: float) -> str:
        m, s = divmod(round(seconds), 60)
        return f"{m}m{s:02d}s" if m else f"{s}s"

    def eta(self) -> str:
        done = [x for v in self.took.values() for x in v]
        if not done:
            return "?"
        overall = sum(done) / len(done)
        work = sum(n * (sum(self.took[st]) / len(self.took[st]) if self.took.get(st) else overall)
                   for st, n in self.left.items())
        return "~" + self._clock(work / self.jobs)

    def __call__(self, event: str, task: Task) -> None:
        name = f"{task.stage:<10} {task.label:<36}"
        if event == "start":
            self.started[task.key] = time.perf_counter()
            line = f"started   {name}"
        else:
            self.finished += 1
            self.left[task.stage] -= 1
            if event == "cached":
                line = f"reused    {name} (finished earlier)"
            else:
                took = time.perf_counter() - self.started.get(task.key, self.t0)
                if event == "done":
                    self.took.setdefault(task.stage, []).append(took)
                verb = "done     " if event == "done" else "FAILED   "
                line = f"{verb} {name} {self._clock(took)}"
        print(f"[{self.finished}/{self.total}] {line} | elapsed "
              f"{self._clock(time.perf_counter() - self.t0)}, left {self.eta()}",
              file=self.stream, flush=True)


def _inputs(task: Task, results: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d.stage + ":" + d.label: results[d.key] for d in task.deps}


def run_local(targets: Sequence[Task], root: Path, progress: ProgressFn | None = None,
              jobs: int = 1) -> dict[str, dict[str, Any]]:
    """Run the graph on this machine; returns results by task key.

    ``jobs == 1`` runs every task in this process, in dependency order. ``jobs > 1`` runs up to
    ``jobs`` ready tasks at a time in a pool of ``jobs`` worker processes (``spawn``): the same
    functions, configs and seeds, one torch thread each, so results equal the sequential run.
    """
    order = topo_order(targets)
    results: dict[str, dict[str, Any]] = {}
    progress = progress or _no_progress
    if jobs <= 1:
        for t in order:
            if t.artifact(root).done:
                results[t.key] = t.artifact(root).result()
                progress("cached", t)
                continue
            progress("start", t)
            try:
                results[t.key] = execute(t.fn, t.stage, t.key, str(root), t.config,
                                         _inputs(t, results), t.runtime)
            except BaseException:
                progress("failed", t)
                raise
            progress("done", t)
        return results
    return _run_pool(order, root, progress, jobs)


def _run_pool(order: list[Task], root: Path, progress: ProgressFn, jobs: int
              ) -> dict[str, dict[str, Any]]:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    results: dict[str, dict[str, Any]] = {}
    # Tasks that more work waits on start first (collect, then training), then those with larger
    # step budgets (long agent runs must not start last); ties keep the sequential order.
    below: dict[str, set[str]] = {t.key: set() for t in order}
    for t in reversed(order):
        for d in t.deps:
            below[d.key] |= below[t.key] | {t.key}
    rank = {t.key: i for i, t in enumerate(order)}

    def budget(t: Task) -> float:
        steps = getattr(t.config, "steps", 0)
        return float(steps) if isinstance(steps, int | float) else 0.0

    pending = sorted(order, key=lambda t: (-len(below[t.key]), -budget(t), rank[t.key]))
    running: dict[Future[dict[str, Any]], Task] = {}
    from sparseshift.envs.data.procs import die_with_parent

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
                except BaseException:
                    progress("failed", t)
                    raise
                progress("done", t)
    return results


def run_ray(targets: Sequence[Task], root: Path, address: str | None,
            progress: ProgressFn | None = None) -> dict[str, dict[str, Any]]:
    """Run independent tasks as Ray tasks (local Ray by default, or a cluster ``address``)."""
    from sparseshift.envs.errors import ConfigError

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
