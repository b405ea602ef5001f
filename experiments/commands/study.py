"""``sparseshift study``: collect -> train representations -> train agents -> evaluate -> report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

NAME = "study"


def add_parser(sub: Any) -> None:
    from sparseshift.experiments.commands.options import add_plugin_flag
    from sparseshift.experiments.study.presets import PRESETS

    p = sub.add_parser(
        NAME,
        help="run a study end to end: data, representations, agents, OOD evaluation, report",
        description=(
            "Chain collect -> train-rep -> train-agent (IN colours) -> evaluate (IN, OOD1, OOD2, "
            "real and graded shifts such as lighting:1-5) -> report (with robustness curves). "
            "Every artifact is keyed by the hash of its resolved config: rerunning skips what is "
            "done and an interrupted study resumes. Shift names and severities are checked when "
            "the config loads, before any stage. Presets: "
            + " ".join(f"{k}: {_sentence(v.description)}" for k, v in PRESETS.items())
        ),
    )
    p.add_argument("--preset", default=None,
                   help=f"one of {', '.join(PRESETS)} (default smoke unless --config is given)")
    p.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                   help="a custom study: a JSON or TOML file holding a StudyConfig (name, "
                        "description, metrics, and [[envs]] plans with data, learners, your own "
                        "encoders ([[envs.encoders]]: label, encoder = package.module:factory, "
                        "encoder_weights), agent and evaluation tables (evaluation.shifts in "
                        "the list syntax: in,ood2,lighting:1-5,real:3); see docs/study.md); the "
                        "resolved config is saved as OUT/NAME/study_config.json, which --config "
                        "reads back to rerun the study as it was")
    p.add_argument("--out", default="out/study", help="output folder (default out/study)")
    p.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run independent stages as Ray tasks: a local Ray, or the cluster ADDRESS")
    p.add_argument("--device", default=None,
                   help="device of the torch stages (representation training and evaluation, "
                        "the agents' frozen encoders): auto, cpu, cuda, cuda:N or mps; collection "
                        "and rendering stay on the CPU (default: each config's own, auto)")
    add_plugin_flag(p)
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="without --ray: run up to N independent stages at a time, each in its own "
                        "process with one torch thread (default: the number of CPUs); results "
                        "equal --jobs 1")
    p.set_defaults(func=run)


def _sentence(text: str) -> str:
    """``text`` as one sentence for the help: an ordinary first word in lower case (not a name
    such as ColourGrid), one full stop."""
    text = " ".join(text.split()).rstrip(".;")
    first = text.split(" ", 1)[0].rstrip(":,")
    if first[1:].isalpha() and first[1:].islower():
        text = text[:1].lower() + text[1:]
    return text + "."


def run(args: argparse.Namespace) -> int:
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.experiments.commands.options import plugins_of
    from sparseshift.experiments.commands.written import print_written
    from sparseshift.experiments.study.presets import StudyConfig, get_preset
    from sparseshift.experiments.study.report import write_report
    from sparseshift.experiments.study.runner import run_study

    if args.config_file is not None and args.preset is not None:
        raise ConfigError("give --preset or --config, not both")
    if args.config_file is not None:
        preset = StudyConfig.load(args.config_file)
    else:
        preset = get_preset(args.preset or "smoke")
    plugins = sorted(plugins_of(args).modules)
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    out = Path(args.out) / preset.name
    if args.device is not None:
        from sparseshift.representations.runtime import resolve_device

        resolve_device(args.device)  # an unavailable device is a one-line error here
    runs, results, seconds = run_study(preset, out, args.ray, jobs=jobs, device=args.device,
                                       plugins=plugins)
    report, head = write_report(preset.name, runs, results, out, seconds,
                                {"ray": args.ray if isinstance(args.ray, str) else bool(args.ray),
                                "jobs": 0 if args.ray else jobs})
    print(head)
    print(f"report: {report} ({seconds:.0f} s)")
    report_path = Path(report)
    print_written([report_path, *(p for p in sorted(report_path.parent.glob("*"))
                                  if p != report_path)])
    return 0
