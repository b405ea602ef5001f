"""``sparseshift eval-rep``: disentanglement metrics, factor probes and reconstruction error of a
trained representation on a dataset (see docs/representations.md for the definitions)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "eval-rep"


def _votes(text: str) -> tuple[int, int]:
    try:
        train, evaluate = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TRAIN:EVAL vote counts, got {text!r}") from None
    return train, evaluate


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="evaluate a trained representation: MIG, DCI, SAP, FactorVAE, probes, ...",
        description=(
            "Encode frames of a dataset with a trained representation and compute MIG, DCI, SAP, "
            "modularity/explicitness, the FactorVAE score, per-factor R^2 of linear and MLP "
            "probes and the reconstruction error (disentanglement_lib protocols). Writes the "
            "metrics JSON and a latent traversal PNG next to it."
        ),
    )
    p.add_argument("run_dir", metavar="DIR", help="run directory from 'sparseshift train-rep'")
    p.add_argument("--data", required=True, help="dataset (HDF5) to evaluate on")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--export-codes", default=None, metavar="NPZ",
                   help="also write the codes and factors used (npz)")
    p.add_argument("--traversal", default=None, metavar="PNG",
                   help="latent traversal image (default: OUT with suffix .traversal.png)")
    p.add_argument("--num-train", type=int, default=10000, help="train frames (default 10000)")
    p.add_argument("--num-test", type=int, default=5000, help="test frames (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    p.add_argument("--factor-vae", default="auto", choices=("auto", "env", "grouping", "off"),
                   help="FactorVAE score batches: rendered by the env (auto: when possible) or "
                        "grouped from the dataset")
    p.add_argument("--env-votes", type=_votes, default=(100, 50), metavar="TRAIN:EVAL",
                   help="FactorVAE votes when batches are rendered by the env (64 renders each; "
                        "default 100:50; disentanglement_lib: 10000:5000)")
    p.add_argument("--dci-estimators", type=int, default=30,
                   help="boosting stages per DCI classifier (disentanglement_lib: 100; default 30)")
    p.add_argument("--dci-max-train", type=int, default=2000,
                   help="training frames for DCI's classifiers (0: all; default 2000)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from envs.errors import ConfigError
    from representations.evaluate import EvalConfig, evaluate

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.dci_max_train < 0:
        raise ConfigError(f"--dci-max-train must be >= 0, got {args.dci_max_train}")
    cfg = EvalConfig(
        num_train=args.num_train, num_test=args.num_test, seed=args.seed,
        factor_vae=args.factor_vae, dci_estimators=args.dci_estimators,
        dci_max_train=args.dci_max_train or None, factor_vae_env_train=args.env_votes[0],
        factor_vae_env_eval=args.env_votes[1],
    )
    out = Path(args.out)
    traversal = Path(args.traversal) if args.traversal else out.with_suffix(".traversal.png")
    report = evaluate(args.run_dir, args.data, cfg, out=out, export_codes=args.export_codes,
                      traversal_png=traversal)
    summary = ", ".join(f"{k} {v:.3f}" for k, v in report["summary"].items())
    print(f"{out}: {report['learner']} on {report['dataset']['env_id']} "
          f"({report['protocol']['num_train_used']}/{report['protocol']['num_test_used']} frames): "
          f"{summary}")
    return 0
