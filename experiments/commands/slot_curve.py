"""``sparseshift slot-curve``: Slot Attention's foreground ARI against training time
(:mod:`sparseshift.experiments.study.slot_curve`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "slot-curve"


def add_parser(sub: Any) -> None:
    from sparseshift.experiments.study.slot_curve import PRESETS, VARIANTS

    p = sub.add_parser(
        NAME,
        help="study: Slot Attention FG-ARI against training time (plot and table)",
        description=(
            "Collect a video per env, train Slot Attention with train-rep's defaults (and the "
            "reference's Gaussian slot initialisation for comparison) and score foreground ARI "
            "against the env's segmentation masks every few hundred steps; writes a table, an "
            "FG-ARI-vs-training-time plot, a slot figure of each final model and JSON. Minutes "
            "are the training loop's own time on one torch thread. Resumable. Presets: "
            + ", ".join(
                f"{k} ({', '.join(e.split('/')[-1] for e in v.envs)})"
                for k, v in PRESETS.items())
            + ". Variants: " + ", ".join(VARIANTS) + "."
        ),
    )
    p.add_argument("--preset", default="colourgrid",
                   help=f"one of {', '.join(PRESETS)} (default %(default)s)")
    p.add_argument("--minutes", type=float, default=None,
                   help="training minutes per curve (default: the preset's, 30)")
    p.add_argument("--variants", default=None,
                   help="comma-separated variants (default: the preset's, default,gaussian)")
    p.add_argument("--seeds", default=None,
                   help="comma-separated training seeds (default: the preset's, 0)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="curves trained at a time, each in its own process with one torch "
                        "thread (default: the number of CPUs)")
    p.add_argument("--device", default=None,
                   help="torch device of training and scoring: auto, cpu, cuda, cuda:N or mps "
                        "(default: train-rep's, auto)")
    p.add_argument("--out", default="out/slot_curve", help="output folder (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from sparseshift.envs.infra.config import check_int, check_number
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.experiments.study.slot_curve import get_preset
    from sparseshift.experiments.study.slot_curve import run as run_curves

    preset = get_preset(args.preset)
    changes: dict[str, Any] = {}
    if args.minutes is not None:
        check_number("--minutes", args.minutes, 0.0, 24 * 60.0)
        changes["minutes"] = float(args.minutes)
    if args.variants is not None:
        changes["variants"] = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if args.seeds is not None:
        try:
            changes["seeds"] = tuple(int(x) for x in args.seeds.split(",") if x.strip())
        except ValueError:
            raise ConfigError(f"--seeds takes comma-separated integers, got {args.seeds!r}") \
                from None
    if changes:
        preset = preset.replace(**changes)
    jobs = check_int("--jobs", args.jobs if args.jobs is not None else (os.cpu_count() or 1), 1)
    device = None
    if args.device is not None:
        from sparseshift.representations.runtime import resolve_device

        resolve_device(args.device)  # an unknown or missing device: one line, before any work
        device = str(args.device)
    path, table = run_curves(preset, Path(args.out) / preset.name, jobs=jobs, device=device)
    print(table)
    print(f"report: {path}")
    return 0
