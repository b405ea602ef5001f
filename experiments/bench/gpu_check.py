"""``make gpu-check``: the GPU paths end to end on a CUDA machine, with their timings.

``python -m sparseshift.experiments.bench.gpu_check [--out out/gpu-check] [--device cuda]`` runs,
one after the other, each as its own ``sparseshift`` process:

1. ``sparseshift doctor --device DEVICE`` (versions, devices, GL renderer, speed probes);
2. ``sparseshift bench train --device DEVICE``: every learner's training loop on the CPU and on
   the GPU in the same run, interleaved, medians, with the GPU/CPU ratio
   (:mod:`sparseshift.experiments.bench.train`);
3. ``sparseshift study --preset quick --device DEVICE --out OUT/study``.

Each step's output goes to the terminal and to ``OUT/<step>.log``; ``OUT/timings.txt`` gets the
machine (GPU, torch, CUDA, CPUs), every step's wall time and exit status, the bench summary table
and the study's per-stage times. A failing step does not stop the later ones; the exit status is
1 if any failed. Without a CUDA device it stops at once with one line and exit status 2.

The study resumes what an earlier check left in ``OUT/study`` (its stages are cached by config);
timings.txt says so, and a fresh timing needs that folder removed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sparseshift.envs.infra.errors import ConfigError

PROG = "gpu-check"
#: A study stage finished, failed or was reused (the study's ProgressPrinter lines).
STAGE_LINE = re.compile(r"^\[\d+/\d+\] (done|FAILED|reused) ")


@dataclass(frozen=True)
class Step:
    """One ``sparseshift`` command of the check."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class StepResult:
    step: Step
    returncode: int
    seconds: float
    output: str


#: How a step is run: ``(step, log file) -> result`` (tests replace it).
Runner = Callable[[Step, Path], StepResult]


def cuda_device(spec: str) -> str:
    """The CUDA device ``spec`` names (``cuda`` -> ``cuda:0``); no CUDA device or a non-CUDA
    ``spec`` is a one-line :class:`ConfigError`."""
    import torch

    from sparseshift.representations.runtime import no_cuda_reason, resolve_device

    if not torch.cuda.is_available():
        raise ConfigError(f"no CUDA device ({no_cuda_reason()}); make gpu-check needs a CUDA "
                          "machine")

    device = resolve_device(spec)
    if device.type != "cuda":
        raise ConfigError(f"--device {spec} is not a CUDA device; give cuda or cuda:N")
    return str(device)


def steps(out: Path, device: str) -> list[Step]:
    """The check's commands, in order."""
    return [
        Step("doctor", ("doctor", "--device", device)),
        Step("bench-train", ("bench", "train", "--device", device)),
        Step("study-quick", ("study", "--preset", "quick", "--device", device, "--out",
                             str(out / "study"))),
    ]


def run_step(step: Step, log: Path) -> StepResult:
    """Run ``sparseshift`` with ``step.argv`` in a child process; its output (stdout and stderr)
    goes to this terminal and to ``log`` as it comes."""
    import subprocess

    argv = [sys.executable, "-m", "sparseshift.experiments", *step.argv]
    print(f"\n{PROG}: $ sparseshift {' '.join(step.argv)}", flush=True)
    chunks: list[bytes] = []
    t0 = time.perf_counter()
    with log.open("wb") as sink, subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        while chunk := os.read(proc.stdout.fileno(), 65536):
            chunks.append(chunk)
            sink.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        rc = proc.wait()
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return StepResult(step, rc, time.perf_counter() - t0, text)


def bench_summary(output: str) -> list[str]:
    """The summary table of ``bench train`` (from its ``summary`` line to the end)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("summary ("):
            return [x for x in lines[i:] if x.strip()]
    return []


def stage_times(output: str) -> list[str]:
    """The study's per-stage lines (finished, failed, reused), without the elapsed/ETA tail."""
    out = []
    for raw in output.replace("\r", "\n").splitlines():
        if STAGE_LINE.match(raw):
            out.append(raw.split(" | elapsed", 1)[0].rstrip())
    return out


def machine(device: str) -> list[str]:
    """What the timings were measured on."""
    import platform

    import torch

    index = int(device.split(":", 1)[1])
    props = torch.cuda.get_device_properties(index)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return [f"device {device}: {props.name}, {props.total_memory / 2**30:.0f} GiB",
            f"torch {torch.__version__} (CUDA {torch.version.cuda}), Python "
            f"{platform.python_version()}, {cpus} CPU(s) usable"]


def timings(results: Sequence[StepResult], header: Sequence[str], resumed: bool) -> str:
    """The text of ``timings.txt``."""
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [f"sparseshift gpu-check, {when}", *header, "",
             f"{'step':<14} {'seconds':>9} {'exit':>5}  command"]
    for r in results:
        lines.append(f"{r.step.name:<14} {r.seconds:>9.1f} {r.returncode:>5}  "
                     f"sparseshift {' '.join(r.step.argv)}")
    lines.append(f"{'total':<14} {sum(r.seconds for r in results):>9.1f}")
    by_name = {r.step.name: r for r in results}
    if "bench-train" in by_name:
        table = bench_summary(by_name["bench-train"].output)
        lines += ["", "bench train (images/s, medians; see bench-train.log for every row):",
                  *(table or ["(no summary: see bench-train.log)"])]
    if "study-quick" in by_name:
        note = (" (resumed: stages finished by an earlier check are reused; remove the study "
                "folder for a fresh timing)" if resumed else "")
        lines += ["", f"study --preset quick, per stage{note}:",
                  *(stage_times(by_name["study-quick"].output) or ["(none: see "
                                                                   "study-quick.log)"])]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None, runner: Runner = run_step) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0] if __doc__
                                else None)
    p.add_argument("--out", default="out/gpu-check",
                   help="folder of the logs, timings.txt and the study (default out/gpu-check)")
    p.add_argument("--device", default="cuda", help="CUDA device: cuda (default) or cuda:N")
    args = p.parse_args(argv)
    try:
        device = cuda_device(args.device)
    except ConfigError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"{PROG}: error: {out} is not a folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    resumed = (out / "study").exists()
    header = machine(device)
    results: list[StepResult] = []
    for step in steps(out, device):
        results.append(runner(step, out / f"{step.name}.log"))
        # written after every step, so a check stopped midway keeps what it measured
        (out / "timings.txt").write_text(timings(results, header, resumed))
    failed = [r.step.name for r in results if r.returncode != 0]
    print(f"\n{PROG}: wrote {out / 'timings.txt'}"
          + (f"; failed: {', '.join(failed)}" if failed else "; every step passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
