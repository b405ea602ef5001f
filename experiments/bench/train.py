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

``--profile`` times the parts of each step (batch sampling, to tensors, forward, backward, the
optimizer step; wall and CPU time) in a copy of the training loop's step, next to the loop itself.

``--variants`` measures the default recipe's encoder step (the quick preset's first learner run)
on pre-loaded tensors: today's fp32, bf16 autocast, channels-last, both, ``torch.compile``, and
``--k`` models one after the other vs stacked with ``torch.func.stack_module_state`` + ``vmap``,
interleaved, as images/s and as images per CPU-second (robust to other load), with ratios
against fp32 from the same run, and says which precision train-rep's default (``--precision auto``)
picks on this machine.
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
    p.add_argument("--profile", action="store_true",
                   help="where a training step's time goes: batch sampling, to tensors, "
                        "forward, backward, optimizer step and the rest of the loop")
    p.add_argument("--variants", action="store_true",
                   help="images/s of the default recipe's encoder step under bf16 autocast, "
                        "channels-last, torch.compile and --k models stacked with vmap, against "
                        "fp32 in the same run")
    p.add_argument("--k", type=int, default=4,
                   help="models trained together in --variants (default 4)")
    p.add_argument("--no-compile", action="store_true",
                   help="skip the torch.compile row of --variants (its compile takes ~1 min)")
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
                device: torch.device, precision: str) -> Callable[[int], None]:
    """The model-only step in ``precision`` (resolved: what the training loop computes in)."""
    import torch

    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.runtime import autocast, torch_run

    learner = learner_class(learner_name)(model).to(device)
    learner.train()
    on_device = {k: v.to(device) for k, v in batch.items()}
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    def run(images: int) -> None:
        with torch_run():  # the same algorithm settings as the training loop
            for _ in range(steps_for(images, images_per_step)):
                with autocast(device, precision):
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

    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.representations.data import open_data
    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.runtime import resolve_device

    if min(args.threads, args.steps or 1, args.repeats, args.seq_len, args.batch or 1,
           args.k) < 1:
        raise ConfigError("--threads, --steps, --repeats, --seq-len, --batch and --k must be "
                          ">= 1")
    device = resolve_device(args.device)  # an unavailable device: one line, before any work
    torch.set_num_threads(args.threads)
    if args.variants:
        return run_variants(args, device)
    names = _learners(args.learner)
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
            if args.profile:
                _profile_one(name, ds, args, Path(tmp) / f"run-{name}", device)
                continue
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


@dataclass(frozen=True)
class Setup:
    """One learner's benchmark setup: the train-rep config it mirrors and one batch of tensors."""

    name: str
    config: Any  # TrainConfig (steps=1)
    model: Any  # the learner's config
    spec: Any  # BatchSpec
    batch: dict[str, Any]  # one batch, as tensors on the CPU
    per_step: int  # images per optimisation step
    steps: int  # steps per measurement
    shape: str  # what a batch holds, in words


def _setup(name: str, ds: Any, args: argparse.Namespace) -> Setup:
    import torch

    from sparseshift.representations.data import BatchSource, BatchSpec, resolve_pairs
    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.train import TrainConfig, resolve_model_config

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
    shape = {"singles": f"{batch_size} frames", "pairs": f"{batch_size} pairs",
             "sequences": f"{batch_size} sequences x {args.seq_len} frames"}[cls.batch_kind]
    return Setup(name, config, model, spec, batch, per_step,
                 args.steps or default_steps(per_step), shape)


def _loop_on(setup: Setup, ds: Any, out: Path, where: torch.device) -> Callable[[int], None]:
    """The training loop on ``where``, resumed for more steps at each call (its own run folder
    per device)."""
    from dataclasses import replace

    from sparseshift.representations.train import train

    done = {"steps": 0}
    folder = out.with_name(f"{out.name}-{str(where).replace(':', '')}")

    def loop(images: int) -> None:
        done["steps"] += steps_for(images, setup.per_step)
        train(replace(setup.config, steps=done["steps"], device=train_device(where)), ds, folder)
        synchronize(where)  # the final checkpoint copies to the CPU anyway

    return loop


def _bench_one(name: str, ds: Any, args: argparse.Namespace, out: Path, device: torch.device
               ) -> Result:
    import torch

    setup = _setup(name, ds, args)
    per_step, steps = setup.per_step, setup.steps
    compare = device != torch.device(CPU)  # an accelerator (tests pass cpu:0 to mimic one)
    loop_name, model_name, cpu_name = labels(str(device), compare)
    from sparseshift.representations.runtime import resolve_precision

    where = f", device {device} and cpu, interleaved" if compare else ""
    precision = resolve_precision(setup.config.precision, device,
                                  setup.config.learner_cls.bf16_checked)
    print(f"bench train: {name} on {ds.env_id} ({ds.kind}, {ds.image_size}px), batch "
          f"{setup.shape} = {per_step} images/step, {steps} steps x {args.repeats} repeats, "
          f"{args.threads} torch thread(s), precision {precision} (train-rep's default "
          f"{setup.config.precision}){where}")
    fns = {model_name: _model_only(name, setup.model, setup.batch, per_step, device, precision),
           loop_name: _loop_on(setup, ds, out, device)}
    if compare:
        fns[cpu_name] = _loop_on(setup, ds, out, torch.device(CPU))
    rates = interleaved(fns, "images/s", steps * per_step, repeats=args.repeats)
    print(format_row(rates[model_name]))
    print(format_row(rates[loop_name], rates[model_name], goal=GOAL))
    if not compare:
        return Result(name, rates[loop_name], rates[model_name])
    print(format_row(rates[cpu_name]))
    print(format_row(rates[loop_name], rates[cpu_name]))
    return Result(name, rates[loop_name], rates[model_name], rates[cpu_name])


def _collect(path: Path, kind: str) -> Path:
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    collect(CollectConfig.from_json({"env_id": "sparseshift/ColourGrid-v0", "kind": kind,
                                     "n": 1024, "seed": 0}), path,
            progress=False)
    return path


# ---------------------------------------------------------------------------------- --profile

#: The parts of one optimisation step that ``--profile`` times, in the loop's order.
PROFILE_PARTS: tuple[tuple[str, str], ...] = (
    ("sample", "data: batch sampling (BatchSource)"),
    ("tensors", "data: to tensors / device"),
    ("forward", "forward (loss)"),
    ("backward", "backward (zero_grad + backward)"),
    ("optimizer", "optimizer step (Adam)"),
)
PROFILE_OTHER = "other (noise seeding, set_step, the loop itself)"


def _profiled_steps(setup: Setup, ds: Any, device: torch.device, threads: int,
                    clock: dict[str, float]) -> Callable[[int], None]:
    """The step of :func:`sparseshift.representations.train.train` (same learner init, batch
    stream, noise seeds, precision and optimizer), each part timed into ``clock`` (wall seconds;
    ``name + ".cpu"``: this process's CPU seconds) with a device synchronisation at its end."""
    import numpy as np
    import torch

    from sparseshift.experiments.bench.agents import Clock, stamp
    from sparseshift.representations.data import (
        STREAM_INIT,
        STREAM_NOISE,
        BatchSource,
        derive_seed,
    )
    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.runtime import autocast, resolve_precision, torch_run

    config = setup.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, STREAM_INIT))
        learner = learner_class(setup.name)(setup.model)
    learner.to(device).train()
    precision = resolve_precision(config.precision, device, learner.bf16_checked)
    optimizer = torch.optim.Adam(learner.parameters(), lr=config.learning_rate)
    source = BatchSource(ds, setup.spec, config.seed)
    generator = torch.Generator()
    done = {"steps": 0}
    timer = Clock()
    timer.times = clock

    def run(images: int) -> None:
        start = stamp()
        with torch_run(threads):
            for _ in range(steps_for(images, setup.per_step)):
                step = done["steps"]
                t = stamp()
                raw = source(step)
                t = timer.add("sample", t)
                batch = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device)
                         for k, v in raw.items()}
                synchronize(device)
                t = timer.add("tensors", t)
                generator.manual_seed(derive_seed(config.seed, STREAM_NOISE, step))
                learner.set_step(step)
                with autocast(device, precision):
                    loss = learner.loss(batch, generator=generator)["loss"]
                synchronize(device)
                t = timer.add("forward", t)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                synchronize(device)
                t = timer.add("backward", t)
                optimizer.step()
                synchronize(device)
                timer.add("optimizer", t)
                done["steps"] = step + 1
        timer.add("wall", start)

    return run


def profile_table(clock: dict[str, float]) -> tuple[list[tuple[str, float]], float, list[float]]:
    """``(rows, total seconds, CPU seconds per row)`` of the ``--profile`` table from the timed
    steps' ``clock``: the timed parts and "other", the rest of the steps' wall time (the rows sum
    to it)."""
    total = clock.get("wall", 0.0)
    rows = [(label, clock.get(key, 0.0)) for key, label in PROFILE_PARTS]
    cpu = [clock.get(key + ".cpu", 0.0) for key, _ in PROFILE_PARTS]
    rows.append((PROFILE_OTHER, total - sum(v for _, v in rows)))
    cpu.append(clock.get("wall.cpu", 0.0) - sum(cpu))
    return rows, total, cpu


def _profile_one(name: str, ds: Any, args: argparse.Namespace, out: Path,
                 device: torch.device) -> None:
    from sparseshift.experiments.bench.agents import Clock, format_profile, stamp

    setup = _setup(name, ds, args)
    clock: dict[str, float] = {}
    timed = _profiled_steps(setup, ds, device, args.threads, clock)
    loop_name, steps_name = f"training loop (train()) on {device}", "timed steps"
    n = setup.steps * setup.per_step
    print(f"bench train --profile: {name} on {ds.env_id} ({ds.kind}, {ds.image_size}px), batch "
          f"{setup.shape} = {setup.per_step} images/step, {setup.steps} steps x {args.repeats} "
          f"repeats, {args.threads} torch thread(s), device {device}")
    timed(max(1, n // 10))  # warm-up, as interleaved() does for both
    clock.clear()
    loop_clock = Clock()
    real_loop = _loop_on(setup, ds, out, device)
    warm = {"done": False}

    def loop(images: int) -> None:
        t0 = stamp()
        real_loop(images)
        if warm["done"]:  # interleaved() warms up first: not counted
            loop_clock.add("loop", t0)
        warm["done"] = True

    rates = interleaved({steps_name: timed, loop_name: loop}, "images/s", n,
                        repeats=args.repeats)
    rows, total, cpu = profile_table(clock)
    steps = args.repeats * steps_for(n, setup.per_step)
    print(format_profile(f"where a step of {name}'s training goes (the timed steps, summed over "
                         "the repeats)", rows, total, steps, "step", cpu))
    print(format_row(rates[steps_name]))
    print(format_row(rates[loop_name], rates[steps_name]))
    wall, cpu_loop = loop_clock.get("loop")
    print(f"  train()'s loop beyond the timed steps (isfinite, tensorboard every 50 steps, "
          f"heartbeat, each call's setup and final checkpoint): "
          f"{1e3 * (wall - total) / steps:+.1f} ms/step wall, "
          f"{1e3 * (cpu_loop - sum(cpu)) / steps:+.1f} ms/step cpu "
          f"({100 * (cpu_loop - sum(cpu)) / cpu_loop if cpu_loop > 0 else 0.0:+.1f}% of the "
          "loop's cpu; summed over the repeats)")


# --------------------------------------------------------------------------------- --variants

def recipe() -> Any:
    """The quick preset's first encoder run (its TrainConfig): the default recipe."""
    from sparseshift.experiments.study.presets import QUICK

    return QUICK.envs[0].learners[0].train


def _variant_step(setup: Setup, device: torch.device, *, precision: str = "fp32",
                  channels_last: bool = False, compile_loss: bool = False,
                  seed: int = 0) -> tuple[Callable[[int], None], float]:
    """``loss -> backward -> Adam`` on the pre-loaded batch with train-rep's ``--precision`` and
    ``--channels-last``, or ``torch.compile`` d; returns ``(run, seconds the first step took)``
    (the compile time with ``compile_loss``)."""
    import time

    import torch

    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.runtime import autocast, torch_run

    torch.manual_seed(seed)
    learner = learner_class(setup.name)(setup.model).to(device)
    if channels_last:
        learner.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    learner.train()
    batch = {k: v.to(device) for k, v in setup.batch.items()}
    optimizer = torch.optim.Adam(learner.parameters(), lr=setup.config.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    loss_fn: Callable[..., dict[str, torch.Tensor]] = learner.loss
    if compile_loss:
        loss_fn = torch.compile(learner.loss)

    def steps(n: int) -> None:
        for _ in range(n):
            with autocast(device, precision):
                loss = loss_fn(batch, generator=generator)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)

    t0 = time.perf_counter()
    with torch_run():
        steps(1)
    first = time.perf_counter() - t0

    def run(images: int) -> None:
        with torch_run():
            steps(steps_for(images, setup.per_step))

    return run, first


def _sequential(setup: Setup, device: torch.device, k: int, precision: str = "fp32"
                ) -> Callable[[int], None]:
    """``k`` models trained one after the other, a step each in turn (images of all count)."""
    runs = [_variant_step(setup, device, precision=precision, seed=i)[0] for i in range(k)]

    def run(images: int) -> None:
        per_model = setup.per_step * steps_for(images, setup.per_step * k)
        for r in runs:
            r(per_model)

    return run


def _stacked(setup: Setup, device: torch.device, k: int, precision: str = "fp32"
             ) -> Callable[[int], None]:
    """``k`` models with stacked weights (``torch.func.stack_module_state``), one ``vmap`` ped
    loss over ``k`` batches, one Adam over the stacked tensors (Adam is elementwise: the same
    update as ``k`` Adams). The reparameterisation noise comes from torch's global generator
    (vmap's ``randomness="different"``): a speed measurement, not train-rep's noise stream."""
    import copy

    import torch
    from torch.func import functional_call, stack_module_state, vmap

    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.runtime import autocast, torch_run

    class LossOf(torch.nn.Module):
        def __init__(self, learner: Any) -> None:
            super().__init__()
            self.learner = learner

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            out: torch.Tensor = self.learner.loss(batch)["loss"]
            return out

    modules = []
    for i in range(k):
        torch.manual_seed(i)
        modules.append(LossOf(learner_class(setup.name)(setup.model).to(device)).train())
    params, buffers = stack_module_state(modules)
    base = copy.deepcopy(modules[0]).to("meta")
    batch = {name: torch.stack([v] * k).to(device) for name, v in setup.batch.items()}

    def loss_of(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                x: dict[str, torch.Tensor]) -> torch.Tensor:
        out: torch.Tensor = functional_call(base, (p, b), (x,))
        return out

    losses = vmap(loss_of, in_dims=(0, 0, 0), randomness="different")
    optimizer = torch.optim.Adam(list(params.values()), lr=setup.config.learning_rate)

    def run(images: int) -> None:
        with torch_run():
            for _ in range(steps_for(images, setup.per_step * k)):
                with autocast(device, precision):
                    total = losses(params, buffers, batch).sum()
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
            synchronize(device)

    return run


def run_variants(args: argparse.Namespace, device: torch.device) -> int:
    """images/s of the default recipe's step under bf16 autocast, channels-last, torch.compile
    and ``--k`` models stacked with vmap, against today's fp32 in the same run."""
    import tempfile
    from dataclasses import replace

    from sparseshift.representations.data import open_data

    base = recipe()
    with tempfile.TemporaryDirectory(prefix="sparseshift-bench-train-") as tmp:
        ds = open_data(args.data) if args.data else open_data(
            _collect(Path(tmp) / "pairs.h5", "pairs"))
        args = argparse.Namespace(**{**vars(args), "batch": args.batch or base.batch_size})
        setup = _setup(base.learner, ds, args)
        setup = replace(setup, config=replace(setup.config, lr=base.learning_rate),
                        model=type(setup.model).from_json({**setup.model.to_json(),
                                                           **dict(base.model)}))
        k = args.k
        print(f"bench train --variants: the default recipe's encoder step (quick preset: "
              f"{base.learner}, {dict(base.model)}, lr {base.learning_rate:g}) on {ds.env_id} "
              f"({ds.image_size}px), batch {setup.shape} = {setup.per_step} images/step, "
              f"{k * -(-setup.steps // k)} steps x {args.repeats} interleaved repeats, "
              f"{args.threads} torch "
              f"thread(s) (images/s per core = images/s / threads), device {device}; model "
              "only (loss -> backward -> Adam on a pre-loaded batch)")
        from sparseshift.representations.runtime import resolve_precision

        auto = resolve_precision("auto", device, base.learner_cls.bf16_checked)
        print(f"  train-rep's default, --precision auto, computes in {auto} here")
        fp32 = "fp32"
        fns: dict[str, Callable[[int], None]] = {
            fp32: _variant_step(setup, device)[0],
            "bf16 autocast": _variant_step(setup, device, precision="bf16")[0],
            "channels_last": _variant_step(setup, device, channels_last=True)[0],
            "bf16 autocast + channels_last": _variant_step(setup, device, precision="bf16",
                                                            channels_last=True)[0],
        }
        failed: dict[str, str] = {}
        name = "torch.compile (fp32)"
        if args.no_compile:
            failed[name] = "skipped (--no-compile)"
        else:
            try:
                fns[name], seconds = _variant_step(setup, device, compile_loss=True)
                print(f"  torch.compile: first step (compiling) took {seconds:.1f} s")
            except Exception as exc:  # any compiler failure is a result here
                failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        fns[f"{k} models, one after the other (fp32)"] = _sequential(setup, device, k)
        for precision in ("fp32", "bf16"):
            name = f"{k} models stacked, vmap ({precision})"
            try:
                fns[name] = _stacked(setup, device, k, precision)
                fns[name](setup.per_step * k)
            except Exception as exc:  # an unsupported op is a result here
                fns.pop(name, None)
                failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        n = setup.per_step * k * -(-setup.steps // k)  # every candidate: whole steps of k
        cpu: dict[str, list[float]] = {label: [] for label in fns}
        rates = interleaved({label: _cpu_timed(fn, cpu[label]) for label, fn in fns.items()},
                            "images/s", n, args.repeats)
    per_cpu = {label: Rate(label, "img/cpu-s", tuple(n / s for s in v[1:]))
               for label, v in cpu.items()}  # [0] is interleaved()'s warm-up
    for title, table in (("wall clock (images/s)", rates),
                         ("CPU time (images per CPU-second of this process: images/s per core "
                          "if it had the core alone)", per_cpu)):
        print(f"\n{title}:")
        print(format_row(table[fp32]))
        for label, rate in table.items():
            if label != fp32:
                print(format_row(rate, table[fp32]))
    for label, reason in failed.items():
        print(f"{label:<44} failed: {reason}")
    print(f"(the {k}-model rows count the images of all {k} models; 'vmap' draws its "
          "reparameterisation noise from torch's global generator)")
    return 0


def _cpu_timed(fn: Callable[[int], None], samples: list[float]) -> Callable[[int], None]:
    """``fn`` appending the CPU seconds of this process each call takes to ``samples``."""
    import time

    def run(images: int) -> None:
        t0 = time.process_time()
        fn(images)
        samples.append(time.process_time() - t0)

    return run
