"""``sparseshift train-rep``: train a representation learner on a dataset (resumable).

Learner options: ``--model KEY=VALUE`` (repeatable) sets any field of the learner's config
dataclass, parsed as that field's type (tuples comma-separated: ``--model channels=32,32,64,64``);
``--beta``, ``--latent-dim``, ``--recon`` and ``--image-size`` are shorthands for VAE fields.

Bad input (unknown learner, an unknown ``--model`` key or a value of the wrong type, a video
dataset for a pairs learner without ``--pairs temporal``, an image size other than the dataset's,
a run directory holding another config, steps <= 0) is one line and exit status 2. A training
failure (the loss became NaN/inf) is one line and exit status 1; the last good checkpoint stays in
the run directory.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

NAME = "train-rep"


def parse_gap(text: str) -> int | tuple[int, int]:
    """``K`` or ``LO:HI`` (inclusive range)."""
    try:
        if ":" in text:
            lo, hi = text.split(":", 1)
            return (int(lo), int(hi))
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"gap must be K or LO:HI, got {text!r}") from None


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="train a representation learner (beta_vae, ada_gvae, ada_mlvae, slot_attention, "
             "nwm)",
        description=(
            "Train a representation learner on a sparseshift dataset. Rerunning with the same "
            "--out and configuration resumes from the last checkpoint (more --steps extend the "
            "run); TensorBoard logs go to OUT/tb. See docs/representations.md."
        ),
    )
    p.add_argument("--learner", required=True, help="learner name, e.g. beta_vae, ada_gvae")
    p.add_argument("--data", required=True, help="dataset (HDF5) from 'sparseshift collect'")
    p.add_argument("--steps", type=int, required=True, help="total optimisation steps")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--out", required=True, help="run directory (created; resumed if it exists)")
    p.add_argument("--batch", type=int, default=64, help="batch size (pairs per batch for pair "
                   "learners; default 64)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    p.add_argument("--lr-schedule", default=None, metavar="SCHEDULE",
                   help="learning-rate schedule: 'constant' or WARMUP:DECAY_STEPS:DECAY_RATE "
                        "(linear warm-up, then lr * DECAY_RATE ** (step / DECAY_STEPS)); default: "
                        "the learner's (slot_attention: 10000:100000:0.5, others constant)")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="set a field of the learner's config (repeatable), parsed as the field's "
                        "type; tuples comma-separated, e.g. --model num_slots=5 --model "
                        "channels=32,32,64,64")
    p.add_argument("--beta", type=float, default=None, help="KL weight (learner default: 1)")
    p.add_argument("--latent-dim", type=int, default=None, help="latent dims (default 10)")
    p.add_argument("--recon", default=None, help="reconstruction loss: bernoulli or gaussian")
    p.add_argument("--image-size", type=int, default=None,
                   help="image size the model expects (must equal the dataset's; default: it)")
    p.add_argument("--pairs", choices=("intervention", "temporal"), default=None,
                   help="pair learners: intervention pairs (pairs dataset, default) or temporal "
                        "pairs (frames t and t+gap of a video dataset)")
    p.add_argument("--gap", type=parse_gap, default=1,
                   help="temporal pairs: gap K or an inclusive range LO:HI (default 1)")
    p.add_argument("--seq-len", type=int, default=None, metavar="T",
                   help="sequence learners (nwm): frames per training sequence (default 8; must "
                        "exceed the forecast steps)")
    p.add_argument("--log-every", type=int, default=50, help="TensorBoard scalars every N steps")
    p.add_argument("--image-every", type=int, default=1000, help="image grids every N steps")
    p.add_argument("--ckpt-every", type=int, default=1000, help="checkpoint every N steps")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from sparseshift.envs.errors import ConfigError
    from sparseshift.representations.base import parse_config_options
    from sparseshift.representations.registry import learner_class
    from sparseshift.representations.train import TrainConfig, TrainingError, train

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    cls = learner_class(args.learner)
    model = parse_config_options(cls.config_cls, args.model)
    for key in ("beta", "latent_dim", "recon", "image_size"):
        value = getattr(args, key)
        if value is not None:
            if key in model:
                flag = "--" + key.replace("_", "-")
                raise ConfigError(f"{flag} and --model {key}=... both set {key}; give one")
            model[key] = value
    if args.seq_len is not None and cls.batch_kind != "sequences":
        raise ConfigError(f"--seq-len applies to sequence learners; {args.learner!r} trains on "
                          f"{cls.batch_kind}")
    extra: dict[str, Any] = {} if args.seq_len is None else {"seq_len": args.seq_len}
    config = TrainConfig(
        learner=args.learner, model=model, steps=args.steps, seed=args.seed, batch=args.batch,
        lr=args.lr, pairs=args.pairs, gap=args.gap, log_every=args.log_every,
        image_every=args.image_every, ckpt_every=args.ckpt_every, progress=not args.quiet,
        tensorboard=not args.no_tensorboard, lr_schedule=args.lr_schedule, **extra,
    )
    try:
        result = train(config, args.data, args.out)
    except TrainingError as exc:
        print(f"sparseshift {NAME}: training failed: {exc}", file=sys.stderr)
        return 1
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
    resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
    print(f"{result.out_dir}: {args.learner} at step {result.step}{resumed}; {losses}; "
          f"{result.images_per_second:.0f} images/s")
    return 0
