"""``sparseshift bench train``: training images/s of the full loop next to the model-only limit.

For every learner benchmarked (default: all registered ones), both candidates train the same
learner with the same config, batch and thread count, interleaved:

* *training loop*: :func:`sparseshift.representations.train.train` resumed for a few more steps
each time
  (dataset sampling, uint8 -> float conversion, Adam, the learning-rate schedule, TensorBoard
  scalars every 50 steps, the final checkpoint of every call);
* *model only*: ``loss -> backward -> Adam step`` on one batch of tensors loaded before timing.

Both sides count images the same way
(:attr:`sparseshift.representations.data.BatchSpec.images_per_batch`):
a batch of ``B`` singles is ``B`` images, of ``B`` pairs ``2B``, of ``B`` sequences of length
``T`` ``B * T``.

Data: singles and pairs learners train on 1,024 ColourGrid intervention pairs, sequence learners
(``nwm``) on 1,024 ColourGrid video frames, both collected into a temporary folder, unless
``--data`` is given (a pairs dataset cannot feed sequence learners; a video dataset feeds pair
learners with temporal pairs).

Goal (issue "Representation learners I"): the loop at >= 0.9x the model-only rate. speeds.md
measured a disentanglement_lib conv VAE at 750 images/s (2 threads) and 430 (1 thread) here.

``--device`` (default ``cpu``) is where both candidates run. An accelerator (``cuda``, ``cuda:N``,
``mps``, or ``auto`` when one is available) adds the CPU to the same run: for every learner three
candidates are interleaved, the training loop on the CPU (``--threads`` torch threads), the model
only on the device and the training loop on the device, and the table gives the device's loop
against its model-only rate (the goal above) and against the CPU's loop (the speed-up). Device
work is asynchronous, so every timed call ends with a synchronisation.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sparseshift.experiments.bench.timing import Rate, format_row, interleaved

if TYPE_CHECKING:
    import torch

DESCRIPTION = "training images/s of the training loop vs a model-only loop on pre-loaded tensors"

#: Batch of the benchmark where it differs from the learner's ``default_batch`` (train-rep's): the
#: NWM's batches are sequences of ``--seq-len`` frames.
DEFAULT_BATCH: dict[str, int] = {"nwm": 8}
GOAL = 0.9
#: Default measurement size: each ``train()`` call also pays fixed costs (setup, the final image
#: grid and checkpoint) that a long run amortises, so short calls understate the loop.
TARGET_IMAGES, MIN_STEPS, MAX_STEPS = 2560, 20, 40
LOOP = "training loop (sampler, tensorboard, ckpt)"
MODEL = "model only (pre-loaded tensors)"
CPU = "cpu"


@dataclass(frozen=True)
class Result:
    """One learner's medians: the loop and model-only rates on the chosen device and, when that
    is an accelerator, the training loop's rate on the CPU."""

    name: str
    loop: Rate
    model: Rate
    cpu_loop: Rate | None = None


def labels(device: str, compare: bool) -> tuple[str, str, str]:
    """Row names: (loop on ``device``, model only on ``device``, loop on the CPU)."""
    if not compare:
        return LOOP, MODEL, ""
    return (f"training loop on {device}", f"model only on {device}",
            f"training loop on {CPU}")


def train_device(device: torch.device) -> str:
    """``TrainConfig.device`` for a resolved device."""
    return CPU if device.type == CPU else str(device)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--learner", default="all",
                   help="learner(s) to train, comma-separated, or 'all' (default: all)")
    p.add_argument("--data", default=None,
                   help="pairs or video dataset (default: collect 1024 ColourGrid pairs and, for "
                        "sequence learners, 1024 video frames to a temporary folder)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size (default 64; slot_attention 32; nwm 8 sequences)")
    p.add_argument("--seq-len", type=int, default=8,
                   help="frames per sequence for sequence learners (default 8)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"steps per measurement (default: enough for {TARGET_IMAGES} images, "
                        f"{MIN_STEPS} to {MAX_STEPS} steps)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads, pinned (default 1; 2 can be slower on a loaded machine)")
    p.add_argument("--device", default=CPU,
                   help="torch device: cpu (default), auto, cuda, cuda:N or mps; an accelerator "
                        "also runs the training loop on the CPU in the same run, interleaved, "
                        "and prints the device/CPU ratio")


def default_steps(images_per_step: int) -> int:
    """Steps per measurement when ``--steps`` is not given."""
    return min(MAX_STEPS, max(MIN_STEPS, -(-TARGET_IMAGES // images_per_step)))


def steps_for(images: int, images_per_step: int) -> int:
    """Optimisation steps that process ``images`` images (at least one)."""
    return max(1, images // images_per_step)


def _model_only(learner_name: str, model: Any, batch: dict[str, Any], images_per_step: int,
                device: torch.device) -> Callable[[int], None]:
    import torch

    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.runtime import torch_run

    learner = learner_class(learner_name)(model).to(device)
    learner.train()
    on_device = {k: v.to(device) for k, v in batch.items()}
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    def run(images: int) -> None:
        with torch_run():  # the same algorithm settings as the training loop
            for _ in range(steps_for(images, images_per_step)):
                loss = learner.loss(on_device, generator=generator)["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            synchronize(device)

    return run


def _learners(text: str) -> list[str]:
    from sparseshift.representations.registry import learner_class, learner_names

    if text == "all":
        return list(learner_names())
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        learner_class(name)  # unknown names -> ConfigError listing the valid ones
    return names


def run(args: argparse.Namespace) -> int:
    import torch

    from sparseshift.envs.errors import ConfigError
    from sparseshift.representations.data import open_data
    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.runtime import resolve_device

    if min(args.threads, args.steps or 1, args.repeats, args.seq_len, args.batch or 1) < 1:
        raise ConfigError("--threads, --steps, --repeats, --seq-len and --batch must be >= 1")
    device = resolve_device(args.device)  # an unavailable device: one line, before any work
    names = _learners(args.learner)
    torch.set_num_threads(args.threads)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sparseshift-bench-train-") as tmp:
        given = open_data(args.data) if args.data else None
        collected: dict[str, Any] = {}
        for name in names:
            kind = "video" if learner_class(name).batch_kind == "sequences" else "pairs"
            if given is not None:
                if kind == "video" and given.kind != "video" and args.learner == "all":
                    print(f"bench train: {name} skipped (needs a video dataset; --data holds "
                          f"{given.kind})")
                    continue
                ds = given  # a mismatch is a ConfigError from resolve_pairs
            else:
                if kind not in collected:
                    collected[kind] = open_data(_collect(Path(tmp) / f"{kind}.h5", kind))
                ds = collected[kind]
            results.append(_bench_one(name, ds, args, Path(tmp) / f"run-{name}", device))
    compare = any(r.cpu_loop is not None for r in results)
    if len(results) > 1 or compare:
        print(summary(results, str(device)))
    return 0


def _ratio(a: Rate, b: Rate) -> float:
    return a.median / b.median if b.median > 0 else float("nan")


def summary(results: list[Result], device: str) -> str:
    """The summary table (images/s, medians): loop, model only and their ratio; with an
    accelerator also the CPU's loop and the device/CPU ratio of the loops."""
    compare = any(r.cpu_loop is not None for r in results)
    lines = ["", f"summary (images/s, medians{f'; device {device}' if compare else ''}):"]
    if compare:
        lines.append(f"{'learner':<16} {'loop cpu':>10} {'loop dev':>10} {'model dev':>10} "
                     f"{'dev/cpu':>8} {'loop/model':>11}")
    else:
        lines.append(f"{'learner':<16} {'training loop':>14} {'model only':>11} {'ratio':>7}")
    for r in results:
        ratio = _ratio(r.loop, r.model)
        flag = "" if ratio >= GOAL else f"  (goal >= {GOAL:.2f}x missed)"
        if r.cpu_loop is not None:
            lines.append(f"{r.name:<16} {r.cpu_loop.median:>10.1f} {r.loop.median:>10.1f} "
                         f"{r.model.median:>10.1f} {_ratio(r.loop, r.cpu_loop):>7.2f}x "
                         f"{ratio:>10.2f}x{flag}")
        else:
            lines.append(f"{r.name:<16} {r.loop.median:>14.1f} {r.model.median:>11.1f} "
                         f"{ratio:>6.2f}x{flag}")
    return "\n".join(lines)


def _bench_one(name: str, ds: Any, args: argparse.Namespace, out: Path, device: torch.device
               ) -> Result:
    import torch

    from sparseshift.representations.data import BatchSource, BatchSpec, resolve_pairs
    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.train import TrainConfig, resolve_model_config, train

    cls = learner_class(name)
    temporal = cls.batch_kind == "pairs" and ds.kind == "video"
    pairs_arg: Literal["temporal"] | None = "temporal" if temporal else None
    pairs = resolve_pairs(cls.batch_kind, name, ds.kind, pairs_arg)
    batch_size = args.batch or DEFAULT_BATCH.get(name) or cls.default_batch
    config = TrainConfig(learner=name, batch=batch_size, steps=1, pairs=pairs_arg,
                         seq_len=args.seq_len, progress=False)
    model = resolve_model_config(config, int(ds.image_size))
    spec = BatchSpec(cls.batch_kind, batch_size, pairs, config.gap_range, config.seq_len)
    batch = {k: torch.from_numpy(v) for k, v in BatchSource(ds, spec, 0)(0).items()}
    per_step = spec.images_per_batch
    steps = args.steps or default_steps(per_step)

    def loop_on(where: torch.device) -> Callable[[int], None]:
        """The training loop on ``where``, resumed for more steps at each call (its own run
        folder per device)."""
        done = {"steps": 0}
        folder = out.with_name(f"{out.name}-{str(where).replace(':', '')}")

        def loop(images: int) -> None:
            done["steps"] += steps_for(images, per_step)
            train(TrainConfig(learner=name, batch=batch_size, steps=done["steps"],
                              pairs=pairs_arg, seq_len=args.seq_len, progress=False,
                              device=train_device(where)), ds, folder)
            synchronize(where)  # the final checkpoint copies to the CPU anyway

        return loop

    compare = device != torch.device(CPU)  # an accelerator (tests pass cpu:0 to mimic one)
    loop_name, model_name, cpu_name = labels(str(device), compare)
    shape = {"singles": f"{batch_size} frames", "pairs": f"{batch_size} pairs",
             "sequences": f"{batch_size} sequences x {args.seq_len} frames"}[cls.batch_kind]
    where = f", device {device} and cpu, interleaved" if compare else ""
    print(f"bench train: {name} on {ds.env_id} ({ds.kind}, {ds.image_size}px), batch {shape} "
          f"= {per_step} images/step, {steps} steps x {args.repeats} repeats, "
          f"{args.threads} torch thread(s){where}")
    fns = {model_name: _model_only(name, model, batch, per_step, device),
           loop_name: loop_on(device)}
    if compare:
        fns[cpu_name] = loop_on(torch.device(CPU))
    rates = interleaved(fns, "images/s", steps * per_step, repeats=args.repeats)
    print(format_row(rates[model_name]))
    print(format_row(rates[loop_name], rates[model_name], goal=GOAL))
    if not compare:
        return Result(name, rates[loop_name], rates[model_name])
    print(format_row(rates[cpu_name]))
    print(format_row(rates[loop_name], rates[cpu_name]))
    return Result(name, rates[loop_name], rates[model_name], rates[cpu_name])


def _collect(path: Path, kind: str) -> Path:
    from sparseshift.envs.data.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    collect(CollectConfig.from_json({"env_id": "sparseshift/ColourGrid-v0", "kind": kind,
                                     "n": 1024, "seed": 0}), path,
            progress=False)
    return path
