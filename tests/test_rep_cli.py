"""train-rep / eval-rep end to end, and their bad input: one line on stderr, exit status 2."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_rep_support as support

from sparseshift.experiments.cli import main
from sparseshift.representations.evaluate import EvalConfig, evaluate
from sparseshift.representations.train import TrainConfig, train

TINY = support.TINY
one_thread = support.one_thread
pairs_path = support.pairs_path
video_path = support.video_path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(capsys: pytest.CaptureFixture[str], needle: str, *args: str) -> None:
    rc, _, err = cli(capsys, *args)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_train_and_eval_from_the_command_line(capsys: pytest.CaptureFixture[str],
                                              pairs_path: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc, out, _ = cli(capsys, "train-rep", "--learner", "ada_gvae", "--data", str(pairs_path),
                     "--steps", "2", "--batch", "4", "--out", str(run), "--quiet",
                     "--beta", "2", "--latent-dim", "5")
    assert rc == 0 and "ada_gvae at step 2" in out
    assert json.loads((run / "run.json").read_text())["model"]["beta"] == 2.0
    rc, out, _ = cli(capsys, "train-rep", "--learner", "ada_gvae", "--data", str(pairs_path),
                     "--steps", "3", "--batch", "4", "--out", str(run), "--quiet",
                     "--beta", "2", "--latent-dim", "5")
    assert rc == 0 and "resumed at step 2" in out
    assert "wrote:" in out and "run.json" in out and f"tensorboard --logdir {run / 'tb'}" in out
    rc, out, _ = cli(capsys, "train-rep", "--learner", "ada_gvae", "--data", str(pairs_path),
                     "--steps", "3", "--batch", "4", "--out", str(run), "--quiet",
                     "--beta", "2", "--latent-dim", "5")  # finished: nothing to do
    assert rc == 0 and "already trained to step 3; nothing to do" in out
    assert "images/s" not in out and "; ;" not in out and "files (already there)" in out
    metrics = tmp_path / "m.json"
    rc, out, _ = cli(capsys, "eval-rep", str(run), "--data", str(pairs_path), "--out",
                     str(metrics), "--export-codes", str(tmp_path / "codes.npz"),
                     "--factor-vae", "grouping", "--dci-estimators", "5")
    assert rc == 0 and "mig" in out
    report = json.loads(metrics.read_text())
    assert report["learner"] == "ada_gvae" and report["metrics"]["factor_vae_method"] == "grouping"
    for key in ("mig", "dci_disentanglement", "sap", "modularity", "factor_vae_eval"):
        assert 0.0 <= report["summary"][key] <= 1.0
    assert len(report["probes"]["linear_r2"]) == 26
    assert report["reconstruction"]["mse_per_pixel"] > 0
    codes = np.load(tmp_path / "codes.npz")
    assert codes["codes_train"].shape == (report["protocol"]["num_train_used"], 5)
    assert codes["factors_test"].shape == (report["protocol"]["num_test_used"], 26)
    assert (tmp_path / "m.traversal.png").stat().st_size > 0


def test_eval_renders_factor_vae_batches_with_the_env(pairs_path: Path, tmp_path: Path) -> None:
    train(TrainConfig("beta_vae", model=TINY, steps=2, batch=8, progress=False,
                      tensorboard=False), pairs_path, tmp_path / "run")
    cfg = EvalConfig(num_train=120, num_test=60, dci_estimators=3, factor_vae_env_train=6,
                     factor_vae_env_eval=4, factor_vae_batch=8, probes=False)
    report = evaluate(tmp_path / "run", pairs_path, cfg)
    assert report["metrics"]["factor_vae_method"] == "env"
    assert "agent_pos" in report["metrics"]["factor_vae_note"]
    again = evaluate(tmp_path / "run", pairs_path, cfg)
    assert again["metrics"] == report["metrics"]  # seeded: identical on a rerun


def test_per_dimension_metrics_skipped_for_slots_and_wide_codes(pairs_path: Path,
                                                                 tmp_path: Path) -> None:
    """Slots have no dimension order: no MIG/DCI/..., FG-ARI and probes instead. A code wider
    than max_code_dims skips them too (DCI's trees grow with the width); narrower codes don't."""
    slot_model = {"num_slots": 3, "slot_size": 8, "mlp_hidden": 8}
    train(TrainConfig("slot_attention", model=slot_model, steps=1, batch=2, progress=False,
                      tensorboard=False), pairs_path, tmp_path / "slots")
    cfg = EvalConfig(num_train=60, num_test=30, dci_estimators=3, factor_vae_env_train=6,
                     factor_vae_env_eval=4, factor_vae_batch=8, probes=True)
    report = evaluate(tmp_path / "slots", pairs_path, cfg)
    assert "mig" not in report["metrics"] and "mig" not in report["summary"]
    assert report["metrics"]["per_dimension_metrics"].startswith("skipped: set-valued")
    assert report["metrics"]["factor_vae_method"] == "off"
    # FG-ARI recomputed with sklearn from the saved model on the same dataset states (n=512,
    # the evaluation seed): the mean over images of the ARI on their foreground pixels
    from sklearn.metrics import adjusted_rand_score

    from sparseshift.representations.checkpoint import load_learner
    from sparseshift.representations.slot_eval import (
        dataset_ground_truth,
        predict_segmentation,
        slot_learner,
    )

    learner = slot_learner(load_learner(tmp_path / "slots"))
    frames, segs, names = dataset_ground_truth(pairs_path, 512, cfg.seed)
    pred = predict_segmentation(learner, frames)
    fg = ~np.isin(segs, [i for i, n in enumerate(names) if n in report["slots"]["background"]])
    want = np.mean([adjusted_rand_score(t[f], q[f]) for t, q, f in zip(segs, pred, fg,
                                                                      strict=True) if f.any()])
    assert report["summary"]["fg_ari"] == pytest.approx(want, abs=1e-12)
    assert report["slots"]["n"] == len(frames)
    assert report["probes"]["linear_r2_mean"] is not None
    train(TrainConfig("beta_vae", model=TINY, steps=1, batch=8, progress=False,
                      tensorboard=False), pairs_path, tmp_path / "vae")
    wide = evaluate(tmp_path / "vae", pairs_path, dataclasses.replace(cfg, max_code_dims=2))
    assert wide["metrics"]["per_dimension_metrics"] == (
        "skipped: 4 code dimensions > max_code_dims 2") and "mig" not in wide["summary"]
    narrow = evaluate(tmp_path / "vae", pairs_path, dataclasses.replace(cfg, max_code_dims=4))
    assert "mig" in narrow["summary"] and "per_dimension_metrics" not in narrow["metrics"]


@pytest.mark.parametrize(
    ("needle", "args"),
    [
        ("unknown learner 'nope'; valid: ada_gvae, ada_mlvae, beta_vae",
         ("--learner", "nope")),
        ("needs pairs but the dataset is video", ("--learner", "ada_gvae", "--video")),
        ("image size 128", ("--learner", "ada_gvae", "--image-size", "128")),
        ("steps must be a positive integer <= 1000000000, got 0",
         ("--learner", "ada_gvae", "--steps", "0")),
        ("steps must be a positive integer <= 1000000000, got -3",
         ("--learner", "ada_gvae", "--steps", "-3")),
        ("unknown recon 'poisson'; valid: bernoulli, gaussian",
         ("--learner", "beta_vae", "--recon", "poisson")),
        ("gap must be >= 1", ("--learner", "ada_gvae", "--video", "--pairs", "temporal",
                              "--gap", "0")),
        ("--model: unknown VAEConfig option 'slots'; valid: beta, channels, hidden, image_size, "
         "kernels, kl_warmup, latent_dim, recon", ("--learner", "beta_vae", "--model",
                                                   "slots=3")),
        ("--model latent_dim='x': VAEConfig.latent_dim expects an integer",
         ("--learner", "beta_vae", "--model", "latent_dim=x")),
        ("--model channels='4,four'", ("--learner", "beta_vae", "--model", "channels=4,four")),
        ("NWMConfig.forecast_weight expects a number",
         ("--learner", "nwm", "--video", "--model", "forecast_weight=lots")),
        ("--model takes KEY=VALUE, got 'beta'", ("--learner", "beta_vae", "--model", "beta")),
        ("--beta and --model beta=... both set beta",
         ("--learner", "beta_vae", "--beta", "2", "--model", "beta=3")),
        ("--seq-len applies to sequence learners", ("--learner", "beta_vae", "--seq-len", "4")),
        ("seq_len must be a positive integer <= 10000, got 0",
         ("--learner", "nwm", "--video", "--seq-len", "0")),
        ("lr schedule must be 'constant' or WARMUP:DECAY_STEPS:DECAY_RATE",
         ("--learner", "slot_attention", "--lr-schedule", "fast")),
    ],
)
def test_train_rep_bad_input(capsys: pytest.CaptureFixture[str], pairs_path: Path,
                             video_path: Path, tmp_path: Path, needle: str,
                             args: tuple[str, ...]) -> None:
    argv = list(args)
    data = str(pairs_path)
    if "--video" in argv:
        argv.remove("--video")
        data = str(video_path)
    if "--steps" not in argv:
        argv += ["--steps", "1"]
    one_line_error(capsys, needle, "train-rep", *argv, "--data", data, "--out",
                   str(tmp_path / "run"), "--quiet")


NWM_TINY = ("--model", "channels=4,4,8,8", "--model", "hidden=16", "--model", "sheet=6")


def test_train_rep_sequence_length_and_model_options(capsys: pytest.CaptureFixture[str],
                                                     video_path: Path, tmp_path: Path) -> None:
    run = tmp_path / "nwm"
    rc, out, err = cli(capsys, "train-rep", "--learner", "nwm", "--data", str(video_path),
                       "--steps", "1", "--batch", "2", "--seq-len", "5", "--out", str(run),
                       "--quiet", "--no-tensorboard", *NWM_TINY, "--model", "forecast_steps=2",
                       "--model", "forecast_weight=0.5", "--model", "cell=gru")
    assert rc == 0 and "nwm at step 1" in out, err
    saved = json.loads((run / "run.json").read_text())
    assert saved["train"]["seq_len"] == 5 and saved["identity"]["seq_len"] == 5
    model = saved["model"]
    assert model["channels"] == [4, 4, 8, 8] and model["hidden"] == 16 and model["sheet"] == 6
    assert model["forecast_steps"] == 2 and model["forecast_weight"] == 0.5
    assert model["cell"] == "gru"
    assert saved["train"]["lr_schedule"] == {"warmup_steps": 0, "decay_steps": 0,
                                             "decay_rate": 1.0}
    # the sequence must be longer than the forecast: one line, exit 2
    one_line_error(capsys, "forecast", "train-rep", "--learner", "nwm", "--data",
                   str(video_path), "--steps", "1", "--batch", "2", "--seq-len", "2", "--out",
                   str(tmp_path / "short"), "--quiet", "--no-tensorboard", *NWM_TINY,
                   "--model", "forecast_steps=2")


def test_train_rep_slot_attention_schedule(capsys: pytest.CaptureFixture[str], pairs_path: Path,
                                           tmp_path: Path) -> None:
    common = ["train-rep", "--learner", "slot_attention", "--data", str(pairs_path), "--steps",
              "1", "--batch", "2", "--quiet", "--no-tensorboard", "--model", "num_slots=3",
              "--model", "slot_size=8", "--model", "mlp_hidden=8", "--model",
              "enc_channels=4,4,4", "--model", "enc_kernels=3,3,3", "--model",
              "enc_strides=2,2,2", "--model", "dec_channels=4,4"]
    rc, _, err = cli(capsys, *common, "--out", str(tmp_path / "default"))
    assert rc == 0, err
    saved = json.loads((tmp_path / "default" / "run.json").read_text())
    assert saved["model"]["num_slots"] == 3 and saved["model"]["enc_strides"] == [2, 2, 2]
    assert saved["train"]["lr_schedule"] == {"warmup_steps": 1000, "decay_steps": 100000,
                                             "decay_rate": 0.5}
    rc, _, err = cli(capsys, *common, "--out", str(tmp_path / "const"), "--lr-schedule",
                     "constant")
    assert rc == 0, err
    saved = json.loads((tmp_path / "const" / "run.json").read_text())
    assert saved["train"]["lr_schedule"]["warmup_steps"] == 0
    assert "lr_schedule" not in saved["identity"]


def test_train_rep_refuses_another_learners_run_dir(capsys: pytest.CaptureFixture[str],
                                                    pairs_path: Path, tmp_path: Path) -> None:
    common = ["--data", str(pairs_path), "--steps", "1", "--out", str(tmp_path / "run"),
              "--quiet"]
    assert cli(capsys, "train-rep", "--learner", "beta_vae", "--batch", "2", *common)[0] == 0
    one_line_error(capsys, "holds a run of learner 'beta_vae', not 'ada_gvae'", "train-rep",
                   "--learner", "ada_gvae", "--batch", "2", *common)
    one_line_error(capsys, "differs in: batch", "train-rep", "--learner", "beta_vae",
                   "--batch", "3", *common)


def test_eval_rep_bad_input(capsys: pytest.CaptureFixture[str], pairs_path: Path,
                            tmp_path: Path) -> None:
    one_line_error(capsys, "not a representation run directory", "eval-rep",
                   str(tmp_path / "nothing"), "--data", str(pairs_path), "--out",
                   str(tmp_path / "m.json"))
    model = {**TINY, "channels": (4, 4, 8, 8, 8), "image_size": 128}
    train(TrainConfig("beta_vae", model=model, steps=1, batch=2, progress=False,
                      tensorboard=False), _Fake128(pairs_path), tmp_path / "r")
    one_line_error(capsys, "trained on 128x128", "eval-rep", str(tmp_path / "r"), "--data",
                   str(pairs_path), "--out", str(tmp_path / "m.json"))


class _Fake128:
    """The pairs dataset upsampled to 128x128 (a dataset object: train() accepts one)."""

    def __init__(self, path: Path) -> None:
        from sparseshift.envs.data import open_dataset

        ds = open_dataset(path)
        self.kind, self.env_id, self.factor_spec = ds.kind, ds.env_id, ds.factor_spec
        self.image_size, self.fingerprint, self.attrs = 128, ds.fingerprint + "-x2", ds.attrs
        self._n, self.path = len(ds), ds.path
        up = {n: ds.array(n).repeat(2, axis=1).repeat(2, axis=2) for n in ("frames_a", "frames_b")}
        self._arrays = {**{n: ds.array(n) for n in ("factors_a", "factors_b", "changed")}, **up}
        self.shapes = {n: a.shape for n, a in self._arrays.items()}

    def __len__(self) -> int:
        return self._n

    def take(self, name: str, idx: np.ndarray) -> np.ndarray:
        return self._arrays[name][idx]


def test_training_failure_is_one_line_exit_1(capsys: pytest.CaptureFixture[str],
                                             pairs_path: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from sparseshift.representations.vae import BetaVAE

    original = BetaVAE.loss

    def broken(self: BetaVAE, batch: Any, generator: Any = None) -> dict[str, torch.Tensor]:
        terms = original(self, batch, generator)
        return {**terms, "loss": terms["loss"] * float("inf")}

    monkeypatch.setattr(BetaVAE, "loss", broken)
    rc, _, err = cli(capsys, "train-rep", "--learner", "beta_vae", "--data", str(pairs_path),
                     "--steps", "3", "--batch", "2", "--out", str(tmp_path / "run"), "--quiet")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "training failed: loss became inf at step 1" in lines[0]


def test_eval_rep_waves_for_nwm_runs(capsys: pytest.CaptureFixture[str], video_path: Path,
                                     pairs_path: Path, tmp_path: Path) -> None:
    from PIL import Image

    nwm_model = {"channels": (4, 4, 8, 8), "hidden": 16, "sheet": 6, "forecast_steps": 2}
    for name, extra in (("nwm", {}), ("gru", {"cell": "gru"})):
        train(TrainConfig("nwm", model={**nwm_model, **extra}, steps=2, batch=2, seq_len=4,
                          lr=1e-3, progress=False, tensorboard=False), video_path,
              tmp_path / name)
    waves = tmp_path / "waves"
    small = ["--waves-input", "3", "--waves-horizon", "4", "--waves-free", "8",
             "--waves-sequences", "3"]
    rc, out, err = cli(capsys, "eval-rep", str(tmp_path / "nwm"), "--data", str(video_path),
                       "--waves", str(waves), "--waves-baseline", str(tmp_path / "gru"), *small)
    assert rc == 0, err
    assert "coherence driven" in out and "gru baseline" in out
    report = json.loads((waves / "waves.json").read_text())
    assert report["learner"] == "wave" and report["baseline"]["learner"] == "gru"
    assert report["n_sequences"] == 3 and len(report["forecast_mse"]) == 4
    assert 0.0 <= report["coherence"]["free"] <= 1.0
    assert len(report["baseline"]["forecast_mse"]) == 4
    assert Image.open(waves / "phase_map.png").size[0] > 0
    assert Image.open(waves / "waves.gif").n_frames == 3 + 8
    assert not (tmp_path / "m.json").exists()

    train(TrainConfig("beta_vae", model=TINY, steps=1, batch=2, progress=False,
                      tensorboard=False), pairs_path, tmp_path / "vae")
    one_line_error(capsys, "--waves needs a Neural Wave Machine run (learner 'nwm');", "eval-rep",
                   str(tmp_path / "vae"), "--data", str(video_path), "--waves", str(waves))
    one_line_error(capsys, "--waves-baseline needs a Neural Wave Machine run", "eval-rep",
                   str(tmp_path / "nwm"), "--data", str(video_path), "--waves", str(waves),
                   "--waves-baseline", str(tmp_path / "vae"))
    one_line_error(capsys, "give --out (metrics JSON), --waves DIR", "eval-rep",
                   str(tmp_path / "nwm"), "--data", str(video_path))
    one_line_error(capsys, "wave analysis needs a video dataset", "eval-rep",
                   str(tmp_path / "nwm"), "--data", str(pairs_path), "--waves", str(waves),
                   *small)
