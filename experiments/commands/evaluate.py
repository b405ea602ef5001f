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
    p = sub.add_parser(
        NAME,
        help="evaluate a trained agent under colour shifts (IN, OOD1, OOD2, real)",
        description=(
            "Run deterministic episodes of a trained agent under each shift (in: training "
            "colours; ood1: colours the encoder saw, the agent did not; ood2: colours neither "
            "saw; real: TriFinger sim-to-real image shift on IN colours) and report mean return "
            "and success with seeded 95%% bootstrap CIs. Every shift runs the same episode "
            "seeds. Writes AGENT_DIR/eval.json."
        ),
    )
    p.add_argument("agent_dir", metavar="AGENT_DIR", help="output directory of train-agent")
    p.add_argument("--shifts", default="in,ood1,ood2",
                   help="comma-separated shifts from in, ood1, ood2, real (default in,ood1,ood2)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per shift (default 50)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    p.add_argument("--video", type=int, default=0, metavar="N",
                   help="write mp4 videos of the first N episodes of each shift")
    p.add_argument("--policy", choices=("auto", "deterministic", "stochastic"), default=None,
                   help="mode or sampled (seeded) actions; default: the agent's setting (auto: "
                        "deterministic on TriFinger, stochastic on grid worlds)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sparseshift.agents.evaluate import EVAL_FILE, evaluate, format_table

    result = evaluate(args.agent_dir, args.shifts, episodes=args.episodes, seed=args.seed,
                      video=args.video, policy=args.policy)
    print(format_table(result))
    print(f"wrote {result['agent']}/{EVAL_FILE}")
    return 0
