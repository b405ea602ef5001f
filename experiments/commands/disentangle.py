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
    p.add_argument("--preset", default=None,
                   help=f"one of {', '.join(PRESETS)} (default small unless --config is given)")
    p.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                   help="a custom experiment: JSON or TOML with the DisentanglePreset fields")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="without --ray: run up to N models at a time, each in its own process "
                        "with one torch thread (default: the number of CPUs)")
    p.add_argument("--out", default="out/disentangle", help="output folder (default %(default)s)")
    p.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run models as Ray tasks (local Ray, or the cluster ADDRESS)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from sparseshift.envs.infra.config import check_int
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.experiments.study.disentangle import DisentanglePreset, get_preset
    from sparseshift.experiments.study.disentangle import run as run_study

    if args.config_file is not None and args.preset is not None:
        raise ConfigError("give --preset or --config, not both")
    preset = (DisentanglePreset.load(args.config_file) if args.config_file is not None
              else get_preset(args.preset or "small"))
    jobs = check_int("--jobs", args.jobs if args.jobs is not None else (os.cpu_count() or 1), 1)
    path, table = run_study(preset, Path(args.out) / preset.name, args.ray, jobs=jobs)
    print(table)
    print(f"report: {path}")
    return 0
