"""``sparseshift envs``: list env ids with their factors and colour splits."""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "envs"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="list env ids with their factors and the colour splits of what varies",
        description=(
            "List every registered env id with its factor spec and, for each colour that varies "
            "in that env, the colour factor groups that draw from it and the sizes of its IN / "
            "OOD1 / OOD2 colour splits (materials of the scheme the env does not vary are not "
            "listed)."
        ),
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--env", default=None, metavar="ENV_ID", help="show one env only")
    p.set_defaults(func=run)


def describe(env_id: str) -> dict[str, Any]:
    """Factor spec, observation/action spaces and colour scheme of one env (made, then closed).

    ``colour_splits`` holds only the scheme objects the env's colour factors draw from
    (``colour_groups``: colour factor group -> scheme object); ``fixed_colour_objects`` the
    scheme's other objects, whose colour this env never changes."""
    from sparseshift.envs.registry import entry, make

    e = entry(env_id)
    env = make(env_id)
    try:
        u: Any = env.unwrapped
        scheme = u.colour_scheme
        groups = {str(g): str(o) for g, o in u.colour_objects.items()}
        splits = scheme.to_json()["objects"]
        used = set(groups.values())
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
            "colour_groups": groups,
            "colour_splits": {o: v for o, v in splits.items() if o in used},
            "fixed_colour_objects": sorted(o for o in splits if o not in used),
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
        print(f"  colours that vary: scheme {info['colour_scheme']} (seed {info['colour_seed']})")
        for obj, splits in info["colour_splits"].items():
            parts = []
            for s, v in splits.items():
                n = len(v) if isinstance(v, list) else 0
                parts.append(f"{s} {n} colour{'s' if n != 1 else ''}" if isinstance(v, list)
                             else f"{s} an RGB box")
            drawn_by = [g for g, o in info["colour_groups"].items() if o == obj]
            print(f"    {obj} ({', '.join(drawn_by)}): {', '.join(parts)}")
        if info["fixed_colour_objects"]:
            print(f"    not varied (fixed in this env, or not in it): "
                  f"{', '.join(info['fixed_colour_objects'])}")
        print(f"  segmentation objects: {', '.join(info['objects'])}")
        print()
    return 0
