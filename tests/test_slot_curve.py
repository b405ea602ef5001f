"""``sparseshift slot-curve``: Slot Attention FG-ARI against training time, on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import main
from sparseshift.experiments.study.slot_curve import (
    PRESETS,
    SlotCurvePreset,
    at_minutes,
    run,
    time_to,
)
from sparseshift.representations.checkpoint import load_learner
from sparseshift.representations.config import TrainConfig
from sparseshift.representations.slot_eval import (
    BACKGROUND_NAMES,
    dataset_ground_truth,
    predict_segmentation,
    slot_learner,
)

TINY = {"num_slots": 3, "iters": 2, "slot_size": 8, "mlp_hidden": 16,
        "enc_channels": (4, 4, 4), "enc_kernels": (3, 3, 3), "enc_strides": (2, 2, 2),
        "dec_broadcast": 8, "dec_channels": (4,), "dec_kernels": (4,), "dec_strides": (2,),
        "dec_out_kernel": 4, "dec_out_stride": 2}


def test_tiny_curves_report_plot_and_rerun(tmp_path: Path) -> None:
    p = SlotCurvePreset("t", ("sparseshift/ColourGrid-v0",), ("random",), frames=64,
                        minutes=0.0, eval_every=3, eval_n=16, model=TINY)
    path, table = run(p, tmp_path / "t", jobs=1)
    assert path.name == "slot_curve.md" and (tmp_path / "t" / "fg_ari_vs_time.png").stat().st_size
    for variant in ("default", "gaussian"):
        fig = tmp_path / "t" / f"slots_ColourGrid-v0_{variant}_s0.png"
        assert fig.stat().st_size > 1000 and f"]({fig.name})" in path.read_text()
    doc = json.loads((tmp_path / "t" / "slot_curve.json").read_text())
    assert [c["variant"] for c in doc["curves"]] == ["default", "gaussian"]
    for c in doc["curves"]:
        # train-rep's slot_attention defaults are what a curve trains with
        assert (c["batch"], c["lr"]) == (32, 4e-4)
        pts = c["points"]
        assert [pt["step"] for pt in pts] == [3] and pts[0]["train_seconds"] > 0
        assert 1 <= pts[0]["slots_used"] <= 3
    assert "| ColourGrid-v0 | default | 0 |" in table and "not reached (0.9)" in table
    # the variants differ in the slot initialisation only
    rep = tmp_path / "t" / "artifacts" / "slot_curve"
    inits = sorted(json.loads(f.read_text())["model"]["init"] for f in rep.glob("*/rep/run.json"))
    assert inits == ["gaussian", "learned"]
    # each reported FG-ARI, recomputed with sklearn from the saved model (trained to the point's
    # step) on the same dataset states (eval_n=16, eval_seed=2): the foreground pixels' ARI
    (data,) = (tmp_path / "t" / "artifacts" / "collect").glob("*/data.h5")
    frames, segs, names = dataset_ground_truth(data, 16, 2)
    fg = ~np.isin(segs, [i for i, n in enumerate(names) if n in BACKGROUND_NAMES])
    recomputed = []
    for run_dir in sorted(rep.glob("*/rep")):
        pred = predict_segmentation(slot_learner(load_learner(run_dir)), frames)
        want = np.mean([adjusted_rand_score(t[f], q[f])
                        for t, q, f in zip(segs, pred, fg, strict=True) if f.any()])
        (pt,) = json.loads((run_dir.parent / "points.json").read_text())
        assert pt["fg_ari"] == pytest.approx(want, abs=1e-12)
        recomputed.append(pt["fg_ari"])
    assert sorted(recomputed) == sorted(c["points"][0]["fg_ari"] for c in doc["curves"])
    # a finished experiment is not trained again
    _, table2 = run(p, tmp_path / "t", jobs=1)
    assert table2 == table


def test_time_to_goal_and_value_at_minutes() -> None:
    pts = [{"step": 10, "train_seconds": 60.0, "fg_ari": 0.5},
           {"step": 20, "train_seconds": 120.0, "fg_ari": 0.95},
           {"step": 30, "train_seconds": 180.0, "fg_ari": 0.85}]
    assert time_to(pts, 0.9) == 2.0 and time_to(pts, 0.99) is None
    assert at_minutes(pts, 2.5) == 0.95 and math.isnan(at_minutes(pts, 0.5))


def test_presets_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(PRESETS) == {"colourgrid", "trifinger", "both"}
    assert all(p.minutes == 30.0 for p in PRESETS.values())
    with pytest.raises(ConfigError, match="one policy per env"):
        PRESETS["both"].replace(policies=("random",))
    with pytest.raises(ConfigError, match="variant"):
        PRESETS["colourgrid"].replace(variants=("nope",))
    for argv in (["slot-curve", "--preset", "nope"], ["slot-curve", "--minutes", "-1"],
                 ["slot-curve", "--variants", "default,nope"], ["slot-curve", "--device", "foo"],
                 ["slot-curve", "--seeds", "0,x"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err


def test_learner_defaults_for_lr_and_batch() -> None:
    slots = TrainConfig(learner="slot_attention")
    assert (slots.learning_rate, slots.batch_size) == (4e-4, 32)
    vae = TrainConfig(learner="beta_vae")
    assert (vae.learning_rate, vae.batch_size) == (1e-4, 64)
    set_ = TrainConfig(learner="slot_attention", lr=1e-3, batch=64)
    assert (set_.learning_rate, set_.batch_size) == (1e-3, 64)
    with pytest.raises(ConfigError):
        TrainConfig(lr=0.0)


def test_paper_settings_are_one_config_file_away() -> None:
    from sparseshift.representations.slots import REFERENCE_LR_SCHEDULE, SlotAttentionConfig

    cfg = TrainConfig.load(Path(__file__).parents[1] / "assets" / "configs"
                           / "slot_attention_paper.toml")
    assert (cfg.learner, cfg.batch_size, cfg.learning_rate) == ("slot_attention", 64, 4e-4)
    assert cfg.schedule == REFERENCE_LR_SCHEDULE and cfg.steps == 500_000
    model = SlotAttentionConfig.from_json({**cfg.model, "image_size": 64})
    assert (model.init, model.preset, model.enc_channels) == ("gaussian", "paper", (64,) * 4)
