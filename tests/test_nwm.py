"""Neural Wave Machine learner: config, shapes, constraints, circular coupling, stateful encoding,
training round trip, and the GRU baseline."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import test_rep_support as support
import torch
from safetensors.torch import load_file

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.checkpoint import CHECKPOINT_FILE, RUN_FILE, load_learner
from sparseshift.representations.nwm import NWM, NWMConfig, WaveSheet
from sparseshift.representations.registry import make_learner
from sparseshift.representations.train import TrainConfig, train

one_thread = support.one_thread
video_path = support.video_path

#: A tiny NWM: the real conv nets with few channels, a 6x6 sheet, 2 forecast steps.
TINY: dict[str, Any] = {"channels": (4, 4, 8, 8), "hidden": 16, "sheet": 6, "forecast_steps": 2}


def tiny(**kw: Any) -> NWM:
    torch.manual_seed(0)
    learner = NWM(NWMConfig(**{**TINY, **kw}))
    learner.eval()
    return learner


def frames(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (*shape, 64, 64, 3), dtype=torch.uint8, generator=g)


def test_registered_config_defaults_and_validation() -> None:
    learner = make_learner("nwm", TINY)
    assert isinstance(learner, NWM) and learner.stateful and learner.batch_kind == "sequences"
    cfg = NWMConfig()
    assert cfg.sheet == 16 and cfg.units == 256 and cfg.channels == (32, 32, 64, 64)
    assert NWMConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, "sheet", 8)  # noqa: B010
    bad: dict[str, Any]
    for bad in ({"sheet": 2}, {"substeps": 0}, {"dt_init": 1.0}, {"gamma_init": 0.0},
                {"damping_init": 1.0}, {"forecast_steps": -1}, {"forecast_mode": "teacher"},
                {"cell": "lstm"}, {"latent": "z"}, {"recon": "l1"}, {"forecast_weight": -1.0}):
        with pytest.raises(ConfigError):
            NWMConfig(**bad)


@pytest.mark.parametrize("kw", [{}, {"cell": "gru"}, {"latent": "y", "sheet_channels": 2},
                                {"forecast_mode": "feedback", "recon": "gaussian"}])
def test_shapes_finite_losses_and_gradients(kw: dict[str, Any]) -> None:
    learner = tiny(**kw)
    learner.train()
    c = learner.config
    terms = learner.loss({"x": frames(3, 5)})
    assert {"loss", "recon", "forecast", "forecast_per_step"} <= set(terms)
    assert terms["forecast_per_step"].shape == (2,)
    assert all(torch.isfinite(v).all() for v in terms.values())
    assert torch.allclose(terms["loss"], terms["recon"] + terms["forecast"])
    terms["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in learner.parameters())
    both = c.cell == "wave" and c.latent == "yz"
    assert learner.latent_shape == (c.units * (2 if both else 1),)
    with torch.no_grad():
        z = learner.encode(frames(4))
        out = learner.rollout(frames(2, 3), n_free=4, trace=True)
        rec = learner.reconstruct(frames(2))
    assert z.shape == (4, *learner.latent_shape)
    assert out.logits.shape == (2, 7, 3, 64, 64) and rec.shape == (2, 64, 64, 3)
    assert out.trace is not None
    assert out.trace.shape == (2, 7 * learner.substeps, c.sheet_channels, c.sheet, c.sheet)


def test_gru_baseline_has_as_many_hidden_units_as_oscillators() -> None:
    wave, gru = tiny(), tiny(cell="gru")
    assert gru.initial_state(1)[0].numel() == wave.initial_state(1)[0].numel() == 36
    assert "dt" in wave.loss({"x": frames(1, 3)}) and "dt" not in gru.loss({"x": frames(1, 3)})


def test_sequences_must_be_longer_than_the_forecast() -> None:
    with pytest.raises(ConfigError, match="raise seq_len"):
        tiny().loss({"x": frames(2, 2)})


def test_dt_gamma_eps_positive_and_under_damped_for_any_raw_values() -> None:
    sheet = tiny().sheet
    assert isinstance(sheet, WaveSheet)
    assert torch.allclose(sheet.dt, torch.tensor(0.2)) and torch.allclose(sheet.gamma,
                                                                           torch.tensor(2.7))
    assert torch.allclose(sheet.eps, 0.2 * 2 * torch.tensor(2.7).sqrt())
    with torch.no_grad():
        for raw in (-30.0, 0.0, 30.0):
            for p in (sheet.dt_raw, sheet.gamma_raw, sheet.damping_raw):
                p.fill_(raw)
            dt, gamma, eps = sheet.dt, sheet.gamma, sheet.eps
            assert (dt > 0).all() and (dt <= 1).all() and (gamma > 0).all() and (eps > 0).all()
            assert (eps / (2 * gamma.sqrt()) < 1).all()  # under-damped


def test_circular_coupling_carries_an_edge_perturbation_to_the_opposite_edge() -> None:
    sheet = WaveSheet(1, 8, substeps=1, dt=0.5, gamma=1.0, damping=0.2)
    y0 = torch.zeros(1, 1, 8, 8)
    y1 = y0.clone()
    y1[0, 0, 4, 0] = 1.0  # left edge
    with torch.no_grad():
        a = sheet.step(None, (y0, torch.zeros_like(y0)))[0]
        b = sheet.step(None, (y1, torch.zeros_like(y1)))[0]
    diff = (a - b).abs()[0, 0]
    assert diff[4, 7] > 0  # the right edge is a neighbour on the torus
    assert diff[4, 3] == 0 and diff[4, 4] == 0  # the middle is not reached in one step


def test_encode_step_is_deterministic_and_initial_state_resets() -> None:
    learner = tiny()
    a, b = frames(2, seed=1), frames(2, seed=2)
    with torch.no_grad():
        s0 = learner.initial_state(2)
        z1, s1 = learner.encode_step(a, s0)
        z1_again, _ = learner.encode_step(a, learner.initial_state(2))
        z2, _ = learner.encode_step(b, s1)  # history: a then b
        z2_fresh, _ = learner.encode_step(b, learner.initial_state(2))  # b from rest
        enc = learner.encode(a)
    assert all((s == 0).all() for s in s0)  # encode_step did not modify the initial state
    assert torch.equal(z1, z1_again) and torch.equal(enc, z1)
    assert not torch.allclose(z2, z2_fresh)
    assert z1.shape == (2, learner.latent_shape[0])


def test_train_save_load_round_trip_gives_identical_encodings(video_path: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = train(TrainConfig(learner="nwm", model=TINY, steps=3, batch=4, seq_len=5, lr=1e-3,
                            log_every=1, ckpt_every=3, image_every=3, progress=False), video_path,
                out)
    assert res.step == 3 and {"recon", "forecast", "dt", "gamma", "eps"} <= set(res.losses)
    assert (out / "tb").is_dir()
    loaded = load_learner(out, expect_learner="nwm")
    assert isinstance(loaded, NWM) and not loaded.training
    saved = {k[6:]: v for k, v in load_file(str(out / CHECKPOINT_FILE)).items()
             if k.startswith("model.")}
    assert saved.keys() == loaded.state_dict().keys() and "sheet.dt_raw" in saved
    assert all(torch.equal(saved[k], v) for k, v in loaded.state_dict().items())
    run = json.loads((out / RUN_FILE).read_text())
    rebuilt = NWM(NWMConfig.from_json(run["model"]))
    assert rebuilt.config == loaded.config
    rebuilt.load_state_dict(saved)
    rebuilt.eval()
    x = frames(3, 4, seed=3)
    with torch.no_grad():
        sa, sb = loaded.initial_state(3), rebuilt.initial_state(3)
        for t in range(4):
            za, sa = loaded.encode_step(x[:, t], sa)
            zb, sb = rebuilt.encode_step(x[:, t], sb)
            assert torch.equal(za, zb)
        assert torch.equal(load_learner(out).encode(x[:, 0]), loaded.encode(x[:, 0]))
        assert not torch.equal(tiny().encode(x[:, 0]), loaded.encode(x[:, 0]))  # it trained
