"""Travelling-wave analysis of oscillator sheets (Keller & Welling, ICML 2023, *Neural Wave
Machines*; the sheet is a coRNN, Rusch & Mishra, ICLR 2021).

* Phase: each oscillator's position ``y(t)`` is linearly detrended over time and its phase is the
  angle of the analytic signal (:func:`scipy.signal.hilbert`) -> :func:`phases`.
* Phase-gradient field: wrapped phase differences to the right (``gx``) and lower (``gy``)
  neighbour, with the circular boundary of the sheet -> :func:`phase_gradients`. A component
  whose magnitude exceeds ``max_gradient`` (default ``0.8 pi``) is a phase slip (e.g. a standing
  wave's node, where neighbours are in anti-phase and the direction is undefined) and that site
  counts as having no direction; so does a site whose gradient is below ``min_gradient`` (in-phase
  neighbours).
* Travelling-wave coherence (:func:`coherence`): at every time step the magnitude of the mean
  *unit* phase-gradient vector over the sheet (sites without a direction contribute zero vectors),
  averaged over time (the first and last ``trim`` of the time steps are dropped: Hilbert edge
  effects). A plane wave ``sin(k . x - w t)`` scores ~1; independent noise scores about
  ``1 / sqrt(sites)`` (~0.06 on 16x16); an in-phase oscillation or a standing wave scores ~0.
  It is a *plane*-wave score: radial or spiral waves and several waves travelling in different
  directions score low. :func:`analyse_waves` reports it next to a control with the oscillators'
  positions shuffled (chance level for the same signals).
* Direction: for phase increasing in time, a wave travels along ``-grad(phase)``.

:func:`analyse_waves` runs a trained :class:`sparseshift.representations.nwm.NWM` on video
sequences and
reports coherence (driven by frames, and free-running after the input), the per-step forecast
error past the training horizon (next to a copy-last-frame baseline and optionally a GRU
baseline), a phase-map PNG and a GIF animation.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.signal import detrend, hilbert

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import write_json_atomic
from sparseshift.representations.base import Capability, Learner, to_float_chw

#: Default gradient thresholds (radians per oscillator) of :func:`coherence`.
MIN_GRADIENT = 1e-3
MAX_GRADIENT = 0.8 * math.pi


def wrap(a: np.ndarray) -> np.ndarray:
    """Angles wrapped to ``[-pi, pi)``."""
    return np.mod(a + np.pi, 2 * np.pi) - np.pi


def phases(y: np.ndarray, axis: int = 0) -> np.ndarray:
    """Phase of every oscillator over time: Hilbert transform of the linearly detrended signal.

    ``y`` holds time along ``axis`` (e.g. ``[T, H, W]``); returns angles in ``(-pi, pi]``.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.shape[axis] < 4:
        raise ConfigError(f"phases need at least 4 time steps, got {y.shape[axis]}")
    return np.angle(hilbert(detrend(y, axis=axis, type="linear"), axis=axis))


def phase_gradients(phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wrapped phase differences to the right and lower neighbour (circular): ``(gx, gy)``.

    ``phase`` is ``[..., H, W]``; both outputs have its shape.
    """
    gx = wrap(np.roll(phase, -1, axis=-1) - phase)
    gy = wrap(np.roll(phase, -1, axis=-2) - phase)
    return gx, gy


def unit_gradients(phase: np.ndarray, min_gradient: float = MIN_GRADIENT,
                   max_gradient: float = MAX_GRADIENT) -> tuple[np.ndarray, np.ndarray]:
    """Unit phase-gradient vectors ``(ux, uy)``; zero where the direction is undefined (gradient
    below ``min_gradient`` or a component above ``max_gradient``, i.e. a phase slip)."""
    gx, gy = phase_gradients(phase)
    mag = np.hypot(gx, gy)
    ok = (mag > min_gradient) & (np.abs(gx) <= max_gradient) & (np.abs(gy) <= max_gradient)
    safe = np.where(ok, mag, 1.0)
    return np.where(ok, gx / safe, 0.0), np.where(ok, gy / safe, 0.0)


def _trimmed(n: int, trim: float) -> slice:
    k = math.floor(n * trim)
    return slice(k, n - k) if n - 2 * k >= 1 else slice(0, n)


def coherence_per_step(phase: np.ndarray, min_gradient: float = MIN_GRADIENT,
                       max_gradient: float = MAX_GRADIENT) -> np.ndarray:
    """``|mean unit phase gradient|`` over the sheet for every ``[..., H, W]`` map."""
    ux, uy = unit_gradients(phase, min_gradient, max_gradient)
    return np.hypot(ux.mean(axis=(-2, -1)), uy.mean(axis=(-2, -1)))


def coherence(phase: np.ndarray, min_gradient: float = MIN_GRADIENT,
              max_gradient: float = MAX_GRADIENT, trim: float = 0.1) -> float:
    """Travelling-wave (plane-wave) coherence of phases ``[..., T, H, W]`` in [0, 1].

    Mean over time (``trim`` of the steps dropped at each end) and over leading dimensions of
    :func:`coherence_per_step`.
    """
    if phase.ndim < 3:
        raise ConfigError(f"phase must be [..., T, H, W], got shape {phase.shape}")
    per = coherence_per_step(phase, min_gradient, max_gradient)
    return float(per[..., _trimmed(per.shape[-1], trim)].mean())


def shuffle_sites(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` ``[..., H, W]`` with the sites permuted (one permutation for all leading indices)."""
    h, w = x.shape[-2:]
    perm = rng.permutation(h * w)
    return x.reshape(*x.shape[:-2], h * w)[..., perm].reshape(x.shape)


def wave_stats(phase: np.ndarray, trim: float = 0.1, seed: int = 0) -> dict[str, float]:
    """Coherence, its shuffled-sites control and wave descriptors of phases ``[..., T, H, W]``.

    ``wavenumber``: mean ``|grad phase|`` (rad per oscillator) over sites with a direction;
    ``frequency``: mean wrapped phase advance per time step (rad); ``speed``: their ratio
    (oscillators per time step); ``direction_x/y``: the mean unit propagation direction.
    """
    sl = _trimmed(phase.shape[-3], trim)
    ph = phase[..., sl, :, :]
    gx, gy = phase_gradients(ph)
    ux, uy = unit_gradients(ph)
    has = (ux != 0) | (uy != 0)
    mag = np.hypot(gx, gy)
    k = float(mag[has].mean()) if has.any() else 0.0
    omega = float(np.abs(wrap(np.diff(phase, axis=-3)))[..., sl, :, :].mean()) \
        if phase.shape[-3] > 1 else 0.0
    return {
        "coherence": coherence(phase, trim=trim),
        "coherence_shuffled": coherence(shuffle_sites(phase, np.random.default_rng(seed)),
                                        trim=trim),
        "wavenumber": k,
        "frequency": omega,
        "speed": omega / k if k > 0 else 0.0,
        "direction_x": float(-ux.mean()),
        "direction_y": float(-uy.mean()),
    }


# -- images -----------------------------------------------------------------------------------

def phase_image(phase: np.ndarray, size: int | None = None,
                amplitude: np.ndarray | None = None) -> np.ndarray:
    """Phase map ``[H, W]`` as an RGB uint8 image (hue = phase; value = amplitude if given),
    upscaled (nearest) to ``size`` x ``size``."""
    from matplotlib.colors import hsv_to_rgb
    from PIL import Image

    hue = (np.asarray(phase) + np.pi) / (2 * np.pi) % 1.0
    val = np.ones_like(hue)
    if amplitude is not None:
        a = np.asarray(amplitude, dtype=np.float64)
        val = np.clip(a / max(float(a.max()), 1e-12), 0.0, 1.0)
    rgb = (hsv_to_rgb(np.stack([hue, np.ones_like(hue), val], -1)) * 255).round().astype(np.uint8)
    if size is not None and rgb.shape[0] != size:
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.NEAREST))
    return rgb


def save_gif(path: Path, images: list[np.ndarray], fps: float = 8.0) -> Path:
    """Write RGB uint8 images as a looping GIF (atomically)."""
    from PIL import Image

    from sparseshift.envs.infra.io import atomic_write_bytes

    if not images:
        raise ConfigError("no images for the animation")
    pil = [Image.fromarray(im) for im in images]
    buf = io.BytesIO()
    pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:],
                duration=max(int(1000 / fps), 20), loop=0)
    atomic_write_bytes(path, buf.getvalue())
    return path


# -- running a learner ------------------------------------------------------------------------

def load_sequences(data: Any, n: int, length: int, seed: int = 0) -> np.ndarray:
    """uint8 sequences ``[n, length, H, W, 3]``: from an array/tensor (cropped), or sampled from a
    video dataset (an opened dataset or a path; never crossing episodes)."""
    if isinstance(data, torch.Tensor):
        data = data.cpu().numpy()
    if isinstance(data, np.ndarray):
        if data.ndim != 5 or data.dtype != np.uint8:
            raise ConfigError(f"sequences must be uint8 [N, T, H, W, 3], got {data.dtype} "
                              f"{data.shape}")
        if data.shape[1] < length:
            raise ConfigError(f"sequences have {data.shape[1]} frames; the analysis needs "
                              f"{length}")
        return data[:n, :length]
    from sparseshift.envs.data import Sampler
    from sparseshift.representations.data import open_data

    ds = open_data(data)
    if ds.kind != "video":
        raise ConfigError(f"wave analysis needs a video dataset, got {ds.kind!r}")
    return np.asarray(Sampler(ds, seed=seed).sequences(n, length)["x"])


def _batches(x: np.ndarray, batch: int) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))
            for i in range(0, len(x), batch)]


@torch.inference_mode()
def forecast_errors(learner: Any, x: np.ndarray, n_input: int, horizon: int,
                    batch: int = 16) -> dict[str, list[float]]:
    """Per-step MSE (images in [0, 1]) of free-running forecasts ``t = n_input+1 .. n_input+H``
    (``forecast``), of the reconstructions of the input frames (``recon``) and of repeating the
    last input frame (``copy_last``)."""
    sums = np.zeros(n_input + horizon)
    copy = np.zeros(horizon)
    for xb in _batches(x[:, : n_input + horizon], batch):
        out = learner.rollout(xb[:, :n_input], n_free=horizon)
        pred = torch.sigmoid(out.logits)
        target = to_float_chw(xb.flatten(0, 1).to(pred.device)).view(pred.shape)
        sums += (pred - target).square().mean(dim=(2, 3, 4)).sum(0).double().cpu().numpy()
        last = target[:, n_input - 1 : n_input]
        copy += ((target[:, n_input:] - last).square().mean(dim=(2, 3, 4)).sum(0).double()
                 .cpu().numpy())
    n = len(x)
    return {"recon": (sums[:n_input] / n).tolist(), "forecast": (sums[n_input:] / n).tolist(),
            "copy_last": (copy / n).tolist()}


@torch.inference_mode()
def sheet_traces(learner: Any, x: np.ndarray, n_free: int, batch: int = 16
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Drive the learner with all frames of ``x`` then run ``n_free`` frames without input.

    Returns the position trace ``[N, C, steps, S, S]`` (every sub-step) and the decoded frames
    uint8 ``[N, frames, H, W, 3]``.
    """
    traces, frames = [], []
    for xb in _batches(x, batch):
        out = learner.rollout(xb, n_free=n_free, trace=True)
        traces.append(out.trace.transpose(1, 2).double().cpu().numpy())
        img = torch.sigmoid(out.logits).permute(0, 1, 3, 4, 2)
        frames.append((img * 255).round().to(torch.uint8).cpu().numpy())
    return np.concatenate(traces), np.concatenate(frames)


class _Views(NamedTuple):
    """Arrays of the first sequence for the images (channel 0)."""

    driven_phase: np.ndarray  # [steps, S, S]
    free_phase: np.ndarray  # [steps, S, S], input part included
    free_y: np.ndarray  # [steps, S, S]
    free_pred: np.ndarray  # uint8 [frames, H, W, 3]


def _analyse_model(learner: Any, x: np.ndarray, n_input: int, horizon: int, free_steps: int,
                   trim: float, seed: int) -> tuple[dict[str, Any], _Views]:
    sub = int(learner.substeps)
    errors = forecast_errors(learner, x, n_input, horizon)
    trace_driven, _ = sheet_traces(learner, x, 0)
    trace_free, pred = sheet_traces(learner, x[:, :n_input], free_steps)
    ph_driven = phases(trace_driven, axis=2)
    ph_free = phases(trace_free[:, :, n_input * sub :], axis=2)
    result = {
        "driven": wave_stats(ph_driven, trim, seed),
        "free": wave_stats(ph_free, trim, seed),
        "forecast_mse": errors["forecast"],
        "recon_mse": errors["recon"],
        "copy_last_mse": errors["copy_last"],
        "forecast_mse_mean": float(np.mean(errors["forecast"])),
    }
    views = _Views(ph_driven[0, 0], phases(trace_free[0, 0], axis=0), trace_free[0, 0], pred[0])
    return result, views


def _phase_png(out: Path, x: np.ndarray, ph_driven: np.ndarray, ph_free: np.ndarray,
               pred: np.ndarray, sub: int, n_input: int, columns: int = 8) -> Path:
    """The labelled phase-map figure: rows input frames and phase maps of the sheet driven by
    them, then phase maps and predictions while free-running after ``n_input`` frames; columns
    are time steps (ticks), a colour bar maps hue to phase and a note gives the sheet's size and
    orientation (oscillator column left to right, row top to bottom)."""
    from matplotlib.colors import ListedColormap, Normalize, hsv_to_rgb

    from sparseshift.envs.infra.io import atomic_write_bytes
    from sparseshift.representations.viz import figure_png, grid_axes, new_figure

    size = x.shape[-2]
    t_drv = np.linspace(0, x.shape[0] - 1, columns).round().astype(int)
    free_frames = pred.shape[0] - n_input
    t_free = n_input + np.linspace(0, free_frames - 1, columns).round().astype(int)
    driven = np.asarray([[x[t] for t in t_drv],
                         [phase_image(ph_driven[(t + 1) * sub - 1], size) for t in t_drv]])
    free = np.asarray([[phase_image(ph_free[(t + 1) * sub - 1], size) for t in t_free],
                       [pred[t] for t in t_free]])
    sheet = ph_driven.shape[-1]
    cell = max(64, int(1.5 * size))
    grid_w, block = columns * (cell + 3), 2 * (cell + 3)
    left, right, top_m, gap, bottom_m = 150, 150, 110, 70, 50
    width, height = left + grid_w + right, top_m + 2 * block + gap + bottom_m
    fig = new_figure(width, height)
    top = fig.add_axes((left / width, (bottom_m + block + gap) / height, grid_w / width,
                        block / height))
    bottom = fig.add_axes((left / width, bottom_m / height, grid_w / width, block / height))
    grid_axes(top, driven, 2, ["input frame", "phase, driven"], [f"t={t}" for t in t_drv])
    grid_axes(bottom, free, 2, ["phase, free-running", "prediction, free"],
              [f"t={t}" for t in t_free], top=False)
    top.set_title(f"driven by the input frames t = 0..{x.shape[0] - 1}", fontsize=9, pad=20)
    bottom.set_xlabel(f"free-running after {n_input} input frames (t = time step)", fontsize=9)
    fig.text(left / width, 1 - 30 / height, f"each phase map: sheet column 0..{sheet - 1} left "
             f"to right, row 0..{sheet - 1} top to bottom", fontsize=8, color="0.3", va="top")
    hue = np.linspace(0, 1, 256, endpoint=False)
    cmap = ListedColormap(hsv_to_rgb(np.stack([hue, np.ones(256), np.ones(256)], -1)))
    cax = fig.add_axes(((left + grid_w + 30) / width, bottom_m / height, 14 / width,
                        (2 * block + gap) / height))
    bar = fig.colorbar(_mappable(cmap, Normalize(-np.pi, np.pi)), cax=cax)
    bar.set_ticks([-np.pi, -np.pi / 2, 0, np.pi / 2, np.pi])
    bar.set_ticklabels(["-π", "-π/2", "0", "π/2", "π"])
    bar.set_label("oscillator phase (rad); hue as in the maps", fontsize=8)
    fig.suptitle(f"Neural Wave Machine: phase of each oscillator of the {sheet}x{sheet} sheet "
                 "(one map per time step, upscaled)", fontsize=10,
                 y=1 - 6 / fig.bbox.height, va="top")
    return atomic_write_bytes(out, figure_png(fig))


def _mappable(cmap: Any, norm: Any) -> Any:
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)


def _check_waves(model: Any) -> None:
    if not isinstance(model, Learner):
        raise ConfigError(f"wave analysis needs a Learner, got {type(model).__name__}")
    reason = model.missing(Capability.WAVES)
    if reason:
        raise ConfigError(f"no wave analysis: {reason}")


def analyse_waves(learner: Any, data: Any, out_dir: str | os.PathLike[str], *,
                  n_input: int = 8, horizon: int | None = None, free_steps: int = 64,
                  n_sequences: int = 32, baseline: Any = None, seed: int = 0,
                  trim: float = 0.1) -> dict[str, Any]:
    """Waves and forecasts of a trained :class:`sparseshift.representations.nwm.NWM` on video
    sequences.

    ``data``: a video dataset (path or opened) or uint8 sequences ``[N, T, H, W, 3]``;
    ``n_sequences`` sequences of ``n_input + horizon`` frames are used (``horizon`` defaults to
    three times the learner's training forecast horizon, at least 12).

    * ``driven``: wave statistics (:func:`wave_stats`) of the sheet driven by all frames;
    * ``free``: the same for ``free_steps`` frames of free running after ``n_input`` frames;
    * ``forecast_mse``: per-step MSE for ``t = n_input+1 .. n_input+horizon`` (free-running),
      with ``copy_last_mse`` (repeat the last input frame) and, when ``baseline`` (e.g. the
      ``cell="gru"`` model) is given, ``baseline`` holding the same entries for it;
    * ``phase_png`` (rows: input frames, driven phase maps, free-run phase maps, free-run
      predictions of the first sequence) and ``animation`` (GIF: target | model output | phase).

    Writes ``waves.json`` with the result into ``out_dir``. ``learner`` and ``baseline`` must
    declare :attr:`Capability.WAVES` (a :class:`ConfigError` otherwise).
    """
    for model in (learner, baseline):
        if model is not None:
            _check_waves(model)
    cfg = learner.config
    train_horizon = int(cfg.forecast_steps)
    if horizon is None:
        horizon = max(3 * train_horizon, 12)
    if n_input < 1 or horizon < 1 or free_steps < 4:
        raise ConfigError("n_input and horizon must be >= 1 and free_steps >= 4")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = load_sequences(data, n_sequences, n_input + horizon, seed)
    learner.eval()
    main, views = _analyse_model(learner, x, n_input, horizon, free_steps, trim, seed)
    result: dict[str, Any] = {
        "learner": cfg.cell,
        "n_sequences": len(x),
        "n_input": n_input,
        "horizon": horizon,
        "train_horizon": train_horizon,
        "free_steps": free_steps,
        "substeps": int(learner.substeps),
        "coherence": {"driven": main["driven"]["coherence"],
                      "driven_shuffled": main["driven"]["coherence_shuffled"],
                      "free": main["free"]["coherence"],
                      "free_shuffled": main["free"]["coherence_shuffled"]},
        **main,
    }
    if baseline is not None:
        baseline.eval()
        result["baseline"] = {"learner": baseline.config.cell,
                              **_analyse_model(baseline, x, n_input, horizon, free_steps, trim,
                                               seed)[0]}
    sub = int(learner.substeps)
    result["phase_png"] = str(_phase_png(out / "phase_map.png", x[0], views.driven_phase,
                                         views.free_phase, views.free_pred, sub, n_input))
    result["animation"] = str(_animation(out / "waves.gif", x[0], views.free_phase, views.free_y,
                                         views.free_pred, sub))
    write_json_atomic(out / "waves.json", result)
    return result


def _animation(out: Path, x: np.ndarray, ph: np.ndarray, y: np.ndarray, pred: np.ndarray,
               sub: int) -> Path:
    """GIF frames: target | model output | phase (value = amplitude), under a caption strip."""
    from sparseshift.representations.viz import caption_strip, tile

    size = x.shape[-2]
    blank = np.full_like(x[0], 128)
    images = []
    for t in range(pred.shape[0]):
        s = (t + 1) * sub - 1
        amp = np.abs(y[s] - y.mean(0))
        row = [x[t] if t < len(x) else blank, pred[t], phase_image(ph[s], size, amp)]
        img = tile(np.asarray([row]))
        strip = caption_strip(img.shape[1], [(2 + i * (size + 2), text) for i, text in
                                             enumerate((f"target t={t}", "NWM output",
                                                        "phase"))], size=10)
        images.append(np.concatenate([strip, img], axis=0))
    return save_gif(out, images)
