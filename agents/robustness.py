"""Robustness curves and the mean relative robustness of an agent under graded shifts.

For a graded shift (a nuisance or composition, levels 1-5 or continuous strengths) the curve is
success (and return) against severity, anchored at severity 0 by the IN result; colour splits are
single points. The summary is the *mean relative robustness*: success under a shift divided by
success IN, averaged over the severities of each shift and then over shifts (the relative
corruption robustness of Hendrycks & Dietterich, ICLR 2019, on success instead of error). Its
interval is a paired percentile bootstrap over episodes: every shift of one evaluation runs the
same episode seeds, so one resample of episode indices is applied to IN and to every shift alike.
Undefined (None) when IN success is 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparseshift.envs.shifts.registry import COLOUR_SPLITS

#: The label every shift is compared with: the training colours (severity 0 of every curve).
IN = COLOUR_SPLITS[0]
#: Bootstrap resamples of the relative-robustness interval.
RESAMPLES = 2000


@dataclass(frozen=True)
class CurvePoint:
    """One severity of one shift: success and return with their intervals."""

    severity: float
    label: str
    success: float
    success_low: float
    success_high: float
    ret: float
    ret_low: float
    ret_high: float


def shift_key(record: Mapping[str, Any]) -> tuple[str, float | None]:
    """(shift name, severity) of one ``eval.json`` ``shift_defs`` record."""
    sev = record.get("severity")
    return str(record["name"]), None if sev is None else float(sev)


def curves(result: Mapping[str, Any]) -> dict[str, list[CurvePoint]]:
    """Shift name -> curve points in severity order (graded shifts only), each starting with
    IN at severity 0 when the evaluation has ``in``. ``result`` is an ``eval.json``."""
    shifts, defs = result["shifts"], result.get("shift_defs", {})
    out: dict[str, list[CurvePoint]] = {}
    for label, r in shifts.items():
        d = defs.get(label)
        if d is None or d.get("severity") is None:
            continue
        out.setdefault(str(d["name"]), []).append(_point(float(d["severity"]), label, r))
    if IN in shifts:
        for pts in out.values():
            pts.append(_point(0.0, IN, shifts[IN]))
    return {k: sorted(v, key=lambda p: p.severity) for k, v in out.items()}


def _point(sev: float, label: str, r: Mapping[str, Any]) -> CurvePoint:
    s, ret = r["success"], r["return"]
    return CurvePoint(sev, label, s["mean"], s["ci_low"], s["ci_high"], ret["mean"],
                      ret["ci_low"], ret["ci_high"])


def relative_robustness(successes: Mapping[str, Sequence[bool]],
                        groups: Mapping[str, Sequence[str]], seed: int = 0,
                        resamples: int = RESAMPLES) -> dict[str, Any] | None:
    """Mean relative robustness over ``groups`` (shift name -> its labels in ``successes``),
    with a paired bootstrap 95% interval; per shift too. ``successes["in"]`` is required and
    every list must have the same length (shared episodes). None if IN success is 0 or absent."""
    if IN not in successes or not groups:
        return None
    base = np.asarray(successes[IN], dtype=np.float64)
    n = len(base)
    if n == 0 or base.mean() == 0:
        return None
    mats = {g: np.asarray([successes[lb] for lb in labels], dtype=np.float64)
            for g, labels in groups.items()}
    if any(m.shape[1] != n for m in mats.values()):
        raise ValueError("relative robustness needs the same episodes for every shift")

    def stat(idx: np.ndarray) -> tuple[float, dict[str, float]]:
        b = base[idx].mean()
        if b == 0:
            return float("nan"), {}
        per = {g: float(m[:, idx].mean(axis=1).mean() / b) for g, m in mats.items()}
        return float(np.mean(list(per.values()))), per

    point, per = stat(np.arange(n))
    rng = np.random.default_rng(seed)
    boots: list[float] = []
    per_boots: dict[str, list[float]] = {g: [] for g in mats}
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        v, p = stat(idx)
        if np.isfinite(v):
            boots.append(v)
            for g in mats:
                per_boots[g].append(p[g])

    def ci(xs: list[float]) -> tuple[float, float]:
        if not xs:
            return float("nan"), float("nan")
        lo, hi = np.percentile(xs, [2.5, 97.5])
        return float(lo), float(hi)

    lo, hi = ci(boots)
    return {"mean": point, "ci_low": lo, "ci_high": hi, "n_episodes": n,
            "shifts": {g: {"mean": per[g], "ci_low": ci(per_boots[g])[0],
                           "ci_high": ci(per_boots[g])[1], "labels": list(groups[g])}
                       for g in mats},
            "method": f"success under shift / success IN, averaged over severities then "
                      f"shifts; paired percentile bootstrap over episodes ({resamples})"}


def robustness_of(result: Mapping[str, Any], seed: int = 0,
                  resamples: int = RESAMPLES) -> dict[str, Any] | None:
    """:func:`relative_robustness` of one ``eval.json``: every non-IN shift, grouped by shift
    name (the severities of one shift are averaged first)."""
    shifts, defs = result["shifts"], result.get("shift_defs", {})
    succ = {lb: r.get("successes") for lb, r in shifts.items()}
    if any(v is None for v in succ.values()):
        return None
    groups: dict[str, list[str]] = {}
    for lb in shifts:
        if lb == IN:
            continue
        name = str(defs.get(lb, {}).get("name", lb))
        groups.setdefault(name, []).append(lb)
    return relative_robustness(succ, groups, seed, resamples)
