"""``sparseshift render``: a contact sheet of an env's frames under each colour split and shift."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

NAME = "render"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="write a contact sheet of frames under each colour split and shift",
        description=(
            "Render random states of an env (factors sampled from its distribution) as a contact "
            "sheet: one row per colour split (and per shift), N frames per row, titled with the "
            "env, preset and seed. TriFinger frames use the render preset 'collect' and "
            "'train-agent' use (fast) unless --preset pretty is given, so the sheet shows what "
            "representations and agents are trained on."
        ),
    )
    p.add_argument("env_id", metavar="ENV_ID", help="env id, see 'sparseshift envs'")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--split", default="in,ood1,ood2",
                   help="comma-separated colour splits, one row each (default: in,ood1,ood2)")
    p.add_argument("--shift", default=None, metavar="SHIFTS",
                   help="also render each split under these shifts, one row each: names with "
                        "severities, e.g. 'real' or 'noise:1-5,lighting:3' (see 'sparseshift "
                        "shifts'); the same states in every row")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="allow this module's shifts (SPARSESHIFT_SHIFTS; repeatable)")
    p.add_argument("--n", type=int, default=8, help="frames per row (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled states (default 0)")
    p.add_argument("--image-size", type=int, default=64, help="frame size in pixels (default 64)")
    p.add_argument("--preset", default="fast", choices=("fast", "pretty"),
                   help="TriFinger render preset: fast (default; what collect and train-agent "
                        "render) or pretty (shadows, multisampling; not training data)")
    p.add_argument("--scale", type=int, default=2, help="upscaling of each frame (default 2)")
    p.set_defaults(func=run)


def takes_kwarg(env_id: str, name: str) -> bool:
    """Whether the env class of ``env_id`` has the constructor kwarg ``name``."""
    import inspect

    from sparseshift.envs.registry import env_class

    return name in inspect.signature(env_class(env_id)).parameters


def render_row(env_id: str, split: str, shift: Any, n: int, seed: int, image_size: int,
               preset: str) -> list[np.ndarray]:
    """``n`` frames of states sampled (seeded) from the env's distribution under one split and
    one shift (an :class:`~sparseshift.envs.shifts.registry.EnvShift`, or None)."""
    from sparseshift.envs.registry import make

    kwargs: dict[str, Any] = {"colours": split, "image_size": image_size}
    if takes_kwarg(env_id, "render_preset"):
        kwargs["render_preset"] = preset
    if shift is not None:
        kwargs["shift"] = shift
    env = make(env_id, **kwargs)
    try:
        u: Any = env.unwrapped
        rng = np.random.default_rng(seed)
        frames = []
        for i in range(n):
            env.reset(seed=seed + i)
            u.set_factors(u.sample_factors(rng))
            frames.append(u.render_frame().copy())
        return frames
    finally:
        env.close()


def run(args: argparse.Namespace) -> int:
    from sparseshift.envs.infra.config import check_int, check_seed
    from sparseshift.envs.infra.errors import ConfigError, check_image_size
    from sparseshift.envs.infra.io import save_png
    from sparseshift.envs.registry import entry
    from sparseshift.envs.shifts.colours import parse_splits
    from sparseshift.experiments.commands.imaging import contact_sheet
    from sparseshift.experiments.commands.written import print_written

    entry(args.env_id)
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    for s in splits:
        parse_splits(s)
    if not splits:
        raise ConfigError("--split needs at least one split name (in, ood1, ood2)")
    check_int("--n", args.n, 1, 64)
    check_int("--scale", args.scale, 1, 16)
    check_seed("--seed", args.seed)
    check_int("--image-size", args.image_size, 8, 512)
    check_image_size(args.image_size)
    shifts: list[Any] = [None]
    if args.shift is not None:
        from sparseshift.envs.registry import scene_offer
        from sparseshift.envs.shifts.registry import registry_with

        resolved = registry_with(args.plugin).resolve_all(args.shift, scene_offer(args.env_id))
        for r in resolved:
            if r.kind == "colours":
                raise ConfigError(f"--shift {r.label!r} is a colour split: give it with --split")
        shifts += list(resolved)
    rows = []
    for split in splits:
        for shift in shifts:
            label = split if shift is None else f"{split} + {shift.label}"
            env_shift = None if shift is None else shift.env_shift()
            frames = render_row(
                args.env_id, split, env_shift, args.n, args.seed, args.image_size, args.preset
            )
            rows.append((label, frames))
    what = (f"render preset {args.preset}, " if takes_kwarg(args.env_id, "render_preset")
            else "")
    under = "colour split and shift" if len(shifts) > 1 else "colour split"
    title = (f"{args.env_id}: random states under each {under} ({what}{args.image_size}x"
             f"{args.image_size}, seed {args.seed})")
    out = save_png(args.out, contact_sheet(rows, scale=args.scale, title=title))
    print(f"{len(rows)} rows x {args.n} frames of {args.env_id}")
    print_written([out])
    return 0
