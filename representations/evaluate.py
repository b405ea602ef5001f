"""Evaluate a trained representation on a dataset: disentanglement metrics, probes, reconstruction.

Protocol (disentanglement_lib defaults, scaled down when the dataset is smaller): ``num_train``
(10,000) and ``num_test`` (5,000) frames are drawn without replacement from all frames of the
dataset (both images of every pair); when the dataset has fewer frames both shrink, keeping the
2:1 ratio. The frames are encoded to posterior means (set-valued latents ``[K, D]`` are flattened
to ``K * D`` dims); factors are discretised by
:func:`sparseshift.representations.metrics.discretise_factors`.

FactorVAE score, ``factor_vae="auto"``: when the dataset's env can be made
(``sparseshift.envs.registry.make``
with the dataset's recorded ``env_kwargs``) and renders frames of the dataset's size, each vote
fixes one settable factor *group* of the env, samples the others with ``sample_factors`` and renders
the batch (the disentanglement_lib protocol, with ``factor_vae_env_train``/``_eval`` votes, default
100/50 instead of 10,000/5,000 because every vote renders 64 frames); the global variances come
from the dataset's codes. Otherwise (or with ``factor_vae="grouping"``) batches are approximated by
grouping dataset frames that share the fixed factor's discretised label
(:func:`sparseshift.representations.metrics.grouped_batches`), with the full 10,000/5,000 votes.
The method used
is recorded in the output.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparseshift.envs.errors import ConfigError
from sparseshift.representations import metrics as M
from sparseshift.representations.base import Learner, frames_to_tensor
from sparseshift.representations.checkpoint import load_learner, read_run, write_json
from sparseshift.representations.data import (
    STREAM_EVAL,
    dataset_info,
    derive_seed,
    frames_at,
    num_frames,
    open_data,
)
from sparseshift.representations.probes import fit_probes

FACTOR_VAE_MODES: tuple[str, ...] = ("auto", "env", "grouping", "off")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol options (see the module docstring)."""

    num_train: int = 10000
    num_test: int = 5000
    seed: int = 0
    bins: int = M.NUM_BINS
    dci_estimators: int = 30
    dci_max_train: int | None = 2000
    factor_vae: str = "auto"
    factor_vae_batch: int = 64
    factor_vae_train: int = 10000
    factor_vae_eval: int = 5000
    factor_vae_env_train: int = 100
    factor_vae_env_eval: int = 50
    probes: bool = True
    encode_batch: int = 256
    #: Skip the per-dimension metrics (MIG, DCI, SAP, modularity, FactorVAE) when the code has
    #: more dimensions than this (None: never); DCI's boosted trees grow with the dimension.
    max_code_dims: int | None = None

    def __post_init__(self) -> None:
        if self.factor_vae not in FACTOR_VAE_MODES:
            raise ConfigError(f"unknown factor_vae mode {self.factor_vae!r}; valid: "
                              f"{', '.join(FACTOR_VAE_MODES)}")
        for name in ("num_train", "num_test", "bins", "dci_estimators", "factor_vae_batch",
                     "factor_vae_train", "factor_vae_eval", "factor_vae_env_train",
                     "factor_vae_env_eval", "encode_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_code_dims is not None and self.max_code_dims < 1:
            raise ConfigError(f"max_code_dims must be >= 1 or None, got {self.max_code_dims}")
        if self.factor_vae_batch < 2:
            raise ConfigError("factor_vae_batch must be >= 2 (it estimates variances)")


@torch.no_grad()
def encode_frames(learner: Learner, frames: np.ndarray, batch: int = 256) -> np.ndarray:
    """Codes ``[N, prod(latent_shape)]`` (float64) of uint8 frames ``[N, H, W, 3]``."""
    out = [learner.encode(frames_to_tensor(frames[i : i + batch])).flatten(1).double().numpy()
           for i in range(0, len(frames), batch)]
    if not out:
        return np.zeros((0, math.prod(learner.latent_shape)))
    return np.concatenate(out)


@torch.no_grad()
def reconstruction_error(learner: Learner, frames: np.ndarray, batch: int = 256
                         ) -> dict[str, float] | None:
    """Mean squared error per pixel and channel (images in [0, 1]) of the reconstructions."""
    total, count = 0.0, 0
    try:
        for i in range(0, len(frames), batch):
            x = frames_to_tensor(frames[i : i + batch])
            err = (learner.reconstruct(x) - x.float() / 255.0).square()
            total += float(err.sum())
            count += err.numel()
    except NotImplementedError:
        return None
    mse = total / max(count, 1)
    per_image = mse * int(np.prod(frames.shape[1:]))
    return {"mse_per_pixel": mse, "sse_per_image": per_image}


def env_fixed_batches(ds: Any, learner: Learner, batch: int, seed: int
                      ) -> tuple[M.FixedBatch, tuple[str, ...]]:
    """"Fix one group, resample the rest" batches rendered by the dataset's env (encoded).

    Raises :class:`RuntimeError` (with the reason) when the env cannot serve the dataset.
    """
    from sparseshift.envs.data.config import variable_groups
    from sparseshift.envs.registry import make

    kwargs = ds.attrs.get("env_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise RuntimeError("the dataset does not record its env_kwargs")
    try:
        env = make(ds.env_id, **kwargs)
    except Exception as exc:  # any failure to build the env means: fall back to grouping
        raise RuntimeError(f"cannot make {ds.env_id}: {type(exc).__name__}: {exc}") from None
    env.reset(seed=seed)
    u: Any = env.unwrapped
    if tuple(u.factor_spec.names) != tuple(ds.factor_spec.names):
        raise RuntimeError("the env's factors differ from the dataset's")
    frame = u.render_frame()
    if frame.shape != (ds.image_size, ds.image_size, 3):
        raise RuntimeError(f"the env renders {frame.shape}, the dataset has {ds.image_size}px")
    groups = variable_groups(u, seed)
    if len(groups) < 2:
        raise RuntimeError("the env has fewer than two variable factor groups")

    def fixed(k: int, rng: np.random.Generator) -> np.ndarray:
        others = [g for i, g in enumerate(groups) if i != k]
        base = u.sample_factors(rng)
        frames = np.empty((batch, *frame.shape), np.uint8)
        for b in range(batch):
            u.set_factors(u.sample_factors(rng, base=base, groups=others))
            frames[b] = u.render_frame()
        return encode_frames(learner, frames, batch)

    return fixed, groups


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _skip_per_dimension(learner: Any, dims: int, limit: int | None) -> str:
    """Why the per-dimension disentanglement metrics do not apply to these codes ('' if they
    do): set-valued latents (slots) have no fixed order, so a latent dimension is not a
    variable; very wide codes (``limit``) make DCI's boosted trees too slow."""
    if len(tuple(learner.latent_shape)) == 2:
        return (f"skipped: set-valued latents {tuple(learner.latent_shape)} have no fixed "
                "dimension order (see fg_ari and the probes)")
    if limit is not None and dims > limit:
        return f"skipped: {dims} code dimensions > max_code_dims {limit}"
    return ""


def evaluate(run_dir: str | os.PathLike[str], data: Any, config: EvalConfig | None = None,
             out: str | os.PathLike[str] | None = None,
             export_codes: str | os.PathLike[str] | None = None,
             traversal_png: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Evaluate the run in ``run_dir`` on ``data`` (path or dataset); optionally write the metrics
    JSON to ``out``, the codes and factors to ``export_codes`` (npz) and a traversal PNG."""
    cfg = config or EvalConfig()
    learner = load_learner(run_dir)
    run = read_run(Path(run_dir))
    ds = open_data(data)
    if int(ds.image_size) != learner.config.image_size:
        raise ConfigError(
            f"the dataset's images are {ds.image_size}x{ds.image_size} but the model was trained "
            f"on {learner.config.image_size}x{learner.config.image_size}"
        )
    rng = np.random.default_rng(derive_seed(cfg.seed, STREAM_EVAL))
    n_frames = num_frames(ds)
    tr, te = M.train_test_indices(n_frames, cfg.num_train, cfg.num_test, rng)
    if len(tr) < 10 or len(te) < 10:
        raise ConfigError(f"the dataset has {n_frames} frames; evaluation needs at least 20")
    frames_tr, f_tr = frames_at(ds, tr)
    frames_te, f_te = frames_at(ds, te)
    torch_threads = torch.get_num_threads()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    codes_tr = encode_frames(learner, frames_tr, cfg.encode_batch)
    codes_te = encode_frames(learner, frames_te, cfg.encode_batch)
    targets = M.discretise_factors(np.concatenate([f_tr, f_te]), ds.factor_spec,
                                   cfg.bins)
    lab_tr, lab_te = targets.labels[: len(tr)], targets.labels[len(tr) :]
    if targets.labels.shape[1] == 0:
        raise ConfigError("every factor is constant in this dataset; nothing to evaluate")

    seconds["encode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    skip = _skip_per_dimension(learner, int(codes_tr.shape[1]), cfg.max_code_dims)
    result: dict[str, Any] = {"per_dimension_metrics": skip} if skip else M.all_metrics(
        codes_tr, lab_tr, codes_te, lab_te, seed=cfg.seed, dci_estimators=cfg.dci_estimators,
        dci_max_train=cfg.dci_max_train, factor_vae=False,
    )
    seconds["mig_dci_sap_modularity"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fv_method = "off" if skip else cfg.factor_vae
    fv_note = skip
    if fv_method in ("auto", "env"):
        try:
            fixed, groups = env_fixed_batches(ds, learner, cfg.factor_vae_batch, cfg.seed)
            fv = M.factor_vae_score(np.concatenate([codes_tr, codes_te])[:10000], fixed,
                                    len(groups), rng, cfg.factor_vae_env_train,
                                    cfg.factor_vae_env_eval)
            fv_method, fv_note = "env", f"groups: {', '.join(groups)}"
        except RuntimeError as exc:
            if cfg.factor_vae == "env":
                raise ConfigError(f"FactorVAE score by env rendering impossible: {exc}") from None
            fv_method, fv_note = "grouping", f"env unavailable ({exc})"
    if fv_method == "grouping":
        codes = np.concatenate([codes_tr, codes_te])
        fv = M.factor_vae_score(codes[:10000], M.grouped_batches(codes, targets.labels,
                                                                 cfg.factor_vae_batch),
                                targets.labels.shape[1], rng, cfg.factor_vae_train,
                                cfg.factor_vae_eval)
    if fv_method != "off":
        result.update(fv)
    result["factor_vae_method"] = fv_method
    result["factor_vae_note"] = fv_note

    seconds["factor_vae"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    probes: dict[str, Any] = {}
    if cfg.probes:
        fp = fit_probes(codes_tr, f_tr, seed=cfg.seed)
        r2 = fp.r2(codes_te, f_te)
        probes = {"factors": list(ds.factor_spec.names), "linear_r2": r2["linear"],
                  "mlp_r2": r2["mlp"]}
        for k in ("linear", "mlp"):
            vals = [v for v in r2[k] if v is not None]
            probes[f"{k}_r2_mean"] = float(np.mean(vals)) if vals else None
    recon = reconstruction_error(learner, frames_te[:1000], cfg.encode_batch)
    seconds["probes_reconstruction"] = time.perf_counter() - t0

    report = _clean({
        "format": "sparseshift-rep-metrics",
        "format_version": 1,
        "run": str(run_dir),
        "learner": learner.name,
        "trained_on": run.get("dataset", {}).get("fingerprint"),
        "dataset": dataset_info(ds),
        "protocol": {**asdict(cfg), "num_train_used": len(tr), "num_test_used": len(te),
                     "latent_dims": int(codes_tr.shape[1]), "torch_threads": torch_threads},
        "targets": [{"name": n, "rule": r} for n, r in zip(targets.names, targets.rules,
                                                           strict=True)],
        "dropped_targets": list(targets.dropped),
        "summary": M.summary(result),
        "metrics": result,
        "probes": probes,
        "reconstruction": recon,
        "seconds": seconds,
    })
    if learner.name == "slot_attention":
        from sparseshift.representations.slot_eval import (
            evaluate_slots_on_dataset,
            save_slot_figure,
        )

        slots = evaluate_slots_on_dataset(learner, ds, n=512, seed=cfg.seed)  # type: ignore[arg-type]
        slots.pop("fg_ari_per_image", None)
        report["slots"] = slots
        report["summary"]["fg_ari"] = slots["fg_ari"]
        if out is not None:
            save_slot_figure(learner, frames_te[:8], Path(out).with_suffix(".slots.png"))  # type: ignore[arg-type]
    if out is not None:
        write_json(Path(out), report)
    if export_codes is not None:
        _export(Path(export_codes), codes_tr, codes_te, f_tr, f_te, tr, te,
                targets, ds)
    if traversal_png is not None:
        from sparseshift.representations.viz import save_png, traversal_grid

        try:
            save_png(Path(traversal_png), traversal_grid(learner, frames_te[0]))
        except NotImplementedError:
            pass
    return report


def _export(path: Path, codes_tr: np.ndarray, codes_te: np.ndarray, f_tr: np.ndarray,
            f_te: np.ndarray, tr: np.ndarray, te: np.ndarray, targets: M.Targets, ds: Any) -> None:
    import io

    from sparseshift.representations.checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(
        buf, codes_train=codes_tr, codes_test=codes_te, factors_train=f_tr, factors_test=f_te,
        index_train=tr, index_test=te, labels_train=targets.labels[: len(tr)],
        labels_test=targets.labels[len(tr) :], target_names=np.array(targets.names),
        factor_names=np.array(ds.factor_spec.names),
    )
    atomic_write_bytes(path, buf.getvalue())
