"""Confidence intervals and paired tests for per-episode returns and success rates.

The OOD protocol (Dittadi et al., ICLR 2021; Traeuble, Dittadi et al., ICLR 2022) compares agents
per shift, never pooled across shifts. Every interval says how it was made (``Interval.method``):

* returns: seeded percentile bootstrap of the mean (Efron & Tibshirani 1993), :func:`bootstrap_ci`;
* success rates: the Clopper-Pearson exact binomial interval (or Wilson's score interval),
  :func:`binomial_ci`, which is never zero-width at 0% or 100% (40/40 -> [0.912, 1]);
* the mean of a few training runs: Student's t interval over the run means,
  :func:`t_interval`;
* paired comparisons of one agent under two conditions on the same episode seeds:
  :func:`mcnemar_exact` (successes) and :func:`paired_bootstrap` (returns).

A range of run means is not an interval estimate: :func:`format_range` prints it as
``range 72-75``, :func:`format_interval` prints confidence intervals in brackets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sparseshift.envs.infra.errors import ConfigError

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A sample mean (or proportion) and its confidence interval ``[low, high]``.

    ``resamples`` is 0 for analytic intervals; ``method`` names the procedure.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    resamples: int = 0
    method: str = "percentile-bootstrap"

    def to_json(self) -> dict[str, float | int | str]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": self.n,
                "confidence": self.confidence, "resamples": self.resamples,
                "method": self.method}


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of condition ``b`` against ``a`` (e.g. a shift against IN) over ``n``
    pairs: ``diff`` is ``mean(b - a)``, ``[ci_low, ci_high]`` its interval, ``p_value`` the
    two-sided p-value of no difference. ``a_only``/``b_only``: discordant pairs (McNemar)."""

    test: str
    n: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    a_only: int | None = None
    b_only: int | None = None
    confidence: float = DEFAULT_CONFIDENCE
    ci_method: str = ""
    resamples: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"test": self.test, "n": self.n, "diff": self.diff, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "p_value": self.p_value, "a_only": self.a_only,
                "b_only": self.b_only, "confidence": self.confidence,
                "ci_method": self.ci_method, "resamples": self.resamples}


def _finite(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ConfigError(f"{what} needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"{what} needs finite values")
    return x


def _check(confidence: float, resamples: int | None = None) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if resamples is not None and resamples < 1:
        raise ConfigError(f"resamples must be >= 1, got {resamples}")


def _paired(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, what: str
            ) -> tuple[np.ndarray, np.ndarray]:
    xa, xb = _finite(a, what), _finite(b, what)
    if xa.size != xb.size:
        raise ConfigError(f"{what} needs paired samples of equal length, got {xa.size} and "
                          f"{xb.size}")
    return xa, xb


def bootstrap_ci(values: Sequence[float] | np.ndarray, seed: int,
                 resamples: int = DEFAULT_RESAMPLES,
                 confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval (seeded, own generator).

    Procedure: ``numpy.random.default_rng(seed).integers(0, n, (resamples, n))`` indexes the
    resamples, and the interval is ``numpy.quantile`` of their means at ``(1 - confidence) / 2``
    and ``(1 + confidence) / 2``, widened to contain the sample mean if it does not (only
    possible for tiny samples).
    """
    x = _finite(values, "bootstrap_ci")
    _check(confidence, resamples)
    mean = float(x.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(mean, min(float(low), mean), max(float(high), mean), int(x.size),
                    confidence, resamples, "percentile-bootstrap")


def binomial_ci(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE,
                method: Literal["exact", "wilson"] = "exact") -> Interval:
    """Proportion ``successes / n`` with the Clopper-Pearson exact interval (``"exact"``: beta
    quantiles, 0 and 1 at the ends) or Wilson's score interval (no continuity correction); both
    equal :meth:`scipy.stats.binomtest(...).proportion_ci` of the same method."""
    from scipy.stats import beta, norm

    if isinstance(successes, bool) or isinstance(n, bool):
        raise ConfigError("binomial_ci needs integer counts")
    if n < 1 or not 0 <= successes <= n:
        raise ConfigError(f"binomial_ci needs 0 <= successes <= n and n >= 1, got {successes} "
                          f"of {n}")
    _check(confidence)
    k, alpha = int(successes), 1.0 - confidence
    p = k / n
    if method == "exact":
        low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
        high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
        name = "clopper-pearson"
    elif method == "wilson":
        z = float(norm.ppf(1 - alpha / 2))
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low, high = max(0.0, centre - half), min(1.0, centre + half)
        name = "wilson"
    else:
        raise ConfigError(f"unknown binomial interval method {method!r}; valid: exact, wilson")
    return Interval(p, low, high, int(n), confidence, 0, name)


def _successes(values: Sequence[bool | float] | np.ndarray, what: str) -> np.ndarray:
    x = _finite(values, what)
    if not np.all((x == 0.0) | (x == 1.0)):
        raise ConfigError(f"{what} needs successes that are 0/1 or False/True")
    return x.astype(bool)


def success_interval(successes: Sequence[bool | float] | np.ndarray,
                     confidence: float = DEFAULT_CONFIDENCE,
                     method: Literal["exact", "wilson"] = "exact") -> Interval:
    """:func:`binomial_ci` of per-episode successes (booleans or 0/1)."""
    s = _successes(successes, "success_interval")
    return binomial_ci(int(s.sum()), int(s.size), confidence, method)


def t_interval(values: Sequence[float] | np.ndarray,
               confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Mean of ``values`` (e.g. one score per training run) with Student's t interval
    ``mean +- t_{n-1} * sd / sqrt(n)``; needs at least two values."""
    from scipy.stats import t

    x = _finite(values, "t_interval")
    _check(confidence)
    if x.size < 2:
        raise ConfigError("t_interval needs at least two values")
    mean = float(x.mean())
    half = float(t.ppf((1 + confidence) / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(
        x.size)
    return Interval(mean, mean - half, mean + half, int(x.size), confidence, 0, "student-t")


def mcnemar_exact(a: Sequence[bool | float] | np.ndarray, b: Sequence[bool | float] | np.ndarray,
                  confidence: float = DEFAULT_CONFIDENCE) -> PairedTest:
    """Exact two-sided McNemar test of paired successes ``a[i]``, ``b[i]``.

    The p-value is the binomial test of the discordant pairs (``b_only`` of ``a_only + b_only``
    at p = 0.5; 1 when there are none), i.e. ``scipy.stats.binomtest(b_only, a_only + b_only,
    0.5).pvalue``. The interval of ``diff = mean(b) - mean(a)`` is Newcombe's (1998, *Stat Med*
    17:2635, method 10) hybrid score interval for a difference of paired proportions: Wilson
    intervals of both proportions combined with their phi correlation. It is analytic (no
    resampling) and never zero-width.
    """
    from scipy.stats import binomtest

    xa, xb = _paired(_successes(a, "mcnemar_exact"), _successes(b, "mcnemar_exact"),
                     "mcnemar_exact")
    _check(confidence)
    ta, tb = xa.astype(bool), xb.astype(bool)
    n = int(ta.size)
    both, a_only = int((ta & tb).sum()), int((ta & ~tb).sum())
    b_only, neither = int((~ta & tb).sum()), int((~ta & ~tb).sum())
    m = a_only + b_only
    p_value = float(binomtest(b_only, m, 0.5).pvalue) if m else 1.0
    pa, pb = (both + a_only) / n, (both + b_only) / n
    ia = binomial_ci(both + a_only, n, confidence, "wilson")
    ib = binomial_ci(both + b_only, n, confidence, "wilson")
    denom = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    phi = (both * neither - a_only * b_only) / math.sqrt(denom) if denom > 0 else 0.0
    da, ua = pa - ia.low, ia.high - pa
    db, ub = pb - ib.low, ib.high - pb
    diff = pb - pa
    low = diff - math.sqrt(max(0.0, db * db - 2 * phi * db * ua + ua * ua))
    high = diff + math.sqrt(max(0.0, ub * ub - 2 * phi * ub * da + da * da))
    return PairedTest("mcnemar-exact", n, diff, max(-1.0, low), min(1.0, high), p_value,
                      a_only, b_only, confidence, "newcombe-paired-score", 0)


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                     seed: int, resamples: int = DEFAULT_RESAMPLES,
                     confidence: float = DEFAULT_CONFIDENCE) -> PairedTest:
    """Paired percentile bootstrap of ``diff = mean(b - a)``: pairs are resampled with
    replacement (``default_rng(seed)``, as :func:`bootstrap_ci` does), the interval is the
    percentiles of the resampled mean differences ``d*`` (not widened), and the two-sided
    p-value is ``min(1, 2 * min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (resamples + 1))``: at least
    ``2 / (resamples + 1)``, and 1 when every pair is equal."""
    xa, xb = _paired(a, b, "paired_bootstrap")
    _check(confidence, resamples)
    d = xb - xa
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    le, ge = int((means <= 0).sum()), int((means >= 0).sum())
    p_value = min(1.0, 2.0 * (min(le, ge) + 1) / (resamples + 1))
    return PairedTest("paired-bootstrap", int(d.size), float(d.mean()), float(low), float(high),
                      p_value, None, None, confidence, "percentile-bootstrap", resamples)


def spearman_ci(x: Sequence[float], y: Sequence[float], resamples: int = 2000, seed: int = 0
                ) -> dict[str, Any]:
    """Spearman's rho with a percentile bootstrap 95% CI over the paired points (fewer than 3
    points, or constant x or y: rho is NaN). Resamples whose ranks are undefined (constant x or
    y) are dropped from the interval and counted in ``degenerate_resamples`` of ``resamples``."""
    from scipy.stats import spearmanr

    xa, ya = np.asarray(x, float), np.asarray(y, float)
    n = len(xa)

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
            return math.nan
        return float(spearmanr(a, b).statistic)

    point = rho(xa, ya)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(resamples if n >= 3 else 0):
        i = rng.integers(0, n, n)
        boots.append(rho(xa[i], ya[i]))
    valid = np.array([b for b in boots if not math.isnan(b)])
    lo, hi = (float(np.percentile(valid, 2.5)), float(np.percentile(valid, 97.5))) \
        if len(valid) else (math.nan, math.nan)
    return {"rho": point, "ci_low": lo, "ci_high": hi, "n": n,
            "degenerate_resamples": len(boots) - len(valid), "resamples": len(boots)}


def _num(x: float, percent: bool, digits: int) -> str:
    return f"{100 * x:.0f}" if percent else f"{x:.{digits}f}"


def format_interval(low: float, high: float, percent: bool = False, digits: int = 2) -> str:
    """A confidence interval in brackets: ``[72, 75]`` (``percent``: fractions as whole
    percentages) or ``[0.12, 0.34]``."""
    return f"[{_num(low, percent, digits)}, {_num(high, percent, digits)}]"


def format_range(values: Sequence[float] | np.ndarray, percent: bool = False,
                 digits: int = 2) -> str:
    """The spread of ``values`` (e.g. run means) as ``range 72-75`` (``range -1.20 to 0.50``
    when an end is negative); never in brackets, which are for confidence intervals."""
    x = _finite(values, "format_range")
    lo, hi = float(x.min()), float(x.max())
    sep = "-" if lo >= 0 and hi >= 0 else " to "
    return f"range {_num(lo, percent, digits)}{sep}{_num(hi, percent, digits)}"
