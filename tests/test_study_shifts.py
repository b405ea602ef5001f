"""A study's shift lists (issue 22): the severity grammar, checked when the config loads (before
any stage), presets read from the shift registry, shift files keyed by their content, and the
report's robustness section (curves, mean relative robustness, probe against agent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import main
from sparseshift.experiments.study.presets import FULL, QUICK, SMOKE, StudyConfig, env_plan
from sparseshift.experiments.study.runner import ShiftFilesRef, build, shift_files_stage

GRID = "sparseshift/ColourGrid-v0"
OBJECT_REACH = "sparseshift/TriFingerObjectReach-v0"


def _toml(shifts: list[str], proxy: list[str] | None = None) -> str:
    metrics = "" if proxy is None else f"[metrics]\nproxy_splits = {json.dumps(proxy)}\n"
    return (f'name = "s"\n{metrics}[[envs]]\nenv_id = "{GRID}"\n[envs.data]\nkind = "pairs"\n'
            f"n = 64\n[envs.agent]\nsteps = 128\n[envs.evaluation]\n"
            f"shifts = {json.dumps(shifts)}\n")


@pytest.mark.parametrize(("shifts", "proxy", "why"), [
    (["in", "real:0.5"], None, "severity level must be an integer 1-5"),
    (["in", "real"], None, "needs scene feature"),
    (["in", "sideways"], None, "unknown shift 'sideways'"),
    (["in", "noise:3", "noise"], None, "listed twice"),
    (["in"], ["real"], "metrics.proxy_splits: .*none of the proxy splits"),
])
def test_a_bad_shift_fails_when_the_config_loads(tmp_path: Path, shifts: list[str],
                                                 proxy: list[str] | None, why: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(_toml(shifts, proxy))
    with pytest.raises(ConfigError, match=why) as err:
        StudyConfig.load(cfg)
    assert "\n" not in str(err.value) and str(cfg) in str(err.value)
    # the command: exit 2, one line, nothing written (no stage ran)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["study", "--config", str(cfg), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "bad.toml" in lines[0]
    assert not out.exists()


def test_good_shift_lists_load(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text(_toml(["in", "ood2", "noise:1-5", "blur@2.5"], ["in", "real", "noise:2"]))
    study = StudyConfig.load(cfg)
    assert study.envs[0].evaluation.shifts == ("in", "ood2", "noise:1-5", "blur@2.5")
    # real is left out of a grid env's proxy frames, not an error: one metrics config serves
    # grid and TriFinger envs
    assert study.metrics.proxy_splits == ("in", "real", "noise:2")


def test_presets_read_the_registry_and_quick_sweeps_two_nuisances() -> None:
    from sparseshift.envs.shifts.registry import default_registry

    (plan,) = QUICK.envs
    from sparseshift.envs.registry import scene_offer

    labels = [r.label for r in default_registry().resolve_all(plan.evaluation.shifts,
                                                               scene_offer(OBJECT_REACH))]
    assert labels[:4] == ["in", "ood1", "ood2", "real"]
    assert labels[4:] == ["lighting:1", "lighting:3", "lighting:5", "noise:1", "noise:3",
                          "noise:5"]
    assert QUICK.metrics.proxy_splits == plan.evaluation.shifts  # probes see the same shifts
    # the evaluation episodes the quick study runs (docs/study.md)
    agents = (sum(len(lp.seeds) for lp in plan.learners) + len(plan.baselines)) * len(
        plan.agent_seeds)
    assert agents * len(labels) * plan.evaluation.episodes == 30 * 10 * 40
    grid = next(p for p in FULL.envs if p.env_id == GRID)
    assert {r.name for r in default_registry().resolve_all(grid.evaluation.shifts)} >= {
        "noise", "blur"}  # a grid agent gets noise and blur
    assert "real" not in SMOKE.envs[0].evaluation.shifts
    # the demo and the scorecard read their columns from the registry too
    from sparseshift.experiments.commands.demo import demo_shifts
    from sparseshift.experiments.study.scorecard import SHIFTS

    assert demo_shifts() == SHIFTS == ("in", "ood1", "ood2", "real")


def test_shift_files_key_the_evaluations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dusk.toml").write_text('name = "dusk"\n[nuisances]\nnoise = 2\nblur = 1\n')

    def study() -> StudyConfig:
        return StudyConfig(name="f", envs=(env_plan(
            GRID, data={"kind": "pairs", "n": 64}, agent={"steps": 128}, baselines=("state",),
            evaluation={"shifts": ("in", "dusk.toml:1-2")}),))

    (before,) = build(study())
    files = before.eval_task.deps[1]
    ref = files.config
    assert isinstance(ref, ShiftFilesRef)
    assert before.eval_task.deps[0].stage == "agent" and files.stage == "shift_files"
    assert ref.files == ("dusk.toml",) and len(ref.digests[0]) == 64
    assert shift_files_stage(ref, {}, tmp_path)["digests"] == {"dusk.toml": ref.digests[0]}
    Path("dusk.toml").write_text('name = "dusk"\n[nuisances]\nnoise = 3\nblur = 1\n')
    (after,) = build(study())
    assert after.eval_task.key != before.eval_task.key  # an edited file: a new evaluation
    assert after.eval_task.deps[0].key == before.eval_task.deps[0].key  # the same agent
    with pytest.raises(ConfigError, match="changed while the study ran"):
        shift_files_stage(ref, {}, tmp_path)
    (plain,) = build(study().replace(envs=(study().envs[0].replace(
        evaluation=study().envs[0].evaluation.replace(shifts=("in", "noise:2"))),)))
    assert [d.stage for d in plain.eval_task.deps] == ["agent"]


# ---------------------------------------------------------------- the robustness section
def _row(enc: str, seed: int, label: str, succ: list[bool], name: str | None = None,
         sev: float | None = None, metrics: dict[str, float] | None = None) -> dict[str, Any]:
    return {"env_id": OBJECT_REACH, "encoder": enc, "kind": "learned", "encoder_seed": 0,
            "agent_seed": seed, "agent_dir": f"artifacts/agent/{enc}{seed}/agent",
            "shift": label, "shift_name": name or label, "severity": sev,
            "success": float(np.mean(succ)), "return": float(np.mean(succ)),
            "episode_successes": succ, "episode_returns": [float(x) for x in succ],
            "metrics": metrics or {}}


def _table() -> list[dict[str, Any]]:
    """Three encoders, two agent seeds each, 10 episodes: IN 8/10 and 6/10 (seed 0, 1);
    encoder k keeps (3 - k) / 3 of it under lighting:5 and all of it under lighting:1."""
    rows = []
    for k, enc in enumerate(("a", "b", "c")):
        probe = {"proxy_mlp_in_task": 0.8, "proxy_mlp_lighting:1_task": 0.8,
                 "proxy_mlp_lighting:5_task": 0.8 * (1 - 0.3 * k)}
        for seed, n_in in ((0, 8), (1, 6)):
            base = [i < n_in for i in range(10)]
            keep = round(n_in * (3 - k) / 3)
            rows += [_row(enc, seed, "in", base, metrics=probe),
                     _row(enc, seed, "ood2", base, metrics=probe),
                     _row(enc, seed, "lighting:1", base, "lighting", 1.0, probe),
                     _row(enc, seed, "lighting:5", [i < keep for i in range(10)], "lighting",
                          5.0, probe)]
    return rows


def test_robustness_curves_pool_the_runs_of_an_encoder() -> None:
    from sparseshift.agents.stats import binomial_ci
    from sparseshift.experiments.study.robustness_report import encoder_curves, main_labels

    table = _table()
    assert main_labels(table, OBJECT_REACH) == ["in", "ood2"]  # the sweep goes to curves
    curves, splits = encoder_curves(table, OBJECT_REACH)
    pts = curves["b"]["lighting"]
    assert [(p.severity, p.label) for p in pts] == [(0.0, "in"), (1.0, "lighting:1"),
                                                    (5.0, "lighting:5")]
    # encoder b keeps 2/3: round(8 * 2/3) + round(6 * 2/3) = 5 + 4 of 20 pooled episodes
    assert pts[2].success == pytest.approx(9 / 20)
    exact = binomial_ci(9, 20)
    assert (pts[2].success_low, pts[2].success_high) == (exact.low, exact.high)
    assert pts[0].success == pytest.approx(14 / 20)
    assert set(splits["a"]) == {"in", "ood2"}


def test_the_robustness_table_gives_ranges_over_runs() -> None:
    from sparseshift.experiments.study.robustness_report import agent_robustness, robustness_table

    table = _table()
    robust = agent_robustness(table, {})
    a0 = robust["artifacts/agent/a0/agent"]
    assert a0["mean"] == pytest.approx(1.0) and a0["shifts"]["lighting"]["mean"] == 1.0
    c1 = robust["artifacts/agent/c1/agent"]  # lighting: (6/6 + 2/6) / 2; ood2: 1
    assert c1["shifts"]["lighting"]["mean"] == pytest.approx(4 / 6)
    assert c1["mean"] == pytest.approx((1 + 4 / 6) / 2)
    md, data = robustness_table(table, robust)
    c = next(d for d in data if d["encoder"] == "c")
    c0 = (1 + (1 + 3 / 8) / 2) / 2  # seed 0: lighting:5 keeps round(8/3) = 3 of 8
    assert sorted(c["mean"]) == pytest.approx(sorted([c0, (1 + 4 / 6) / 2]))
    want = f"| c | 2 | {np.mean(c['mean']):.2f} (range "
    assert want in md and "2 runs)" in md and "[" not in md.split("| c |")[1].split("\n")[0]
    # a recorded value wins over the recomputation; one run shows its interval
    one = [r for r in table if r["agent_seed"] == 0]
    rec = {"artifacts/agent/a0/agent": {"mean": 0.9, "ci_low": 0.8, "ci_high": 1.0,
                                        "shifts": {"lighting": {"mean": 0.85, "ci_low": 0.7,
                                                                "ci_high": 1.0}}}}
    md1, _ = robustness_table(one, agent_robustness(one, rec))
    assert "| a | 1 | 0.90 [0.80, 1.00] |" in md1 and "0.85 [0.70, 1.00]" in md1


def test_probe_robustness_against_agent_robustness() -> None:
    from sparseshift.experiments.study.robustness_report import probe_vs_agent

    md, data = probe_vs_agent(_table())
    lighting = data[OBJECT_REACH]["shifts"]["lighting"]
    pts = {p["encoder"]: p for p in lighting["points"]}
    assert pts["c/s0"]["probe"] == pytest.approx((1 + 0.4) / 2)
    assert pts["c/s0"]["agent"] == pytest.approx((1 + (3 + 2) / 14) / 2)
    # probe and agent robustness fall together across the three encoders
    assert lighting["spearman"]["rho"] == pytest.approx(1.0) and lighting["spearman"]["n"] == 3
    assert "| lighting | lighting:1, lighting:5 | 3 | +1.00" in md
    ood2 = data[OBJECT_REACH]["shifts"]
    assert "ood2" not in ood2  # the proxy did not score ood2 here
    few, _ = probe_vs_agent([r for r in _table() if r["encoder"] != "c"])
    assert "n/a (2 runs: too few" in few


def test_robustness_figure(tmp_path: Path) -> None:
    from sparseshift.experiments.study.robustness_report import figures

    (png,) = figures(_table(), tmp_path)
    assert png.name == "robustness_TriFingerObjectReach-v0.png" and png.stat().st_size > 10_000


def test_a_tiny_study_reports_robustness(tmp_path: Path) -> None:
    """End to end on ColourGrid: graded noise in the evaluation and the proxy, the robustness
    section, the rows' shift names and severities, and eval.json's robustness carried over."""
    from sparseshift.experiments.study.presets import LearnerPlan
    from sparseshift.experiments.study.report import write_report
    from sparseshift.experiments.study.runner import run_study
    from sparseshift.representations.config import EvalConfig, TrainConfig

    shifts = ("in", "ood2", "noise:1", "noise:5")
    study = StudyConfig(name="rob", envs=(env_plan(
        GRID, data={"kind": "pairs", "n": 256},
        learners=(LearnerPlan("ada_gvae", TrainConfig(learner="ada_gvae", steps=4, batch=8,
                                                      model={"beta": 1.0})),),
        agent={"steps": 128, "hyperparams": {"n_envs": 2, "n_steps": 32, "batch_size": 32,
                                             "n_epochs": 1}},
        baselines=("state",), evaluation={"shifts": shifts, "episodes": 4, "seed": 1000}),),
        metrics=EvalConfig(num_train=128, num_test=64, dci_estimators=3,
                           proxy_splits=("in", "noise:1", "noise:5")))
    out = tmp_path / "rob"
    runs, results, seconds = run_study(study, out)
    write_report(study.name, runs, results, out, seconds)
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    got = {(r["shift"], r["shift_name"], r["severity"]) for r in rows}
    assert got == {("in", "in", None), ("ood2", "ood2", None), ("noise:1", "noise", 1.0),
                   ("noise:5", "noise", 5.0)}
    learned = next(r for r in rows if r["kind"] == "learned")
    assert {"proxy_mlp_noise:1", "proxy_mlp_noise:5"} <= set(learned["metrics"])
    report = (out / "report.md").read_text()
    head = report.split("## Results per shift")[1].split("\n## ")[0]
    assert "ood2 success" in head and "noise:1" not in head  # the sweep is in its own section
    section = report.split("## Robustness")[1].split("\n## ")[0]
    assert "![robustness_ColourGrid-v0](robustness_ColourGrid-v0.png)" in section
    assert "| encoder | noise:1 success | noise:5 success |" in section
    assert "### Mean relative robustness" in section and "| noise |" in section
    assert "| noise:5 | nuisance | in | noise 5 |" in section  # the shift's record
    assert (out / "robustness_ColourGrid-v0.png").stat().st_size > 10_000
    saved = json.loads((out / "study.json").read_text())
    for r in runs:
        agent_dir = next(x["agent_dir"] for x in rows if x["agent_seed"] == r.agent_seed
                         and x["encoder"] == r.encoder)
        ev = json.loads((out / agent_dir / "eval.json").read_text())
        assert saved["robustness"]["agents"][agent_dir] == ev["robustness"]
        assert saved["shift_defs"]["noise:5"] == ev["shift_defs"]["noise:5"]


def test_the_proxy_section_covers_the_sweeps(tmp_path: Path) -> None:
    from sparseshift.experiments.study.proxy_report import markdown, proxy_correlations, scatter

    table = _table()
    corr = proxy_correlations(table)
    per = corr[OBJECT_REACH]
    assert list(per) == ["in", "lighting:1", "lighting:5"]  # ood2: the proxy did not score it
    assert per["lighting:5"]["success"]["rho"] == pytest.approx(1.0)
    md = markdown(table, corr)
    assert "| lighting:5 | +1.00" in md  # a correlation row per label...
    assert "task proxy lighting:5" not in md  # ...but the per-encoder table keeps the headline
    (png,) = scatter(table, corr, tmp_path)
    assert png.stat().st_size > 10_000


def test_a_saved_study_config_loads_as_the_study_it_saved(tmp_path: Path) -> None:
    """``study --config OUT/NAME/study_config.json`` reruns the study as it was saved (the file
    holds ``{"study": ..., "versions": ...}``); a broken one is one line naming the file."""
    saved = tmp_path / "study_config.json"
    saved.write_text(json.dumps({"study": QUICK.to_json(), "versions": {"torch": "x"}}))
    assert StudyConfig.load(saved) == QUICK
    assert StudyConfig.load(saved, {"name": "again"}) == QUICK.replace(name="again")
    saved.write_text(json.dumps({"study": {"name": "x"}, "versions": {}}))
    with pytest.raises(ConfigError, match=r"study_config\.json \(a saved study.*needs envs"):
        StudyConfig.load(saved)
    saved.write_text(json.dumps({"study": 5, "versions": {}}))
    with pytest.raises(ConfigError, match=r"a saved study"):
        StudyConfig.load(saved)
