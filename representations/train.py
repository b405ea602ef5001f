"""The one training loop for every learner.

:func:`train` runs Adam on :meth:`Learner.loss` for ``steps`` steps with

* a tqdm progress bar (steps, images/s, loss);
* TensorBoard (``DIR/tb``): every scalar loss term, each element of vector terms (KL per latent
  dim), the learning rate and images/s every ``log_every`` steps; grids of reconstructions and
  latent traversals every ``image_every`` steps;
* atomic checkpoints every ``ckpt_every`` steps and at the end
(:mod:`sparseshift.representations.checkpoint`);
* exact resume: rerunning with the same directory and the same config continues from the last
  checkpoint and ends with the weights an uninterrupted run would have (all randomness of step
  ``t`` is derived from ``(seed, t)``: the batch via :mod:`sparseshift.representations.data`, the
  reparameterisation noise via a private :class:`torch.Generator`). ``steps`` and the logging
  cadences may change between runs; anything else differing is a :class:`ConfigError`;
* a non-finite loss, or weights that stop being finite, stop training with :class:`TrainingError`
  naming the last good checkpoint (or saying there is none); weights are checked before every
  checkpoint, so a checkpoint on disk is always finite;
* an optional learning-rate schedule (:class:`sparseshift.representations.base.LRSchedule`: warm-up
and
  exponential decay; ``TrainConfig.lr_schedule``, else the learner's ``default_lr_schedule``, e.g.
  Slot Attention's reference schedule). The rate of step ``t`` is ``lr * factor(t)``, recomputed
  from the step, so resumed runs follow it exactly. Learners without a schedule train at the
  constant ``lr`` exactly as before.

The loop leaves global RNG state alone (the weights are initialised under
:func:`torch.random.fork_rng` from a seed derived from the run seed). It turns on
``torch.use_deterministic_algorithms`` for the duration of the run (warn-only) and restores the
previous setting afterwards. Results are bitwise
reproducible on the CPU for a fixed seed and thread count.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.heartbeat import HEARTBEAT_FILE, Heartbeat
from sparseshift.envs.infra.io import output_dir, output_lock
from sparseshift.representations.base import Learner, LearnerConfig
from sparseshift.representations.checkpoint import (
    CHECKPOINT_FILE,
    FORMAT,
    FORMAT_VERSION,
    RUN_FILE,
    non_finite,
    package_versions,
    read_checkpoint,
    read_run,
    save_checkpoint,
    write_json,
)
from sparseshift.representations.config import TrainConfig
from sparseshift.representations.data import (
    STREAM_INIT,
    STREAM_NOISE,
    STREAM_VIZ,
    BatchSource,
    BatchSpec,
    dataset_info,
    derive_seed,
    open_data,
    resolve_pairs,
)
from sparseshift.representations.runtime import autocast, resolve_compute, torch_run


class TrainingError(RuntimeError):
    """Training failed (e.g. the loss became NaN); the CLI reports it on one line, exit 1."""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns."""

    out_dir: Path
    step: int
    resumed_from: int
    losses: dict[str, float]
    images_per_second: float


def resolve_model_config(config: TrainConfig, image_size: int) -> LearnerConfig:
    """The learner config of a run: the options plus the dataset's image size (checked), for the
    learner class the config resolved (:attr:`TrainConfig.learner_cls`)."""
    options = dict(config.model)
    if "image_size" in options and int(options["image_size"]) != image_size:
        raise ConfigError(
            f"the dataset's images are {image_size}x{image_size} but the learner config asks for "
            f"image size {options['image_size']}"
        )
    options["image_size"] = image_size
    return config.learner_cls.config_cls.from_json(options)


def identity(config: TrainConfig, model: LearnerConfig, pairs: str, dataset: Mapping[str, Any],
             precision: str = "fp32") -> dict[str, Any]:
    """The part of a run's description that must not change when it is resumed.

    A constant learning-rate schedule adds no key, so runs from before schedules existed resume;
    ``precision`` (resolved) adds a key unless it is fp32, for the same reason.
    """
    ident: dict[str, Any] = {
        "learner": config.learner,
        "model": model.to_json(),
        "seed": config.seed,
        "batch": config.batch_size,
        "lr": config.learning_rate,
        "pairs": pairs,
        "gap": list(config.gap_range),
        "seq_len": config.seq_len,
        "dataset_fingerprint": dataset["fingerprint"],
    }
    if not config.schedule.constant:
        ident["lr_schedule"] = config.schedule.to_json()
    if precision != "fp32":
        ident["precision"] = precision
    return ident


def _to_tensors(batch: Mapping[str, np.ndarray], device: torch.device
                ) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
            for k, v in batch.items()}


class _Logger:
    """TensorBoard scalars and image grids (a no-op when disabled)."""

    def __init__(self, out_dir: Path, enabled: bool, start_step: int) -> None:
        self.writer: Any = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step)

    def scalars(self, terms: Mapping[str, torch.Tensor], step: int, extra: Mapping[str, float]
                ) -> None:
        if self.writer is None:
            return
        for name, value in terms.items():
            v = value.detach()
            if v.ndim == 0:
                self.writer.add_scalar(f"train/{name}", float(v), step)
            else:
                for i, x in enumerate(v.flatten().tolist()):
                    self.writer.add_scalar(f"{name}/{i}", x, step)
        for name, x in extra.items():
            self.writer.add_scalar(name, x, step)

    def images(self, learner: Learner, frames: np.ndarray, step: int) -> None:
        if self.writer is None:
            return
        from sparseshift.representations.viz import (
            RECONSTRUCTION_NEEDS,
            TRAVERSAL_NEEDS,
            reconstruction_grid,
            traversal_grid,
        )

        learner.eval()
        try:  # each grid only for learners with the capabilities it needs
            if learner.supports(*RECONSTRUCTION_NEEDS):
                self.writer.add_image("reconstructions", reconstruction_grid(learner, frames),
                                      step, dataformats="HWC")
            if learner.supports(*TRAVERSAL_NEEDS):
                self.writer.add_image("traversal", traversal_grid(learner, frames[0]), step,
                                      dataformats="HWC")
        finally:
            learner.train()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _kept(step: int | None, out: Path) -> str:
    if step is None:
        return f"No checkpoint was written to {out}."
    return f"The last good checkpoint (step {step}) is kept in {out}."


def train(config: TrainConfig, data: Any, out_dir: str | os.PathLike[str]) -> TrainResult:
    """Train ``config.learner`` on ``data`` (a dataset path or an opened dataset) into ``out_dir``.

    Resumes from ``out_dir`` when it holds a checkpoint of the same run. ``out_dir`` is locked
    while training (a second writer is refused) and may not be a file or another kind of
    artifact's folder. Raises :class:`ConfigError` for bad input and :class:`TrainingError` when
    the loss or the weights stop being finite.
    """
    out = output_dir(out_dir, RUN_FILE)
    with output_lock(out):
        return _train(config, data, out)


def _train(config: TrainConfig, data: Any, out: Path) -> TrainResult:
    """One direction: the data, the run's learner config (for the learner class the config
    resolved when it was built: never looked up again), build, resume, write ``run.json``,
    train."""
    ds = open_data(data)
    info = dataset_info(ds)
    cls = config.learner_cls  # resolved once, when the config was built
    model_cfg = resolve_model_config(config, info["image_size"])
    pairs = resolve_pairs(cls.batch_kind, config.learner, info["kind"], config.pairs)
    device, precision = resolve_compute(config.device, config.precision, cls.bf16_checked)
    ident = identity(config, model_cfg, pairs, info, precision)

    with torch.random.fork_rng(devices=[]):
        # nn.Module initialisers draw from the global generator: seed it inside a fork, which
        # restores the caller's global RNG state afterwards.
        torch.manual_seed(derive_seed(config.seed, STREAM_INIT))
        learner = cls(model_cfg)
    learner.to(device)
    if config.channels_last:
        learner.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(learner.parameters(), lr=config.learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    start = 0
    if (out / RUN_FILE).exists():
        previous = read_run(out)
        if previous.get("learner") != config.learner:
            raise ConfigError(
                f"{out} holds a run of learner {previous.get('learner')!r}, not "
                f"{config.learner!r}; use a new --out directory"
            )
        if previous.get("identity") != ident:
            before = previous.get("identity", {})
            diff = sorted(k for k in {*ident, *before} if before.get(k) != ident.get(k))
            was = before.get("precision", "fp32")
            hint = f" (it computed in {was}: --precision {was})" if "precision" in diff else ""
            raise ConfigError(
                f"{out} holds a run with a different config (differs in: {', '.join(diff)}); "
                f"use a new --out directory or the same config to resume{hint}"
            )
        if (out / CHECKPOINT_FILE).exists():
            ckpt = read_checkpoint(out, expect_learner=cls.name)
            if ckpt.weights_only:
                raise ConfigError(f"{out} holds exported weights without optimizer state; they "
                                  "load as an encoder but cannot resume training")
            learner.load_state_dict(ckpt.model)
            optimizer.load_state_dict(ckpt.optimizer)
            start = ckpt.step
    write_json(out / RUN_FILE, {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "learner": config.learner,
        "model": model_cfg.to_json(),
        "identity": ident,
        "train": {
            "steps": config.steps, "seed": config.seed, "batch": config.batch_size,
            "lr": config.learning_rate,
            "pairs": pairs if cls.batch_kind == "pairs" else None,
            "gap": list(config.gap_range), "seq_len": config.seq_len,
            "lr_schedule": config.schedule.to_json(),
            "precision": precision,
        },
        "config": config.to_json(),
        "dataset": info,
        "versions": package_versions(),
    })

    spec = BatchSpec(cls.batch_kind, config.batch_size, pairs, config.gap_range, config.seq_len)
    source = BatchSource(ds, spec, config.seed)
    generator = torch.Generator()
    logger = _Logger(out, config.tensorboard, start)
    viz_frames = source.sampler(STREAM_VIZ, 0).frames(8)["x"]
    schedule = None if config.schedule.constant else config.schedule
    last: dict[str, float] = {}
    last_ckpt: int | None = start if start > 0 else None
    rate = 0.0
    beat = Heartbeat(out / HEARTBEAT_FILE, config.steps, "step", start=start)
    learner.train()
    try:
        from tqdm import tqdm

        with torch_run(config.threads), tqdm(total=config.steps, initial=start, unit="step",
                                   disable=not config.progress, dynamic_ncols=True) as bar:
            t0, images = time.perf_counter(), 0
            for step in range(start, config.steps):
                batch = _to_tensors(source(step), device)
                generator.manual_seed(derive_seed(config.seed, STREAM_NOISE, step))
                learner.set_step(step)
                with autocast(device, precision):
                    terms = learner.loss(batch, generator=generator)
                loss = terms["loss"]
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {float(loss.detach())} at step {step + 1}; stopped. "
                        f"{_kept(last_ckpt, out)} Lower --lr or --beta."
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # a pass-through unless precision is fp16
                if schedule is not None:  # recomputed from the step: nothing to save or restore
                    for group in optimizer.param_groups:
                        group["lr"] = config.learning_rate * schedule.factor(step)
                scaler.step(optimizer)
                scaler.update()
                done = step + 1
                images += spec.images_per_batch
                bar.update(1)
                beat.update(done, f"loss {last['loss']:.4g}" if last else "")
                if done % config.log_every == 0 or done == config.steps:
                    rate = images / max(time.perf_counter() - t0, 1e-9)
                    last = {k: float(v.detach()) for k, v in terms.items() if v.ndim == 0}
                    bar.set_postfix(img_s=f"{rate:.0f}", loss=f"{last['loss']:.4g}")
                    logger.scalars(terms, done, {"lr": optimizer.param_groups[0]["lr"],
                                                 "images_per_s": rate})
                if done % config.image_every == 0 or done == config.steps:
                    logger.images(learner, viz_frames, done)
                if done % config.ckpt_every == 0 or done == config.steps:
                    bad = non_finite(dict(learner.state_dict()))
                    if bad:
                        raise TrainingError(
                            f"weights became non-finite by step {done} ({', '.join(bad[:3])}); "
                            f"stopped. {_kept(last_ckpt, out)} Lower --lr or --beta.")
                    save_checkpoint(out, learner, optimizer, done)
                    last_ckpt = done
            beat.update(config.steps, f"loss {last['loss']:.4g}" if last else "", force=True)
    finally:
        logger.close()
    learner.eval()
    return TrainResult(out, max(start, config.steps), start, last, rate)
