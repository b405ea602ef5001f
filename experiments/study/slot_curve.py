"""FG-ARI of Slot Attention against training time (``sparseshift slot-curve``).

Slot Attention (Locatello et al. 2020) is judged by foreground ARI against the env's segmentation
masks. This experiment trains it with ``train-rep``'s defaults (or a named variant) on a video of
each env and evaluates FG-ARI every ``eval_every`` steps, so the report shows how segmentation
quality grows with training time on the machine at hand, next to the goal.

Per env: ``collect`` (a video of ``frames`` frames with the env's policy) -> one ``slot_curve``
task per variant. A curve task runs :func:`sparseshift.representations.train.train` in resumed
chunks of ``eval_every`` steps (the ordinary training loop, its checkpoints and its data
sampling) and, after each chunk, scores the checkpoint on ``eval_n`` states drawn from the
dataset's stored factors (rendered once with their segmentation masks,
:func:`sparseshift.representations.slot_eval.render_ground_truth`). Training time is the loop's
own (steps / the steps per second that ``train`` measured from its first to its last step), so
set-up, checkpoints and the evaluations are not counted. It stops at the first evaluation at or
after ``minutes`` of training. Points are saved after every evaluation; an interrupted curve
resumes from its last point.

Variants (:data:`VARIANTS`): ``default`` (the learner's defaults: learned slot queries, Jia et al.
2023) and ``gaussian`` (the reference's Gaussian slot initialisation, everything else equal).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseshift.envs.data.config import CollectConfig
from sparseshift.envs.infra.config import Config, opt
from sparseshift.envs.infra.errors import ConfigError, choice_error
from sparseshift.envs.infra.io import atomic_write_text, output_dir, output_lock, write_json_atomic
from sparseshift.experiments.study.graph import ProgressPrinter, Task, run_local
from sparseshift.experiments.study.stages import collect_stage
from sparseshift.representations.config import TrainConfig

#: Model options of each variant, on top of the preset's ``model``.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "gaussian": {"init": "gaussian"},
}

#: FG-ARI goals per env (issue #14), drawn as dashed lines.
GOALS: dict[str, float] = {"sparseshift/ColourGrid-v0": 0.9, "sparseshift/TriFingerPush-v0": 0.8}


@dataclass(frozen=True)
class SlotCurvePreset(Config):
    """Which envs, how much data and training, which variants."""

    name: str = opt(help="preset name")
    envs: tuple[str, ...] = opt(help="env ids")
    policies: tuple[str, ...] = opt(help="video policy per env (collect --policy)")
    frames: int = opt(20_000, "video frames per env", min=1)
    variants: tuple[str, ...] = opt(("default", "gaussian"), "variants (default, gaussian)")
    minutes: float = opt(30.0, "training minutes per curve", min=0.0)
    eval_every: int = opt(250, "training steps between evaluations", min=1)
    eval_n: int = opt(256, "states scored per evaluation", min=1)
    seeds: tuple[int, ...] = opt((0,), "training seeds (one curve per variant and seed)")
    model: Mapping[str, Any] = opt(factory=dict, help="model options for every variant")

    def validate(self) -> None:
        if len(self.policies) != len(self.envs):
            raise ConfigError(f"give one policy per env: {len(self.envs)} envs, "
                              f"{len(self.policies)} policies")
        for v in self.variants:
            if v not in VARIANTS:
                raise choice_error("slot-curve variant", v, VARIANTS)


@dataclass(frozen=True)
class CurveConfig(Config):
    """One curve: the training run (``steps`` is ignored) and its evaluation schedule."""

    train: TrainConfig = opt(factory=TrainConfig, help="training run")
    minutes: float = opt(30.0, "training minutes", min=0.0)
    eval_every: int = opt(250, "steps between evaluations", min=1)
    eval_n: int = opt(256, "states per evaluation", min=1)
    eval_seed: int = opt(2, "seed of the evaluation states")


PRESETS: dict[str, SlotCurvePreset] = {
    p.name: p for p in (
        SlotCurvePreset("colourgrid", ("sparseshift/ColourGrid-v0",), ("random",)),
        SlotCurvePreset("trifinger", ("sparseshift/TriFingerPush-v0",), ("scripted",)),
        SlotCurvePreset("both", ("sparseshift/ColourGrid-v0", "sparseshift/TriFingerPush-v0"),
                        ("random", "scripted")),
    )
}


def get_preset(name: str) -> SlotCurvePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise choice_error("slot-curve preset", name, PRESETS) from None


@dataclass(frozen=True)
class Curve:
    env_id: str
    variant: str
    seed: int
    task: Task


def build(p: SlotCurvePreset, device: str | None = None) -> list[Curve]:
    """The curves' tasks; ``device`` places training and scoring (not hashed: the artifacts do
    not depend on the machine)."""
    runtime = {} if device is None else {"device": device}
    curves = []
    for env_id, policy in zip(p.envs, p.policies, strict=True):
        collect = Task("collect", collect_stage, CollectConfig(
            env_id=env_id, kind="video", n=p.frames, policy=policy), label=env_id)
        for seed in p.seeds:
            for variant in p.variants:
                train = TrainConfig(learner="slot_attention",
                                    model={**p.model, **VARIANTS[variant]}, seed=seed,
                                    progress=False, tensorboard=False)
                cfg = CurveConfig(train=train, minutes=p.minutes, eval_every=p.eval_every,
                                  eval_n=p.eval_n)
                task = Task("slot_curve", curve_stage, cfg, deps=(collect,),
                            label=f"{env_id}/{variant}/s{seed}", runtime=runtime)
                curves.append(Curve(env_id, variant, seed, task))
    return curves


def curve_stage(config: CurveConfig, inputs: Mapping[str, dict[str, Any]], out: Path,
                runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train in chunks and score FG-ARI after each (module docstring); resumable."""
    import json

    from sparseshift.experiments.study.stages import _device, _file
    from sparseshift.representations.checkpoint import load_learner
    from sparseshift.representations.slot_eval import (
        dataset_ground_truth,
        score_slots,
        slot_learner,
    )
    from sparseshift.representations.train import train

    data = _file(inputs, "collect", "data")
    frames, segs, names = dataset_ground_truth(data, config.eval_n, config.eval_seed)
    points_file = out / "points.json"
    points: list[dict[str, Any]] = (json.loads(points_file.read_text())
                                    if points_file.exists() else [])
    run = out / "rep"
    cfg = _device(config.train, runtime).replace(threads=1)
    batch = cfg.batch_size

    seconds = float(points[-1]["train_seconds"]) if points else 0.0
    step = int(points[-1]["step"]) if points else 0
    while seconds < config.minutes * 60.0 or not points:
        res = train(cfg.replace(steps=step + config.eval_every), data, run)
        done = res.step - res.resumed_from
        rate = res.images_per_second / batch  # steps/s from the first to the last step
        seconds += done / rate if rate > 0 else 0.0
        step = res.step
        s = score_slots(slot_learner(load_learner(run)), frames, segs, names)
        points.append({"step": step, "train_seconds": round(seconds, 2),
                       "fg_ari": float(s["fg_ari"]), "slots_used": float(s["slots_used"]),
                       "mse": float(res.losses.get("mse", float("nan")))})
        write_json_atomic(points_file, points)
    return {"files": {"rep": "rep", "points": "points.json"}, "points": points,
            "batch": batch, "lr": cfg.learning_rate}


def run(p: SlotCurvePreset, out: Path, jobs: int = 1, device: str | None = None
        ) -> tuple[Path, str]:
    """Run (or resume) the experiment into ``out``; returns the report path and its table."""
    curves = build(p, device)
    out = output_dir(out, "slot_curve_config.json")
    with output_lock(out):
        root = out / "artifacts"
        write_json_atomic(out / "slot_curve_config.json", p.to_json())
        targets = [c.task for c in curves]
        t0 = time.perf_counter()
        results = run_local(targets, root, ProgressPrinter(targets, jobs=jobs), jobs=jobs)
        return report(p, curves, results, out, time.perf_counter() - t0, jobs)


def time_to(points: Sequence[Mapping[str, Any]], goal: float) -> float | None:
    """Training minutes of the first evaluation with FG-ARI >= ``goal`` (None: never)."""
    for pt in points:
        if not math.isnan(pt["fg_ari"]) and pt["fg_ari"] >= goal:
            return float(pt["train_seconds"]) / 60.0
    return None


def at_minutes(points: Sequence[Mapping[str, Any]], minutes: float) -> float:
    """FG-ARI of the last evaluation at or before ``minutes`` of training (NaN: none)."""
    before = [pt for pt in points if pt["train_seconds"] <= minutes * 60.0 + 1e-9]
    return float(before[-1]["fg_ari"]) if before else float("nan")


def _f(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def report(p: SlotCurvePreset, curves: Sequence[Curve], results: Mapping[str, dict[str, Any]],
           out: Path, seconds: float, jobs: int) -> tuple[Path, str]:
    marks = [m for m in (5.0, 10.0, 20.0, 30.0) if m <= p.minutes] or [p.minutes]
    head = ("| env | variant | seed | " + " | ".join(f"FG-ARI at {m:g} min" for m in marks)
            + " | final FG-ARI | steps | minutes to goal |")
    lines = [head, "|" + "---|" * (6 + len(marks))]
    data = []
    for c in curves:
        r = results[c.task.key]
        pts = r["points"]
        goal = GOALS.get(c.env_id)
        reach = time_to(pts, goal) if goal is not None else None
        last = pts[-1]
        lines.append(
            f"| {c.env_id.split('/')[-1]} | {c.variant} | {c.seed} | "
            + " | ".join(_f(at_minutes(pts, m)) for m in marks)
            + f" | {_f(last['fg_ari'])} ({last['train_seconds'] / 60:.1f} min) | {last['step']} | "
            + ("no goal" if goal is None else
               f"{reach:.1f} (goal {goal:g})" if reach is not None else f"not reached ({goal:g})")
            + " |")
        data.append({"env_id": c.env_id, "variant": c.variant, "seed": c.seed,
                     "batch": r["batch"],
                     "lr": r["lr"], "points": pts})
    table = "\n".join(lines)
    figure = plot(data, out / "fg_ari_vs_time.png")
    figures = slot_figures(curves, out)
    md = [f"# Slot Attention: FG-ARI against training time, preset `{p.name}`", "",
          f"{p.frames} video frames per env; each curve trains one model (seeds "
          f"{', '.join(map(str, p.seeds))}, one "
          f"torch thread, {jobs} curve(s) at a time on this machine) and scores FG-ARI on "
          f"{p.eval_n} dataset states every {p.eval_every} steps. Minutes are the training "
          f"loop's own time (set-up, checkpoints and evaluations excluded); {seconds:.0f} s wall "
          "for this invocation.", "",
          "Variants: `default` = `train-rep --learner slot_attention` with its defaults (learned "
          "slot queries, Jia et al. 2023); `gaussian` = the same with the reference's Gaussian "
          "slot initialisation (`--model init=gaussian`).", "", table, "",
          f"![FG-ARI against training time]({figure.name})", "",
          "## Slots of each final model", "",
          "Per frame: input, reconstruction, segmentation (argmax of the alpha masks), then each "
          "slot's mask and its RGB times the mask.", ""]
    for c, fig_path in zip(curves, figures, strict=True):
        md += [f"{c.env_id.split('/')[-1]}, {c.variant}, seed {c.seed}:", "",
               f"![slots]({fig_path.name})", ""]
    path = out / "slot_curve.md"
    atomic_write_text(path, "\n".join(md))
    write_json_atomic(out / "slot_curve.json", {"preset": p.to_json(), "curves": data})
    return path, table


def slot_figures(curves: Sequence[Curve], out: Path, n: int = 4) -> list[Path]:
    """A slot figure of each curve's final model on the same ``n`` frames of its dataset."""
    from sparseshift.representations.checkpoint import load_learner
    from sparseshift.representations.data import frames_at, num_frames, open_data
    from sparseshift.representations.slot_eval import save_slot_figure, slot_learner

    root = out / "artifacts"
    paths = []
    for c in curves:
        (collect,) = c.task.deps
        ds = open_data(collect.artifact(root).path / "data.h5")
        idx = np.linspace(0, num_frames(ds) - 1, n).astype(np.int64)
        frames, _ = frames_at(ds, idx)
        learner = slot_learner(load_learner(c.task.artifact(root).path / "rep"))
        path = out / f"slots_{c.env_id.split('/')[-1]}_{c.variant}_s{c.seed}.png"
        save_slot_figure(learner, frames, path)
        paths.append(path)
    return paths


def plot(data: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """One panel per env: FG-ARI against training minutes, a line per variant, the goal dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sparseshift.experiments.study.proxy_report import save_figure

    envs = list(dict.fromkeys(d["env_id"] for d in data))
    variants = list(dict.fromkeys(d["variant"] for d in data))
    seeds = list(dict.fromkeys(d["seed"] for d in data))
    styles = ["-", "--", ":", "-."]
    rows = len(variants) * len(seeds) + 1  # legend entries, drawn under each panel
    fig, axes = plt.subplots(1, len(envs), figsize=(5.6 * len(envs), 4.0 + 0.2 * rows),
                             squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for d in data:
            if d["env_id"] != env:
                continue
            pts = [pt for pt in d["points"] if not math.isnan(pt["fg_ari"])]
            ax.plot([pt["train_seconds"] / 60 for pt in pts], [pt["fg_ari"] for pt in pts],
                    marker="o", markersize=3, color=f"C{variants.index(d['variant'])}",
                    linestyle=styles[seeds.index(d["seed"]) % len(styles)],
                    label=f"{d['variant']}, seed {d['seed']} (batch {d['batch']}, "
                    f"lr {d['lr']:g})")
        if env in GOALS:
            ax.axhline(GOALS[env], color="grey", linestyle="--", linewidth=1,
                       label=f"goal {GOALS[env]:g}")
        ax.set_title(env.split("/")[-1])
        ax.set_xlabel("training time (minutes, one CPU thread)")
        ax.set_ylabel("foreground ARI")
        ax.set_ylim(-0.05, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, frameon=False)
    return save_figure(fig, path)
