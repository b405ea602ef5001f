"""``sparseshift bench train``: training images/s of the full loop next to the model-only limit.

Both candidates train the same learner with the same config and thread count, interleaved:

* *training loop*: :func:`representations.train.train` resumed for a few more steps each time
  (dataset sampling, uint8 -> float conversion, Adam, TensorBoard scalars every 50 steps, the final
  checkpoint of every call);
* *model only*: ``loss -> backward -> Adam step`` on one batch of tensors loaded before timing.

Goal (issue "Representation learners I"): the loop at >= 0.9x the model-only rate. speeds.md
measured a disentanglement_lib conv VAE at 750 images/s (2 threads) and 430 (1 thread) here.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.bench.timing import format_row, interleaved

DESCRIPTION = "training images/s of the training loop vs a model-only loop on pre-loaded tensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--learner", default="ada_gvae", help="learner to train (default ada_gvae)")
    p.add_argument("--data", default=None,
                   help="pairs or video dataset (default: collect 1024 ColourGrid pairs to a "
                        "temporary file)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--steps", type=int, default=30, help="steps per measurement (default 30)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default 5)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads, pinned (default 1; 2 can be slower on a loaded machine)")


def _model_only(learner_name: str, model: Any, batch: dict[str, Any]
                ) -> Callable[[int], None]:
    import torch

    from representations.registry import learner_class
    from representations.train import deterministic

    learner = learner_class(learner_name)(model)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    per_step = sum(int(v.shape[0]) for v in batch.values())

    def run(images: int) -> None:
        with deterministic():  # the same algorithm settings as the training loop
            for _ in range(max(1, images // per_step)):
                loss = learner.loss(batch, generator=generator)["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    return run


def run(args: argparse.Namespace) -> int:
    import torch

    from envs.errors import ConfigError
    from representations.data import BatchSource, BatchSpec, open_data, resolve_pairs
    from representations.registry import learner_class
    from representations.train import TrainConfig, resolve_model_config, train

    if args.threads < 1 or args.steps < 1 or args.repeats < 1 or args.batch < 1:
        raise ConfigError("--threads, --steps, --repeats and --batch must be >= 1")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sparseshift-bench-train-") as tmp:
        data_path = Path(args.data) if args.data else _collect(Path(tmp) / "pairs.h5")
        ds = open_data(data_path)
        cls = learner_class(args.learner)
        temporal = cls.batch_kind == "pairs" and ds.kind == "video"
        pairs = resolve_pairs(cls.batch_kind, args.learner, ds.kind,
                              "temporal" if temporal else None)
        pairs_arg = "temporal" if temporal else None
        config = TrainConfig(learner=args.learner, batch=args.batch, steps=1, pairs=pairs_arg,
                             progress=False)
        model = resolve_model_config(config, int(ds.image_size))
        spec = BatchSpec(cls.batch_kind, args.batch, pairs)
        batch = {k: torch.from_numpy(v) for k, v in BatchSource(ds, spec, 0)(0).items()}
        out = Path(tmp) / "run"
        done = {"steps": 0}

        def loop(images: int) -> None:
            done["steps"] += max(1, images // spec.images_per_batch)
            train(TrainConfig(learner=args.learner, batch=args.batch, steps=done["steps"],
                              pairs=pairs_arg, progress=False), ds, out)

        images = args.steps * spec.images_per_batch
        print(f"bench train: {args.learner} on {ds.env_id} ({ds.kind}, {ds.image_size}px), batch "
              f"{args.batch} ({spec.images_per_batch} images/step), {args.steps} steps x "
              f"{args.repeats} repeats, {args.threads} torch thread(s)")
        rates = interleaved({"model only (pre-loaded tensors)":
                             _model_only(args.learner, model, batch),
                             "training loop (sampler, tensorboard, ckpt)": loop},
                            "images/s", images, repeats=args.repeats)
        limit = rates["model only (pre-loaded tensors)"]
        print(format_row(limit))
        print(format_row(rates["training loop (sampler, tensorboard, ckpt)"], limit, goal=0.9))
    return 0


def _collect(path: Path) -> Path:
    from envs.data.collect import collect
    from envs.data.config import CollectConfig

    collect(CollectConfig("sparseshift/ColourGrid-v0", "pairs", 1024, seed=0), path,
            progress=False)
    return path
