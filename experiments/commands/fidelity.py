"""``sparseshift fidelity``: our MuJoCo TriFingerPro side by side with trifinger_simulation."""

from __future__ import annotations

import argparse
import sys
from typing import Any

NAME = "fidelity"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="compare the TriFinger model with the official simulator (trifinger_simulation)",
        description=(
            "Run seeded inputs through our MuJoCo TriFingerPro and through trifinger_simulation "
            "2.0 (PyBullet, in a subprocess) and print a table of measured figures with pass/FAIL: "
            "fingertip kinematics, joint trajectories under identical torques and PD position "
            "steps, the robot's segmentation mask from the three camera poses, and the arena "
            "boundary against the cube factor range. Exit status 0 if every check passes, 1 if "
            "one fails, 2 if the official simulator is not available. It needs an interpreter "
            "with trifinger_simulation: the 'fidelity' extra, or --python PATH / "
            "SPARSESHIFT_FIDELITY_PYTHON naming one in its own virtual environment "
            "(python3 -m venv V && V/bin/pip install trifinger-simulation==2.0.0). "
            "See docs/trifinger.md (Fidelity)."
        ),
    )
    p.add_argument("--out", default=None,
                   help="folder for fidelity.md, fidelity.json, masks.png and fidelity.npz "
                        "(default: print only)")
    p.add_argument("--python", default=None,
                   help="interpreter that has trifinger_simulation (default: "
                        "$SPARSESHIFT_FIDELITY_PYTHON, else this one if it has it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled inputs (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="fewer samples (100 configurations, 3 start poses, 3 images)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sparseshift.envs.trifinger  # noqa: F401  (selects the GL backend before MuJoCo)
    from sparseshift.envs.infra.config import check_seed
    from sparseshift.envs.infra.io import output_dir, output_lock
    from sparseshift.experiments.commands.written import print_written
    from sparseshift.experiments.validation.fidelity import (
        FidelityConfig,
        resolve_python,
        run_check,
        write_outputs,
    )

    seed = check_seed("--seed", args.seed)
    python = resolve_python(args.python)  # fails early, before any work
    out = output_dir(args.out, "fidelity.json") if args.out is not None else None
    cfg = FidelityConfig.quick(seed) if args.quick else FidelityConfig(seed=seed)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if out is None:
        report = run_check(cfg, python, log=log)
        written = []
    else:
        with output_lock(out):
            report = run_check(cfg, python, log=log)
            written = write_outputs(report, out, masks_png=labelled_mask_sheet(report))
    print(f"TriFinger fidelity: ours vs {report.versions}\n")
    print(report.table())
    failed = [r.check for r in report.rows if r.status == "FAIL"]
    print("\nall checks pass" if not failed else f"\nFAILED: {'; '.join(failed)}")
    if written:
        print_written(written)
    return 0 if not failed else 1


def labelled_mask_sheet(report: Any) -> Any:
    """``masks.png``: the robot's mask from each camera (columns) for the first configurations
    (rows), ours over the official simulator's, with the colour key in the title."""
    from sparseshift.experiments.commands.imaging import contact_sheet
    from sparseshift.experiments.validation.fidelity import mask_tiles

    tiles = mask_tiles(report)
    rows = [(f"configuration {k}", row) for k, row in enumerate(tiles)]
    captions = [[f"camera {c}" for c in range(len(row))] for row in tiles]
    return contact_sheet(rows, scale=1, captions=captions, title=(
        "TriFinger robot mask, ours vs trifinger_simulation: red = official only, green = ours "
        "only, yellow = both"))
