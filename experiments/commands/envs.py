"""``sparseshift envs``: list env ids with their factors and colour splits."""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "envs"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="list env ids with their factors and colour splits",
        description="List every registered env id with its factor spec and colour splits.",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--env", default=None, metavar="ENV_ID", help="show one env only")
    p.set_defaults(func=run)


def describe(env_id: str) -> dict[str, Any]:
    """Factor spec, observation/action spaces and colour scheme of one env (made, then closed)."""
    from sparseshift.envs.registry import entry, make

    e = entry(env_id)
    env = make(env_id)
    try:
        u: Any = env.unwrapped
        scheme = u.colour_scheme
        return {
            "id": env_id,
            "summary": e.summary,
            "family": e.family,
            "observation_space": str(env.observation_space),
            "action_space": str(env.action_space),
            "factors": u.factor_spec.to_json(),
            "groups": list(u.factor_spec.groups),
            "colour_scheme": scheme.name,
            "colour_seed": scheme.seed,
            "colour_splits": scheme.to_json()["objects"],
            "objects": list(u.object_names),
        }
    finally:
        env.close()


def _fmt_factor(f: dict[str, Any]) -> str:
    if f["kind"] == "discrete":
        vals = f["values"]
        rng = f"{len(vals)} values {vals[0]:g}..{vals[-1]:g}"
    else:
        rng = f"[{f['low']:.3g}, {f['high']:.3g}]"
    return f"{f['name']} ({f['kind']}, {rng})"


def run(args: argparse.Namespace) -> int:
    from sparseshift.envs.registry import ENV_IDS, entry

    ids = [entry(args.env).id] if args.env else list(ENV_IDS)
    infos = [describe(i) for i in ids]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for info in infos:
        print(f"{info['id']}  [{info['family']}]  {info['summary']}")
        print(f"  observations: {info['observation_space']}")
        print(f"  actions:      {info['action_space']}")
        groups: dict[str, list[dict[str, Any]]] = {}
        for f in info["factors"]:
            groups.setdefault(f["group"], []).append(f)
        print(f"  factors ({len(info['factors'])} in {len(groups)} groups):")
        for g, fs in groups.items():
            if fs[0]["kind"] == "colour":
                print(f"    {g} (colour, RGB in [0, 1])")
            else:
                for f in fs:
                    print(f"    {_fmt_factor(f)}")
        print(f"  colours: scheme {info['colour_scheme']} (seed {info['colour_seed']})")
        for obj, splits in info["colour_splits"].items():
            parts = []
            for s, v in splits.items():
                parts.append(f"{s}={len(v)} colours" if isinstance(v, list) else f"{s}=box")
            print(f"    {obj}: {', '.join(parts)}")
        print(f"  segmentation objects: {', '.join(info['objects'])}")
        print()
    return 0
