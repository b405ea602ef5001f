"""`sparseshift bench agents` runs end to end at a tiny size and prints its three rows per env
with ratios against the limits measured in the same run (slow: it builds PPO on pixel envs in
worker processes)."""

from __future__ import annotations

import re

import pytest

from sparseshift.experiments.cli import main


@pytest.mark.slow
def test_bench_agents_prints_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "agents", "--steps", "64", "--repeats", "1"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err  # workers quit quietly when their envs close
    assert len(re.findall(r"raw render\+physics loop\s+[\d.]+ steps/s", out)) == 2
    assert len(re.findall(r"x raw render\+physics loop\s+goal >= 0\.85x", out)) == 2
    assert len(re.findall(r"x PPO latents, 1 env worker\s+goal >= 1\.70x", out)) == 2
