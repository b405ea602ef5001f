"""``sparseshift train-agent``: train a PPO or SAC agent on a frozen encoder, pixels or state.

See :mod:`sparseshift.agents.train` and ``docs/agents.md`` for the defaults per env family and the
outputs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

NAME = "train-agent"


def add_parser(sub: Any) -> None:
    from sparseshift.agents.config import AgentConfig
    from sparseshift.experiments.commands.options import (
        add_config_file_flag,
        add_config_flags,
        add_plugin_flag,
    )

    p = sub.add_parser(
        NAME,
        help="train an RL agent (PPO/SAC) on a frozen encoder (yours too), or a baseline: random, "
             "sensors, pixels, state",
        description=(
            "Train a Stable-Baselines3 agent. --encoder is a frozen encoder, encoded once per "
            "env step in a VecEnv wrapper and standardised per latent dimension with statistics "
            "measured once on IN frames (recorded in agent.json): a representation run "
            "directory, your own torch module as package.module:factory (with --encoder-weights "
            "W.safetensors; docs/representations.md, 'Your own encoder'), an installed "
            "sparseshift.encoders entry point or an export-encoder folder. Or a baseline: "
            "random (the default VAE encoder, untrained, initialised from --seed), sensors "
            "(proprioception and goal only, no image), pixels (end-to-end NatureCNN), state "
            "(ground-truth state, the oracle). Every option can also come from "
            "--config FILE (JSON or TOML: the AgentConfig fields, e.g. env_id, encoder, steps, "
            "[hyperparams] n_envs = 4). PPO trains in whole rollouts of n_envs x n_steps env "
            "steps, so --steps is rounded up to a multiple of that (said before training starts). "
            "A progress bar shows steps, steps/s and the last evaluation; an encoder trained on "
            "another env's frames gets a warning naming both envs; the files written are listed "
            "at the end. Resume: the whole training state (networks, optimizer, RNGs, envs) is "
            "saved to training_state.safetensors at the first rollout boundary after every "
            "--checkpoint-every env steps and at the end; an interrupted run (even killed with "
            "kill -9) resumes exactly when the same command is run again: the final weights are "
            "bit-identical to an uninterrupted run's with the same seed and --env-workers. "
            "Another config in --out is refused. --continue N trains a finished agent N more "
            "steps (docs/agents.md, 'Resume and continue')."
        ),
    )
    p.add_argument("--out", required=True, help="output directory")
    add_config_file_flag(p)
    add_config_flags(p, AgentConfig)
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="override a default hyperparameter (repeatable), e.g. --hp n_envs=4")
    p.add_argument("--env-kwarg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra env kwarg (repeatable), e.g. --env-kwarg render_preset=fast")
    p.add_argument("--continue", dest="continue_steps", metavar="STEPS", default=None,
                   help="train the finished agent in --out STEPS more env steps (rounded up to "
                        "whole rollouts), given the same arguments it was trained with; the "
                        "result is identical to training from scratch for its steps + STEPS. "
                        "Each finished --continue adds STEPS again; an interrupted one resumes "
                        "when rerun with the same STEPS. agent.json's training.segments records "
                        "every segment (steps, dates, versions, resumes)")
    add_plugin_flag(p)
    p.set_defaults(func=run)


def build(args: argparse.Namespace) -> Any:
    """The run's AgentConfig: defaults < --config FILE < flags (``--hp``/``--env-kwarg`` merge
    into the file's ``hyperparams``/``env_kwargs``)."""
    from sparseshift.agents.config import AgentConfig, parse_env_kwargs, parse_hyperparams
    from sparseshift.envs.infra.config import read_config_file
    from sparseshift.experiments.commands.options import build_config

    file_values = read_config_file(args.config_file, AgentConfig) if args.config_file else {}
    extra = {
        "hyperparams": {**dict(file_values.get("hyperparams") or {}),
                        **parse_hyperparams(args.hp)},
        "env_kwargs": {**dict(file_values.get("env_kwargs") or {}),
                       **parse_env_kwargs(args.env_kwarg)},
    }
    return build_config(AgentConfig, args, extra, file_values=file_values)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings of sparseshift (e.g. an encoder from another env) as one line on stderr."""
    print(f"sparseshift {NAME}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def unfinished_continuation(out: Path) -> str:
    """A note when ``out``'s last training segment is an interrupted ``--continue``."""
    from sparseshift.agents.train import AGENT_FILE, training_segments
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.envs.infra.io import read_json

    try:
        segments = training_segments(read_json(out / AGENT_FILE, "agent file"),
                                     str(out / AGENT_FILE))
    except ConfigError:
        return ""
    last = segments[-1] if segments else None
    if last is None or last["finished"] is not None or last["kind"] != "continue":
        return ""
    return (f"note: a --continue {last['added']} of this agent was interrupted; run the same "
            f"command with --continue {last['added']} to finish it")


def run(args: argparse.Namespace) -> int:
    from sparseshift.agents.encoders import EncoderEnvWarning
    from sparseshift.agents.policy_io import SB3_EXPORT
    from sparseshift.agents.resume import STATE_FILE
    from sparseshift.agents.train import (
        AGENT_FILE,
        DONE_FILE,
        EVALUATIONS_FILE,
        MODEL_FILE,
        train_agent,
    )
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.envs.infra.io import read_json
    from sparseshift.experiments.commands.options import plugins_of
    from sparseshift.experiments.commands.written import print_written

    config = build(args)
    plugins = plugins_of(args)
    out_arg = Path(args.out)
    more = args.continue_steps
    if more is not None:
        from sparseshift.envs.infra.config import check_int, parse_text

        try:
            more = parse_text(int, more)
        except ValueError:
            pass  # check_int names the value
        more = check_int("--continue", more, 1, 10**10)
    done_before = (out_arg / DONE_FILE).is_file() and more is None
    with warnings.catch_warnings():
        warnings.simplefilter("always", EncoderEnvWarning)
        previous = warnings.showwarning
        warnings.showwarning = _show_warning
        try:
            out = train_agent(config, args.out, progress=not done_before, plugins=plugins,
                              continue_steps=more)
        finally:
            warnings.showwarning = previous
    result = read_json(out / DONE_FILE, "training record").get("result")
    if not isinstance(result, dict):
        raise ConfigError(f"{out / DONE_FILE} is damaged; train into a new --out")
    if done_before:
        print(f"{out} already holds this agent (same config and encoder); nothing to do",
              file=sys.stderr)
        note = unfinished_continuation(out)
        if note:
            print(note, file=sys.stderr)
    asked = f"{config.steps:,} asked" if more is None else f"{more:,} more asked"
    line = (f"trained {config.algo} on {config.env_id} with encoder {config.encoder}: "
            f"{result['steps']:,} steps ({asked}), "
            f"{result['steps_per_second']:.0f} steps/s, {result['seconds']:.0f} s")
    final = result.get("final_eval")
    if final:
        line += (f"; eval on IN colours at step {final['step']:,}: return "
                 f"{final['return']['mean']:.3f}, success {final['success']['mean']:.2f}")
    print(line)
    logs = out / "logs"
    print_written([out / AGENT_FILE, out / MODEL_FILE, out / SB3_EXPORT, out / EVALUATIONS_FILE,
                   out / DONE_FILE, out / STATE_FILE, out / "checkpoints",
                   *(sorted(logs.iterdir()) if logs.is_dir() else [])],
                  header="files (already there)" if done_before else "wrote")
    if logs.is_dir():
        print(f"learning curves: tensorboard --logdir {logs}")
    return 0
