"""Bootstrap confidence intervals for per-episode returns and success rates.

The OOD protocol (Dittadi et al., ICLR 2021; Traeuble, Dittadi et al., ICLR 2022) compares agents
per shift; we report each shift's mean with a seeded percentile-bootstrap 95% interval (Efron &
Tibshirani 1993), never pooled across shifts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparseshift.envs.errors import ConfigError

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A sample mean and its bootstrap confidence interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    resamples: int

    def to_json(self) -> dict[str, float | int]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": self.n,
                "confidence": self.confidence, "resamples": self.resamples}


def bootstrap_ci(values: Sequence[float] | np.ndarray, seed: int,
                 resamples: int = DEFAULT_RESAMPLES,
                 confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval (seeded, own generator).

    The interval always brackets the mean of the sample (the percentiles are clipped to it, which
    only matters for tiny or constant samples). ``resamples`` means are drawn in one vectorised
    batch.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ConfigError("bootstrap_ci needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ConfigError("bootstrap_ci needs finite values")
    if resamples < 1:
        raise ConfigError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(x.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(mean, min(float(low), mean), max(float(high), mean), int(x.size),
                    confidence, resamples)
