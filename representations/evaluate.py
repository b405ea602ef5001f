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

:func:`evaluate` is a sequence of named steps (:data:`STEPS`: per-dimension metrics, FactorVAE
score, probes, reconstruction error, slot FG-ARI, latent traversal). Each runs only when the
learner's capabilities (:class:`sparseshift.representations.base.Capability`) and the config allow
it; the report's ``skipped`` maps every step that did not run to the reason.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations import metrics as M
from sparseshift.representations.base import Capability, Learner, frames_to_tensor
from sparseshift.representations.checkpoint import RUN_FILE, read_run, write_json
from sparseshift.representations.config import EvalConfig, ProxyConfig
from sparseshift.representations.data import (
    STREAM_EVAL,
    dataset_info,
    derive_seed,
    frames_at,
    num_frames,
    open_data,
)
from sparseshift.representations.plugins import Plugins
from sparseshift.representations.probes import fit_probes
from sparseshift.representations.viz import TRAVERSAL_NEEDS


@torch.no_grad()
def encode_frames(learner: Learner, frames: np.ndarray, batch: int = 256) -> np.ndarray:
    """Codes ``[N, prod(latent_shape)]`` (float64) of uint8 frames ``[N, H, W, 3]``."""
    device = learner.device
    out = [learner.encode(frames_to_tensor(frames[i : i + batch], device)).flatten(1).double()
           .cpu().numpy() for i in range(0, len(frames), batch)]
    if not out:
        return np.zeros((0, math.prod(learner.latent_shape)))
    return np.concatenate(out)


@torch.no_grad()
def reconstruction_error(learner: Learner, frames: np.ndarray, batch: int = 256
                         ) -> dict[str, float] | None:
    """Mean squared error per pixel and channel (images in [0, 1]) of the reconstructions;
    ``None`` for learners without :attr:`Capability.RECONSTRUCT`."""
    if not learner.supports(Capability.RECONSTRUCT):
        return None
    total, count = 0.0, 0
    for i in range(0, len(frames), batch):
        x = frames_to_tensor(frames[i : i + batch], learner.device)
        err = (learner.reconstruct(x) - x.float() / 255.0).square()
        total += float(err.sum())
        count += err.numel()
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


@dataclass
class EvalState:
    """What one evaluation builds up, step by step (see :data:`STEPS`): the frames, codes and
    targets from :func:`_prepare`, then each step's results."""

    learner: Learner
    ds: Any
    cfg: EvalConfig
    run: dict[str, Any]
    rng: np.random.Generator
    tr: np.ndarray
    te: np.ndarray
    frames_tr: np.ndarray
    frames_te: np.ndarray
    f_tr: np.ndarray
    f_te: np.ndarray
    codes_tr: np.ndarray
    codes_te: np.ndarray
    targets: M.Targets
    torch_threads: int
    out: Path | None = None
    traversal_png: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, Any] = field(default_factory=dict)
    reconstruction: dict[str, float] | None = None
    slots: dict[str, Any] | None = None
    proxy_data: Any = None
    #: What was evaluated (a path or spec, or ``<ClassName>`` for a module) and whether it is a
    #: path (recorded relative to the metrics file).
    source: Any = ""
    source_is_path: bool = False
    proxy: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def labels_tr(self) -> np.ndarray:
        return self.targets.labels[: len(self.tr)]

    @property
    def labels_te(self) -> np.ndarray:
        return self.targets.labels[len(self.tr) :]


@dataclass(frozen=True)
class EvalStep:
    """One named step of :func:`evaluate`.

    ``skip_reason`` says why the step does not apply to this learner and protocol (``""``: it
    runs); a skipped step's reason is recorded in the report's ``skipped`` and ``on_skip`` writes
    what the report says instead. Steps that only write a requested output (``requested``) are
    neither run nor recorded when it was not requested. ``timer`` is the ``seconds`` entry the
    step's time adds to.
    """

    name: str
    skip_reason: Callable[[EvalState], str]
    run: Callable[[EvalState], None]
    timer: str | None = None
    on_skip: Callable[[EvalState, str], None] | None = None
    requested: Callable[[EvalState], bool] | None = None


def _per_dimension_reason(ev: EvalState) -> str:
    """Why the per-dimension disentanglement metrics do not apply ('' if they do): set-valued
    latents (slots) have no fixed order, so a latent dimension is not a variable; very wide codes
    (``max_code_dims``) make DCI's boosted trees too slow."""
    if not ev.learner.supports(Capability.VECTOR_CODE):
        return (f"set-valued latents {tuple(ev.learner.latent_shape)} have no fixed dimension "
                "order (see fg_ari and the probes)")
    dims, limit = int(ev.codes_tr.shape[1]), ev.cfg.max_code_dims
    if limit is not None and dims > limit:
        return f"{dims} code dimensions > max_code_dims {limit}"
    return ""


def _per_dimension_metrics(ev: EvalState) -> None:
    """MIG, DCI, SAP, modularity and explicitness (:func:`metrics.all_metrics`)."""
    cfg = ev.cfg
    ev.metrics.update(M.all_metrics(
        ev.codes_tr, ev.labels_tr, ev.codes_te, ev.labels_te, seed=cfg.seed,
        dci_estimators=cfg.dci_estimators, dci_max_train=cfg.dci_max_train, factor_vae=False,
    ))


def _per_dimension_skipped(ev: EvalState, reason: str) -> None:
    ev.metrics["per_dimension_metrics"] = f"skipped: {reason}"


def _factor_vae_reason(ev: EvalState) -> str:
    per_dim = _per_dimension_reason(ev)
    if per_dim:
        return f"per-dimension metrics skipped: {per_dim}"
    return "factor_vae mode 'off'" if ev.cfg.factor_vae == "off" else ""


def _factor_vae(ev: EvalState) -> None:
    """FactorVAE score (Kim & Mnih 2018) from env-rendered batches or grouped dataset frames."""
    cfg = ev.cfg
    method, note = cfg.factor_vae, ""
    if method in ("auto", "env"):
        try:
            fixed, groups = env_fixed_batches(ev.ds, ev.learner, cfg.factor_vae_batch, cfg.seed)
            fv = M.factor_vae_score(np.concatenate([ev.codes_tr, ev.codes_te])[:10000], fixed,
                                    len(groups), ev.rng, cfg.factor_vae_env_train,
                                    cfg.factor_vae_env_eval)
            method, note = "env", f"groups: {', '.join(groups)}"
        except RuntimeError as exc:
            if cfg.factor_vae == "env":
                raise ConfigError(f"FactorVAE score by env rendering impossible: {exc}") from None
            method, note = "grouping", f"env unavailable ({exc})"
    if method == "grouping":
        codes, labels = np.concatenate([ev.codes_tr, ev.codes_te]), ev.targets.labels
        fv = M.factor_vae_score(codes[:10000], M.grouped_batches(codes, labels,
                                                                 cfg.factor_vae_batch),
                                labels.shape[1], ev.rng, cfg.factor_vae_train, cfg.factor_vae_eval)
    ev.metrics.update(fv)
    ev.metrics["factor_vae_method"] = method
    ev.metrics["factor_vae_note"] = note


def _factor_vae_skipped(ev: EvalState, reason: str) -> None:
    ev.metrics["factor_vae_method"] = "off"
    ev.metrics["factor_vae_note"] = ev.metrics.get("per_dimension_metrics", "")


def _probes(ev: EvalState) -> None:
    """Linear and MLP factor probes, R^2 per factor (:mod:`sparseshift.representations.probes`)."""
    r2 = fit_probes(ev.codes_tr, ev.f_tr, seed=ev.cfg.seed).r2(ev.codes_te, ev.f_te)
    ev.probes = {"factors": list(ev.ds.factor_spec.names), "linear_r2": r2["linear"],
                 "mlp_r2": r2["mlp"]}
    for k in ("linear", "mlp"):
        vals = [v for v in r2[k] if v is not None]
        ev.probes[f"{k}_r2_mean"] = float(np.mean(vals)) if vals else None


def _proxy_reason(ev: EvalState) -> str:
    if not ev.cfg.proxy:
        return "proxy task disabled (proxy=False)"
    if ev.proxy_data is not None:
        return ""
    try:
        from sparseshift.envs.registry import entry

        entry(ev.ds.env_id)
    except ConfigError as exc:
        return f"the dataset's env cannot render proxy frames ({exc})"
    if not isinstance(ev.ds.attrs.get("env_kwargs"), dict):
        return "the dataset records no env_kwargs to render proxy frames with"
    return ""


def _proxy(ev: EvalState) -> None:
    """The OOD proxy task of Träuble et al. 2022 (:mod:`sparseshift.representations.proxy`)."""
    from sparseshift.representations.proxy import proxy_scores, proxy_set

    # Given frames are cut to the config's counts and splits (ProxyConfig.of), else rendered.
    data = proxy_set(ProxyConfig.of(ev.cfg), ev.ds.env_id, ev.ds.attrs.get("env_kwargs"),
                     ev.proxy_data)
    if data.frames["train"].shape[1:] != ev.frames_tr.shape[1:]:
        raise ConfigError(f"proxy frames are {data.frames['train'].shape[1:3]}, the dataset's "
                          f"{ev.frames_tr.shape[1:3]}")
    ev.proxy = proxy_scores(lambda f: encode_frames(ev.learner, f, ev.cfg.encode_batch), data,
                            seed=ev.cfg.seed)


def _reconstruction(ev: EvalState) -> None:
    ev.reconstruction = reconstruction_error(ev.learner, ev.frames_te[:1000], ev.cfg.encode_batch)


def _slots(ev: EvalState) -> None:
    """FG-ARI of the slot masks against the env's segmentations (Locatello et al. 2020), and the
    slot figure next to ``out``."""
    from sparseshift.representations.slot_eval import (
        evaluate_slots_on_dataset,
        save_slot_figure,
        slot_learner,
    )

    learner = slot_learner(ev.learner)
    slots = evaluate_slots_on_dataset(learner, ev.ds, n=512, seed=ev.cfg.seed)
    slots.pop("fg_ari_per_image", None)
    ev.slots = slots
    if ev.out is not None:
        save_slot_figure(learner, ev.frames_te[:8], ev.out.with_suffix(".slots.png"))


def _traversal(ev: EvalState) -> None:
    """Latent traversal PNG (Higgins et al. 2017) of the first test frame, each latent labelled
    with its mean KL over (up to 512) test frames."""
    from sparseshift.representations.viz import save_traversal_png

    assert ev.traversal_png is not None
    save_traversal_png(ev.traversal_png, ev.learner, ev.frames_te[:512])


def _lacks(*needs: Capability) -> Callable[[EvalState], str]:
    return lambda ev: ev.learner.missing(*needs)


#: The steps of :func:`evaluate`, in order (the FactorVAE votes draw from the evaluation RNG
#: after the split, so the order is part of the protocol).
STEPS: tuple[EvalStep, ...] = (
    EvalStep("per_dimension_metrics", _per_dimension_reason, _per_dimension_metrics,
             "mig_dci_sap_modularity", _per_dimension_skipped),
    EvalStep("factor_vae", _factor_vae_reason, _factor_vae, "factor_vae", _factor_vae_skipped),
    EvalStep("probes", lambda ev: "" if ev.cfg.probes else "probes disabled (probes=False)",
             _probes, "probes_reconstruction"),
    EvalStep("reconstruction", _lacks(Capability.RECONSTRUCT), _reconstruction,
             "probes_reconstruction"),
    EvalStep("proxy", _proxy_reason, _proxy, "proxy"),
    EvalStep("slots", _lacks(Capability.SLOT_MASKS), _slots),
    EvalStep("traversal", _lacks(*TRAVERSAL_NEEDS), _traversal,
             requested=lambda ev: ev.traversal_png is not None),
)


def _prepare(run_dir: str | os.PathLike[str] | torch.nn.Module, data: Any, cfg: EvalConfig,
             progress: Callable[[str], None] | None = None, plugins: Plugins | None = None,
             weights: str | os.PathLike[str] | None = None) -> EvalState:
    """Load the encoder, draw the train/test frames, encode them and discretise their factors
    (``progress`` hears ``"encode"`` once the inputs are checked)."""
    from torch import nn

    from sparseshift.representations.external import as_encoder, open_encoder
    from sparseshift.representations.runtime import resolve_device

    source: Any
    folder = None if isinstance(run_dir, nn.Module) else Path(run_dir)
    if folder is not None and folder.is_dir():
        # a folder carries its own image size: load (and check) it before the data
        learner = open_encoder(folder, plugins or Plugins(), weights, 64, cfg.device)
        ds_probe = open_data(data)
    else:
        ds_probe = open_data(data)
        size = int(ds_probe.image_size)
        if isinstance(run_dir, nn.Module):
            learner = as_encoder(run_dir, size).to(resolve_device(cfg.device))
        else:
            learner = open_encoder(run_dir, plugins or Plugins(), weights, size, cfg.device)
    if folder is None:
        run: dict[str, Any] = {}
        source, is_path = f"<{type(run_dir).__name__}>", False
    else:
        run = read_run(folder) if (folder / RUN_FILE).is_file() else {}
        source, is_path = os.fspath(folder), folder.exists()
    ds = ds_probe
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
    if progress is not None:
        progress("encode")
    frames_tr, f_tr = frames_at(ds, tr)
    frames_te, f_te = frames_at(ds, te)
    torch_threads = torch.get_num_threads()
    t0 = time.perf_counter()
    codes_tr = encode_frames(learner, frames_tr, cfg.encode_batch)
    codes_te = encode_frames(learner, frames_te, cfg.encode_batch)
    targets = M.discretise_factors(np.concatenate([f_tr, f_te]), ds.factor_spec, cfg.bins)
    if targets.labels.shape[1] == 0:
        raise ConfigError("every factor is constant in this dataset; nothing to evaluate")
    ev = EvalState(learner, ds, cfg, run, rng, tr, te, frames_tr, frames_te, f_tr, f_te,
                   codes_tr, codes_te, targets, torch_threads)
    ev.source, ev.source_is_path = source, is_path
    ev.seconds["encode"] = time.perf_counter() - t0
    return ev


def _run_steps(ev: EvalState, steps: tuple[EvalStep, ...] | None = None,
               progress: Callable[[str], None] | None = None) -> None:
    """Run each of ``steps`` (default :data:`STEPS`) that applies; record the others' reasons.
    ``progress`` is told each step's name as it starts."""
    for step in STEPS if steps is None else steps:
        if step.requested is not None and not step.requested(ev):
            continue
        if progress is not None:
            progress(step.name)
        t0 = time.perf_counter()
        reason = step.skip_reason(ev)
        if reason:
            ev.skipped[step.name] = reason
            if step.on_skip is not None:
                step.on_skip(ev, reason)
        else:
            step.run(ev)
        if step.timer is not None:
            ev.seconds[step.timer] = ev.seconds.get(step.timer, 0.0) + time.perf_counter() - t0


def _report(ev: EvalState, run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    report = _clean({
        "format": "sparseshift-rep-metrics",
        "format_version": 1,
        "run": str(run_dir),
        "learner": ev.learner.name,
        "trained_on": ev.run.get("dataset", {}).get("fingerprint"),
        "dataset": dataset_info(ev.ds),
        "protocol": {**ev.cfg.to_json(), "num_train_used": len(ev.tr),
                     "num_test_used": len(ev.te), "latent_dims": int(ev.codes_tr.shape[1]),
                     "torch_threads": ev.torch_threads},
        "targets": [{"name": n, "rule": r} for n, r in zip(ev.targets.names, ev.targets.rules,
                                                           strict=True)],
        "dropped_targets": list(ev.targets.dropped),
        "summary": M.summary(ev.metrics),
        "metrics": ev.metrics,
        "probes": ev.probes,
        "reconstruction": ev.reconstruction,
        "seconds": ev.seconds,
        "skipped": ev.skipped,
    })
    if ev.slots is not None:
        report["slots"] = ev.slots
        report["summary"]["fg_ari"] = ev.slots["fg_ari"]
    if ev.proxy is not None:
        report["proxy"] = _clean(ev.proxy)
        report["summary"].update(_clean(ev.proxy["summary"]))
    return report


def evaluate(run_dir: str | os.PathLike[str] | torch.nn.Module, data: Any,
             config: EvalConfig | None = None,
             out: str | os.PathLike[str] | None = None,
             export_codes: str | os.PathLike[str] | None = None,
             traversal_png: str | os.PathLike[str] | None = None,
             proxy_data: Any = None,
             progress: Callable[[str], None] | None = None,
             plugins: Plugins | None = None,
             weights: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Evaluate an encoder on ``data`` (path or dataset); optionally write the metrics JSON to
    ``out``, the codes and factors to ``export_codes`` (npz) and a traversal PNG.

    ``run_dir`` is any encoder :func:`~sparseshift.representations.external.open_encoder`
    accepts (a run folder, an export-encoder folder, ``package.module:factory`` with optional
    safetensors ``weights``, an installed encoder entry point) or a
    :class:`~sparseshift.representations.base.Learner` / ``nn.Module`` itself; ``plugins``
    allows a module that a folder names. Your own encoder gets the steps that need only codes
    (metrics, probes, the proxy task); the others are listed under ``skipped`` with the reason.

    Runs the :data:`STEPS` the learner's capabilities and the config allow; the report's
    ``skipped`` maps every other step to the reason. ``proxy_data`` (a
    :class:`~sparseshift.representations.proxy.ProxySet` or its ``.npz``) gives the proxy task
    its frames; without it they are rendered from the dataset's env. ``progress`` is told the
    name of each stage as it starts (``"encode"``, then the :data:`STEPS` that run).
    """
    ev = _prepare(run_dir, data, config or EvalConfig(), progress, plugins, weights)
    if proxy_data is not None:
        from sparseshift.representations.proxy import ProxySet

        ev.proxy_data = proxy_data if isinstance(proxy_data, ProxySet) else ProxySet.load(
            Path(proxy_data))
    ev.out = None if out is None else Path(out)
    ev.traversal_png = None if traversal_png is None else Path(traversal_png)
    _run_steps(ev, progress=progress)
    # Recorded relative to the metrics file when there is one, so the two can move together.
    where: Any = ev.source
    if ev.out is not None and ev.source_is_path:
        where = os.path.relpath(Path(ev.source).resolve(), ev.out.resolve().parent)
    report = _report(ev, where)
    if ev.out is not None:
        write_json(ev.out, report)
    if export_codes is not None:
        _export(Path(export_codes), ev.codes_tr, ev.codes_te, ev.f_tr, ev.f_te, ev.tr, ev.te,
                ev.targets, ev.ds)
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
