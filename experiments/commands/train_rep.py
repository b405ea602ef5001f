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
from pathlib import Path
from typing import Any

NAME = "train-rep"

#: Flags whose unset value is a learner class attribute (:class:`_ByLearner` lists them).
BY_LEARNER = {"batch": "default_batch", "lr": "default_lr", "lr_schedule": "default_lr_schedule",
              "seq_len": "batch_kind"}


class _ByLearner:
    """``%(by_learner)s`` in a flag's help: each built-in learner's class attribute ``attr``,
    grouped by value. Looked up when ``--help`` is shown (which imports the learners, and so
    torch), never when the parser is built; argparse expands help from the action's attributes.
    """

    def __init__(self, attr: str) -> None:
        self.attr = attr

    def __str__(self) -> str:
        from sparseshift.representations.registry import learner_class, learner_names

        groups: dict[str, list[str]] = {}
        for name in learner_names():
            value = getattr(learner_class(name), self.attr)
            text = "constant" if value is None else value.text() if hasattr(value, "text") \
                else f"{value:g}" if isinstance(value, float) else str(value)
            groups.setdefault(text, []).append(name)
        return ", ".join(f"{text} ({', '.join(names)})" for text, names in groups.items())


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
    from sparseshift.envs.infra.config import default_of, literal_choices
    from sparseshift.experiments.commands.options import add_config_file_flag, add_config_flags
    from sparseshift.representations.config import TrainConfig
    from sparseshift.representations.model_config import ReconLoss
    from sparseshift.representations.registry import learner_names

    names = ", ".join(learner_names())
    p = sub.add_parser(
        NAME,
        help=f"train a representation learner ({names})",
        description=(
            f"Train a representation learner ({names}, or package.module:Class) on a "
            "sparseshift dataset. Rerunning with the same "
            "--out and configuration resumes from the last checkpoint (more --steps extend the "
            "run); TensorBoard logs go to OUT/tb. Every option can also come from --config FILE "
            "(JSON or TOML, the TrainConfig fields, e.g. learner = \"ada_gvae\", steps = 20000, "
            "[model] beta = 4). See docs/representations.md."
        ),
    )
    p.add_argument("--data", required=True, help="dataset (HDF5) from 'sparseshift collect'")
    p.add_argument("--out", required=True, help="run directory (created; resumed if it exists)")
    add_config_file_flag(p)
    actions = add_config_flags(p, TrainConfig)
    actions["learner"].help = f"{actions['learner'].help}; built-in: {names}"
    for dest, attr in BY_LEARNER.items():
        vars(actions[dest])["by_learner"] = _ByLearner(attr)
        actions[dest].help = f"{actions[dest].help}; {attr} by learner: %(by_learner)s"
    p.add_argument("--gap", type=parse_gap, default=argparse.SUPPRESS,
                   help="temporal pairs: gap K or an inclusive range LO:HI (default "
                        f"{default_of(TrainConfig, 'gap')})")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="set a field of the learner's config (repeatable), parsed as the field's "
                        "type; tuples comma-separated, e.g. --model num_slots=5 --model "
                        "channels=32,32,64,64")
    p.add_argument("--beta", type=float, default=None,
                   help="shorthand for --model beta=B (KL weight)")
    p.add_argument("--latent-dim", type=int, default=None,
                   help="shorthand for --model latent_dim=D")
    p.add_argument("--recon", default=None,
                   help="shorthand for --model recon=" + "|".join(literal_choices(ReconLoss) or ()))
    p.add_argument("--image-size", type=int, default=None,
                   help="shorthand for --model image_size=S (must equal the dataset's; default: "
                        "the dataset's)")
    p.set_defaults(func=run)


def build(args: argparse.Namespace) -> Any:
    """The run's TrainConfig: defaults < --config FILE < flags (``--model`` and its shorthands
    merge into the file's ``model``). The learner is looked up once, here: its class parses
    ``--model`` and is the config's :attr:`~sparseshift.representations.config.TrainConfig.
    learner_cls` (what training builds)."""
    from sparseshift.envs.infra.config import default_of, read_config_file
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.experiments.commands.options import given
    from sparseshift.representations.config import TrainConfig
    from sparseshift.representations.model_config import parse_config_options
    from sparseshift.representations.registry import learner_class

    file_values = read_config_file(args.config_file, TrainConfig) if args.config_file else {}
    flag_values = given(args, TrainConfig)
    learner = flag_values.get(
        "learner", file_values.get("learner", default_of(TrainConfig, "learner")))
    cls = learner_class(learner)
    model = dict(file_values.get("model") or {})
    flags = parse_config_options(cls.config_cls, args.model)
    for key in ("beta", "latent_dim", "recon", "image_size"):
        value = getattr(args, key)
        if value is not None:
            if key in flags:
                flag = "--" + key.replace("_", "-")
                raise ConfigError(f"{flag} and --model {key}=... both set {key}; give one")
            flags[key] = value
    model.update(flags)
    if "seq_len" in flag_values and cls.batch_kind != "sequences":
        raise ConfigError(f"--seq-len applies to sequence learners; {learner!r} trains on "
                          f"{cls.batch_kind}")
    values: dict[str, Any] = {**file_values, **flag_values, "model": model}
    if hasattr(args, "gap"):
        values["gap"] = args.gap
    # defaults < --config FILE < flags, as build_config merges them (no field is required)
    return TrainConfig.from_json(values, learner_cls=cls)


def run(args: argparse.Namespace) -> int:
    from sparseshift.representations.train import TrainingError, train

    config = build(args)
    try:
        result = train(config, args.data, args.out)
    except TrainingError as exc:
        print(f"sparseshift {NAME}: training failed: {exc}", file=sys.stderr)
        return 1
    from sparseshift.experiments.commands.written import print_written

    out = Path(result.out_dir)
    finished_before = result.resumed_from >= result.step
    if finished_before:
        print(f"{out}: {config.learner} already trained to step {result.step}; nothing to do")
    else:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
        resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
        print(f"{out}: {config.learner} at step {result.step}{resumed}; {losses}; "
              f"{result.images_per_second:.0f} images/s")
    print_written(sorted(p for p in out.iterdir() if not p.name.startswith(".")),
                  header="files (already there)" if finished_before else "wrote")
    if (out / "tb").is_dir():
        print(f"learning curves: tensorboard --logdir {out / 'tb'}")
    return 0
