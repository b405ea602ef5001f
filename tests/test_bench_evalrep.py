"""``sparseshift bench evalrep`` on tiny settings (one learner, a few steps, 96 pairs): the rows and
the ratio are printed and finite; its README runs are the README's lines; bad input is one line."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import pytest

from sparseshift.experiments.bench.evalrep import (
    DATASETS,
    README_ROWS,
    README_RUNS,
    EvalTime,
    eval_row,
    summary,
)
from sparseshift.experiments.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def readme_line(prefix: str) -> list[str]:
    """Tokens after ``sparseshift`` of the one README line starting with ``prefix``."""
    lines = [x for x in README.splitlines() if x.startswith(prefix + " ")]
    assert len(lines) == 1, prefix
    return shlex.split(lines[0], comments=True)[1:]


def without(tokens: list[str], *flags: str) -> tuple[list[str], dict[str, str]]:
    """``tokens`` without ``flags`` and their values, and those values."""
    rest, values = [], {}
    it = iter(tokens)
    for tok in it:
        if tok in flags:
            values[tok] = next(it)
        else:
            rest.append(tok)
    return rest, values


@pytest.mark.parametrize("learner", ["ada_gvae", "slot_attention", "nwm"])
def test_readme_runs_are_the_readmes_lines(learner: str) -> None:
    run = README_RUNS[learner]
    tokens = readme_line(f"sparseshift train-rep --learner {learner}")
    flags, values = without(tokens[1:], "--data", "--out")
    assert flags == list(run.train) and values["--data"] == f"{run.data}.h5"
    assert run.steps == 20000
    env_id = DATASETS[run.data]["env_id"]
    collect, values = without(readme_line(
        f"sparseshift collect --env {env_id} --kind {DATASETS[run.data]['kind']}")[1:],
                              "--out", "--n", "--workers")
    assert values["--out"] == f"{run.data}.h5" and int(values["--n"]) == README_ROWS
    setting = dict(zip(collect[::2], collect[1::2], strict=True))
    for key, value in DATASETS[run.data].items():
        assert setting[f"--{key if key != 'env_id' else 'env'}"] == str(value)
    readme_evals = [t for t in README.splitlines()
                    if t.startswith(f"sparseshift eval-rep runs/{Path(tokens[-1]).name} ")]
    for line in readme_evals:  # the README's eval-rep line of this run is one of the timed ones
        words = shlex.split(line, comments=True)
        flags = [w for w in words if w.startswith("--") and w != "--data"]
        assert any([w for w in f if w.startswith("--")] == flags for _, f in run.evals), line


def test_rows_and_summary_show_ratio_and_goal() -> None:
    row = eval_row(EvalTime("nwm", "--waves", 30.0, 600.0))
    assert "0.0500x training" in row and "goal <= 0.10x: ok" in row
    assert "MISSED" in eval_row(EvalTime("nwm", "--out", 61.0, 600.0))
    table = summary([EvalTime("nwm", "--waves", 30.0, 600.0)])
    assert "training (extrap.)" in table and re.search(r"nwm +--waves +600\.0 +30\.0 +0\.0500 +ok",
                                                       table)


def test_bench_evalrep_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "evalrep", "--only", "beta_vae", "--pairs", "96", "--warmup", "1",
               "--steps", "2", "--repeats", "2", "--train-args=--batch 4",
               "--eval-args=--no-proxy"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "NOT the README runs" in out
    assert "sparseshift train-rep --learner beta_vae --steps 20000 --seed 0" in out
    assert re.search(r"training loop \(README flags, after warm-up\) +[0-9.]+ steps/s", out)
    assert "EXTRAPOLATED from the measured rate" in out
    assert re.search(r"eval-rep --out --export-codes +[0-9.]+ s .*x training  goal <= 0\.10x: "
                     r"(ok|MISSED)", out)
    assert "code dims" in out and "stages encode" in out
    row = re.search(r"^beta_vae +--out --export-codes +(\S+) +(\S+) +(\S+) +(ok|MISSED)$", out,
                    re.M)
    assert row is not None, out
    train_s, eval_s, ratio = (float(v) for v in row.groups()[:3])
    assert all(math.isfinite(v) and v > 0 for v in (train_s, eval_s, ratio))
    assert ratio == pytest.approx(eval_s / train_s, rel=0.02, abs=1e-4)


def test_bench_evalrep_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "evalrep", "--only", "ada_mlvae"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown README learner 'ada_mlvae'" in err
    assert len(err.strip().splitlines()) == 1
    rc = main(["bench", "evalrep", "--steps", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "must be >= 1" in err
