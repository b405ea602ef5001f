"""``sparseshift disentangle``: beta-VAE vs Ada-GVAE on intervention pairs, MIG/DCI table and the
reconstruction-loss vs DCI rank correlation (Locatello et al. 2020)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "disentangle"


def add_parser(sub: Any) -> None:
    from sparseshift.experiments.study.disentangle import PRESETS

    p = sub.add_parser(
        NAME,
        help="study: beta-VAE vs Ada-GVAE disentanglement on TriFinger and ColourGrid pairs",
        description=(
            "Train beta-VAEs (several betas) and Ada-GVAE on intervention pairs of each env, "
            "several seeds each; write a MIG/DCI table (mean ± sd) and, per method, the rank "
            "correlation between reconstruction loss and DCI. Resumable; --ray runs models in "
            "parallel. Presets: " + ", ".join(
                f"{k} ({v.steps} steps, {len(v.seeds)} seeds)" for k, v in PRESETS.items())
        ),
    )
    p.add_argument("--preset", default="small", help="tiny, small (default) or paper")
    p.add_argument("--out", default="out/disentangle", help="output folder")
    p.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run models as Ray tasks (local Ray, or the cluster ADDRESS)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sparseshift.experiments.study.disentangle import run as run_study

    path, table = run_study(args.preset, Path(args.out) / args.preset, args.ray)
    print(table)
    print(f"report: {path}")
    return 0
