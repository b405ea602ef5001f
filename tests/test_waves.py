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
    assert all(0 <= v <= 1 for v in res["forecast_mse"] + res["baseline"]["forecast_mse"])
    for key in ("driven", "driven_shuffled", "free", "free_shuffled"):
        assert 0.0 <= res["coherence"][key] <= 1.0
    png = np.asarray(Image.open(res["phase_png"]))
    assert png.ndim == 3 and png.shape[0] > 4 * 64
    gif = Image.open(res["animation"])
    assert gif.n_frames == 3 + 8
    assert json.loads((tmp_path / "waves.json").read_text())["horizon"] == 6
