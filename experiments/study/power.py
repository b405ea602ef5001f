"""Power of the proxy question: rank correlations with intervals, and what chance alone gives.

Träuble, Dittadi et al. (ICLR 2022) ask whether an encoder's OOD proxy score and its
disentanglement metrics rank how well its agents do out of distribution (OOD1: colours the encoder
saw, OOD2: colours it did not). Per env and shift this module computes Spearman's rho across
learned encoder runs (each run's agents averaged) between every metric and agent success, with a
percentile bootstrap 95% interval over encoder runs, and the reference a reader needs to judge
it: the interval width and how often the interval excludes 0 when metric and success are
independent, simulated at the same number of encoder runs (:func:`null_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Metrics correlated with agent success, and how the report names them.
METRICS: tuple[tuple[str, str], ...] = (
    ("proxy_mlp_{shift}_task", "task proxy (MLP probes on the task factors, this shift)"),
    ("proxy_mlp_in_task", "task proxy on IN frames"),
    ("dci_disentanglement", "DCI disentanglement"),
    ("dci_completeness", "DCI completeness"),
    ("dci_informativeness_test", "DCI informativeness"),
    ("mig", "MIG"),
    ("sap", "SAP"),
    ("modularity", "modularity"),
    ("factor_vae_eval", "FactorVAE score"),
    ("mlp_r2_mean", "MLP probe R² (all factors)"),
    ("mse_per_pixel", "reconstruction MSE per pixel"),
)
RESAMPLES = 2000
NULL_SIMS = 400


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy.stats import rankdata

    return np.asarray(rankdata(a, axis=-1), dtype=np.float64)


def _rho_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of ``x`` and ``y`` ([m, n]); NaN where a row is
    constant."""
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1), np.nan)


def spearman_interval(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                      resamples: int = RESAMPLES,
                      seed: int = 0) -> dict[str, Any]:
    """Spearman's rho with a percentile bootstrap 95% interval over the paired points; resamples
    with constant ranks are dropped (and counted). Fewer than 4 points: rho only."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    n = len(xa)
    point = float(_rho_rows(xa[None], ya[None])[0]) if n >= 3 else math.nan
    if n < 4:
        return {"rho": point, "ci_low": math.nan, "ci_high": math.nan, "n": n, "dropped": 0}
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    boots = _rho_rows(xa[idx], ya[idx])
    ok = boots[np.isfinite(boots)]
    lo, hi = (np.percentile(ok, [2.5, 97.5]) if len(ok) else (math.nan, math.nan))
    return {"rho": point, "ci_low": float(lo), "ci_high": float(hi), "n": n,
            "dropped": int(resamples - len(ok))}


def null_interval(n: int, resamples: int = 1000, sims: int = NULL_SIMS, seed: int = 0
                  ) -> dict[str, Any]:
    """Under independence at ``n`` encoder runs: the median width of the bootstrap interval and
    the fraction of intervals that exclude 0 (the false-positive rate of reading "excludes 0"
    as a finding; about 5% for a calibrated interval)."""
    if n < 4:
        return {"n": n, "median_width": math.nan, "excludes_zero": math.nan, "sims": 0}
    rng = np.random.default_rng(seed)
    widths, excl = [], 0
    for s in range(sims):
        x, y = rng.normal(size=n), rng.normal(size=n)
        c = spearman_interval(x, y, resamples, seed=s)
        widths.append(c["ci_high"] - c["ci_low"])
        excl += int(c["ci_low"] > 0 or c["ci_high"] < 0)
    return {"n": n, "median_width": float(np.median(widths)), "excludes_zero": excl / sims,
            "sims": sims, "resamples": resamples}


def encoder_runs(table: Sequence[Mapping[str, Any]], env: str) -> list[dict[str, Any]]:
    """One entry per learned encoder run of ``env``: its metrics and its agents' mean success
    per shift label."""
    runs: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in table:
        if r["env_id"] != env or r["kind"] != "learned":
            continue
        e = runs.setdefault((r["encoder"], r["encoder_seed"]),
                            {"name": r["encoder"], "metrics": dict(r["metrics"]), "success": {}})
        e["success"].setdefault(r["shift"], []).append(float(r["success"]))
    for e in runs.values():
        e["success"] = {s: float(np.mean(v)) for s, v in e["success"].items()}
    return list(runs.values())


def power(table: Sequence[Mapping[str, Any]], shifts_of: Mapping[str, Sequence[str]]
          ) -> dict[str, Any]:
    """Per env: the null reference at its number of encoder runs and rho(metric, success) per
    metric and shift (``shifts_of[env]``, in order) with intervals."""
    out: dict[str, Any] = {}
    for env, shifts in shifts_of.items():
        runs = encoder_runs(table, env)
        if len(runs) < 3:
            continue
        cells: dict[str, dict[str, Any]] = {}
        for key, _ in METRICS:
            row = {}
            for s in shifts:
                k = key.format(shift=s)
                have = [e for e in runs if k in e["metrics"] and s in e["success"]
                        and e["metrics"][k] is not None]
                if len(have) >= 3:
                    row[s] = spearman_interval([float(e["metrics"][k]) for e in have],
                                               [e["success"][s] for e in have])
            if row:
                cells[key] = row
        spread = {s: [e["success"][s] for e in runs if s in e["success"]] for s in shifts}
        out[env] = {"n": len(runs), "null": null_interval(len(runs)), "rho": cells,
                    "success_range": {s: [min(v), max(v)] for s, v in spread.items() if v}}
    return out


def _cell(c: Mapping[str, Any] | None) -> str:
    if c is None or math.isnan(c["rho"]):
        return "n/a"
    if math.isnan(c["ci_low"]):
        return f"{c['rho']:+.2f}"
    star = "*" if c["ci_low"] > 0 or c["ci_high"] < 0 else ""
    return f"{c['rho']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]{star}"


def markdown(data: Mapping[str, Any]) -> str:
    """One table per env: metrics x shifts, with the null reference above it."""
    parts = []
    labels = dict(METRICS)
    for env, d in data.items():
        shifts = list(d["success_range"])
        null = d["null"]
        parts += [f"### {env.split('/')[-1]}: {d['n']} learned encoder runs", "",
                  f"Under independence at n = {d['n']}, the bootstrap interval of rho has a "
                  f"median width of {null['median_width']:.2f} and excludes 0 in "
                  f"{100 * null['excludes_zero']:.1f}% of {null['sims']} simulations (a "
                  "calibrated 95% interval would in 5%). Agent success across the runs "
                  "(mean of each run's agents): "
                  + ", ".join(f"{s} {100 * a:.0f}-{100 * b:.0f}%"
                              for s, (a, b) in d["success_range"].items()) + ".", "",
                  "| metric | " + " | ".join(f"rho with success {s}" for s in shifts) + " |",
                  "|---|" + "---|" * len(shifts)]
        for key, row in d["rho"].items():
            parts.append(f"| {labels[key]} | " + " | ".join(_cell(row.get(s)) for s in shifts)
                         + " |")
        parts += ["", "Spearman's rho across encoder runs, percentile bootstrap 95% interval "
                  f"over runs ({RESAMPLES} resamples); * the interval excludes 0. Lower "
                  "reconstruction MSE is better, so a negative rho there means better "
                  "reconstructions go with more success.", ""]
    return "\n".join(parts)
