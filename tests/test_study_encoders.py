"""Your own encoders in a study (issue 20): judged like a learned encoder (agents per agent seed,
proxy-task probes), each random initialisation probed as its own floor, the sensors floor, keys
that follow the encoder's weights, and a bad encoder refused before any stage runs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import main
from sparseshift.experiments.study.graph import topo_order
from sparseshift.experiments.study.presets import EncoderPlan, StudyConfig, env_plan
from sparseshift.experiments.study.report import write_report
from sparseshift.experiments.study.runner import build, run_study, targets
from sparseshift.representations.config import EvalConfig

GRID = "sparseshift/ColourGrid-v0"
MOD = "study_user_enc"  # unique: the module stays imported for the rest of the session
MODULE = '''
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 16 * 16, 8))
'''


def plan(**fields: object) -> StudyConfig:
    encoders = fields.pop("encoders", (EncoderPlan("mine", f"{MOD}:make", "w.safetensors"),))
    return StudyConfig(
        name="yours",
        envs=(env_plan(
            GRID,
            data={"kind": "pairs", "n": 1000},
            agent={"steps": 1024, "hyperparams": {"n_envs": 2, "n_steps": 128,
                                                  "batch_size": 64, "n_epochs": 2}},
            encoders=encoders,
            agent_seeds=(0, 1),
            baselines=("random", "sensors"),
            evaluation={"episodes": 5, "seed": 1000},
            **fields,
        ),),
        metrics=EvalConfig(num_train=500, num_test=200, dci_estimators=3),
    )


def write_encoder(folder: Path, bump: float = 0.0) -> None:
    """The user's module and its weights (``bump`` changes the weights)."""
    (folder / f"{MOD}.py").write_text(MODULE)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 4), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 16 * 16, 8))
    with torch.no_grad():
        net[3].bias.add_(bump)
    save_file(net.state_dict(), str(folder / "w.safetensors"))


@pytest.fixture(scope="module")
def here(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("yours")
    write_encoder(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        yield folder


@pytest.fixture(scope="module")
def study(here: Path) -> Path:
    out = here / "out"
    runs, results, seconds = run_study(plan(), out)
    write_report("yours", runs, results, out, seconds)
    return out


def rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def test_graph_of_a_user_encoder(here: Path) -> None:
    runs = build(plan(), plugins=["other_mod"])
    assert [(r.encoder, r.kind, r.agent_seed) for r in runs] == [
        ("mine", "learned", 0), ("mine", "learned", 1), ("random", "baseline", 0),
        ("random", "baseline", 1), ("sensors", "baseline", 0), ("sensors", "baseline", 1)]
    mine = runs[0]
    assert mine.encoder_spec == f"{MOD}:make" and mine.fingerprint
    agent = mine.eval_task.deps[0]
    assert agent.config.encoder == f"{MOD}:make"
    assert agent.config.encoder_weights == str(here / "w.safetensors")
    (enc,) = agent.deps  # the agents hang off the encoder task, which holds the fingerprint
    assert enc.stage == "encoder" and enc.config.fingerprint == mine.fingerprint
    assert mine.probe_task is not None and mine.probe_task.config.fingerprint == mine.fingerprint
    assert runs[1].probe_task is mine.probe_task  # one probe for the encoder, both agent seeds
    # each random initialisation (init seed = agent seed) gets its own probe
    rnd = [r for r in runs if r.encoder == "random"]
    assert [(r.probe_task.config.encoder, r.probe_task.config.seed) for r in rnd
            if r.probe_task is not None] == [("random", 0), ("random", 1)]
    assert all(r.probe_task is None for r in runs if r.encoder == "sensors")
    # every stage that loads an encoder may import the config's module and the --plugin ones
    for t in topo_order(targets(runs)):
        if t.stage not in ("collect", "proxy_data"):
            assert t.runtime["plugins"] == ("other_mod", MOD), t.stage
    # without the proxy: no probes, the agents still follow the fingerprint
    no_proxy = dataclasses.replace(plan(), metrics=EvalConfig(num_train=128, num_test=64,
                                                               proxy=False))
    runs = build(no_proxy)
    assert all(r.probe_task is None for r in runs)
    assert runs[0].eval_task.deps[0].deps[0].config.fingerprint == mine.fingerprint


def test_study_reports_the_user_encoder_and_each_random_init(study: Path) -> None:
    table = rows(study)
    assert {(r["encoder"], r["kind"], r["agent_seed"]) for r in table} == {
        (e, k, s) for e, k in (("mine", "learned"), ("random", "baseline"),
                               ("sensors", "baseline")) for s in (0, 1)}
    mine = [r for r in table if r["encoder"] == "mine"]
    assert len(mine) == 6 and all(r["encoder_spec"] == f"{MOD}:make" for r in mine)
    assert all("proxy_mlp_in" in r["metrics"] for r in mine)  # from its probe
    report = (study / "report.md").read_text()
    assert f"`mine` = `{MOD}:make`" in report
    assert "| mine " in report.split("## Results per shift")[1].split("\n## ")[0]
    floors = report.split("## Floors: each random initialisation, probed")[1].split("\n## ")[0]
    lines = [x for x in floors.splitlines() if x.startswith("| random (random init) |")]
    assert [x.split("|")[2].strip() for x in lines] == ["0", "1"]
    assert any(x.startswith("| mine (your encoder) |") for x in floors.splitlines())
    data = json.loads((study / "study.json").read_text())["floors"]
    inits = [e for e in data if e["kind"] == "random init"]
    assert [e["seed"] for e in inits] == [0, 1]
    for e in inits:
        assert e["task_r2_in"] and len(e["in_success"]) == 1
        # the row is the probe's own result
        (probe,) = [r for r in table if r["encoder"] == "random" and r["agent_seed"] == e["seed"]
                    and r["shift"] == "in"]
        assert probe["metrics"].get("proxy_mlp_in_task") == e["proxy_mlp_in_task"]
    # the two initialisations differ, so do their probes
    assert inits[0]["task_r2_in"] != inits[1]["task_r2_in"]
    stages = {p.name for p in (study / "artifacts").iterdir() if p.is_dir()}
    assert stages == {"collect", "proxy_data", "encoder", "probe", "agent", "eval_agent"}


def test_rerun_reuses_everything(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    runs, _, _ = run_study(plan(), study)
    err = capsys.readouterr().err
    n = len(topo_order(targets(runs)))
    assert "started" not in err and err.count("reused") == n == 18


def test_changed_weights_change_the_agent_keys(here: Path) -> None:
    before = build(plan())
    write_encoder(here, bump=1.0)
    try:
        after = build(plan())
    finally:
        write_encoder(here)
    for b, a in zip(before, after, strict=True):
        same = b.encoder != "mine"
        assert (b.eval_task.deps[0].key == a.eval_task.deps[0].key) is same
        assert (b.eval_task.key == a.eval_task.key) is same
    assert before[0].fingerprint != after[0].fingerprint
    assert build(plan())[0].eval_task.key == before[0].eval_task.key  # restored: same keys


def test_a_missing_module_fails_before_any_stage(here: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = plan(encoders=(EncoderPlan("ghost", "no_such_module_xyz:make"),))
    with pytest.raises(ConfigError, match=r"'ghost'.*cannot import module 'no_such_module_xyz'"):
        run_study(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # from the command line: exit 2, one line
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps(bad.to_json()))
    capsys.readouterr()
    assert main(["study", "--config", str(cfg), "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_module_xyz" in err[0]
    assert not (tmp_path / "cli").exists()


def test_encoder_plans_are_checked_when_they_load(here: Path) -> None:
    base = plan().envs[0].to_json()

    def load(*encoders: dict[str, object], **fields: object) -> None:
        StudyConfig.from_json({"name": "x", "envs": [{**base, "encoders": list(encoders),
                                                      **fields}]})

    load({"label": "a", "encoder": f"{MOD}:make", "encoder_weights": "w.safetensors"})
    with pytest.raises(ConfigError, match="needs a label"):
        load({"label": "", "encoder": f"{MOD}:make"})
    with pytest.raises(ConfigError, match="encoder is empty"):
        load({"label": "a", "encoder": ""})
    with pytest.raises(ConfigError, match="has its own weights"):
        load({"label": "a", "encoder": str(here), "encoder_weights": "w.safetensors"})
    with pytest.raises(ConfigError, match=r"installed sparseshift\.encoders entry point"):
        load({"label": "a", "encoder": "not_an_entry_point", "encoder_weights": "w.safetensors"})
    with pytest.raises(ConfigError, match="is a baseline"):
        load({"label": "a", "encoder": "random"})
    with pytest.raises(ConfigError, match="labels must be unique"):
        load({"label": "a", "encoder": f"{MOD}:make"}, {"label": "a", "encoder": "m:f"})
    with pytest.raises(ConfigError, match="labels must be unique"):
        load({"label": "vae", "encoder": f"{MOD}:make"},
             learners=[{"label": "vae", "train": {"learner": "beta_vae"}}])
    with pytest.raises(ConfigError, match="a baseline's name"):
        load({"label": "sensors", "encoder": f"{MOD}:make"})


def test_study_cli_takes_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    assert "--plugin MODULE" in capsys.readouterr().out
    assert main(["study", "--preset", "smoke", "--plugin", "not a module"]) == 2
    assert "not a module name" in capsys.readouterr().err
