"""Wave analysis: Hilbert phases, circular phase gradients, the travelling-wave coherence score on
synthetic signals, and analyse_waves' outputs on a tiny Neural Wave Machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_rep_support as support
import torch
from PIL import Image

from sparseshift.representations.nwm import NWM, NWMConfig
from sparseshift.representations.waves import (
    analyse_waves,
    coherence,
    forecast_errors,
    phase_gradients,
    phases,
    wave_stats,
    wrap,
)

one_thread = support.one_thread

S, T = 16, 64
_t = np.arange(T, dtype=np.float64)[:, None, None]
_yy, _xx = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
OMEGA = 2 * np.pi / 10


def plane_wave(kx: float, ky: float) -> np.ndarray:
    return np.sin(kx * _xx + ky * _yy - OMEGA * _t)


@pytest.mark.parametrize("kx,ky", [(2 * np.pi / 8, 0.0), (0.0, -2 * np.pi / 16),
                                   (2 * np.pi / 16, 2 * np.pi / 8), (0.5, 0.3)])
def test_plane_waves_score_high(kx: float, ky: float) -> None:
    assert coherence(phases(plane_wave(kx, ky))) > 0.8


def test_noise_in_phase_and_standing_oscillations_score_low() -> None:
    rng = np.random.default_rng(0)
    in_phase = np.sin(OMEGA * _t) + 0 * _xx
    signals = {
        "white noise": rng.standard_normal((T, S, S)),
        "in phase": in_phase,
        "in phase + noise": in_phase + 0.05 * rng.standard_normal((T, S, S)),
        "standing": np.sin(2 * np.pi / 8 * _xx + 0.3) * np.sin(OMEGA * _t),
        "random phases": np.sin(OMEGA * _t + rng.uniform(0, 2 * np.pi, (S, S))),
    }
    for name, y in signals.items():
        assert coherence(phases(y)) < 0.2, name


def test_coherence_of_constructed_phase_maps() -> None:
    """Exact values: a plane wave (every site's gradient the same) scores 1 in any direction;
    a constant phase (no gradient) and an anti-phase step (phase slips only) score 0; a plane wave
    for half of the kept time steps (trim 0.1 of 10 drops steps 0 and 9) scores 1/2."""
    k = 2 * np.pi / S  # one wavelength across the sheet: consistent across the seam too
    t10 = np.arange(10.0)[:, None, None]
    assert coherence(wrap(k * _xx + 0.3 * t10)) == pytest.approx(1.0)
    assert coherence(wrap(k * _xx - k * _yy + 0.3 * t10)) == pytest.approx(1.0)
    assert coherence(np.zeros((10, S, S))) == 0.0
    step = np.where(_xx < S // 2, 0.0, np.pi) + 0 * t10
    assert coherence(step) == 0.0
    half = np.concatenate([wrap(k * _xx + 0.3 * t10[:5]), np.zeros((5, S, S))])
    assert coherence(half) == pytest.approx(0.5)
    assert coherence(half, trim=0.0) == pytest.approx(0.5)
    assert coherence(np.concatenate([half, np.zeros((10, S, S))]), trim=0.0) == pytest.approx(
        0.25)


class _Rollout:
    """A stand-in learner whose 'forecast' is a fixed logit for every pixel."""

    def __init__(self, logit: float) -> None:
        self.logit = logit

    def rollout(self, xb: torch.Tensor, n_free: int) -> Any:
        n, t = xb.shape[0], xb.shape[1] + n_free
        h, w = xb.shape[2], xb.shape[3]
        return type("Out", (), {"logits": torch.full((n, t, 3, h, w), self.logit)})()


def test_forecast_errors_of_constructed_predictions() -> None:
    """Predicting 0.5 everywhere: MSE (0.5 - v)^2 per step for frames of constant value v; the
    copy-last error is the squared change from the last input frame."""
    levels = np.array([0, 51, 102, 153, 204, 255], dtype=np.uint8)  # 0, 0.2, ... 1.0
    x = np.broadcast_to(levels[None, :, None, None, None], (2, 6, 4, 4, 3)).copy()
    errs = forecast_errors(_Rollout(0.0), x, n_input=2, horizon=4)
    v = levels / 255.0
    assert errs["recon"] == pytest.approx(list((0.5 - v[:2]) ** 2))
    assert errs["forecast"] == pytest.approx(list((0.5 - v[2:]) ** 2))
    assert errs["copy_last"] == pytest.approx(list((v[2:] - v[1]) ** 2))


def test_phase_gradients_wrap_around_the_circular_boundary() -> None:
    k = 2 * np.pi / S  # one wavelength across the sheet: consistent across the seam too
    ph = wrap(k * _xx + 0.0 * _t)[:1]
    gx, gy = phase_gradients(ph)
    assert np.allclose(gx, k) and np.allclose(gy, 0.0)


def test_wave_stats_direction_speed_and_shuffled_control() -> None:
    k = 2 * np.pi / 8
    stats = wave_stats(phases(plane_wave(k, 0.0)))  # sin(k x - w t) travels towards +x
    assert stats["direction_x"] > 0.95 and abs(stats["direction_y"]) < 0.05
    assert stats["wavenumber"] == pytest.approx(k, rel=0.02)
    assert stats["frequency"] == pytest.approx(OMEGA, rel=0.05)
    assert stats["speed"] == pytest.approx(OMEGA / k, rel=0.05)
    assert stats["coherence_shuffled"] < 0.2 < 0.8 < stats["coherence"]


TINY: dict[str, Any] = {"channels": (4, 4, 8, 8), "hidden": 16, "sheet": 6, "forecast_steps": 2}


def test_analyse_waves_reports_coherence_forecasts_and_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    nwm, gru = NWM(NWMConfig(**TINY)), NWM(NWMConfig(**TINY, cell="gru"))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 9, 64, 64, 3), dtype=np.uint8)
    res = analyse_waves(nwm, x, tmp_path, n_input=3, horizon=6, free_steps=8, baseline=gru)
    assert res["horizon"] == 6 > res["train_horizon"] == 2 and res["n_sequences"] == 3
    assert len(res["forecast_mse"]) == len(res["copy_last_mse"]) == 6
    assert len(res["baseline"]["forecast_mse"]) == 6 and len(res["recon_mse"]) == 3
    # copy-last MSE recomputed here: frames in [0, 1], step h against input frame n_input - 1
    xf = x.astype(np.float64) / 255.0
    want = [float(np.mean((xf[:, 3 + h] - xf[:, 2]) ** 2)) for h in range(6)]
    assert res["copy_last_mse"] == pytest.approx(want, rel=1e-5)
    assert res["baseline"]["copy_last_mse"] == pytest.approx(want, rel=1e-5)
    assert res["forecast_mse_mean"] == pytest.approx(np.mean(res["forecast_mse"]))
    assert res["coherence"] == {"driven": res["driven"]["coherence"],
                                "driven_shuffled": res["driven"]["coherence_shuffled"],
                                "free": res["free"]["coherence"],
                                "free_shuffled": res["free"]["coherence_shuffled"]}
    png = np.asarray(Image.open(res["phase_png"]))
    assert png.ndim == 3 and png.shape[0] > 4 * 64
    gif = Image.open(res["animation"])
    assert gif.n_frames == 3 + 8
    assert json.loads((tmp_path / "waves.json").read_text())["horizon"] == 6
