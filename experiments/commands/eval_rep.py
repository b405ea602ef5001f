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
    from sparseshift.experiments.commands.options import add_config_flags, add_plugin_flag
    from sparseshift.representations.config import EvalConfig

    p = sub.add_parser(
        NAME,
        help="evaluate a representation (trained here or your own encoder): MIG, DCI, SAP, "
             "FactorVAE, probes, proxy task, ...",
        description=(
            "Encode frames of a dataset with a trained representation and compute MIG, DCI, SAP, "
            "modularity/explicitness, the FactorVAE score, per-factor R^2 of linear and MLP "
            "probes and the reconstruction error (disentanglement_lib protocols). Writes the "
            "metrics JSON and next to it the latent traversal (OUT.traversal.png: a row per "
            "latent with its KL, a column per value) and, for slot learners, the slot figure "
            "(OUT.slots.png); a progress bar names each step as it runs and the files written "
            "are listed at the end. For Neural Wave Machine runs "
            "--waves DIR also (or, without --out, only) runs the travelling-wave and forecast "
            "analysis on sequences of the (video) dataset."
        ),
    )
    p.add_argument("run_dir", metavar="ENCODER",
                   help="run directory from 'sparseshift train-rep', an export-encoder folder, "
                        "or your own encoder as package.module:factory (with --encoder-weights) "
                        "or an installed encoder entry point: your encoder gets the steps that "
                        "need only codes (metrics, probes, proxy task)")
    p.add_argument("--encoder-weights", default=None, metavar="W.safetensors",
                   help="safetensors weights for an ENCODER given as package.module:factory")
    p.add_argument("--data", required=True, help="dataset (HDF5) to evaluate on")
    p.add_argument("--out", default=None,
                   help="metrics JSON to write (required unless --waves is given)")
    p.add_argument("--export-codes", default=None, metavar="NPZ",
                   help="also write the codes and factors used (npz)")
    p.add_argument("--traversal", default=None, metavar="PNG",
                   help="latent traversal image (default: OUT with suffix .traversal.png)")
    add_config_flags(p, EvalConfig, help_overrides={
        "dci_max_train": "training frames for DCI's classifiers (none or 0: all)"})
    p.add_argument("--env-votes", type=_votes, default=None, metavar="TRAIN:EVAL",
                   help="shorthand for --factor-vae-env-train TRAIN --factor-vae-env-eval EVAL "
                        "(64 renders per vote; disentanglement_lib: 10000:5000)")
    p.add_argument("--proxy-data", default=None, metavar="NPZ",
                   help="frames of the OOD proxy task: read from NPZ if it exists, else rendered "
                        "from the dataset's env and saved there (reuse it across encoders)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
    add_plugin_flag(p)
    p.set_defaults(func=run)


def build(args: argparse.Namespace) -> Any:
    """The EvalConfig of the flags (``--dci-max-train 0`` means all frames; ``--env-votes``
    sets both env vote counts)."""
    from sparseshift.experiments.commands.options import build_config
    from sparseshift.representations.config import EvalConfig

    extra: dict[str, Any] = {}
    if getattr(args, "dci_max_train", None) == 0:
        extra["dci_max_train"] = None
    if args.env_votes is not None:
        extra["factor_vae_env_train"], extra["factor_vae_env_eval"] = args.env_votes
    return build_config(EvalConfig, args, extra)


class StageBar:
    """A tqdm bar (``tqdm.auto``) over named stages: the description names the stage running,
    the count says how many are done. Call it with each stage's name as it starts; nothing is
    shown before the first stage (bad input stays a one-line error)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.enabled = total, enabled
        self.bar: Any = None

    def __call__(self, name: str) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, unit="stage", desc=f"eval-rep: {name}",
                            disable=not self.enabled, dynamic_ncols=True,
                            bar_format="{desc}: {n}/{total} stages done [{elapsed}]")
            return
        self.bar.update(1)
        self.bar.set_description_str(f"eval-rep: {name}")

    def close(self, ok: bool = True) -> None:
        if self.bar is None:
            return
        if ok:
            self.bar.set_description_str("eval-rep: done", refresh=False)
            self.bar.update(self.total - self.bar.n)
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    import time

    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.experiments.commands.written import print_written
    from sparseshift.representations.evaluate import STEPS
    from sparseshift.representations.runtime import torch_run

    cfg = build(args)
    from sparseshift.representations.runtime import resolve_device

    resolve_device(cfg.device)  # an unavailable device is a one-line error before any work
    if args.out is None and args.waves is None:
        raise ConfigError("give --out (metrics JSON), --waves DIR (wave analysis) or both")
    if args.waves is None and args.waves_baseline is not None:
        raise ConfigError("--waves-baseline needs --waves DIR")
    from sparseshift.envs.infra.io import check_output_file

    for path in (args.out, args.export_codes, args.traversal):
        if path:
            check_output_file(path)  # a folder given as a file fails before any work
    _check_writable(args)
    started = time.time()
    total = (len(STEPS) + 1 if args.out is not None else 0) + (args.waves is not None)
    bar = StageBar(total, enabled=not args.quiet)
    written: list[Path] = []
    lines: list[str] = []
    ok = False
    try:
        with torch_run(args.threads, deterministic=False):
            waves = _load_waves_models(args) if args.waves is not None else None
            if args.out is not None:
                written += _metrics(args, cfg, bar, lines)
            if waves is not None:
                bar("waves")
                written += _waves(args, cfg.seed, *waves, lines)
        ok = True
    finally:
        bar.close(ok)
    for line in lines:
        print(line)
    print_written([p for p in written if p.exists() and p.stat().st_mtime >= started - 1])
    return 0


def _check_writable(args: argparse.Namespace) -> None:
    """Refuse, before any work, output folders this process cannot write in (read-only, or a
    full disk): the folders of --out (and its traversal and slot figures), --export-codes,
    --traversal, --proxy-data (written when missing) and --waves. A folder that does not exist
    yet is created by the command, so the nearest existing folder above it is checked."""
    from sparseshift.envs.infra.io import check_writable

    folders = [Path(p).parent for p in (args.out, args.export_codes, args.traversal)
               if p]
    if args.proxy_data is not None and not Path(args.proxy_data).exists():
        folders.append(Path(args.proxy_data).parent)
    if args.waves is not None:
        folders.append(Path(args.waves))
    seen: set[Path] = set()
    for folder in folders:
        existing = next((d for d in (folder, *folder.parents) if d.exists()), None)
        if existing is None or not existing.is_dir():
            continue  # a file in the way: the write reports it
        key = existing.resolve()
        if key not in seen:
            seen.add(key)
            check_writable(existing)


def _load_nwm(run_dir: str, flag: str, plugins: Any = None) -> Any:
    """The learner of ``run_dir`` if it declares the waves capability (the NWM does)."""
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.representations.base import Capability
    from sparseshift.representations.checkpoint import RUN_FILE, load_learner, read_run
    from sparseshift.representations.registry import learner_class

    learner = str(read_run(Path(run_dir)).get("learner", ""))
    if not learner_class(learner, plugins, str(Path(run_dir) / RUN_FILE)).supports(
            Capability.WAVES):
        raise ConfigError(f"{flag} needs a Neural Wave Machine run (learner 'nwm'); {run_dir} is "
                          f"a {learner!r} run, without the waves capability")
    return load_learner(run_dir, expect_learner=learner, plugins=plugins)


def _load_waves_models(args: argparse.Namespace) -> tuple[Any, Any]:
    from sparseshift.envs.infra.errors import ConfigError

    for flag in ("waves_input", "waves_sequences"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    from sparseshift.experiments.commands.options import plugins_of

    learner = _load_nwm(args.run_dir, "--waves", plugins_of(args))
    baseline = (_load_nwm(args.waves_baseline, "--waves-baseline", plugins_of(args))
                if args.waves_baseline is not None else None)
    from sparseshift.envs.data import open_dataset

    ds = open_dataset(args.data)  # checked here, before any progress is shown
    kind = ds.kind
    ds.close()
    if kind != "video":
        raise ConfigError(f"wave analysis needs a video dataset, got {kind!r}")
    return learner, baseline


def _waves(args: argparse.Namespace, seed: int, learner: Any, baseline: Any,
           lines: list[str]) -> list[Path]:
    from sparseshift.representations.waves import analyse_waves

    res = analyse_waves(learner, args.data, args.waves, n_input=args.waves_input,
                        horizon=args.waves_horizon, free_steps=args.waves_free,
                        n_sequences=args.waves_sequences, baseline=baseline, seed=seed)
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
    lines.append(text)
    folder = Path(args.waves)
    return [folder / "phase_map.png", folder / "waves.gif", folder / "waves.json"]


def _proxy_data(args: argparse.Namespace, cfg: Any) -> Any:
    """The proxy frame set of ``--proxy-data`` (rendered and saved there when missing)."""
    if args.proxy_data is None or not cfg.proxy:
        return None
    path = Path(args.proxy_data)
    if path.exists():
        return path
    from sparseshift.envs.data import open_dataset
    from sparseshift.representations.config import ProxyConfig
    from sparseshift.representations.proxy import proxy_set

    ds = open_dataset(args.data)
    try:  # --proxy-train/--proxy-test (capped at --num-train/--num-test), --seed, --proxy-splits
        data = proxy_set(ProxyConfig.of(cfg), ds.env_id, dict(ds.attrs["env_kwargs"]))
    finally:
        ds.close()
    data.save(path)
    return data


def _metrics(args: argparse.Namespace, cfg: Any, progress: Any, lines: list[str]) -> list[Path]:
    """Run the metrics; adds its summary to ``lines`` and returns the files it may have written
    (the caller keeps the new ones)."""
    from sparseshift.representations.evaluate import evaluate

    out = Path(args.out)
    traversal = Path(args.traversal) if args.traversal else out.with_suffix(".traversal.png")
    proxy = _proxy_data(args, cfg)
    from sparseshift.experiments.commands.options import plugins_of

    report = evaluate(args.run_dir, args.data, cfg, out=out, export_codes=args.export_codes,
                      plugins=plugins_of(args), weights=args.encoder_weights,
                      traversal_png=traversal, proxy_data=proxy, progress=progress)
    summary = ", ".join(f"{k} {v:.3f}" for k, v in report["summary"].items() if v is not None)
    lines.append(f"{out}: {report['learner']} on {report['dataset']['env_id']} "
                 f"({report['protocol']['num_train_used']}/{report['protocol']['num_test_used']} "
                 f"frames): {summary}")
    skipped = report.get("skipped") or {}
    if skipped:
        lines.append("skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    files = [out, traversal, out.with_suffix(".slots.png")]
    if args.export_codes:
        files.append(Path(args.export_codes))
    if args.proxy_data:
        files.append(Path(args.proxy_data))
    return files
