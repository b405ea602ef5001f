"""evaluate under registry shifts (issue 22): labels and severities, shift definitions with their
SHA-256 in eval.json, relative robustness, the figure and table, TensorBoard scalars, user shift
files and plugin shifts (a changed file is evaluated again), bad shifts refused before any
episode, and videos that never change results. One tiny ColourGrid agent, few episodes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from sparseshift.agents.config import AgentConfig
from sparseshift.agents.evaluate import evaluate
from sparseshift.agents.robustness import robustness_of
from sparseshift.agents.train import train_agent
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.shifts.registry import default_registry
from sparseshift.experiments.cli import main

torch.set_num_threads(1)

GRID = "sparseshift/ColourGrid-v0"
TINY_PPO = {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny state-based PPO agent on ColourGrid (periodic evaluation on, to check what
    agent.json records of it)."""
    cfg = AgentConfig(env_id=GRID, encoder="state", steps=128, seed=1, hyperparams=TINY_PPO,
                      eval_every=128, eval_episodes=2, checkpoint_every=0, tensorboard=False)
    return train_agent(cfg, tmp_path_factory.mktemp("agents") / "agent")


@pytest.fixture
def agent(trained: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained agent (evaluations write into its folder)."""
    return Path(shutil.copytree(trained, tmp_path / "agent"))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_agent_json_records_training_and_periodic_eval_shifts(trained: Path) -> None:
    shifts = json.loads((trained / "agent.json").read_text())["shifts"]
    record = default_registry().resolve("in").record()
    assert shifts["train"] == [json.loads(json.dumps(record))]
    assert shifts["periodic_eval"]["label"] == "in"
    assert shifts["periodic_eval"]["sha256"] == record["sha256"]


def test_graded_shifts_labels_defs_robustness_figure_and_scalars(agent: Path) -> None:
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = evaluate(agent, "in,noise:1-2,blur@2.5,ood2", episodes=4, seed=0, resamples=200)
    labels = ["in", "noise:1", "noise:2", "blur@2.5", "ood2"]
    assert list(res["shifts"]) == labels and res["params"]["shifts"] == labels
    reg = default_registry()
    for label in labels:
        d = res["shift_defs"][label]
        want = reg.resolve(label).record()
        assert d["sha256"] == want["sha256"] and d["definition"] == want["definition"]
    assert res["shift_defs"]["noise:2"]["effective"] == {"noise": 2.0}
    assert res["shift_defs"]["blur@2.5"]["severity"] == 2.5
    assert res["shift_defs"]["ood2"]["severity"] is None
    # the summary is robustness_of the written result, and the paired tests cover every label
    assert res["robustness"] == json.loads(json.dumps(robustness_of(res, 0, 200)))
    assert set(res["paired"]) == set(labels[1:])
    assert json.loads((agent / "eval.json").read_text()) == res

    png = Path(res["robustness_figure"])
    assert png == agent / "robustness.png"
    with Image.open(png) as im:
        w, h = im.size
    assert w >= 600 and h >= 500  # noise, blur and the colour splits, success and return rows
    md = (agent / "robustness.md").read_text()
    assert res["robustness_table"] == str(agent / "robustness.md")
    assert all(f"| {lb} |" in md for lb in labels)

    acc = EventAccumulator(res["tensorboard"], size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {f"success_rate/{lb}" for lb in labels} <= tags
    assert {f"mean_return/{lb}" for lb in labels} <= tags
    got = acc.Scalars("success_rate/noise:2")[0].value
    assert got == pytest.approx(res["shifts"]["noise:2"]["success"]["mean"])

    # the same request again: cached (same definitions), the figure redrawn if removed
    png.unlink()
    assert evaluate(agent, "in,noise:1-2,blur@2.5,ood2", episodes=4, seed=0,
                    resamples=200) == res
    assert png.is_file()
    # only colour splits now: the figure is redrawn with their panel alone (smaller)
    size = png.stat().st_size
    res2 = evaluate(agent, "in,ood1", episodes=2, seed=0, resamples=50)
    assert res2["robustness_figure"] == str(png) and png.is_file()
    assert png.stat().st_size < size


def _dusk(path: Path, noise: float) -> str:
    text = f'name = "dusk"\nsummary = "grainy"\n[nuisances]\nnoise = {noise}\n'
    path.write_text(text)
    return text


def test_user_shift_file_recorded_verbatim_and_a_change_invalidates_the_cache(
        agent: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the file is named relative to the current directory
    text = _dusk(tmp_path / "dusk.toml", 2)
    args = ("evaluate", str(agent), "--shifts", "in,dusk.toml:1-2", "--episodes", "2",
            "--quiet")
    rc, out, err = cli(capsys, *args)
    assert rc == 0, err
    first = json.loads((agent / "eval.json").read_text())
    assert list(first["shifts"]) == ["dusk:1", "dusk:2", "in"]  # keys sorted in the file
    d = first["shift_defs"]["dusk:2"]
    assert d["definition"]["source"] == text
    assert d["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert d["effective"] == {"noise": pytest.approx(2 * 2 / 3)}  # level 2 of "3 = noise 2"
    assert d["kind"] == "composition" and d["name"] == "dusk"
    assert "dusk:1 " in out and "mean relative robustness" in out
    assert "robustness.png" in out and "robustness.md" in out
    stamp = (agent / "eval.json").stat().st_mtime_ns

    rc, _, err = cli(capsys, *args)  # unchanged file: the cached evaluation
    assert rc == 0 and "already holds this evaluation" in err
    assert (agent / "eval.json").stat().st_mtime_ns == stamp

    changed = _dusk(tmp_path / "dusk.toml", 4)
    rc, _, err = cli(capsys, *args)
    assert rc == 0 and "already holds" not in err
    second = json.loads((agent / "eval.json").read_text())
    assert second["shift_defs"]["dusk:2"]["sha256"] == hashlib.sha256(
        changed.encode()).hexdigest() != d["sha256"]
    assert second["shift_defs"]["dusk:2"]["effective"] == {"noise": pytest.approx(4 * 2 / 3)}


def test_plugin_module_shift_is_evaluated(agent: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from sparseshift.representations.plugins import Plugins

    (tmp_path / "my_shifts_22.py").write_text(
        "from sparseshift.envs.shifts.registry import ShiftDef\n"
        "SPARSESHIFT_SHIFTS = [ShiftDef('grain', 'composition', 'noise and jpeg', 'ood2',\n"
        "                               (('noise', 2.0), ('jpeg', 3.0)))]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="grain"):  # not allowed: not known
        evaluate(agent, "in,grain:3", episodes=2)
    res = evaluate(agent, "in,grain:3", episodes=2, plugins=Plugins.of("my_shifts_22"))
    d = res["shift_defs"]["grain:3"]
    assert d["colours"] == "ood2" and d["effective"] == {"noise": 2.0, "jpeg": 3.0}


@pytest.mark.parametrize(("shifts", "needle"), [
    ("in,lighting:0", "severity level must be an integer 1-5"),
    ("in,real:0.5", "integer 1-5"),
    ("in,noise@7", "[0, 5]"),
    ("in,nope", "nope"),
    ("in,real", "real"),  # ColourGrid has no lights: refused before any episode
    ("in,missing.toml", "not found"),
])
def test_bad_shifts_are_one_line_exit_2_before_any_episode(
        agent: Path, capsys: pytest.CaptureFixture[str], shifts: str, needle: str) -> None:
    rc, _, err = cli(capsys, "evaluate", str(agent), "--shifts", shifts, "--episodes", "2")
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert "evaluate in" not in err  # no progress bar: no episode ran
    assert not (agent / "eval.json").exists()


def test_videos_under_a_graded_shift_do_not_change_results(agent: Path) -> None:
    plain = evaluate(agent, "in,noise:3", episodes=2, seed=3, resamples=50)
    recorded = evaluate(agent, "in,noise:3", episodes=2, seed=3, resamples=50, video=1)
    for label in ("in", "noise:3"):
        for key in ("returns", "successes"):
            assert recorded["shifts"][label][key] == plain["shifts"][label][key]
    mp4 = Path(recorded["shifts"]["noise:3"]["videos"][0])
    assert mp4.name == "noise+3_0.mp4" and mp4.is_file()
    assert recorded["robustness"] == plain["robustness"]


def same(a: Any, b: Any) -> None:
    import numpy as np

    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    else:
        np.testing.assert_array_equal(a, b)


def test_recorded_frames_are_the_envs_annotated_frames() -> None:
    """The recorder's frames come from annotated_frame (shift applied, target boxes, label) and
    recording leaves the observations the policy gets unchanged."""
    import numpy as np

    from sparseshift.agents.video import EpisodeRecorder
    from sparseshift.envs.registry import make

    shift = default_registry().resolve("noise:4").env_shift()
    plain = make(GRID, shift=shift)
    rec = EpisodeRecorder(make(GRID, shift=shift), {5: 0}, "")
    o1, _ = plain.reset(seed=5)
    o2, _ = rec.reset(seed=5)
    u: Any = rec.unwrapped
    first = u.annotated_frame()
    same(o1, o2)
    for a in (0, 1, 2):
        same(plain.step(a)[0], rec.step(a)[0])
    frames = rec.frames[0]
    assert len(frames) == 4
    assert frames[0].label == "noise:4"  # the env's shift label when none is given
    assert frames[0].boxes == [(b.x0, b.y0, b.x1, b.y1) for b in first.boxes] != []
    np.testing.assert_array_equal(frames[0].image, first.image)
    plain.close()
    rec.close()
