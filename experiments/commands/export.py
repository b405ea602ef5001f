"""``sparseshift export DATASET --format lerobot|minari --out DIR``: a video dataset in the formats
robot-learning users share (optional extras: ``pip install 'sparseshift[lerobot]'`` or
``'sparseshift[minari]'``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

NAME = "export"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="export a video dataset as a LeRobotDataset or a Minari dataset",
        description=(
            "Write a video dataset through the library's own API. lerobot: a LeRobotDataset "
            "(the layout the installed lerobot writes, v3.0 for lerobot 0.4) at --out, with "
            "observation.image, observation.state (the policy's vector observation), "
            "observation.environment_state (the factors), action, next.reward, next.done, "
            "next.truncated. minari: a Minari dataset (episodes with T+1 observations, the last "
            "the final observation; factors in infos) in the Minari root --out "
            "(MINARI_DATASETS_PATH), which needs a dataset of format 3. Intervention-pairs "
            "datasets have no actions or episodes and export to neither. Each format needs its "
            "optional package in this environment: pip install 'lerobot>=0.4' (lerobot 0.4 "
            "asks for torch<2.11, so it replaces a newer torch) or pip install 'minari>=0.5'; "
            "from a sparseshift checkout, pip install -e '.[lerobot]' or -e '.[minari]' (the "
            "project's extras)."
        ),
    )
    p.add_argument("path", metavar="DATASET", help="video dataset written by 'sparseshift collect'")
    p.add_argument("--format", required=True, choices=["lerobot", "minari"], dest="fmt",
                   help="lerobot or minari")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="lerobot: the dataset root to create (must not exist); minari: the "
                        "Minari datasets root (may hold other datasets)")
    p.add_argument("--name", default=None,
                   help="lerobot: repo id (default sparseshift/<file name>); minari: dataset id "
                        "(default sparseshift/<file name>-v0)")
    p.add_argument("--task", default=None,
                   help="lerobot: the task text of every frame (default: env id and policy)")
    p.add_argument("--video", action="store_true",
                   help="lerobot: store frames as LeRobot's encoded (lossy) videos instead of "
                        "lossless PNG images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm.auto import tqdm

    from sparseshift.envs.data import open_dataset
    from sparseshift.envs.data.export import check_export, export

    ds = open_dataset(args.path)
    check_export(ds, args.fmt, args.out, args.name, args.task, args.video)
    with tqdm(total=len(ds), unit=" frames", desc=f"export {Path(args.path).name} -> {args.fmt}",
              file=sys.stderr, disable=args.quiet) as bar:
        res = export(ds, args.fmt, args.out, name=args.name, task=args.task, video=args.video,
                     progress=bar.update)
    print(f"exported {res.frames} frames in {res.episodes} episodes as {res.format} dataset "
          f"{res.name!r}; load it with: {res.load}")
    try:
        from sparseshift.experiments.commands.written import print_written
    except ImportError:  # pragma: no cover (older trees)
        print(f"wrote: {res.path}")
    else:
        print_written([res.path])
    return 0
