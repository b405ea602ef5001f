"""Aggregates across runs the way the RL field reports them (Agarwal et al., NeurIPS 2021,
*Deep Reinforcement Learning at the Edge of the Statistical Precipice*; the rliable library).

For a group of runs (e.g. every agent on a beta-VAE encoder, over encoder and agent seeds) and one
shift, the scores are a matrix ``[runs, tasks]`` (here a task is an env). The interquartile mean
(IQM) is the mean of the middle 50% of all scores (25% trimmed from each end); the optimality gap
is the mean shortfall below a target (success 1.0): ``mean(max(0, 1 - score))``. 95% CIs come from
the stratified bootstrap: each task's runs are resampled with replacement on their own, then the
statistic is recomputed, 2,000 times, and the 2.5/97.5 percentiles are the interval. The CI is over
training runs, not evaluation episodes: with one run per task every resample is that run, the
interval has zero width and says nothing, so :func:`markdown` prints no interval for such a group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sparseshift.agents.stats import format_interval, format_range
from sparseshift.envs.infra.errors import ConfigError

Statistic = Callable[[np.ndarray], float]


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all entries: :func:`scipy.stats.trim_mean` with 0.25, which drops
    ``floor(0.25 n)`` scores at each end (no fractional weighting, as in rliable; with fewer than
    four scores nothing is dropped and it is the plain mean)."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(scores, float).ravel(), 0.25))


def optimality_gap(scores: np.ndarray, target: float = 1.0) -> float:
    """Mean shortfall below ``target`` (0 when every score reaches it)."""
    return float(np.mean(np.maximum(0.0, target - np.asarray(scores, float))))


def stratified_bootstrap(columns: Sequence[np.ndarray], statistic: Statistic,
                         resamples: int = 2000, seed: int = 0, confidence: float = 0.95
                         ) -> tuple[float, float, float]:
    """``(point, ci_low, ci_high)`` of ``statistic`` over the concatenated per-task run scores,
    resampling runs within each task (column) independently (``default_rng(seed)``); the interval
    is the percentiles of the resampled statistics at ``(1 -+ confidence) / 2``."""
    cols = [np.asarray(c, float).ravel() for c in columns if len(c)]
    if not cols:
        raise ConfigError("stratified_bootstrap needs at least one score")
    if not all(np.all(np.isfinite(c)) for c in cols):
        raise ConfigError("stratified_bootstrap needs finite scores")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise ConfigError(f"need resamples >= 1 and confidence in (0, 1), got {resamples} and "
                          f"{confidence}")
    point = statistic(np.concatenate(cols))
    rng = np.random.default_rng(seed)
    boots = np.empty(resamples)
    for b in range(resamples):
        boots[b] = statistic(np.concatenate([c[rng.integers(0, len(c), len(c))] for c in cols]))
    alpha = 100.0 * (1.0 - confidence) / 2.0
    return point, float(np.percentile(boots, alpha)), float(np.percentile(boots, 100.0 - alpha))


def group_aggregates(table: Sequence[dict[str, Any]], key: str = "success",
                     resamples: int = 2000) -> list[dict[str, Any]]:
    """Per encoder label and shift: IQM and optimality gap of ``key`` with stratified bootstrap
    CIs over runs (envs as tasks), plus an ``all learned`` group pooling every learned
    encoder."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in table:
        for name in ([r["encoder"], "all learned"] if r["kind"] == "learned" else [r["encoder"]]):
            groups.setdefault((name, r["shift"]), {}).setdefault(r["env_id"], []).append(
                float(r[key]))
    out = []
    for (name, shift), per_env in groups.items():
        cols = [np.asarray(v) for v in per_env.values()]
        m, lo, hi = stratified_bootstrap(cols, iqm, resamples)
        g, glo, ghi = stratified_bootstrap(cols, optimality_gap, resamples)
        out.append({"encoder": name, "shift": shift, "runs": int(sum(len(c) for c in cols)),
                    "tasks": len(cols), "iqm": m, "iqm_ci": [lo, hi],
                    "range": [float(min(c.min() for c in cols)), float(max(c.max() for c in cols))],
                    "optimality_gap": g,
                    "optimality_gap_ci": [glo, ghi]})
    return out


#: Fewer runs per env than this get their range instead of a bootstrap interval.
MIN_RUNS_FOR_CI = 3


def markdown(aggs: Sequence[dict[str, Any]]) -> str:
    """One row per encoder group, IQM success [95% CI] per shift, then the runs. A group with
    one run per task has no interval over runs: its cell reads ``74% (1 run per env, no CI)``."""
    shifts = list(dict.fromkeys(a["shift"] for a in aggs))
    names = list(dict.fromkeys(a["encoder"] for a in aggs))
    by = {(a["encoder"], a["shift"]): a for a in aggs}
    lines = ["| encoder group | runs | " + " | ".join(f"IQM success {s} [95% CI]" for s in shifts)
             + " | " + " | ".join(f"optimality gap {s}" for s in shifts) + " |",
             "|---|---|" + "---|" * (2 * len(shifts))]
    for n in names:
        cells = []
        for s in shifts:
            a = by.get((n, s))
            if a is None:
                cells.append("")
            elif a["runs"] <= a.get("tasks", 1):
                cells.append(f"{100 * a['iqm']:.0f}% (1 run per env, no CI)")
            elif a["runs"] < MIN_RUNS_FOR_CI * a.get("tasks", 1) and "range" in a:
                # A bootstrap over two runs is their range: print it as one, not as a CI.
                cells.append(f"{100 * a['iqm']:.0f}% ("
                             + format_range(a["range"], percent=True)
                             + f", {a['runs']} runs, no CI)")
            else:
                cells.append(f"{100 * a['iqm']:.0f}% "
                             + format_interval(a["iqm_ci"][0], a["iqm_ci"][1], percent=True))
        gaps = ["" if (n, s) not in by else f"{by[(n, s)]['optimality_gap']:.2f}" for s in shifts]
        runs = max(by[(n, s)]["runs"] for s in shifts if (n, s) in by)
        lines.append(f"| {n} | {runs} | " + " | ".join(cells + gaps) + " |")
    return "\n".join(lines)
