"""The scorecard and the demo's verdict (issue 20, items 3 and 6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from scipy.stats import binomtest
from torch import nn

from sparseshift.experiments.cli import main
from sparseshift.experiments.commands.demo import verdict

MODULE = '''
import torch
from torch import nn


def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(2048, 8))
'''


def _run(successes: list[bool]) -> dict[str, Any]:
    return {"success": {"mean": sum(successes) / len(successes)}, "successes": successes}


def test_demo_verdict_uses_the_stronger_floor_and_mcnemar() -> None:
    learned = _run([True] * 30 + [False] * 10)
    weak = _run([False] * 40)
    strong = _run([True] * 24 + [False] * 16)  # 24 of the learned agent's 30 successes
    text, better = verdict(learned, {"random": strong, "sensors": weak})
    assert "stronger floor, random" in text
    # discordant pairs: learned-only 6, floor-only 0 -> exact McNemar p = binomtest(6, 6)
    p = binomtest(6, 6, 0.5).pvalue
    assert f"p={p:.3g}" in text and better == (p < 0.05)
    text2, better2 = verdict(_run([True] * 20 + [False] * 20), {"random": strong,
                                                               "sensors": weak})
    assert not better2 and "no significant difference" in text2


def test_scorecard_on_a_module_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sc_enc.py").write_text(MODULE)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(2048, 8))
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    argv = ["scorecard", "--encoder", "sc_enc:factory", "--encoder-weights", "w.safetensors",
            "--label", "tiny", "--steps", "1000", "--seeds", "1", "--reference-seeds", "0",
            "--episodes", "5", "--proxy-train", "100", "--proxy-test", "50", "--jobs", "1",
            "--out", "sc", "--cache", "cache"]
    assert main(argv) == 0
    data = json.loads((tmp_path / "sc" / "scorecard.json").read_text())
    assert set(data["agents"]) == {"tiny", "random", "sensors"}
    assert data["protocol"]["env_id"] == "sparseshift/TriFingerObjectReach-v0"
    assert data["protocol"]["seeds"] == 1 and data["versions"]
    assert set(data["verdicts"]) == {"random", "sensors"}
    # each random initialisation is probed; the cube position is the task factor
    assert data["probes"]["random"]["inits"] == 1
    assert set(data["probes"]["tiny"]["cube_r2_in"][0]) >= {"cube.x", "cube.y"} or \
        any("cube" in k for k in data["probes"]["tiny"]["cube_r2_in"][0])
    sensors = data["agents"]["sensors"]["shifts"]
    # no image: the rendering shift changes nothing for the sensors floor
    assert sensors["in"]["runs"] == sensors["real"]["runs"]
    md = (tmp_path / "sc" / "scorecard.md").read_text()
    assert "Verdict: the stronger floor on IN is" in md and "(range" in md
    assert (tmp_path / "sc" / "scorecard.png").stat().st_size > 10_000
    # rerun: everything reused, same numbers
    capsys.readouterr()
    assert main(argv) == 0
    assert "reused" in capsys.readouterr().out
    again = json.loads((tmp_path / "sc" / "scorecard.json").read_text())
    assert again["agents"] == data["agents"]
    # other weights at the same path: new encoder agents, the floors reused from the cache
    with torch.no_grad():
        net[3].bias.add_(1.0)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "started   agent      tiny s0" in out
    assert "started   agent      random s0" not in out
    assert json.loads((tmp_path / "sc" / "scorecard.json").read_text())["fingerprint"] != \
        data["fingerprint"]


def test_scorecard_refuses_a_baseline_and_a_bad_encoder_before_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for enc in ("random", "no_such_module_xyz:factory"):
        assert main(["scorecard", "--encoder", enc, "--out", "sc"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
    assert not (tmp_path / "sc" / "artifacts").exists()


def test_demo_on_your_encoder_prints_three_rows_and_a_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo_enc.py").write_text(MODULE)
    assert main(["demo", "--encoder", "demo_enc:factory", "--steps", "1000", "--episodes", "5",
                 "--jobs", "1", "--out", "demo"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines()
            if line.startswith(("encoder (demo_enc", "random (", "sensors only"))]
    assert len(rows) == 3, out
    assert "IN success: encoder (demo_enc:factory)" in out and "stronger floor" in out, out
    md = (tmp_path / "demo" / "demo.md").read_text()
    assert "Clopper-Pearson" in md and "| sensors only (no image) |" in md
