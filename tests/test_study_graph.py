"""The study task graph: content keys, skipping finished work, resuming, and Ray == local."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sparseshift.envs.infra.config import Config
from sparseshift.experiments.study.artifacts import DONE
from sparseshift.experiments.study.graph import Task, run_local, run_ray, topo_order

CALLS: list[str] = []


@dataclass(frozen=True)
class A(Config):
    x: int = 0


@dataclass(frozen=True)
class B(Config):
    y: int = 0
    fail: bool = False


def stage_a(config: A, inputs: Mapping[str, Any], out: Path) -> dict[str, Any]:
    CALLS.append(f"a{config.x}")
    (out / "a.txt").write_text(str(config.x))
    return {"value": config.x * 2, "files": {"a": "a.txt"}}


def stage_b(config: B, inputs: Mapping[str, Any], out: Path) -> dict[str, Any]:
    CALLS.append("b")
    if config.fail:
        raise RuntimeError("boom")
    texts = [Path(v["files"]["a"]).read_text() for v in inputs.values()]
    return {"value": sum(v["value"] for v in inputs.values()) + config.y, "texts": sorted(texts)}


def graph(y: int = 10, fail: bool = False) -> Task:
    a1 = Task("a", stage_a, A(1), label="1")
    a2 = Task("a", stage_a, A(2), label="2")
    return Task("b", stage_b, B(y, fail), deps=(a1, a2), label="b")


def test_keys_change_with_config_and_upstream() -> None:
    b = graph()
    assert graph().key == b.key
    assert graph(y=11).key != b.key
    a1 = Task("a", stage_a, A(5), label="1")
    a2 = Task("a", stage_a, A(2), label="2")
    b2 = Task("b", stage_b, B(10, False), deps=(a1, a2), label="b")
    assert b2.key != b.key  # an upstream change changes the downstream key
    assert [t.stage for t in topo_order([b, b])] == ["a", "a", "b"]


def test_local_run_skips_finished_work(tmp_path: Path) -> None:
    CALLS.clear()
    b = graph()
    assert run_local([b], tmp_path)[b.key]["value"] == 16
    assert sorted(CALLS) == ["a1", "a2", "b"]
    CALLS.clear()
    assert run_local([b], tmp_path)[b.key]["value"] == 16
    assert CALLS == []  # everything was done
    CALLS.clear()
    assert run_local([graph(y=20)], tmp_path)[graph(y=20).key]["value"] == 26
    assert CALLS == ["b"]  # only the changed stage reran
    marker = json.loads((tmp_path / "b" / b.key / DONE).read_text())
    assert marker["result"]["value"] == 16 and marker["result"]["texts"] == ["1", "2"]


def test_a_moved_study_reads_its_own_files(tmp_path: Path) -> None:
    """Results name files relative to their artifact folder: a copy of the artifacts, with an
    upstream file changed, feeds the copy's file to the rerun stage, not the original's."""
    b = graph()
    run_local([b], tmp_path / "orig")
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")
    a1 = next(d for d in b.deps if d.label == "1")
    (tmp_path / "copy" / "a" / a1.key / "a.txt").write_text("changed")
    shutil.rmtree(tmp_path / "copy" / "b")
    assert run_local([b], tmp_path / "copy")[b.key]["texts"] == ["2", "changed"]


def test_interrupted_stage_is_redone_not_read(tmp_path: Path) -> None:
    CALLS.clear()
    bad = graph(fail=True)
    with pytest.raises(RuntimeError, match="boom"):
        run_local([bad], tmp_path)
    assert not (tmp_path / "b" / bad.key / DONE).exists()
    assert (tmp_path / "b" / bad.key / "stage_config.json").exists()
    CALLS.clear()
    good = graph()
    run_local([good], tmp_path)
    assert CALLS == ["b"]  # the finished 'a' stages were reused after the crash


def test_a_pool_runs_the_stage_functions_by_reference(tmp_path: Path) -> None:
    """Tasks carry their stage functions; a pool of spawned workers gets them by reference
    (module and name) and gives the results of the in-process run. The function is no part of
    a task's key."""
    b = graph()
    assert b.fn is stage_b and Task("b", stage_a, B(10, False), deps=b.deps, label="b").key == b.key
    local = run_local([b], tmp_path / "local")
    pooled = run_local([b], tmp_path / "pool", jobs=2)
    strip = {"seconds"}
    assert {k: {kk: vv for kk, vv in v.items() if kk not in strip} for k, v in local.items()} == {
        k: {kk: vv for kk, vv in v.items() if kk not in strip} for k, v in pooled.items()}


def test_ray_gives_the_same_results(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    b = graph()
    local = run_local([b], tmp_path / "local")
    remote = run_ray([b], tmp_path / "ray", None)
    strip = {"seconds", "path"}
    assert {k: {kk: vv for kk, vv in v.items() if kk not in strip} for k, v in local.items()} == {
        k: {kk: vv for kk, vv in v.items() if kk not in strip} for k, v in remote.items()
    }


def test_a_stopped_stage_is_reported_stopped_not_failed(tmp_path: Path) -> None:
    import io

    from sparseshift.experiments.study.graph import ProgressPrinter

    def stopping(config: B, inputs: Mapping[str, Any], out: Path) -> dict[str, Any]:
        raise KeyboardInterrupt

    events: list[str] = []
    target = graph()
    # in process (jobs=1), a stage function need not be importable
    stop = Task("b", stopping, B(1), deps=target.deps, label="b")
    with pytest.raises(KeyboardInterrupt):
        run_local([stop], tmp_path, progress=lambda e, t: events.append(f"{e} {t.stage}"))
    assert events[-1] == "interrupted b"
    stream = io.StringIO()
    printer = ProgressPrinter([stop], stream=stream)
    printer("start", stop)
    printer("interrupted", stop)
    printer("failed", stop)
    lines = stream.getvalue().splitlines()
    assert "stopped" in lines[1] and "FAILED" not in lines[1] and "FAILED" in lines[2]
