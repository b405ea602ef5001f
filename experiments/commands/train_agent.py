"""``sparseshift train-agent``: train a PPO or SAC agent on a frozen encoder, pixels or state.

See :mod:`sparseshift.agents.train` and ``docs/agents.md`` for the defaults per env family and the
outputs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "train-agent"


def parse_pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values are parsed as JSON when possible, else kept as strings."""
    from sparseshift.envs.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} must look like KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="train an RL agent (PPO/SAC) on a frozen encoder, pixels or ground-truth state",
        description=(
            "Train a Stable-Baselines3 agent. --encoder is a representation run directory (frozen, "
            "encoded once per env step in a VecEnv wrapper) or a baseline: pixels (end-to-end "
            "NatureCNN), state (ground-truth state, the oracle), random (the default VAE "
            "encoder, untrained, initialised from --seed)."
        ),
    )
    p.add_argument("--env", required=True, help="env id, e.g. sparseshift/TriFingerReach-v0")
    p.add_argument("--encoder", required=True, help="CKPT_DIR | pixels | state | random")
    p.add_argument("--algo", default="ppo", help="ppo (default) or sac (Box actions only)")
    p.add_argument("--steps", type=int, required=True, help="env steps to train for")
    p.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--colours", default="in", help="training colour split (default in)")
    p.add_argument("--image-size", type=int, default=64, help="env image size (default 64)")
    p.add_argument("--hp", action="append", metavar="KEY=VALUE",
                   help="override a default hyperparameter (repeatable), e.g. --hp n_envs=4")
    p.add_argument("--env-kwarg", action="append", metavar="KEY=VALUE",
                   help="extra env kwarg (repeatable), e.g. --env-kwarg render_preset=fast")
    p.add_argument("--eval-every", type=int, default=10_000,
                   help="env steps between evaluations on IN colours (0: off; default 10000)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    p.add_argument("--eval-policy", choices=("auto", "deterministic", "stochastic"),
                   default="auto", help="evaluation actions: auto (default: deterministic on "
                   "TriFinger, sampled with a seed on grid worlds), deterministic or stochastic")
    p.add_argument("--checkpoint-every", type=int, default=50_000,
                   help="env steps between checkpoints (0: off; default 50000)")
    p.add_argument("--no-tensorboard", action="store_true", help="CSV logs only")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sparseshift.agents.config import AgentConfig
    from sparseshift.agents.train import DONE_FILE, train_agent

    config = AgentConfig(
        env_id=args.env, encoder=args.encoder, algo=args.algo, steps=args.steps, seed=args.seed,
        colours=args.colours, image_size=args.image_size,
        env_kwargs=tuple(parse_pairs(args.env_kwarg, "--env-kwarg").items()),
        hyperparams=tuple(parse_pairs(args.hp, "--hp").items()),
        eval_every=args.eval_every, eval_episodes=args.eval_episodes,
        eval_policy=args.eval_policy,
        checkpoint_every=args.checkpoint_every, tensorboard=not args.no_tensorboard,
        torch_threads=args.threads,
    )
    out = train_agent(config, args.out)
    result = json.loads((out / DONE_FILE).read_text())["result"]
    line = (f"trained {config.algo} on {config.env_id} with encoder {config.encoder}: "
            f"{result['steps']} steps, {result['steps_per_second']:.0f} steps/s")
    final = result.get("final_eval")
    if final:
        line += (f"; eval on IN colours: return {final['return']['mean']:.3f}, success "
                 f"{final['success']['mean']:.2f}")
    print(line)
    print(f"wrote {out}")
    return 0
