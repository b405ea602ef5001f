"""``sparseshift inspect``: summarise a dataset, verify its checksums, draw a contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "inspect"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="summarise a dataset; verify checksums; write a contact sheet of pairs",
        description=(
            "Print counts, sizes, compression ratio, factor ranges, the colours that appear and "
            "their splits. --verify checks every chunk checksum; --sheet writes a PNG of random "
            "intervention pairs (or temporal pairs of a video) with the changed factors under "
            "each pair."
        ),
    )
    p.add_argument("path", metavar="PATH", help="dataset (HDF5) written by 'sparseshift collect'")
    p.add_argument("--verify", action="store_true", help="check every chunk checksum")
    p.add_argument("--sheet", default=None, metavar="OUT.png", help="write a contact sheet")
    p.add_argument("--pairs", type=int, default=8, help="pairs on the sheet (default 8)")
    p.add_argument("--gap", type=int, default=5, help="video: gap of temporal pairs (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sheet's pairs (default 0)")
    p.set_defaults(func=run)


def sheet(ds: Any, n: int, gap: int, seed: int) -> Any:
    """Contact sheet: row 1 the first frames, row 2 the second, changed factors under row 2."""
    from sparseshift.envs.data import Sampler
    from sparseshift.experiments.imaging import contact_sheet

    s = Sampler(ds, seed=seed)
    b = s.intervention_pairs(n) if ds.kind == "pairs" else s.temporal_pairs(n, (1, gap))
    names = ds.factor_spec.names
    captions = [", ".join(sorted({names[j].split(".")[0] for j in row.nonzero()[0]})) or "none"
                for row in b["changed"]]
    label = "x1 / x2 (changed)" if ds.kind == "pairs" else f"t / t+1..{gap}"
    return contact_sheet([(label, list(b["x1"])), ("", list(b["x2"]))], scale=2,
                         label_width=120, captions=[[""] * n, captions])


def run(args: argparse.Namespace) -> int:
    from sparseshift.envs.config import check_int, check_seed
    from sparseshift.envs.data import open_dataset
    from sparseshift.envs.data.summary import summary
    from sparseshift.envs.io import save_png

    check_int("--pairs", args.pairs, 1, 256)
    check_int("--gap", args.gap, 1, 100_000)
    check_seed("--seed", args.seed)
    ds = open_dataset(args.path, verify=args.verify)
    print(summary(ds, Path(args.path).stat().st_size))
    if args.verify:
        print(f"verify: all {ds.verify()} chunk checksums match")
    if args.sheet:
        out = save_png(args.sheet, sheet(ds, args.pairs, args.gap, args.seed))
        print(f"wrote {out}")
    return 0
