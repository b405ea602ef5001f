"""``sparseshift bench evalrep``: ``eval-rep`` time against the training time of the README runs.

Goal (issue #12): ``eval-rep`` on any learner's run of the README examples takes at most 10% of
that run's training time. For each README learner (:data:`README_RUNS`: ``ada_gvae``,
``slot_attention`` and ``beta_vae`` on ColourGrid intervention pairs, ``nwm`` on a TriFingerPush
video, with the README's ``train-rep`` flags):

1. the README's dataset is collected into a temporary folder with the README's ``collect``
   settings (``--pairs`` ColourGrid pairs, ``--k -1``, colours ``in+ood1``; ``--frames``
   TriFingerPush frames, policy ``scripted``); the defaults are the README's 20,000, so
   ``eval-rep``'s defaults draw their full 10,000 / 5,000 frames (a smaller dataset shrinks them,
   and the output says so);
2. the learner trains with the README's ``train-rep`` flags (parsed by the CLI's own parser and
   :func:`sparseshift.experiments.commands.train_rep.build`, ``--steps`` replaced):
   ``--warmup`` steps first, then ``--repeats`` resumed calls of ``--steps`` steps each. The rate
   of a call is the training loop's own (:attr:`TrainResult.images_per_second`, timed from the
   first to the last step of the call: the set-up of each call and its final image grid and
   checkpoint are not in it), in steps/s; the median is extrapolated to the README's step count
   (``README steps / rate``). That is an extrapolation, not a measured 20,000-step run; it leaves
   out the run's start-up and its checkpoints and image grids every 1,000 steps (fractions of a
   second each), so it understates the training time slightly, which makes the ratio below
   conservative;
3. ``eval-rep`` runs on that run with the README's flags and every other option at the CLI's
   default, as a user runs it: a ``python -m sparseshift.experiments.cli eval-rep ...``
   subprocess, timed from start to exit (interpreter start and imports included). ``nwm``
   gets two separately timed calls, ``--waves DIR`` (the README's line) and ``--out
   metrics.json``. With the CLI defaults codes wider than
   :data:`sparseshift.representations.metrics.DCI_EXACT_MAX_DIMS` (the NWM's 512-dim sheet) get
   DCI's L1 estimator and ``max_code_dims`` is unset, so every step runs; the output prints the
   code width, DCI method and the metrics' seconds per stage from the metrics JSON;
4. per learner: the extrapolated training time, the ``eval-rep`` time and their ratio against
   the goal ``<= 0.10``.

``--threads N`` passes ``--threads N`` to both ``train-rep`` and ``eval-rep`` (default: neither,
as in the README: torch's default). ``--train-args`` / ``--eval-args`` append flags to the
README's (tests use them to shrink the models and the evaluation; the output then says the runs
are not the README's).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sparseshift.experiments.bench.timing import Rate, format_row

DESCRIPTION = ("eval-rep time on each README learner's run vs that run's training time "
               "(extrapolated from the measured steps/s)")

GOAL = 0.10
GRID, PUSH = "grid-pairs", "push"
#: The README's datasets (section "Weakly supervised datasets"): env, kind and collect settings;
#: the row count comes from ``--pairs`` / ``--frames``.
DATASETS: dict[str, dict[str, Any]] = {
    GRID: {"env_id": "sparseshift/ColourGrid-v0", "kind": "pairs", "k": -1,
           "colours": "in+ood1"},
    PUSH: {"env_id": "sparseshift/TriFingerPush-v0", "kind": "video", "policy": "scripted"},
}
README_ROWS = 20000


@dataclass(frozen=True)
class ReadmeRun:
    """One README example: its dataset, ``train-rep`` flags (without ``--data``/``--out``) and the
    ``eval-rep`` calls timed on it (label, flags without the run and ``--data``; ``{run}`` and
    ``{tmp}`` are the run folder and the temporary folder)."""

    learner: str
    data: str
    train: tuple[str, ...]
    evals: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def steps(self) -> int:
        return int(self.train[self.train.index("--steps") + 1])


_METRICS = (("--out --export-codes",
             ("--out", "{run}/metrics.json", "--export-codes", "{tmp}/codes.npz")),)

#: README.md, section "Representations, agents and studies" (``beta_vae``: the ``ada_gvae`` line
#: with the default learner options). tests/test_bench_evalrep.py checks them against README.md.
README_RUNS: dict[str, ReadmeRun] = {
    "ada_gvae": ReadmeRun("ada_gvae", GRID, (
        "--learner", "ada_gvae", "--steps", "20000", "--seed", "0"), _METRICS),
    "slot_attention": ReadmeRun("slot_attention", GRID, (
        "--learner", "slot_attention", "--steps", "20000", "--model", "num_slots=6"), _METRICS),
    "nwm": ReadmeRun("nwm", PUSH, (
        "--learner", "nwm", "--seq-len", "8", "--batch", "8", "--lr", "2e-3", "--steps",
        "20000"), (("--waves", ("--waves", "{run}/waves")),
                   ("--out", ("--out", "{run}/metrics.json")))),
    "beta_vae": ReadmeRun("beta_vae", GRID, (
        "--learner", "beta_vae", "--steps", "20000", "--seed", "0"), _METRICS),
}


@dataclass(frozen=True)
class EvalTime:
    """One timed ``eval-rep`` call."""

    learner: str
    label: str
    seconds: float
    train_seconds: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.train_seconds if self.train_seconds > 0 else float("nan")

    @property
    def ok(self) -> bool:
        return self.ratio <= GOAL


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", default="all",
                   help="README learners to run, comma-separated, or 'all' (default: "
                        + ", ".join(README_RUNS) + ")")
    p.add_argument("--pairs", type=int, default=README_ROWS,
                   help=f"ColourGrid pairs to collect (default {README_ROWS}, the README's "
                        "grid-pairs.h5; below 7500 eval-rep shrinks its 10000/5000 frames)")
    p.add_argument("--frames", type=int, default=README_ROWS,
                   help=f"TriFingerPush video frames to collect (default {README_ROWS}, the "
                        "README's push.h5; below 15000 eval-rep shrinks its 10000/5000 frames)")
    p.add_argument("--workers", type=int, default=2,
                   help="collect workers for the video (default 2, as in the README; not timed)")
    p.add_argument("--warmup", type=int, default=20,
                   help="training steps before the measurement (default 20)")
    p.add_argument("--steps", type=int, default=60,
                   help="training steps per measured call (default 60)")
    p.add_argument("--repeats", type=int, default=3,
                   help="measured training calls; the median rate is used (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for train-rep and eval-rep (default: torch's, as the "
                        "README lines)")
    p.add_argument("--train-args", default="", metavar="FLAGS",
                   help="extra train-rep flags after the README's, as --train-args='--batch 4' "
                        "(tests; the runs are then not the README's)")
    p.add_argument("--eval-args", default="", metavar="FLAGS",
                   help="extra eval-rep flags after the README's, as --eval-args='--no-proxy' "
                        "(tests; then not the CLI defaults)")


def _learners(text: str) -> list[str]:
    from sparseshift.envs.infra.errors import ConfigError

    if text == "all":
        return list(README_RUNS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in README_RUNS]
    if unknown or not names:
        given = ", ".join(repr(n) for n in unknown) if unknown else repr(text)
        raise ConfigError(f"--only: unknown README learner {given}; choose from "
                          f"{', '.join(README_RUNS)} or all")
    return names


def _collect(name: str, rows: int, workers: int, folder: Path) -> Path:
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    path = folder / f"{name}.h5"
    settings = DATASETS[name]
    t0 = time.perf_counter()
    collect(CollectConfig.from_json({**settings, "n": rows, "seed": 0}), path,
            workers=workers if settings["kind"] == "video" else 1, progress=False)
    unit = "pairs" if settings["kind"] == "pairs" else "frames"
    print(f"bench evalrep: collected {name}.h5: {rows} {unit} of {settings['env_id']} "
          f"({time.perf_counter() - t0:.0f} s, not timed)")
    return path


def _train_config(run: ReadmeRun, data: Path, out: Path, extra: list[str]) -> Any:
    """The README line's TrainConfig, built by ``train-rep``'s own parser and build."""
    import argparse

    from sparseshift.experiments.commands import train_rep

    parser = argparse.ArgumentParser(prog="sparseshift")
    train_rep.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-rep", *run.train, "--data", str(data), "--out", str(out),
                              *extra])
    return train_rep.build(args)


def _images_per_step(config: Any, data: Path) -> int:
    from sparseshift.representations.data import BatchSpec, dataset_info, open_data, resolve_pairs
    from sparseshift.representations.registry import learner_class

    cls = learner_class(config.learner)
    ds = open_data(data)
    try:
        kind = dataset_info(ds)["kind"]
    finally:
        ds.close()
    pairs = resolve_pairs(cls.batch_kind, config.learner, kind, config.pairs)
    return BatchSpec(cls.batch_kind, config.batch_size, pairs, config.gap_range,
                     config.seq_len).images_per_batch


def training_rate(run: ReadmeRun, data: Path, out: Path, args: argparse.Namespace,
                  extra: list[str]) -> tuple[Rate, int]:
    """Median steps/s of ``args.repeats`` resumed calls of ``args.steps`` steps after
    ``args.warmup`` steps, and the images per step."""
    from sparseshift.representations.train import train

    config = _train_config(run, data, out, extra)
    per_step = _images_per_step(config, data)
    done = args.warmup
    if done:
        train(replace(config, steps=done, progress=False), data, out)
    samples = []
    for _ in range(args.repeats):
        done += args.steps
        result = train(replace(config, steps=done, progress=False), data, out)
        samples.append(result.images_per_second / per_step)
    return Rate("training loop (README flags, after warm-up)", "steps/s", tuple(samples)), per_step


def eval_argv(run_dir: Path, data: Path, flags: tuple[str, ...], tmp: Path,
              extra: list[str]) -> list[str]:
    """``sparseshift eval-rep`` argv of one README call (without the program)."""
    filled = [f.format(run=run_dir, tmp=tmp) for f in flags]
    return ["eval-rep", str(run_dir), "--data", str(data), *filled, *extra]


def time_eval(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall seconds of ``sparseshift ARGV`` as a subprocess (start-up and imports included)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sparseshift.experiments.cli", *argv],
                          capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, proc


def _stages(metrics_json: Path) -> str:
    """Code width, DCI method, frames used and seconds per stage from an eval-rep metrics JSON."""
    if not metrics_json.exists():
        return ""
    report = json.loads(metrics_json.read_text(encoding="utf-8"))
    protocol, metrics = report.get("protocol", {}), report.get("metrics", {})
    parts = [f"{protocol.get('num_train_used')}/{protocol.get('num_test_used')} frames",
             f"{protocol.get('latent_dims')} code dims"]
    if "dci_method" in metrics:
        parts.append(f"DCI {metrics['dci_method']}")
    seconds = report.get("seconds", {})
    parts.append("stages " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    if report.get("skipped"):
        parts.append("skipped " + ", ".join(report["skipped"]))
    return "; ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.2f} h"


def eval_row(t: EvalTime) -> str:
    """One result row: eval-rep seconds, the ratio to the training time and the goal."""
    return (f"{'eval-rep ' + t.label:<44} {t.seconds:>10.1f} s         "
            f"{t.ratio:8.4f}x training  goal <= {GOAL:.2f}x: {'ok' if t.ok else 'MISSED'}")


def summary(times: list[EvalTime]) -> str:
    """The summary table: per eval-rep call, training (extrapolated) and eval-rep seconds."""
    lines = ["", "summary (training: extrapolated from the measured steps/s to the README's "
                 "steps; eval-rep: one timed run each, seconds):",
             f"{'learner':<16} {'eval-rep':<22} {'training (extrap.)':>18} {'eval-rep':>10} "
             f"{'ratio':>8}  goal <= {GOAL:.2f}"]
    for t in times:
        lines.append(f"{t.learner:<16} {t.label:<22} {t.train_seconds:>18.1f} {t.seconds:>10.1f} "
                     f"{t.ratio:>8.4f}  {'ok' if t.ok else 'MISSED'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from sparseshift.envs.infra.errors import ConfigError

    if min(args.pairs, args.frames, args.workers, args.steps, args.repeats,
           args.threads or 1) < 1 or args.warmup < 0:
        raise ConfigError("--pairs, --frames, --workers, --steps, --repeats and --threads must "
                          "be >= 1, --warmup >= 0")
    names = _learners(args.only)
    threads = ["--threads", str(args.threads)] if args.threads is not None else []
    train_extra = threads + shlex.split(args.train_args)
    eval_extra = threads + shlex.split(args.eval_args)
    if args.train_args or args.eval_args:
        print(f"bench evalrep: NOT the README runs: extra train-rep flags {args.train_args!r}, "
              f"extra eval-rep flags {args.eval_args!r}")
    rows = {GRID: args.pairs, PUSH: args.frames}
    times: list[EvalTime] = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="sparseshift-bench-evalrep-") as name:
        tmp = Path(name)
        data: dict[str, Path] = {}
        for learner in names:
            run_ = README_RUNS[learner]
            if run_.data not in data:
                data[run_.data] = _collect(run_.data, rows[run_.data], args.workers, tmp)
            out = tmp / f"run-{learner}"
            print(f"bench evalrep: {learner}: sparseshift train-rep {shlex.join(run_.train)} "
                  f"--data {run_.data}.h5 {shlex.join(train_extra)}".rstrip())
            rate, per_step = training_rate(run_, data[run_.data], out, args, train_extra)
            train_s = run_.steps / rate.median if rate.median > 0 else float("nan")
            print(format_row(rate) + f"  [{per_step} images/step; {args.warmup} warm-up + "
                                     f"{args.repeats} x {args.steps} steps]")
            print(f"{'README run: ' + str(run_.steps) + ' steps':<44} {train_s:>10.1f} s "
                  f"({_duration(train_s)}) EXTRAPOLATED from the measured rate, not run")
            for label, flags in run_.evals:
                argv = eval_argv(out, data[run_.data], flags, tmp, eval_extra)
                seconds, proc = time_eval(argv)
                if proc.returncode != 0:
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                    print(f"bench evalrep: {learner}: eval-rep {label} failed (exit "
                          f"{proc.returncode}): {' | '.join(tail)}")
                    failed += 1
                    continue
                t = EvalTime(learner, label, seconds, train_s)
                times.append(t)
                print(eval_row(t))
                if "--out" in flags:
                    detail = _stages(out / "metrics.json")
                    if detail:
                        print(f"  eval-rep {label}: {detail}")
            mine = [t for t in times if t.learner == learner]
            if len(mine) > 1:  # the nwm: both calls together
                t = EvalTime(learner, " + ".join(x.label for x in mine),
                             sum(x.seconds for x in mine), train_s)
                times.append(t)
                print(eval_row(t))
    if times:
        print(summary(times))
    return 1 if failed else 0
