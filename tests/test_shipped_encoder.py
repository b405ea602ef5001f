"""The encoder shipped for `sparseshift demo`: made by the recorded command and config, intact,
and good at the one thing the demo needs (the cube's position)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib

from sparseshift.experiments.commands.demo import shipped_encoder
from sparseshift.representations.checkpoint import load_learner, read_checkpoint, read_run

ENCODER = shipped_encoder()


def test_recorded_config_is_the_shipped_toml() -> None:
    run = read_run(ENCODER)
    wanted = tomllib.loads((ENCODER / "train.toml").read_text())
    recorded = run["config"]
    for key, value in wanted.items():
        assert recorded[key] == value, key
    assert run["dataset"]["env_id"] == "sparseshift/TriFingerObjectReach-v0"
    assert run["dataset"]["kind"] == "pairs"
    made_by = (ENCODER / "MADE_BY.md").read_text()
    assert "--k 1 --n 10000 --seed 0" in made_by and "train.toml" in made_by
    ckpt = read_checkpoint(ENCODER)
    assert ckpt.weights_only and ckpt.step == wanted["steps"] == run["exported_from_step"]


def test_it_reads_the_cube_position() -> None:
    """Linear read-out of cube x/y from the shipped encoder's codes on fresh IN frames."""
    from sklearn.linear_model import Ridge

    from sparseshift.representations.evaluate import encode_frames
    from sparseshift.representations.proxy import render_proxy_set

    learner = load_learner(ENCODER)
    data = render_proxy_set("sparseshift/TriFingerObjectReach-v0", {"colours": "in"}, 600, 300,
                            seed=7, splits=("in",))
    names = list(data.factor_spec.names)
    idx = [names.index("cube.x"), names.index("cube.y")]
    ridge = Ridge(alpha=1e-3).fit(encode_frames(learner, data.frames["train"]),
                                  data.factors["train"][:, idx])
    r2 = ridge.score(encode_frames(learner, data.frames["in"]), data.factors["in"][:, idx])
    assert r2 > 0.6


@pytest.mark.slow
def test_the_recorded_collect_command_reproduces_the_dataset(tmp_path: Path) -> None:
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    res = collect(CollectConfig(env_id="sparseshift/TriFingerObjectReach-v0", kind="pairs",
                                n=10000, k=1, seed=0), tmp_path / "d.h5", workers=2,
                  progress=False)
    assert res.fingerprint == json.loads((ENCODER / "run.json").read_text())["dataset"][
        "fingerprint"]
