"""The study report's robustness section: success against shift severity per encoder, the mean
relative robustness of each encoder's agents, and probe robustness against agent robustness.

* **Curves** (:func:`encoder_curves`, drawn by
  :func:`sparseshift.agents.robustness_plot.plot_robustness`): per graded shift (a nuisance or a
  composition such as ``real``) success and return against severity, IN at severity 0, one line
  per encoder. The agents of one encoder (encoder seeds x agent seeds) ran the same episode seeds
  and are *pooled*: a point is the success rate over all their episodes (the mean of the run
  means, every run having as many episodes) with the exact (Clopper-Pearson) interval of the
  pooled count, and the mean return with the percentile bootstrap interval over the pooled
  episodes. Pooling is sound for what it claims (the success of *these* trained agents: the
  count of several agents' successes is less variable than a binomial one, so the exact interval
  is conservative) and says nothing about another training seed; the table gives the spread over
  runs for that.
* **Mean relative robustness** (:func:`robustness_table`): each agent's ``robustness`` from its
  ``eval.json`` (:func:`sparseshift.agents.robustness.robustness_of`: success under a shift /
  success IN, averaged over the shift's severities, then over shifts; a paired bootstrap interval
  over episodes; undefined when IN success is 0). One run per encoder: that value with its
  interval in brackets. Several: the mean over runs and the per-run range, written ``(range a-b,
  n runs)`` and never as an interval.
* **Probe against agent robustness** (:func:`probe_vs_agent`): per learned encoder run and shift
  (OOD1, OOD2 and each graded shift), the proxy task's relative score (its score under the shift
  / its score IN, averaged over the severities the proxy and the agents share) next to its
  agents' relative success (their mean success under the shift / their mean success IN, averaged
  the same way), with Spearman's rho across encoder runs and a percentile bootstrap interval over
  encoders (:func:`sparseshift.agents.stats.spearman_ci`) when there are at
  least three; with fewer, the table alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from sparseshift.agents.robustness import CurvePoint, relative_robustness
from sparseshift.agents.stats import binomial_ci, bootstrap_ci, format_interval, format_range
from sparseshift.envs.shifts.registry import COLOUR_SPLITS

IN = COLOUR_SPLITS[0]
PROBE = "mlp"
#: Seed of the pooled-return bootstrap of the curves.
SEED = 0


def shift_info(label: str, defs: Mapping[str, Any] | None = None) -> tuple[str, float | None]:
    """(shift name, severity) of a result label: from its ``shift_defs`` record when there is one,
    else resolved by the shipped registry; a label neither knows is its own name, ungraded."""
    rec = (defs or {}).get(label)
    if isinstance(rec, Mapping) and "name" in rec:
        sev = rec.get("severity")
        return str(rec["name"]), None if sev is None else float(sev)
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.envs.shifts.registry import default_registry

    try:
        r = default_registry().resolve(label)
    except ConfigError:
        return label, None
    return r.name, r.severity


def sweep_labels(table: Sequence[Mapping[str, Any]], env: str) -> list[str]:
    """The labels of ``env`` that belong to a severity sweep: graded shifts evaluated at two or
    more severities (they go to the robustness section; the other labels head the report)."""
    by_name: dict[str, list[str]] = {}
    for r in table:
        if r["env_id"] == env and r.get("severity") is not None:
            labels = by_name.setdefault(str(r["shift_name"]), [])
            if r["shift"] not in labels:
                labels.append(r["shift"])
    return [lb for labels in by_name.values() if len(labels) > 1 for lb in labels]


def main_labels(table: Sequence[Mapping[str, Any]], env: str) -> list[str]:
    """The shift labels of ``env`` that head the report: every label but the severity sweeps
    (:func:`sweep_labels`), in the order evaluated."""
    sweeps = set(sweep_labels(table, env))
    return [s for s in dict.fromkeys(r["shift"] for r in table if r["env_id"] == env)
            if s not in sweeps]


def _pooled(rows: Sequence[Mapping[str, Any]], severity: float, label: str
            ) -> CurvePoint | None:
    """One curve point from the pooled episodes of ``rows`` (one row per agent run); None when
    a run lacks its per-episode lists."""
    succ: list[bool] = []
    rets: list[float] = []
    for r in rows:
        if r.get("episode_successes") is None or r.get("episode_returns") is None:
            return None
        succ += [bool(x) for x in r["episode_successes"]]
        rets += [float(x) for x in r["episode_returns"]]
    if not succ:
        return None
    k = sum(succ)
    exact = binomial_ci(k, len(succ))
    boot = bootstrap_ci(rets, seed=SEED)
    return CurvePoint(severity, label, k / len(succ), exact.low, exact.high, boot.mean,
                      boot.low, boot.high)


def encoder_curves(table: Sequence[Mapping[str, Any]], env: str
                   ) -> tuple[dict[str, dict[str, list[CurvePoint]]],
                              dict[str, dict[str, CurvePoint]]]:
    """Per encoder of ``env``: graded shift name -> pooled curve points in severity order (IN at
    0), and colour split -> pooled point (see the module docstring)."""
    rows = [r for r in table if r["env_id"] == env]
    curves: dict[str, dict[str, list[CurvePoint]]] = {}
    splits: dict[str, dict[str, CurvePoint]] = {}
    for enc in dict.fromkeys(r["encoder"] for r in rows):
        mine = [r for r in rows if r["encoder"] == enc]
        base = _pooled([r for r in mine if r["shift"] == IN], 0.0, IN)
        per: dict[str, list[CurvePoint]] = {}
        colour: dict[str, CurvePoint] = {}
        for label in dict.fromkeys(r["shift"] for r in mine):
            at = [r for r in mine if r["shift"] == label]
            sev = at[0].get("severity")
            p = _pooled(at, 0.0 if sev is None else float(sev), label)
            if p is None:
                continue
            if sev is None:
                colour[label] = p
            else:
                per.setdefault(str(at[0]["shift_name"]), []).append(p)
        if base is not None:
            for pts in per.values():
                pts.append(base)
        curves[enc] = {k: sorted(v, key=lambda p: p.severity) for k, v in per.items()}
        if colour:
            splits[enc] = colour
    return curves, splits


def agent_robustness(table: Sequence[Mapping[str, Any]],
                     recorded: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """Per agent folder: its mean relative robustness, as its evaluation recorded it
    (``recorded``: agent folder -> ``eval.json``'s ``robustness``), else computed from the rows'
    per-episode successes the same way; None when undefined (IN success 0, no shift, no
    per-episode lists)."""
    out: dict[str, Any] = {}
    for agent in dict.fromkeys(r["agent_dir"] for r in table):
        if recorded.get(agent) is not None:
            out[agent] = recorded[agent]
            continue
        rows = [r for r in table if r["agent_dir"] == agent]
        if any(r.get("episode_successes") is None for r in rows):
            out[agent] = None
            continue
        groups: dict[str, list[str]] = {}
        for r in rows:
            if r["shift"] != IN:
                groups.setdefault(str(r["shift_name"]), []).append(r["shift"])
        out[agent] = relative_robustness({r["shift"]: r["episode_successes"] for r in rows},
                                         groups)
    return out


def _finite(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a finite number (JSON may hold None for an undefined one)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value)


def _cell(values: Sequence[float], single: Mapping[str, Any] | None) -> str:
    """One run: ``0.82 [0.70, 0.93]`` (its interval over episodes); several: ``0.82 (range
    0.75-0.90, 3 runs)``."""
    if not values:
        return "n/a"
    if len(values) == 1 and single is not None:
        lo, hi = single.get("ci_low"), single.get("ci_high")
        if _finite(lo) and _finite(hi):
            return f"{values[0]:.2f} {format_interval(float(lo), float(hi))}"
        return f"{values[0]:.2f}"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{float(np.mean(values)):.2f} ({format_range(values)}, {len(values)} runs)"


def robustness_table(table: Sequence[Mapping[str, Any]], robustness: Mapping[str, Any]
                     ) -> tuple[str, list[dict[str, Any]]]:
    """Markdown: per env and encoder, the mean relative robustness of its agents and the
    relative robustness per shift (module docstring), and the entries as JSON."""
    parts: list[str] = []
    data: list[dict[str, Any]] = []
    for env in dict.fromkeys(r["env_id"] for r in table):
        rows = [r for r in table if r["env_id"] == env]
        names = list(dict.fromkeys(str(r["shift_name"]) for r in rows if r["shift"] != IN))
        if not names:
            continue
        lines = [f"### {env}", "",
                 "| encoder | runs | mean relative robustness | " + " | ".join(names) + " |",
                 "|---|---|---|" + "---|" * len(names)]
        for enc in dict.fromkeys(r["encoder"] for r in rows):
            agents = list(dict.fromkeys(r["agent_dir"] for r in rows if r["encoder"] == enc))
            robs = [robustness.get(a) for a in agents]
            ok = [x for x in robs if isinstance(x, Mapping) and _finite(x.get("mean"))]
            means = [float(x["mean"]) for x in ok]
            single = ok[0] if len(ok) == 1 else None
            cells = [_cell(means, single)]
            per_shift: dict[str, list[float]] = {}
            for n in names:
                got = [(x.get("shifts") or {}).get(n) or {} for x in ok]
                vals = [float(g["mean"]) for g in got if _finite(g.get("mean"))]
                per_shift[n] = vals
                one = ok[0]["shifts"].get(n) if single is not None else None
                cells.append(_cell(vals, one))
            missing = len(agents) - len(ok)
            runs = f"{len(agents)}" + (f" ({missing} undefined: IN success 0)" if missing else "")
            lines.append(f"| {enc} | {runs} | " + " | ".join(cells) + " |")
            data.append({"env_id": env, "encoder": enc, "runs": len(agents),
                         "undefined_runs": missing, "mean": means,
                         "per_shift": per_shift})
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts), data


def _proxy_key(label: str, task: bool) -> str:
    return f"proxy_{PROBE}_{label}" + ("_task" if task else "")


def probe_vs_agent(table: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Per env and shift name: each learned encoder run's probe robustness and its agents'
    relative success (module docstring), with Spearman's rho across runs when there are three
    or more. Returns the markdown ("" when no encoder has proxy scores under a shift) and the
    data as JSON."""
    from sparseshift.agents.stats import spearman_ci

    parts: list[str] = []
    data: dict[str, Any] = {}
    for env in dict.fromkeys(r["env_id"] for r in table):
        learned = [r for r in table if r["env_id"] == env and r["kind"] == "learned"]
        runs: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
        for r in learned:
            runs.setdefault((r["encoder"], r["encoder_seed"]), []).append(r)
        metrics = [rs[0]["metrics"] for rs in runs.values()]
        task = bool(metrics) and all(_proxy_key(IN, True) in m for m in metrics)
        points: dict[str, list[dict[str, Any]]] = {}
        for (enc, seed), rs in runs.items():
            m = rs[0]["metrics"]
            p_in = m.get(_proxy_key(IN, task))
            s_in = [float(r["success"]) for r in rs if r["shift"] == IN]
            if p_in is None or not p_in > 0 or not s_in or not np.mean(s_in) > 0:
                continue
            name = enc if seed is None else f"{enc}/s{seed}"
            labels: dict[str, list[str]] = {}
            for r in rs:
                if r["shift"] != IN and _proxy_key(r["shift"], task) in m:
                    ls = labels.setdefault(str(r["shift_name"]), [])
                    if r["shift"] not in ls:
                        ls.append(r["shift"])
            for shift, ls in labels.items():
                probe = float(np.mean([m[_proxy_key(lb, task)] / p_in for lb in ls]))
                agent = float(np.mean([np.mean([float(r["success"]) for r in rs
                                                if r["shift"] == lb]) / np.mean(s_in)
                                       for lb in ls]))
                points.setdefault(shift, []).append({"encoder": name, "labels": ls,
                                                     "probe": probe, "agent": agent})
        if not points:
            continue
        score = "task" if task else "all-factor"
        lines = [f"### {env}", "",
                 f"Probe robustness: the proxy's {score} score (MLP) under the shift / its score "
                 "IN; agent robustness: the agents' mean success under the shift / their mean "
                 "success IN; both averaged over the severities they share.", "",
                 "| shift | severities | encoder runs | rho(probe, agent) [95% CI] | "
                 "per run: probe / agent |", "|---|---|---|---|---|"]
        per_env: dict[str, Any] = {}
        for shift, pts in points.items():
            rho = spearman_ci([p["probe"] for p in pts], [p["agent"] for p in pts]) \
                if len(pts) >= 3 else None
            per_env[shift] = {"points": pts, "spearman": rho}
            sevs = ", ".join(dict.fromkeys(lb for p in pts for lb in p["labels"]))
            if rho is None or math.isnan(rho["rho"]):
                corr = (f"n/a ({len(pts)} run{'s' if len(pts) != 1 else ''}: too few, "
                        "or constant ranks)")
            else:
                ci = "" if math.isnan(rho["ci_low"]) else " " + format_interval(
                    rho["ci_low"], rho["ci_high"])
                corr = f"{rho['rho']:+.2f}{ci}"
            cells = "; ".join(f"{p['encoder']} {p['probe']:.2f} / {p['agent']:.2f}" for p in pts)
            lines.append(f"| {shift} | {sevs} | {len(pts)} | {corr} | {cells} |")
        data[env] = {"score": score, "shifts": per_env}
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts), data


def figures(table: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """Per env with a graded shift: ``robustness_<env>.png`` (:func:`encoder_curves` drawn by
    :func:`~sparseshift.agents.robustness_plot.plot_robustness`)."""
    from sparseshift.agents.robustness_plot import plot_robustness

    paths = []
    for env in dict.fromkeys(r["env_id"] for r in table):
        curves, splits = encoder_curves(table, env)
        if not any(curves.values()):
            continue
        runs = {enc: len({r["agent_dir"] for r in table if r["env_id"] == env
                          and r["encoder"] == enc}) for enc in curves}
        name = {enc: f"{enc} ({n} run{'s' if n > 1 else ''})" for enc, n in runs.items()}
        named = {name[enc]: v for enc, v in curves.items()}
        named_splits = {name[enc]: v for enc, v in splits.items()}
        short = env.split("/")[-1]
        paths.append(plot_robustness(
            named, out / f"robustness_{short}.png", splits_by_encoder=named_splits,
            title=f"{short}: success and return against shift severity, per encoder",
            notes=["the runs of an encoder are pooled: intervals cover the evaluation "
                   "episodes of these agents, not another training seed"]))
    return paths
