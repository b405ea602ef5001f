"""Factor probes: per-factor R^2 of a linear and a small nonlinear regressor on frozen codes.

The cheap downstream proxy of Traeuble, Dittadi et al. 2022 (*The Role of Pretrained
Representations for the OOD Generalization of RL Agents*): predict the ground-truth factors from
the latents; its out-of-distribution R^2 tracks the RL agents' OOD generalisation. Probes are fit
once (e.g. on in-distribution codes) and can then score any other set of codes (e.g. OOD ones).

* linear: ridge regression (alpha 1e-3) on standardised codes;
* nonlinear: an MLP with two hidden layers of 64 ReLU units (sklearn ``MLPRegressor``, Adam,
  early stopping on 10% of the training set), all factors at once on standardised targets.

R^2 per factor is ``1 - SSE / SST`` on raw factor values; it is ``None`` for a factor that is
constant in the scored set.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


def r2_per_factor(y: np.ndarray, pred: np.ndarray) -> list[float | None]:
    sse = np.sum((y - pred) ** 2, axis=0)
    sst = np.sum((y - y.mean(0)) ** 2, axis=0)
    return [None if t <= 1e-12 else float(1.0 - e / t) for e, t in zip(sse, sst, strict=True)]


@dataclass
class FactorProbes:
    """Fitted linear and MLP probes from codes to factors."""

    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    linear: Any
    mlp: Any

    def predict(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        x = (codes - self.x_mean) / self.x_std
        return {
            "linear": self.linear.predict(x) * self.y_std + self.y_mean,
            "mlp": self.mlp.predict(x).reshape(len(x), -1) * self.y_std + self.y_mean,
        }

    def r2(self, codes: np.ndarray, factors: np.ndarray) -> dict[str, list[float | None]]:
        """Per-factor R^2 of both probes on ``(codes, factors)``."""
        return {k: r2_per_factor(factors, p) for k, p in self.predict(codes).items()}


def fit_probes(codes: np.ndarray, factors: np.ndarray, seed: int = 0,
               hidden: tuple[int, ...] = (64, 64), max_iter: int = 300) -> FactorProbes:
    """Fit both probes on ``codes [N, D]`` -> ``factors [N, F]`` (float)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor

    x_mean, x_std = codes.mean(0), codes.std(0) + 1e-8
    y = np.asarray(factors, dtype=np.float64)
    y_mean, y_std = y.mean(0), y.std(0) + 1e-8
    x = (codes - x_mean) / x_std
    yn = (y - y_mean) / y_std
    linear = Ridge(alpha=1e-3).fit(x, yn)
    mlp = MLPRegressor(hidden_layer_sizes=hidden, max_iter=max_iter, early_stopping=True,
                       random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(x, yn)
    return FactorProbes(x_mean, x_std, y_mean, y_std, linear, mlp)
