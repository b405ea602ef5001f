"""``sparseshift demo``: the main job on the defaults.

Renders a contact sheet of every env under each colour split and runs a short random rollout of
every env, printing steps/s, returns and the factor count. Later stages replace this with the smoke
study.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

NAME = "demo"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="main job: contact sheets and a short random rollout of every env",
        description=(
            "Render a contact sheet of every registered env under the in/ood1/ood2 colour splits "
            "(TriFinger also under the 'real' shift) and run a short random rollout of each."
        ),
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--steps", type=int, default=200, help="random steps per env (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.set_defaults(func=run)


def rollout(env_id: str, steps: int, seed: int) -> dict[str, float]:
    """Random actions for ``steps`` steps with pixel observations; returns rate and returns."""
    from sparseshift.envs.registry import make

    env = make(env_id, obs_mode="pixels")
    try:
        env.action_space.seed(seed)
        obs, info = env.reset(seed=seed)
        episodes, ret, returns, successes = 0, 0.0, [], 0
        t0 = time.perf_counter()
        for _ in range(steps):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            if not np.all(np.isfinite(info["factors"])):
                raise RuntimeError(f"{env_id}: non-finite factors")
            ret += float(reward)
            if terminated or truncated:
                returns.append(ret)
                successes += int(bool(info.get("is_success", False)))
                episodes += 1
                ret = 0.0
                obs, info = env.reset()
        rate = steps / (time.perf_counter() - t0)
        return {
            "steps_per_s": rate,
            "episodes": float(episodes),
            "mean_return": float(np.mean(returns)) if returns else ret,
            "successes": float(successes),
            "n_factors": float(len(info["factors"])),
            "frame_shape": float(obs.shape[0]),
        }
    finally:
        env.close()


def run(args: argparse.Namespace) -> int:
    from sparseshift.envs.errors import ConfigError
    from sparseshift.envs.io import save_png
    from sparseshift.envs.registry import ENTRIES
    from sparseshift.experiments.commands.render import render_row
    from sparseshift.experiments.imaging import contact_sheet

    if args.steps <= 0:
        raise ConfigError("--steps must be positive")
    out = Path(args.out)
    print(f"sparseshift demo: {len(ENTRIES)} envs -> {out}/")
    for e in ENTRIES:
        shifts: list[str | None] = [None, "real"] if e.family == "trifinger" else [None]
        rows = []
        for shift in shifts:
            for split in ("in", "ood1", "ood2"):
                label = split if shift is None else f"{split}+{shift}"
                rows.append((label, render_row(e.id, split, shift, 6, args.seed, 64, "fast")))
        sheet = save_png(out / f"{e.id.split('/')[-1]}.png", contact_sheet(rows))
        r = rollout(e.id, args.steps, args.seed)
        print(
            f"  {e.id:<44} {r['steps_per_s']:7.0f} steps/s  {int(r['episodes']):3d} episodes  "
            f"mean return {r['mean_return']:7.2f}  {int(r['n_factors'])} factors  sheet {sheet}"
        )
    return 0
