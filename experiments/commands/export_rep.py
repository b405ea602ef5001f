"""``sparseshift export-rep RUN --out DIR``: a trained representation as a small frozen encoder
(weights without the optimizer state), e.g. to share it or to ship it with a project."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "export-rep"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="export a trained representation as a frozen encoder (weights only)",
        description=(
            "Copy run.json and the weights of a train-rep run to --out, without the Adam state "
            "(about a third of the checkpoint). The export loads wherever a run directory does "
            "(train-agent --encoder, eval-rep) and keeps the same fingerprint; it cannot be "
            "resumed. --out must be a new or empty folder, or one this run was exported to "
            "before (the export is redone); a training run or any other folder is refused."
        ),
    )
    p.add_argument("run_dir", metavar="RUN", help="run directory from 'sparseshift train-rep'")
    p.add_argument("--out", required=True, help="folder to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sparseshift.experiments.commands.written import print_written
    from sparseshift.representations.checkpoint import (
        CHECKPOINT_FILE,
        RUN_FILE,
        encoder_fingerprint,
        export_weights,
    )

    path = export_weights(Path(args.run_dir), Path(args.out))
    size = (path / CHECKPOINT_FILE).stat().st_size / 1e6
    print(f"exported {args.run_dir} to {path} ({size:.1f} MB, fingerprint "
          f"{encoder_fingerprint(path)[:16]})")
    print_written([path / RUN_FILE, path / CHECKPOINT_FILE])
    return 0
