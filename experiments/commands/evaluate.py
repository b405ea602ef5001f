"""``sparseshift evaluate AGENT_DIR``: return and success per shift with 95% intervals, robustness
curves against severity and the mean relative robustness.

See :mod:`sparseshift.agents.evaluate` for the protocol (colour splits IN / OOD1 / OOD2 of
Dittadi et al. 2021 and Traeuble et al. 2022, graded nuisances, compositions such as ``real``,
user shift files), :mod:`sparseshift.agents.robustness_plot` for the figure and
:mod:`sparseshift.agents.video` for the videos.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

NAME = "evaluate"


def add_parser(sub: Any) -> None:
    from sparseshift.agents.config import EvaluateConfig
    from sparseshift.experiments.commands.options import add_config_flags, add_plugin_flag

    p = sub.add_parser(
        NAME,
        help="evaluate a trained agent under shifts (colour splits, graded nuisances such as "
             "lighting:1-5, real, your shift files), with paired tests against IN and "
             "robustness curves",
        description=(
            "Run episodes of a trained agent under each shift of --shifts and report success "
            "with its exact (Clopper-Pearson) 95% interval and mean return with a seeded "
            "bootstrap 95% CI. Shifts use one grammar: NAME, NAME:LEVEL (1-5), NAME:A-B (every "
            "level from A to B) or NAME@STRENGTH (0-5), comma-separated, e.g. "
            "'in,ood2,lighting:1-5,noise:1-5,real:3'. NAME is a colour split (in: training "
            "colours; ood1: colours the encoder saw, the agent did not; ood2: colours neither "
            "saw), a rendering nuisance, a composition such as real (the sim-to-real "
            "imitation), a shift of a --plugin module, or a shift file (.toml/.json, relative to "
            "the current directory); `sparseshift shifts` lists them and what each env "
            "supports, docs/shifts.md describes them. A shift the agent's env does not support "
            "is refused before any episode runs. Every shift is compared with IN on the shared "
            "episodes (exact McNemar for success, paired bootstrap for return) and the mean "
            "relative robustness (success under shift / success IN, averaged over severities, "
            "then shifts) is given with its paired-bootstrap interval. An agent whose encoder "
            "factory is recorded in its folder needs --plugin MODULE. Actions follow --policy "
            "(by default the agent's setting: deterministic on TriFinger, sampled with a seed "
            "on grid worlds; the table says which). Writes AGENT_DIR/eval.json (each shift's "
            "definition with its SHA-256), AGENT_DIR/robustness.md and, when a graded shift was "
            "evaluated, AGENT_DIR/robustness.png (success and return against severity, "
            "intervals shown); logs the results as TensorBoard scalars (AGENT_DIR/logs/"
            "evaluate). --video N also writes H.264 videos of the first N episodes of each "
            "shift (AGENT_DIR/videos/SHIFT_K.mp4 at the env's frame rate, goals marked, with a "
            "GIF thumbnail SHIFT_K.gif; ':' and '@' of a label are written '+') and logs them "
            "to TensorBoard."
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
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.experiments.commands.options import build_config, plugins_of
    from sparseshift.experiments.commands.written import print_written

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
        print_written([path, *(result[k] for k in ("robustness_table", "robustness_figure")
                                if result.get(k))], header="files (already there)")
        return 0
    files: list[Any] = [path]
    for r in result["shifts"].values():
        for mp4, gif in zip(r.get("videos", []), r.get("thumbnails", []), strict=False):
            files += [mp4, gif]
    sbs = result.get("side_by_side") or {}
    for mp4, gif in zip(sbs.get("videos", []), sbs.get("thumbnails", []), strict=False):
        files += [mp4, gif]
    for key in ("robustness_table", "robustness_figure", "tensorboard"):
        if result.get(key):
            files.append(result[key])
    print_written(files)
    if result.get("tensorboard"):
        what = "results and videos" if sbs or any(
            r.get("videos") for r in result["shifts"].values()) else "results"
        print(f"{what} in TensorBoard: tensorboard --logdir {result['tensorboard']}")
    return 0
