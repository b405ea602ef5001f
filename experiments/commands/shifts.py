"""``sparseshift shifts``: the shift registry: names, kinds, severities, what each needs and which
envs support it."""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "shifts"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="list the shifts (colour splits, graded nuisances, compositions) and their levels",
        description=(
            "List every registered shift: its kind (colours, nuisance, composition), the scene "
            "features it needs, its magnitudes at levels 1-5 and the envs that support it. "
            "Commands take shifts as NAME, NAME:LEVEL (1-5), NAME:A-B (every level from A to B) "
            "or NAME@STRENGTH (continuous, 0-5), comma-separated, e.g. "
            "'in,ood2,lighting:1-5,real:3'; a path to a .toml/.json shift file works as a NAME "
            "(docs/shifts.md)."
        ),
    )
    p.add_argument("--env", default=None, metavar="ENV_ID",
                   help="only the shifts this env supports")
    p.add_argument("--shift", default=None, metavar="SHIFTS",
                   help="resolve these shifts (the list syntax) and print their effective "
                        "nuisance severities and definitions")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="also list the shifts of this module's SPARSESHIFT_SHIFTS (repeatable)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--markdown", action="store_true",
                   help="print the registry as the markdown table of docs/shifts.md")
    p.set_defaults(func=run)


def describe(registry: Any, env_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    """One record per registered shift (support per env from the env classes' features)."""
    from sparseshift.envs.registry import env_features

    feats = {e: env_features(e) for e in env_ids}
    out = []
    for name, d in registry.shifts.items():
        needs = sorted(frozenset().union(*(registry.nuisances[n].needs
                                           for n, _ in d.components)))
        levels = ({p: list(t) for p, t in registry.nuisances[name].levels.items()}
                  if d.kind == "nuisance" else {})
        out.append({"name": name, "kind": d.kind, "summary": d.summary, "colours": d.colours,
                    "graded": d.graded, "nuisances": dict(d.components), "levels": levels,
                    "needs": needs,
                    "envs": [e for e in env_ids if set(needs) <= feats[e]]})
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| shift | kind | what it does | magnitudes at levels 1-5 | needs |",
             "|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] == "nuisance":
            mags = "; ".join(f"{p} {', '.join(f'{v:g}' for v in t)}"
                             for p, t in r["levels"].items())
        elif r["kind"] == "composition":
            mags = "at level 3: " + ", ".join(f"{n} {s:g}" for n, s in r["nuisances"].items())
        else:
            mags = "not graded"
        lines.append(f"| `{r['name']}` | {r['kind']} | {r['summary']} | {mags} | "
                     f"{', '.join(r['needs']) or '-'} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from sparseshift.envs.registry import ENV_IDS, entry, scene_offer
    from sparseshift.envs.shifts.registry import registry_with

    registry = registry_with(args.plugin)
    env_ids = (entry(args.env).id,) if args.env else ENV_IDS
    if args.shift is not None:
        resolved = registry.resolve_all(args.shift,
                                        scene_offer(args.env) if args.env else None)
        recs = [r.record() for r in resolved]
        if args.json:
            print(json.dumps(recs, indent=2))
        else:
            for r in recs:
                eff = ", ".join(f"{n} {s:.3g}" for n, s in r["effective"].items()) or "none"
                print(f"{r['label']:<16} {r['kind']:<12} colours {r['colours']:<5} "
                      f"nuisances: {eff}  sha256 {r['sha256'][:12]}")
        return 0
    rows = describe(registry, env_ids)
    if args.env:
        rows = [r for r in rows if args.env in r["envs"]]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print(markdown(rows))
    else:
        for r in rows:
            print(f"{r['name']:<11} {r['kind']:<12} {r['summary']}")
            if r["kind"] == "nuisance":
                for p, t in r["levels"].items():
                    print(f"{'':<11} {p}: {', '.join(f'{v:g}' for v in t)}  (levels 1-5)")
            elif r["kind"] == "composition":
                print(f"{'':<11} at level 3: "
                      + ", ".join(f"{n} {s:g}" for n, s in r["nuisances"].items()))
            short = [e.removeprefix("sparseshift/") for e in r["envs"]]
            print(f"{'':<11} envs: {', '.join(short) or 'none'}")
    return 0
