"""``sparseshift bench NAME``: speed benchmarks that print ratios against limits measured in the
same run (see :mod:`sparseshift.experiments.bench`)."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "bench"


def add_parser(sub: Any) -> None:
    from sparseshift.experiments.bench import BENCHES, bench_modules

    p = sub.add_parser(
        NAME,
        help="run a speed benchmark (" + ", ".join(BENCHES) + ")",
        description=(
            "Speed benchmarks. Each prints rates next to a limit measured in the same run (medians "
            "of repeats, interleaved), as ratios with the goal from the issue. Absolute numbers "
            "drift on a shared machine; the ratios are what to compare."
        ),
    )
    benches = p.add_subparsers(title="benchmarks", dest="bench", metavar="NAME",
                               parser_class=type(p))
    for name, module in bench_modules().items():
        bp = benches.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        module.add_arguments(bp)
        bp.set_defaults(func=module.run)
    p.set_defaults(func=_no_bench, bench_parser=p)


def _no_bench(args: argparse.Namespace) -> int:
    args.bench_parser.print_help()
    return 2
