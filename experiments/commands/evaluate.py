"""``sparseshift evaluate AGENT_DIR``: return and success per colour shift with bootstrap CIs.

See :mod:`sparseshift.agents.evaluate` for the protocol (IN / OOD1 / OOD2 / real; Dittadi et al.
2021, Traeuble et al. 2022) and :mod:`sparseshift.agents.video` for the videos.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

NAME = "evaluate"


def add_parser(sub: Any) -> None:
    from sparseshift.agents.config import EvaluateConfig
    from sparseshift.experiments.options import add_config_flags, add_plugin_flag

    p = sub.add_parser(
        NAME,
        help="evaluate a trained agent under colour shifts (IN, OOD1, OOD2, real), with paired "
             "tests against IN",
        description=(
            "Run episodes of a trained agent under each shift (in: training colours; ood1: "
            "colours the encoder saw, the agent did not; ood2: colours neither saw; real: "
            "TriFinger sim-to-real image shift on IN colours) and report success with its exact "
            "(Clopper-Pearson) 95% interval and mean return with a seeded bootstrap 95% CI; "
            "every shift is compared with IN on the shared episodes (exact McNemar for success, "
            "paired bootstrap for return). An agent whose encoder factory is recorded in its "
            "folder needs --plugin MODULE. Actions follow --policy (by default the agent's "
            "setting: deterministic on TriFinger, sampled with a seed on grid worlds; the table "
            "says which). Every shift runs the same episode seeds. Writes AGENT_DIR/eval.json; "
            "--video N also writes H.264 videos of the first N episodes of each shift "
            "(AGENT_DIR/videos/SHIFT_K.mp4 at the env's frame rate, goals marked, with a GIF "
            "thumbnail SHIFT_K.gif) and logs them to TensorBoard (AGENT_DIR/logs/evaluate)."
        ),
    )
    p.add_argument("agent_dir", metavar="AGENT_DIR", help="output directory of train-agent")
    add_config_flags(p, EvaluateConfig)
    p.add_argument("--side-by-side", action="store_true",
                   help="with --video N: also videos/side_by_side_K.mp4 (and .gif), episode K "
                        "under every shift next to each other")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_plugin_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sparseshift.agents.config import EvaluateConfig
    from sparseshift.agents.evaluate import EVAL_FILE, format_table, run_evaluation
    from sparseshift.envs.errors import ConfigError
    from sparseshift.experiments.options import build_config, plugins_of
    from sparseshift.experiments.written import print_written

    cfg = build_config(EvaluateConfig, args)
    if args.side_by_side and not cfg.video:
        raise ConfigError("--side-by-side needs --video N (N >= 1)")
    path = Path(args.agent_dir) / EVAL_FILE
    before = path.stat().st_mtime_ns if path.is_file() else None
    result = run_evaluation(args.agent_dir, cfg, side_by_side=args.side_by_side,
                            progress=not args.quiet, plugins=plugins_of(args))
    print(format_table(result))
    if before is not None and path.stat().st_mtime_ns == before:
        print(f"{path} already holds this evaluation (same parameters; the policy and encoder "
              "weights are unchanged); nothing was run", file=sys.stderr)
        print_written([path], header="files (already there)")
        return 0
    files: list[Any] = [path]
    for r in result["shifts"].values():
        for mp4, gif in zip(r.get("videos", []), r.get("thumbnails", []), strict=False):
            files += [mp4, gif]
    sbs = result.get("side_by_side") or {}
    for mp4, gif in zip(sbs.get("videos", []), sbs.get("thumbnails", []), strict=False):
        files += [mp4, gif]
    if result.get("tensorboard"):
        files.append(result["tensorboard"])
    print_written(files)
    if result.get("tensorboard"):
        print(f"videos in TensorBoard: tensorboard --logdir {result['tensorboard']}")
    return 0
