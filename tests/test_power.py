"""The sweep report's power section: rank correlations with intervals and the null reference."""

from __future__ import annotations

import math

import numpy as np

from sparseshift.experiments.study.power import (
    markdown,
    null_interval,
    power,
    spearman_interval,
)


def test_spearman_interval_matches_scipy_and_covers_strong_relations() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x = rng.normal(size=24)
    y = x + 0.5 * rng.normal(size=24)
    c = spearman_interval(x, y)
    assert math.isclose(c["rho"], spearmanr(x, y).statistic, abs_tol=1e-12)
    assert 0 < c["ci_low"] < c["rho"] < c["ci_high"] <= 1
    ties = spearman_interval([1, 1, 2, 2, 3, 3], [1, 2, 2, 3, 3, 4])
    assert math.isclose(ties["rho"], spearmanr([1, 1, 2, 2, 3, 3], [1, 2, 2, 3, 3, 4]).statistic)
    assert math.isnan(spearman_interval([1, 2, 3], [3, 2, 1])["ci_low"])  # too few for a CI


def test_null_interval_is_wide_at_six_and_narrower_at_twenty_four() -> None:
    six, many = null_interval(6, resamples=400, sims=120), null_interval(24, resamples=400,
                                                                         sims=120)
    assert 1.5 < six["median_width"] < 2.0  # the "about 1.8 wide"
    assert 0.6 < many["median_width"] < 1.0
    assert six["excludes_zero"] < 0.12 and many["excludes_zero"] < 0.15


def test_power_tables_per_metric_and_shift() -> None:
    rng = np.random.default_rng(1)
    table = []
    for i in range(8):
        quality = i / 7
        for seed in (0, 1):
            for shift in ("in", "ood2"):
                table.append({"env_id": "e", "kind": "learned", "encoder": f"enc{i}",
                              "encoder_seed": None, "shift": shift,
                              "success": quality * (0.9 if shift == "in" else 0.6)
                              + 0.01 * seed,
                              "metrics": {"mig": quality, "sap": float(rng.normal()),
                                          "proxy_mlp_ood2_task": quality}})
    table.append({**table[0], "kind": "random", "encoder": "random"})  # floors are left out
    d = power(table, {"e": ["in", "ood2"]})["e"]
    assert d["n"] == 8
    assert d["rho"]["mig"]["ood2"]["rho"] == 1.0
    assert d["rho"]["proxy_mlp_{shift}_task"]["ood2"]["rho"] == 1.0
    assert "in" not in d["rho"]["proxy_mlp_{shift}_task"]  # no IN proxy score given
    assert abs(d["rho"]["sap"]["ood2"]["rho"]) < 1
    md = markdown({"e": d})
    assert "| MIG | +1.00" in md and "8 learned encoder runs" in md
    assert "excludes 0 in" in md
