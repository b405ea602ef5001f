"""``sparseshift scorecard --encoder SPEC``: judge any frozen encoder on object reaching against
the baselines, with the protocol, seeds and versions fixed (see
:mod:`sparseshift.experiments.study.scorecard`)."""

from __future__ import annotations

import argparse
import os
from typing import Any

NAME = "scorecard"


def add_parser(sub: Any) -> None:
    from sparseshift.experiments.commands.options import add_config_flags, add_plugin_flag
    from sparseshift.experiments.study.scorecard import ScorecardConfig

    p = sub.add_parser(
        NAME,
        help="judge any encoder on object reaching: probes, proxy task, agents vs the random "
             "and sensors floors, all shifts, paired tests (markdown + JSON + figure)",
        description=(
            "Run the ObjectReach protocol on --encoder (a run folder, an export-encoder folder, "
            "package.module:factory with --encoder-weights, or an installed encoder entry "
            "point): cube-position probes and the OOD proxy task on the encoder and on each "
            "random initialisation; PPO agents on IN colours from the encoder and from the two "
            "floors (the standardised random encoder, init seed = agent seed, and sensors only) "
            "with --seeds seeds each, plus the state and pixels references; every agent "
            "evaluated on IN, OOD1, OOD2 and real on the same episodes; exact intervals, McNemar "
            "tests, IQM with stratified-bootstrap intervals over seeds. Writes OUT/scorecard.md, "
            "scorecard.json and scorecard.png; resumable (finished agents are reused). The "
            "default budget takes about 20-25 minutes on 2 cores."
        ),
    )
    add_config_flags(p, ScorecardConfig)
    p.add_argument("--out", default=None,
                   help="output folder (default out/scorecard/LABEL)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="artifact folder, shared by scorecards of several encoders so that the "
                        "floors and references train once (default: out/scorecard/artifacts "
                        "without --out, else OUT/artifacts)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="agents trained at a time (default: the number of CPUs, at most 2)")
    p.add_argument("--device", default=None,
                   help="torch device of the frozen encoders: auto, cpu, cuda, cuda:N or mps "
                        "(default: each agent's own, auto)")
    add_plugin_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sparseshift.envs.infra.config import check_int
    from sparseshift.experiments.commands.options import build_config, plugins_of
    from sparseshift.experiments.study.scorecard import ScorecardConfig, run_scorecard
    from sparseshift.representations.runtime import resolve_device

    cfg = build_config(ScorecardConfig, args)
    jobs = check_int("--jobs", args.jobs if args.jobs is not None else
                     min(2, os.cpu_count() or 1), 1, 64)
    device = None if args.device is None else str(resolve_device(args.device))
    plugins = sorted(plugins_of(args).modules)
    out = Path(args.out) if args.out else Path("out/scorecard") / cfg.name
    cache = Path(args.cache) if args.cache else (
        None if args.out else Path("out/scorecard/artifacts"))
    print(f"sparseshift scorecard: {cfg.name} on object reaching, {cfg.seeds} agent seeds, "
          f"{cfg.steps:,} steps each, {jobs} at a time -> {out}/", flush=True)
    data = run_scorecard(cfg, out, plugins, jobs=jobs, device=device, cache=cache)
    text = (out / "scorecard.md").read_text()
    table = text.split("## Success per shift", 1)[1].split("## Probes", 1)[0]
    print(table.strip())
    print(f"wrote {out / 'scorecard.md'}, {out / 'scorecard.json'}, {out / 'scorecard.png'} "
          f"({data['seconds']:.0f} s)")
    return 0
