"""The training loop: checkpoints, exact resume, determinism, NaN stop, bad input, load_learner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_rep_support as support
import torch
from safetensors.torch import load_file, save_file

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.base import LRSchedule
from sparseshift.representations.checkpoint import CHECKPOINT_FILE, RUN_FILE, load_learner
from sparseshift.representations.train import TrainConfig, TrainingError, train
from sparseshift.representations.vae import BetaVAE

TINY = support.TINY
one_thread = support.one_thread
pairs_path = support.pairs_path
video_path = support.video_path


def config(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(learner="ada_gvae", model=TINY, steps=4, batch=8, lr=1e-3,
                                log_every=2, image_every=4, ckpt_every=2, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / CHECKPOINT_FILE))


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_train_writes_checkpoint_run_file_and_tensorboard(pairs_path: Path,
                                                          tmp_path: Path) -> None:
    rng_state = torch.get_rng_state()
    res = train(config(), pairs_path, tmp_path / "run")
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
    assert res.step == 4 and res.resumed_from == 0 and res.losses["loss"] > 0
    run = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert run["learner"] == "ada_gvae" and run["format_version"] == 2
    assert run["model"]["image_size"] == 64 and run["model"]["channels"] == [4, 4, 8, 8]
    assert len(run["dataset"]["fingerprint"]) == 64 and "torch" in run["versions"]
    assert any(k.startswith("optim.") for k in weights(tmp_path / "run"))
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert not list((tmp_path / "run").glob(".*tmp"))  # atomic writes leave no temp files


def test_same_seed_same_weights_other_seed_other_weights(pairs_path: Path, tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(config(seed=seed, tensorboard=False), pairs_path, tmp_path / name)
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert not torch.equal(weights(tmp_path / "a")["model.encoder.fc.3.weight"],
                           weights(tmp_path / "c")["model.encoder.fc.3.weight"])


@pytest.mark.parametrize("learner", ["beta_vae", "ada_mlvae"])
def test_resume_continues_exactly(learner: str, pairs_path: Path, tmp_path: Path) -> None:
    train(config(learner=learner, steps=6, ckpt_every=3), pairs_path, tmp_path / "full")
    train(config(learner=learner, steps=3, ckpt_every=3), pairs_path, tmp_path / "split")
    res = train(config(learner=learner, steps=6, ckpt_every=3), pairs_path, tmp_path / "split")
    assert res.resumed_from == 3 and res.step == 6
    assert_same(weights(tmp_path / "full"), weights(tmp_path / "split"))


def test_load_learner_round_trip_gives_identical_encodings(pairs_path: Path,
                                                           tmp_path: Path) -> None:
    from sparseshift.envs.data import Sampler, open_dataset

    out = tmp_path / "run"
    train(config(), pairs_path, out)
    learner = load_learner(out)
    assert not learner.training and learner.name == "ada_gvae"
    x = torch.from_numpy(Sampler(open_dataset(pairs_path), seed=5).frames(6)["x"])
    again = load_learner(out, expect_learner="ada_gvae")
    with torch.no_grad():
        assert torch.equal(learner.encode(x), again.encode(x))
    model_weights = {k[6:]: v for k, v in weights(out).items() if k.startswith("model.")}
    assert_same(model_weights, dict(learner.state_dict()))


def test_temporal_pairs_from_video(video_path: Path, tmp_path: Path) -> None:
    res = train(config(pairs="temporal", gap=(1, 3), steps=2), video_path, tmp_path / "run")
    assert res.step == 2
    run = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert run["train"]["pairs"] == "temporal" and run["train"]["gap"] == [1, 3]


def test_beta_vae_trains_on_video(video_path: Path, tmp_path: Path) -> None:
    assert train(config(learner="beta_vae", steps=2), video_path, tmp_path / "run").step == 2


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
        pairs_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = BetaVAE.loss

    def flaky(self: BetaVAE, batch: Any, generator: Any = None) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        terms = original(self, batch, generator)
        if calls["n"] == 4:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(BetaVAE, "loss", flaky)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"loss became nan at step 4.*step 2"):
        train(config(learner="beta_vae", steps=6), pairs_path, out)
    assert int(json.loads(json.dumps(_meta(out)))["step"]) == 2


def _meta(out: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(out / CHECKPOINT_FILE), framework="pt") as fh:
        return dict(fh.metadata())


def test_bad_input_is_a_config_error(pairs_path: Path, video_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown learner"):
        config(learner="nope")
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        config(steps=0)
    with pytest.raises(ConfigError, match="needs pairs but the dataset is video"):
        train(config(), video_path, tmp_path / "x")
    with pytest.raises(ConfigError, match="--pairs applies to pair learners; 'beta_vae' trains"):
        train(config(learner="beta_vae", pairs="temporal"), video_path, tmp_path / "x")
    with pytest.raises(ConfigError, match="temporal pairs need a video dataset"):
        train(config(pairs="temporal"), pairs_path, tmp_path / "x")
    with pytest.raises(ConfigError, match="image size 128"):
        train(config(model={**TINY, "image_size": 128}), pairs_path, tmp_path / "x")
    with pytest.raises(ConfigError, match="no dataset"):
        train(config(), tmp_path / "missing.h5", tmp_path / "x")


def test_existing_run_with_other_config_or_learner_is_refused(pairs_path: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(config(steps=2), pairs_path, out)
    with pytest.raises(ConfigError, match="differs in: lr"):
        train(config(steps=2, lr=5e-4), pairs_path, out)
    with pytest.raises(ConfigError, match="learner 'ada_gvae', not 'ada_mlvae'"):
        train(config(learner="ada_mlvae", steps=2), pairs_path, out)
    with pytest.raises(ConfigError, match="not 'beta_vae'"):
        load_learner(out, expect_learner="beta_vae")


def test_foreign_or_newer_checkpoints_are_config_errors(pairs_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(config(steps=2), pairs_path, out)
    tensors, meta = weights(out), _meta(out)
    save_file(tensors, str(out / CHECKPOINT_FILE), metadata={**meta, "learner": "beta_vae"})
    with pytest.raises(ConfigError, match="from learner 'beta_vae', not 'ada_gvae'"):
        load_learner(out)
    save_file(tensors, str(out / CHECKPOINT_FILE), metadata={**meta, "format_version": "99"})
    with pytest.raises(ConfigError, match="format version 99, newer"):
        load_learner(out)
    run = json.loads((out / RUN_FILE).read_text())
    (out / RUN_FILE).write_text(json.dumps({**run, "format_version": 3}))
    with pytest.raises(ConfigError, match="format version 3, newer"):
        load_learner(out)
    (out / RUN_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable run file"):
        load_learner(out)
    with pytest.raises(ConfigError, match="not a representation run directory"):
        load_learner(tmp_path / "nothing")


def test_frames_at_maps_pair_indices_also_out_of_core(pairs_path: Path) -> None:
    import numpy as np

    from sparseshift.envs.data import open_dataset
    from sparseshift.representations.data import frames_at, num_frames

    ds = open_dataset(pairs_path)
    n = len(ds)
    assert num_frames(ds) == 2 * n
    idx = np.array([0, n + 1, 5, 2 * n - 1])
    for d in (ds, open_dataset(pairs_path, memory_budget=0)):  # in RAM and read by chunk
        frames, factors = frames_at(d, idx)
        assert np.array_equal(frames[0], ds.frames_a[0])
        assert np.array_equal(frames[1], ds.frames_b[1])
        assert np.array_equal(frames[2], ds.frames_a[5])
        assert np.array_equal(factors[3], ds.factors_b[n - 1])


# --- learning-rate schedules ---------------------------------------------------------------------

SCHEDULE = LRSchedule(warmup_steps=3, decay_steps=2, decay_rate=0.5)


def test_lr_schedule_factor_and_parsing() -> None:
    assert [SCHEDULE.factor(t) for t in range(5)] == pytest.approx(
        [1 / 3 * 0.5 ** 0, 2 / 3 * 0.5 ** 0.5, 0.5 ** 1, 0.5 ** 1.5, 0.5 ** 2])
    assert LRSchedule().constant and LRSchedule(decay_steps=5).constant
    assert not SCHEDULE.constant and LRSchedule.parse("3:2:0.5") == SCHEDULE
    assert LRSchedule.parse("constant") == LRSchedule() == LRSchedule.from_json(
        LRSchedule().to_json())
    for bad in ("3:2", "a:b:c", "3:2:1.5", "-1:2:0.5"):
        with pytest.raises(ConfigError, match="lr schedule"):
            LRSchedule.parse(bad)
    with pytest.raises(ConfigError, match="unknown lr schedule option"):
        LRSchedule.from_json({"warmup": 3})


def test_learners_default_schedules() -> None:
    from sparseshift.representations.slots import (
        DEFAULT_LR_SCHEDULE,
        REFERENCE_LR_SCHEDULE,
    )

    assert TrainConfig(learner="slot_attention").schedule == DEFAULT_LR_SCHEDULE
    assert DEFAULT_LR_SCHEDULE.factor(999) == pytest.approx(0.5 ** (999 / 100_000))
    assert DEFAULT_LR_SCHEDULE.factor(0) == pytest.approx(0.001)
    assert TrainConfig(learner="slot_attention", lr_schedule="10000:100000:0.5"
                       ).schedule == REFERENCE_LR_SCHEDULE
    assert REFERENCE_LR_SCHEDULE.factor(12_345) == pytest.approx(0.5 ** 0.12345)
    for name in ("beta_vae", "ada_gvae", "ada_mlvae", "nwm"):
        assert TrainConfig(learner=name).schedule.constant
    # explicit schedules override the default; dicts and strings are accepted (JSON configs)
    assert TrainConfig(learner="slot_attention", lr_schedule="constant").schedule.constant
    assert TrainConfig(lr_schedule=SCHEDULE.to_json()).schedule == SCHEDULE
    assert TrainConfig(lr_schedule="3:2:0.5").lr_schedule == SCHEDULE


def _tb_scalars(run: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_schedule_sets_the_lr_of_every_step_and_resumes_exactly(pairs_path: Path,
                                                                tmp_path: Path) -> None:
    base = dict(lr_schedule=SCHEDULE, steps=5, log_every=1, image_every=100, ckpt_every=5)
    full = train(config(**base), pairs_path, tmp_path / "full")
    # logged at step t+1: the rate of the update made at 0-based step t
    lrs = _tb_scalars(tmp_path / "full", "lr")
    assert [lrs[t + 1] for t in range(5)] == pytest.approx([1e-3 * SCHEDULE.factor(t)
                                                            for t in range(5)], rel=1e-6)
    train(config(**{**base, "steps": 2, "ckpt_every": 2}), pairs_path, tmp_path / "split")
    res = train(config(**{**base, "ckpt_every": 2}), pairs_path, tmp_path / "split")
    assert res.resumed_from == 2 and full.step == res.step == 5
    assert_same(weights(tmp_path / "full"), weights(tmp_path / "split"))
    optim = json.loads(_meta(tmp_path / "split")["optim"])
    assert optim["param_groups"][0]["lr"] == pytest.approx(1e-3 * SCHEDULE.factor(4))
    run = json.loads((tmp_path / "split" / RUN_FILE).read_text())
    assert run["identity"]["lr_schedule"] == run["train"]["lr_schedule"] == SCHEDULE.to_json()
    # a schedule changes the weights; another schedule is another run
    train(config(steps=5, tensorboard=False), pairs_path, tmp_path / "constant")
    assert not torch.equal(weights(tmp_path / "full")["model.encoder.fc.3.weight"],
                           weights(tmp_path / "constant")["model.encoder.fc.3.weight"])
    with pytest.raises(ConfigError, match="differs in: lr_schedule"):
        train(config(**{**base, "lr_schedule": "3:4:0.5"}), pairs_path, tmp_path / "full")


def test_constant_schedule_keeps_the_identity_of_runs_without_schedules(pairs_path: Path,
                                                                       tmp_path: Path) -> None:
    train(config(steps=2, tensorboard=False), pairs_path, tmp_path / "a")
    ident = json.loads((tmp_path / "a" / RUN_FILE).read_text())["identity"]
    assert "lr_schedule" not in ident  # run dirs from before schedules existed still resume
    res = train(config(steps=3, tensorboard=False, lr_schedule="constant"), pairs_path,
                tmp_path / "a")
    assert res.resumed_from == 2


def test_slot_attention_resumes_exactly_under_its_default_schedule(pairs_path: Path,
                                                                   tmp_path: Path) -> None:
    model = {"num_slots": 3, "slot_size": 8, "mlp_hidden": 8, "enc_channels": (4, 4, 4),
             "enc_kernels": (3, 3, 3), "enc_strides": (2, 2, 2), "dec_channels": (4, 4)}
    kw: dict[str, Any] = dict(learner="slot_attention", model=model, batch=4, lr=4e-4,
                              tensorboard=False, progress=False)
    train(TrainConfig(**kw, steps=4, ckpt_every=4), pairs_path, tmp_path / "full")
    train(TrainConfig(**kw, steps=2, ckpt_every=2), pairs_path, tmp_path / "split")
    train(TrainConfig(**kw, steps=4, ckpt_every=2), pairs_path, tmp_path / "split")
    assert_same(weights(tmp_path / "full"), weights(tmp_path / "split"))
    optim = json.loads(_meta(tmp_path / "full")["optim"])
    assert optim["param_groups"][0]["lr"] == pytest.approx(4e-4 * 4 / 1_000 * 0.5 ** (3e-5))


def test_precision_auto_resolves_per_device_and_learner(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` is bf16 only where bf16 is native and the learner was checked with it."""
    from sparseshift.representations import runtime
    from sparseshift.representations.slots import SlotAttention

    cpu = torch.device("cpu")
    assert BetaVAE.bf16_checked and not SlotAttention.bf16_checked
    for native in (True, False):
        monkeypatch.setattr(runtime, "native_bf16", lambda device, n=native: n)
        assert runtime.resolve_precision("auto", cpu, True) == ("bf16" if native else "fp32")
        assert runtime.resolve_precision("auto", cpu, False) == "fp32"
        for given in ("fp32", "bf16"):  # an explicit choice is kept
            assert runtime.resolve_precision(given, cpu, native) == given
    assert not runtime.native_bf16(torch.device("meta"))
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        runtime.resolve_precision("fp8", cpu, True)
    with pytest.raises(ConfigError, match="unresolved"):
        runtime.autocast(cpu, "auto")


def test_run_records_the_precision_it_computed_in(pairs_path: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """run.json says what ran; a non-fp32 precision is part of the identity, so a run resumed
    in another precision is refused instead of mixing the two."""
    from sparseshift.representations import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)
    train(config(steps=2, tensorboard=False), pairs_path, tmp_path / "a")
    run = json.loads((tmp_path / "a" / RUN_FILE).read_text())
    assert run["train"]["precision"] == "bf16" and run["identity"]["precision"] == "bf16"
    assert run["config"]["precision"] == "auto"
    with pytest.raises(ConfigError, match=r"differs in: precision.*--precision bf16\)"):
        train(config(steps=3, tensorboard=False, precision="fp32"), pairs_path, tmp_path / "a")
    train(config(steps=2, tensorboard=False, precision="fp32"), pairs_path, tmp_path / "b")
    run = json.loads((tmp_path / "b" / RUN_FILE).read_text())
    assert run["train"]["precision"] == "fp32" and "precision" not in run["identity"]
    with pytest.raises(ConfigError, match=r"--precision fp32\)"):  # a run from before auto
        train(config(steps=3, tensorboard=False), pairs_path, tmp_path / "b")
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    assert train(config(steps=3, tensorboard=False), pairs_path, tmp_path / "b").resumed_from == 2
