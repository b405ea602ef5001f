"""``sparseshift bench train`` on tiny settings: every learner kind runs, both sides count images
the same way (a batch of B sequences of length T is B * T images), bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import test_rep_support as support

from sparseshift.experiments.bench.train import default_steps, steps_for
from sparseshift.experiments.cli import main

one_thread = support.one_thread
pairs_path = support.pairs_path
video_path = support.video_path


def test_steps_count_images_alike() -> None:
    assert steps_for(4 * 2 * 5, 2 * 5) == 4  # 4 steps of 2 sequences x 5 frames
    assert steps_for(3, 10) == 1
    # default measurement: ~2560 images, 20..40 steps (ada_gvae 128/step, beta_vae 64, slots 32)
    assert (default_steps(128), default_steps(64), default_steps(32)) == (20, 40, 40)


def test_bench_train_sequences_count_b_times_t(capsys: pytest.CaptureFixture[str],
                                               video_path: Path) -> None:
    rc = main(["bench", "train", "--learner", "nwm,slot_attention", "--data", str(video_path),
               "--batch", "2", "--seq-len", "5", "--steps", "1", "--repeats", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "nwm on sparseshift/ColourGrid-v0 (video, 64px), batch 2 sequences x 5 frames = " \
           "10 images/step" in out
    assert "batch 2 frames = 2 images/step" in out  # slot_attention: singles from the video
    assert out.count("model only (pre-loaded tensors)") >= 4
    assert "summary" in out and "nwm " in out and "slot_attention " in out


def test_bench_train_all_skips_sequence_learners_on_pairs(capsys: pytest.CaptureFixture[str],
                                                          pairs_path: Path) -> None:
    rc = main(["bench", "train", "--data", str(pairs_path), "--batch", "2", "--steps", "1",
               "--repeats", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "nwm skipped (needs a video dataset; --data holds pairs)" in out
    for name in ("ada_gvae", "ada_mlvae", "beta_vae", "slot_attention"):
        assert f"bench train: {name} on" in out
    rc = main(["bench", "train", "--learner", "nwm", "--data", str(pairs_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "needs sequences" in err and len(err.strip().splitlines()) == 1
    rc = main(["bench", "train", "--learner", "nope"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown learner 'nope'" in err
