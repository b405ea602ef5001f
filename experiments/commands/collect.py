"""``sparseshift collect``: record a video or intervention-pair dataset from an env (resumable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

NAME = "collect"


def add_parser(sub: Any) -> None:
    from sparseshift.agents.collect.policies import DEVICE_HELP
    from sparseshift.envs.data.config import CollectConfig
    from sparseshift.experiments.commands.options import add_config_flags

    p = sub.add_parser(
        NAME,
        help="collect a video or intervention-pair dataset (HDF5, resumable, parallel)",
        description=(
            "Record N frames of behaviour-policy rollouts (--kind video) or N intervention pairs "
            "(--kind pairs: k factor groups changed, Locatello et al. 2020) into one HDF5 file. "
            "The output is byte-identical for any number of workers; a killed run resumes from "
            "OUT.parts/ when the same command is run again. See docs/datasets.md."
        ),
    )
    p.add_argument("--out", required=True, help="HDF5 file to write")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP + "; not part of the dataset's "
                   "configuration or fingerprint")
    add_config_flags(p, CollectConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data.config import CollectConfig
    from sparseshift.experiments.commands.options import build_config
    from sparseshift.experiments.commands.written import print_written

    cfg = build_config(CollectConfig, args)
    out = Path(args.out)
    result = collect(cfg, out, workers=args.workers, progress=not args.quiet,
                     device=args.device)
    what = "frames" if cfg.kind == "video" else "pairs"
    size = out.stat().st_size / 1e6
    if result.status == "complete":
        print(f"{out} is already complete ({result.n} {what}, same configuration); nothing to do",
              file=sys.stderr)
    print(f"{out}: {result.n} {what}, {size:.1f} MB, fingerprint {result.fingerprint[:16]}")
    print_written([out], header="files (already there)" if result.status == "complete" else
                  "wrote")
    return 0
