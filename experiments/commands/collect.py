"""``sparseshift collect``: record a video or intervention-pair dataset from an env (resumable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

NAME = "collect"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="collect a video or intervention-pair dataset (HDF5, resumable, parallel)",
        description=(
            "Record N frames of behaviour-policy rollouts (--kind video) or N intervention pairs "
            "(--kind pairs: k factor groups changed, Locatello et al. 2020) into one HDF5 file. "
            "The output is byte-identical for any number of workers; a killed run resumes from "
            "OUT.parts/ when the same command is run again. See docs/datasets.md."
        ),
    )
    p.add_argument("--env", required=True, metavar="ENV_ID", help="env id, see 'sparseshift envs'")
    p.add_argument("--kind", required=True, choices=("video", "pairs"), help="what to record")
    p.add_argument("--n", type=int, required=True, help="frames (video) or pairs to record")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--out", required=True, help="HDF5 file to write")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--colours", default="in+ood1",
                   help="colour splits to sample from, e.g. in, in+ood1, all (default in+ood1)")
    p.add_argument("--image-size", type=int, default=64, help="frame size in pixels (default 64)")
    p.add_argument("--k", type=int, default=None,
                   help="pairs: factor groups changed per pair, or -1 for 1 or k_obs ~ U[1, K] "
                        "with equal probability (default -1)")
    p.add_argument("--policy", default="random",
                   help="video: random (smooth random motion), scripted, or an SB3 .zip "
                        "(default random)")
    p.add_argument("--obs-mode", default="pixels",
                   help="observation mode the policy acts on: pixels, state, pixels_proprio")
    p.add_argument("--render-preset", default=None, help="render preset (TriFinger; default fast)")
    p.add_argument("--part-rows", type=int, default=None,
                   help="rows per resumable part (multiple of 32; default 1024); part of the "
                        "configuration, so it changes the data")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sparseshift.envs.data.collect import collect
    from sparseshift.envs.data.config import CollectConfig
    from sparseshift.envs.data.layout import DEFAULT_PART_ROWS

    cfg = CollectConfig(
        env_id=args.env, kind=args.kind, n=args.n, seed=args.seed, colours=args.colours,
        image_size=args.image_size, k=args.k, policy=args.policy,
        render_preset=args.render_preset, obs_mode=args.obs_mode,
        part_rows=args.part_rows or DEFAULT_PART_ROWS,
    )
    out = Path(args.out)
    result = collect(cfg, out, workers=args.workers, progress=not args.quiet)
    what = "frames" if cfg.kind == "video" else "pairs"
    size = out.stat().st_size / 1e6
    if result.status == "complete":
        print(f"{out} is already complete ({result.n} {what}, same configuration); nothing to do",
              file=sys.stderr)
    print(f"{out}: {result.n} {what}, {size:.1f} MB, fingerprint {result.fingerprint[:16]}")
    return 0
