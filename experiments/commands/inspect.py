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
            "intervention pairs (or temporal pairs of a video) with the factor groups that "
            "changed under each pair."
        ),
    )
    p.add_argument("path", metavar="PATH", help="dataset (HDF5) written by 'sparseshift collect'")
    p.add_argument("--verify", action="store_true", help="check every chunk checksum")
    p.add_argument("--sheet", default=None, metavar="OUT.png", help="write a contact sheet")
    p.add_argument("--pairs", type=int, default=8, help="pairs on the sheet (default 8)")
    p.add_argument("--gap", type=int, default=5,
                   help="video datasets: the sheet pairs frame t with frame t+k, k drawn from "
                        "1..GAP (every valid pair within an episode equally likely) and written "
                        "under the pair (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sheet's pairs (default 0)")
    p.set_defaults(func=run)


def sheet_content(ds: Any, n: int, gap: int, seed: int
                  ) -> tuple[list[tuple[str, list[Any]]], list[str], str]:
    """What :func:`sheet` draws: the two rows (label, frames), one caption per pair (the factor
    groups that changed, full names; for video pairs prefixed by their gap ``k=..``) and the
    title."""
    import numpy as np

    from sparseshift.envs.data import Sampler

    s = Sampler(ds, seed=seed)
    spec = ds.factor_spec
    if ds.kind == "pairs":
        b = s.intervention_pairs(n)
        x1, x2, changed = b["x1"], b["x2"], b["changed"]
        gaps = None
    else:
        t, u = s.temporal_index(n, (1, gap))
        x1, x2 = ds.take("frames", t), ds.take("frames", u)
        changed = ds.take("factors", t) != ds.take("factors", u)
        gaps = np.asarray(u) - np.asarray(t)
    groups = [_group(spec, j) for j in range(len(spec.names))]
    captions = []
    for i, row in enumerate(np.asarray(changed)):
        names = ", ".join(dict.fromkeys(groups[j] for j in row.nonzero()[0])) or "nothing changed"
        captions.append(f"k={gaps[i]}: {names}" if gaps is not None else names)
    if ds.kind == "pairs":
        rows = [("x1", list(x1)), ("x2: changed factor groups below", list(x2))]
        title = (f"{ds.env_id}: {n} intervention pairs (seed {seed}); under each pair the factor "
                 "groups resampled between x1 and x2")
    else:
        rows = [("frame t", list(x1)), ("frame t+k", list(x2))]
        title = (f"{ds.env_id}: {n} temporal pairs (t, t+k) of one episode, k drawn from "
                 f"1..{gap} (--gap {gap}; seed {seed}); under each pair k and the factor groups "
                 "that changed")
    return rows, captions, title


def sheet(ds: Any, n: int, gap: int, seed: int) -> Any:
    """Contact sheet of :func:`sheet_content`: row 1 the first frames, row 2 the second, the
    captions under row 2, the title on top."""
    from sparseshift.experiments.commands.imaging import contact_sheet

    rows, captions, title = sheet_content(ds, n, gap, seed)
    return contact_sheet(rows, scale=2, label_width=120, captions=[[""] * n, captions],
                         title=title)


def _group(spec: Any, j: int) -> str:
    """The factor group of factor ``j`` (its name before the first dot otherwise)."""
    factor = spec.factors[j]
    return str(getattr(factor, "group", None) or spec.names[j].split(".")[0])


def run(args: argparse.Namespace) -> int:
    from sparseshift.envs.data import open_dataset
    from sparseshift.envs.data.summary import summary
    from sparseshift.envs.infra.config import check_int, check_seed
    from sparseshift.envs.infra.io import save_png

    check_int("--pairs", args.pairs, 1, 256)
    check_int("--gap", args.gap, 1, 100_000)
    check_seed("--seed", args.seed)
    ds = open_dataset(args.path, verify=args.verify)
    print(summary(ds, Path(args.path).stat().st_size))
    if args.verify:
        print(f"verify: all {ds.verify()} chunk checksums match")
    if args.sheet:
        from sparseshift.experiments.commands.written import print_written

        print_written([save_png(args.sheet, sheet(ds, args.pairs, args.gap, args.seed))])
    return 0
