"""``sparseshift demo``: the main job on the defaults, with a real result in a few minutes.

Object reaching from pixels (``sparseshift/TriFingerObjectReach-v0``, the task of Träuble,
Dittadi et al. 2022): the cube's position reaches the policy only through a frozen image encoder.
Three PPO agents train on IN colours: one on the Ada-GVAE encoder shipped in
``sparseshift/assets/encoders/`` (trained by the project's own ``train-rep``; the exact commands
are in its ``MADE_BY.md``), one on a random (untrained) encoder of the same architecture, whose
latents reach the policy through the same standardised view (:mod:`sparseshift.agents.
standardize`), and one on the sensors alone (proprioception and goal, no image). All are
evaluated on IN, OOD1, OOD2 and the ``real`` rendering shift on the same episode seeds. The demo
prints the table with exact (Clopper-Pearson) intervals, each shift against IN as a paired
McNemar test, and a verdict: is the learned encoder's IN success above the *stronger* of the two
floors (exact McNemar test on the shared episodes)? It runs on the study task graph (two agents
at a time, one torch thread each), so a rerun reuses finished work.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

NAME = "demo"
ENV_ID = "sparseshift/TriFingerObjectReach-v0"
#: The shipped encoder (a folder of sparseshift.assets).
ENCODER = "encoders/objectreach_ada_gvae"
#: (label, encoder) of the floors the learned encoder is compared with.
FLOORS: tuple[tuple[str, str], ...] = (("random (untrained encoder)", "random"),
                                       ("sensors only (no image)", "sensors"))


def add_parser(sub: Any) -> None:
    from sparseshift.experiments.commands.options import add_plugin_flag

    p = sub.add_parser(
        NAME,
        help="main job: object reaching from pixels, a learned frozen encoder vs a random "
             "encoder and the sensors alone",
        description=(
            "Train PPO on TriFingerObjectReach (IN colours) from the shipped Ada-GVAE encoder, "
            "from a random encoder of the same architecture (both standardised the same way) "
            "and from the sensors alone (no image); evaluate all on IN, OOD1, OOD2 and real, and "
            "print the success table with exact 95% intervals, paired shift-vs-IN tests and a "
            "verdict against the stronger floor (a few minutes on 2 cores). "
            "'sparseshift scorecard' runs the same protocol on any encoder with several seeds; "
            "the full study is 'sparseshift study --preset quick'."
        ),
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--steps", type=int, default=100_000,
                   help="agent training steps (default 100000: about 3.5 minutes on 2 cores)")
    p.add_argument("--episodes", type=int, default=40,
                   help="evaluation episodes per shift (default 40)")
    p.add_argument("--seed", type=int, default=0, help="agent seed (default 0)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="agents trained at a time (default: the number of CPUs, at most 2)")
    p.add_argument("--encoder", default=None, metavar="SPEC",
                   help="the encoder to compare with the floors (default: the shipped Ada-GVAE): "
                        "a run or export-encoder folder, package.module:factory or an "
                        "installed encoder entry point")
    p.add_argument("--encoder-weights", default=None, metavar="W.safetensors",
                   help="safetensors weights for --encoder MODULE:FACTORY")
    add_plugin_flag(p)
    p.set_defaults(func=run)


def demo_shifts() -> tuple[str, ...]:
    """The demo's shifts (its table columns): the colour splits and ``real``, read from the shift
    registry (:func:`~sparseshift.envs.registry.default_shifts`)."""
    from sparseshift.envs.registry import default_shifts

    return default_shifts(ENV_ID)


def shipped_encoder() -> Path:
    """The folder of the shipped ObjectReach encoder."""
    from importlib import resources

    return Path(str(resources.files("sparseshift.assets") / ENCODER))


def _pct(v: dict[str, Any]) -> str:
    return f"{100 * v['mean']:3.0f}% [{100 * v['ci_low']:3.0f}, {100 * v['ci_high']:3.0f}]"


def _cell(shifts: dict[str, Any], paired: dict[str, Any], s: str) -> str:
    """Success with its exact interval; under a shift also the McNemar p against IN."""
    from sparseshift.agents.evaluate import format_p

    text = _pct(shifts[s]["success"])
    if s in paired:
        text += f" {format_p(paired[s]['success']['p_value'])}"
    return text


def verdict(learned: dict[str, Any], floors: dict[str, dict[str, Any]],
            name_of_learned: str = "learned") -> tuple[str, bool]:
    """The demo's verdict on IN: the learned agent against the stronger floor (higher IN
    success), by the exact McNemar test on their shared evaluation episodes (both agents ran the
    same episode seeds). Returns ``(text, learned is significantly better)``."""
    from sparseshift.agents.evaluate import format_p
    from sparseshift.agents.stats import mcnemar_exact

    name, floor = max(floors.items(), key=lambda kv: kv[1]["success"]["mean"])
    test = mcnemar_exact(floor["successes"], learned["successes"])
    better = test.diff > 0 and test.p_value < 0.05
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    text = (f"IN success: {name_of_learned} {pct(learned['success']['mean'])} vs the stronger "
            "floor, "
            f"{name}, {pct(floor['success']['mean'])} (difference {round(100 * test.diff):+d} "
            f"points, 95% CI [{round(100 * test.ci_low):+d}, {round(100 * test.ci_high):+d}], "
            "exact McNemar "
            f"{format_p(test.p_value)} on {test.n} shared episodes): "
            + (f"{name_of_learned} is better than both floors." if better else
               "no significant difference from the stronger floor at this budget."))
    return text, better


def run(args: argparse.Namespace) -> int:
    from sparseshift.agents.config import AgentConfig, EvaluateConfig
    from sparseshift.envs.infra.config import check_int, check_seed
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.envs.infra.io import atomic_write_text, output_dir, output_lock
    from sparseshift.experiments.study.graph import ProgressPrinter, Task, run_local

    check_int("--steps", args.steps, 1000, 10**8)
    check_int("--episodes", args.episodes, 5, 10_000)
    check_seed("--seed", args.seed)
    jobs = check_int("--jobs", args.jobs if args.jobs is not None else
                     min(2, os.cpu_count() or 1), 1, 64)
    from sparseshift.agents.encoders import load_encoder
    from sparseshift.experiments.commands.options import plugins_of
    from sparseshift.experiments.study.runner import EncoderRef, encoder_stage
    from sparseshift.experiments.study.stages import eval_agent_stage, train_agent_stage

    plugins = plugins_of(args)
    spec = args.encoder if args.encoder is not None else str(shipped_encoder())
    if args.encoder is not None and ":" in spec and not Path(spec).exists():
        plugins = plugins.with_spec(spec)
    if args.encoder is None and args.encoder_weights is not None:
        raise ConfigError("--encoder-weights needs --encoder MODULE:FACTORY")
    # resolved before any work: a bad encoder is one line now, not after minutes of training
    resolved = load_encoder(spec, 64, args.seed, plugins=plugins, weights=args.encoder_weights)
    if resolved.learner is None or spec in ("random",):
        raise ConfigError(f"--encoder {spec!r} is a baseline; the demo compares an encoder with "
                          "the baselines")
    runtime = {"plugins": tuple(sorted(plugins.modules))}
    name = ("learned (Ada-GVAE, shipped)" if args.encoder is None
            else f"encoder ({Path(spec).name or spec})")
    ref = Task("encoder", encoder_stage,
               EncoderRef(encoder=str(Path(spec).resolve()) if Path(spec).exists() else spec,
                          fingerprint=str(resolved.fingerprint),
                          encoder_weights=(str(Path(args.encoder_weights).resolve())
                                           if args.encoder_weights else None)),
               label=name, runtime=runtime)
    out = output_dir(args.out, "demo.md")
    agent_cfg = {"env_id": ENV_ID, "steps": args.steps, "seed": args.seed,
                 "eval_every": max(args.steps // 4, 1), "eval_episodes": 10,
                 "checkpoint_every": 0}
    labels = demo_shifts()
    evaluation = EvaluateConfig(shifts=labels, episodes=args.episodes, seed=1000)
    rows: list[tuple[str, Task]] = []
    for label, enc in ((name, spec), *FLOORS):
        mine = enc == spec
        weights = args.encoder_weights if mine else None
        agent = Task("agent", train_agent_stage,
                     AgentConfig.from_json({**agent_cfg, "encoder": enc,
                                            "encoder_weights": weights}),
                     deps=(ref,) if mine else (), label=label, runtime=runtime)
        rows.append((label, Task("eval_agent", eval_agent_stage, evaluation,
                                 deps=(agent,), label=label, runtime=runtime)))
    print(f"sparseshift demo: PPO on {ENV_ID}, {args.steps} steps per agent, "
          f"{args.episodes} evaluation episodes per shift, {jobs} at a time -> {out}/",
          flush=True)

    progress = ProgressPrinter([t for _, t in rows], jobs=jobs, stream=sys.stdout)

    with output_lock(out):
        results = run_local([t for _, t in rows], out / "artifacts", progress, jobs=jobs)
        head = "encoder"
        table = [f"{head:<28} " + " ".join(f"{s + ' success':>26}" for s in labels)]
        md = ["# sparseshift demo: object reaching from pixels", "",
              f"PPO, {args.steps} steps on IN colours, agent seed {args.seed}; success over "
              f"{args.episodes} episodes per shift (the same episode seeds for every agent and "
              "shift) with its exact (Clopper-Pearson) 95% interval; under each shift the exact "
              "McNemar p of that agent's shift-vs-IN difference.", "",
              "| encoder | " + " | ".join(f"{s} success" for s in labels) + " |",
              "|---|" + "---|" * len(labels)]
        ins: dict[str, dict[str, Any]] = {}
        for label, task in rows:
            res = results[task.key]
            shifts, paired = res["shifts"], res.get("paired", {})
            ins[label] = shifts["in"]
            cells = [_cell(shifts, paired, s) for s in labels]
            table.append(f"{label:<28} " + " ".join(f"{c:>26}" for c in cells))
            md.append(f"| {label} | " + " | ".join(cells) + " |")
        learned = ins[rows[0][0]]
        text, _ = verdict(learned, {label: ins[label] for label, _ in FLOORS},
                          "learned" if args.encoder is None else name)
        md += ["", text, "",
               "Every frozen encoder, learned or random, reaches the policy standardised per "
               "latent dimension with statistics measured once on IN frames; the sensors agent "
               "sees the proprioception and goal the others also get, and no image. OOD1: cube "
               "colours the encoder saw in pretraining, the agent did not. OOD2: colours neither "
               "saw. real: IN colours through the sim-to-real rendering shift. One agent seed: "
               "the intervals are over evaluation episodes, not over training runs; "
               "`sparseshift scorecard` repeats this with several seeds and "
               "`sparseshift study --preset quick` with several encoders."]
        atomic_write_text(out / "demo.md", "\n".join(md) + "\n")
    print("\n".join(table))
    print(text)
    print(f"wrote {out / 'demo.md'}")
    return 0 if not math.isnan(learned["success"]["mean"]) else 1
