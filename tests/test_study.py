"""A tiny study end to end: in process it writes every output; on a local Ray it gives the same
results; a rerun skips every finished stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparseshift.agents.stats import binomial_ci, bootstrap_ci, mcnemar_exact
from sparseshift.experiments.cli import main
from sparseshift.experiments.study.presets import (
    LearnerPlan,
    StudyConfig,
    env_plan,
)
from sparseshift.experiments.study.report import write_report
from sparseshift.experiments.study.runner import build, run_study
from sparseshift.representations.config import EvalConfig, TrainConfig

TINY = StudyConfig(
    name="tiny",
    description="test",
    envs=(
        env_plan(
            "sparseshift/ColourGrid-v0",
            data={"kind": "pairs", "n": 256},
            learners=(LearnerPlan("ada_gvae", TrainConfig(learner="ada_gvae", steps=4, batch=8,
                                                          model={"beta": 1.0})),),
            agent={"steps": 128, "hyperparams": {"n_envs": 2, "n_steps": 32, "batch_size": 32,
                                                 "n_epochs": 1}},
            baselines=("state",),
            evaluation={"episodes": 3, "seed": 1000},
        ),
    ),
    metrics=EvalConfig(num_train=128, num_test=64, dci_estimators=3),
)


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((json.dumps(r, sort_keys=True) for r in rows), key=str)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "tiny"
    runs, results, seconds = run_study(TINY, out)
    write_report(TINY.name, runs, results, out, seconds)
    return out


def read_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def test_graph_shape() -> None:
    runs = build(TINY)
    assert [(r.encoder, r.kind) for r in runs] == [("ada_gvae", "learned"), ("state", "baseline")]
    learned = runs[0]
    assert learned.rep_task is not None and learned.eval_rep_task is not None
    assert learned.eval_rep_task.deps[1].key == learned.rep_task.key


def test_tiny_study_writes_all_outputs(local: Path) -> None:
    rows = read_rows(local)
    assert {(r["encoder"], r["shift"]) for r in rows} == {
        (e, s) for e in ("ada_gvae", "state") for s in ("in", "ood1", "ood2")
    }
    report = (local / "report.md").read_text()
    for r in rows:
        # the row's numbers are those of the agent's own per-episode results
        shift = json.loads((local / r["agent_dir"] / "eval.json").read_text())["shifts"][
            r["shift"]]
        assert r["episode_returns"] == shift["returns"] and len(r["episode_returns"]) == 3
        assert r["episode_successes"] == shift["successes"] and r["episodes"] == 3
        k = sum(r["episode_successes"])
        assert r["successes"] == k and r["success"] == pytest.approx(k / 3)
        exact = binomial_ci(k, 3)  # the success interval is the exact binomial one
        assert r["success_ci"] == [exact.low, exact.high]
        assert r["success_ci_method"] == "clopper-pearson" and exact.high - exact.low > 0.3
        boot = bootstrap_ci(r["episode_returns"], seed=1000)  # evaluation seed, 2000 resamples
        assert r["return"] == boot.mean and r["return_ci"] == [boot.low, boot.high]
        # one run per cell: the report prints exactly these intervals
        assert (f"{100 * k / 3:.0f}% [{100 * exact.low:.0f}, {100 * exact.high:.0f}]"
                in report)
        assert f"{boot.mean:.2f} [{boot.low:.2f}, {boot.high:.2f}]" in report
    learned = [r for r in rows if r["kind"] == "learned"]
    assert all(0.0 <= r["metrics"]["mig"] <= 1.0 for r in learned)
    assert "## Results per shift" in report and "ada_gvae" in report and "OOD2" in report
    assert "range" not in report.split("## Results per shift")[1].split("##")[0]
    # the paired shift-vs-IN tests are those of the per-episode lists
    paired = json.loads((local / "study.json").read_text())["paired_shift_tests"]
    assert len(paired) == 4  # two agents x (ood1, ood2)
    for t in paired:
        base, other = (next(r for r in rows if r["agent_dir"] == t["agent_dir"]
                            and r["shift"] == s) for s in ("in", t["shift"]))
        want = mcnemar_exact(base["episode_successes"], other["episode_successes"])
        assert t["success"] == want.to_json()
        assert t["return"]["diff"] == pytest.approx(
            float(np.mean(other["episode_returns"]) - np.mean(base["episode_returns"])))
    assert "## Each shift against IN, per agent run (paired)" in report
    assert (local / "returns_ColourGrid-v0.png").stat().st_size > 0
    stages = {p.name for p in (local / "artifacts").iterdir() if p.is_dir()}
    assert stages == {"collect", "proxy_data", "rep", "eval_rep", "agent", "eval_agent"}
    for done in (local / "artifacts").glob("*/*/DONE.json"):
        assert json.loads(done.read_text())["result"]
    assert list((local / "artifacts" / "agent").glob("*/agent/**/events.out.tfevents.*"))


def test_rerun_skips_everything(local: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = read_rows(local)
    runs, results, _ = run_study(TINY, local)
    err = capsys.readouterr().err
    assert "started" not in err and err.count("reused") == 8
    write_report(TINY.name, runs, results, local, 0.0)
    assert comparable(read_rows(local)) == comparable(before)


@pytest.mark.slow  # ~1 min: a whole tiny study on Ray; test_study_graph runs Ray on a task graph
def test_local_ray_gives_identical_results(local: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "tiny"
    runs, results, seconds = run_study(TINY, out, ray=True)
    write_report(TINY.name, runs, results, out, seconds)
    assert comparable(read_rows(out)) == comparable(read_rows(local))


def test_parallel_local_run_gives_identical_results(local: Path, tmp_path: Path) -> None:
    """--jobs 2: stages in two spawned processes, same rows as the sequential in-process run."""
    out = tmp_path / "tiny"
    runs, results, seconds = run_study(TINY, out, jobs=2)
    write_report(TINY.name, runs, results, out, seconds)
    assert comparable(read_rows(out)) == comparable(read_rows(local))


def test_sequence_learners_train_on_a_video_dataset() -> None:
    """The NWM's rep stage depends on the plan's video collection; its metrics and agents still
    use the pairs dataset; without a video dataset the preset is refused."""
    import dataclasses

    from sparseshift.envs.data.config import CollectConfig
    from sparseshift.envs.infra.errors import ConfigError

    nwm_plan = LearnerPlan("nwm", TrainConfig(learner="nwm", steps=2, batch=2, lr=2e-3,
                                              seq_len=4))
    video = CollectConfig(env_id="sparseshift/ColourGrid-v0", kind="video", n=300)
    plan = dataclasses.replace(TINY.envs[0], video=video,
                               learners=(*TINY.envs[0].learners, nwm_plan))
    runs = build(dataclasses.replace(TINY, envs=(plan,)))
    nwm = next(r for r in runs if r.encoder == "nwm")
    assert nwm.rep_task is not None and nwm.eval_rep_task is not None
    (data,) = nwm.rep_task.deps
    assert data.stage == "collect" and data.config == video
    assert nwm.eval_rep_task.deps[0].config.kind == "pairs"
    vae = next(r for r in runs if r.encoder == "ada_gvae")
    assert vae.rep_task is not None and vae.rep_task.deps[0].config.kind == "pairs"
    with pytest.raises(ConfigError, match="video dataset"):
        build(dataclasses.replace(TINY, envs=(dataclasses.replace(plan, video=None),)))


def test_quick_is_object_reaching_and_full_covers_every_learner() -> None:
    """quick: TriFingerObjectReach with at least six encoder runs, 3 agent seeds per encoder,
    the floors random and sensors and the references state and pixels, and every shift (issues
    #13, #20); smoke has the sensors floor too; full: every registered learner somewhere."""
    from sparseshift.experiments.study.presets import FULL, QUICK, SMOKE
    from sparseshift.representations.registry import learner_names

    (plan,) = QUICK.envs
    assert plan.env_id == "sparseshift/TriFingerObjectReach-v0"
    assert sum(len(lp.seeds) for lp in plan.learners) >= 6
    assert plan.baselines == ("state", "random", "sensors", "pixels")
    assert len(plan.agent_seeds) >= 3
    assert set(SMOKE.envs[0].baselines) == {"state", "random", "sensors"}
    assert plan.evaluation.shifts[:4] == ("in", "ood1", "ood2", "real")  # + sweeps (issue 22)
    assert plan.data.k == 1 and QUICK.metrics.proxy
    used = {lp.train.learner for p in FULL.envs for lp in p.learners}
    assert used == set(learner_names())


def test_study_cli_bad_preset_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--preset", "huge"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset 'huge'; valid: smoke, quick, sweep, full" in err[0]


def test_study_cli_bad_jobs_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--preset", "smoke", "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--jobs must be >= 1" in err[0]
