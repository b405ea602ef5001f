"""``sparseshift eval-rep``: disentanglement metrics, factor probes and reconstruction error of a
trained representation on a dataset (see docs/representations.md for the definitions), and with
``--waves DIR`` the travelling-wave analysis of a Neural Wave Machine (docs/nwm.md):
``DIR/phase_map.png``, ``DIR/waves.gif`` and ``DIR/waves.json`` (coherence driven and
free-running with its shuffled control, per-step forecast MSE next to repeating the last frame and,
with ``--waves-baseline RUN``, the GRU baseline's)."""

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
            "metrics JSON and a latent traversal PNG next to it. For Neural Wave Machine runs "
            "--waves DIR also (or, without --out, only) runs the travelling-wave and forecast "
            "analysis on sequences of the (video) dataset."
        ),
    )
    p.add_argument("run_dir", metavar="DIR", help="run directory from 'sparseshift train-rep'")
    p.add_argument("--data", required=True, help="dataset (HDF5) to evaluate on")
    p.add_argument("--out", default=None,
                   help="metrics JSON to write (required unless --waves is given)")
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
    w = p.add_argument_group("wave analysis (nwm runs, video datasets)")
    w.add_argument("--waves", default=None, metavar="DIR",
                   help="write phase_map.png, waves.gif and waves.json of the wave analysis here")
    w.add_argument("--waves-baseline", default=None, metavar="RUN",
                   help="an nwm run with cell=gru trained for the same budget: its forecast "
                        "errors and (chance-level) coherence are reported next to the NWM's")
    w.add_argument("--waves-input", type=int, default=8, metavar="N",
                   help="input frames that drive the sheet before forecasting (default 8)")
    w.add_argument("--waves-horizon", type=int, default=None, metavar="H",
                   help="forecast steps scored (default: 3x the training horizon, >= 12)")
    w.add_argument("--waves-free", type=int, default=64, metavar="N",
                   help="free-running frames for the free coherence (default 64)")
    w.add_argument("--waves-sequences", type=int, default=32, metavar="N",
                   help="sequences drawn from the dataset (default 32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from sparseshift.envs.errors import ConfigError

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.dci_max_train < 0:
        raise ConfigError(f"--dci-max-train must be >= 0, got {args.dci_max_train}")
    if args.out is None and args.waves is None:
        raise ConfigError("give --out (metrics JSON), --waves DIR (wave analysis) or both")
    if args.waves is None and args.waves_baseline is not None:
        raise ConfigError("--waves-baseline needs --waves DIR")
    waves = _load_waves_models(args) if args.waves is not None else None
    if args.out is not None:
        _metrics(args)
    if waves is not None:
        _waves(args, *waves)
    return 0


def _load_nwm(run_dir: str, flag: str) -> Any:
    """The learner of ``run_dir`` if it declares the waves capability (the NWM does)."""
    from sparseshift.envs.errors import ConfigError
    from sparseshift.representations.base import Capability
    from sparseshift.representations.checkpoint import load_learner, read_run
    from sparseshift.representations.registry import learner_class

    learner = str(read_run(Path(run_dir)).get("learner", ""))
    if not learner_class(learner).supports(Capability.WAVES):
        raise ConfigError(f"{flag} needs a Neural Wave Machine run (learner 'nwm'); {run_dir} is "
                          f"a {learner!r} run, without the waves capability")
    return load_learner(run_dir, expect_learner=learner)


def _load_waves_models(args: argparse.Namespace) -> tuple[Any, Any]:
    from sparseshift.envs.errors import ConfigError

    for flag in ("waves_input", "waves_sequences"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    learner = _load_nwm(args.run_dir, "--waves")
    baseline = (_load_nwm(args.waves_baseline, "--waves-baseline")
                if args.waves_baseline is not None else None)
    return learner, baseline


def _waves(args: argparse.Namespace, learner: Any, baseline: Any) -> None:
    from sparseshift.representations.waves import analyse_waves

    res = analyse_waves(learner, args.data, args.waves, n_input=args.waves_input,
                        horizon=args.waves_horizon, free_steps=args.waves_free,
                        n_sequences=args.waves_sequences, baseline=baseline, seed=args.seed)
    coh = res["coherence"]
    copy_last = sum(res["copy_last_mse"]) / len(res["copy_last_mse"])
    text = (f"{Path(args.waves) / 'waves.json'}: {res['learner']} on {res['n_sequences']} "
            f"sequences; coherence driven {coh['driven']:.3f} (shuffled "
            f"{coh['driven_shuffled']:.3f}), free {coh['free']:.3f} (shuffled "
            f"{coh['free_shuffled']:.3f}); forecast MSE over {res['horizon']} steps "
            f"{res['forecast_mse_mean']:.4f}, copy-last {copy_last:.4f}")
    if "baseline" in res:
        base = res["baseline"]
        text += f", {base['learner']} baseline {base['forecast_mse_mean']:.4f}"
    print(text)


def _metrics(args: argparse.Namespace) -> None:
    from sparseshift.representations.evaluate import EvalConfig, evaluate

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
