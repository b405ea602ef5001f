"""``sparseshift evaluate AGENT_DIR``: return and success per colour shift with bootstrap CIs.

See :mod:`sparseshift.agents.evaluate` for the protocol (IN / OOD1 / OOD2 / real; Dittadi et al.
2021,
Traeuble et al. 2022).
"""

from __future__ import annotations

import argparse
from typing import Any

NAME = "evaluate"


def add_parser(sub: Any) -> None:
    from sparseshift.agents.config import EvaluateConfig
    from sparseshift.experiments.options import add_config_flags

    p = sub.add_parser(
        NAME,
        help="evaluate a trained agent under colour shifts (IN, OOD1, OOD2, real)",
        description=(
            "Run episodes of a trained agent under each shift (in: training colours; ood1: "
            "colours the encoder saw, the agent did not; ood2: colours neither saw; real: "
            "TriFinger sim-to-real image shift on IN colours) and report mean return and success "
            "with seeded 95% bootstrap CIs. Actions follow --policy (by default the agent's "
            "setting: deterministic on TriFinger, sampled with a seed on grid worlds; the table "
            "says which). Every shift runs the same episode seeds. Writes AGENT_DIR/eval.json."
        ),
    )
    p.add_argument("agent_dir", metavar="AGENT_DIR", help="output directory of train-agent")
    add_config_flags(p, EvaluateConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sparseshift.agents.config import EvaluateConfig
    from sparseshift.agents.evaluate import EVAL_FILE, format_table, run_evaluation
    from sparseshift.experiments.options import build_config

    result = run_evaluation(args.agent_dir, build_config(EvaluateConfig, args))
    print(format_table(result))
    print(f"wrote {result['agent']}/{EVAL_FILE}")
    return 0
