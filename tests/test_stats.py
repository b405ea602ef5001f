"""The estimators of sparseshift.agents.stats, the study aggregates and the report's statistics,
each checked against scipy, hand-computed values or cases whose answer is known."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest, spearmanr, t, trim_mean

from sparseshift.agents.stats import (
    Interval,
    PairedTest,
    binomial_ci,
    bootstrap_ci,
    format_interval,
    format_range,
    mcnemar_exact,
    paired_bootstrap,
    spearman_ci,
    success_interval,
    t_interval,
)
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.study.aggregates import (
    group_aggregates,
    iqm,
    markdown,
    optimality_gap,
    stratified_bootstrap,
)
from sparseshift.experiments.study.proxy_report import proxy_correlations
from sparseshift.experiments.study.report import across_runs, headline, paired_shift_tests

# ---------------------------------------------------------------- binomial intervals


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (0, 10, 0.0, 0.3085), (10, 10, 0.6915, 1.0), (5, 10, 0.1871, 0.8129), (40, 40, 0.9119, 1.0),
])
def test_exact_interval_hand_values(k: int, n: int, low: float, high: float) -> None:
    """Clopper-Pearson by hand: 0/n -> [0, 1 - (alpha/2)^(1/n)], n/n -> [(alpha/2)^(1/n), 1]."""
    iv = binomial_ci(k, n)
    assert (round(iv.low, 4), round(iv.high, 4)) == (low, high)
    assert iv.mean == k / n and iv.n == n and iv.method == "clopper-pearson" and iv.resamples == 0
    if k == 0:
        assert iv.high == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-12)
    if k == n:
        assert iv.low == pytest.approx(0.025 ** (1 / n), abs=1e-12)


@pytest.mark.parametrize("method", ["exact", "wilson"])
@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 7), (3, 17), (20, 40), (39, 40), (50, 50)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_binomial_ci_equals_scipy(method: Any, k: int, n: int, confidence: float) -> None:
    iv = binomial_ci(k, n, confidence, method)
    want = binomtest(k, n).proportion_ci(confidence_level=confidence, method=method)
    assert iv.low == pytest.approx(want.low, abs=1e-10)
    assert iv.high == pytest.approx(want.high, abs=1e-10)
    assert iv.high - iv.low > 0  # never zero width, also at 0% and 100%


def test_wilson_hand_value_and_success_interval() -> None:
    # 5/10 at z = 1.959964: centre 0.5, half = z sqrt(0.025 + z^2/400) / (1 + z^2/10)
    z = 1.959963984540054
    half = z * math.sqrt(0.025 + z * z / 400) / (1 + z * z / 10)
    iv = binomial_ci(5, 10, method="wilson")
    assert (iv.low, iv.high) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)
    assert iv.method == "wilson"
    assert success_interval([True, False, True, True]) == binomial_ci(3, 4)
    assert success_interval([1.0, 0.0, 0.0]) == binomial_ci(1, 3)


@pytest.mark.parametrize("call", [
    lambda: binomial_ci(0, 0), lambda: binomial_ci(5, 4), lambda: binomial_ci(-1, 4),
    lambda: binomial_ci(1, 4, confidence=1.0), lambda: binomial_ci(1, 4, method="nope"),
    lambda: success_interval([]), lambda: success_interval([0.5, 1.0]),
    lambda: success_interval([float("nan")]), lambda: t_interval([1.0]),
    lambda: mcnemar_exact([True], [True, False]), lambda: paired_bootstrap([1.0], [], 0),
    lambda: paired_bootstrap([1.0, math.inf], [1.0, 2.0], 0),
    lambda: paired_bootstrap([1.0], [2.0], 0, resamples=0), lambda: bootstrap_ci([], 0),
    lambda: format_range([]),
])
def test_bad_input_is_config_error(call: Any) -> None:
    with pytest.raises(ConfigError):
        call()


# ---------------------------------------------------------------- bootstrap of the mean


def test_bootstrap_ci_equals_an_independent_percentile_bootstrap() -> None:
    x = np.random.default_rng(0).normal(1.0, 2.0, 40)
    a = bootstrap_ci(x, seed=3)
    rng = np.random.default_rng(3)
    means = np.array([x[rng.integers(0, 40, 40)].mean() for _ in range(2000)])
    assert (a.low, a.high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-12)
    assert a.method == "percentile-bootstrap" and a.to_json()["method"] == "percentile-bootstrap"


def test_bootstrap_ci_known_answers() -> None:
    # two values: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    assert (bootstrap_ci([0.0, 1.0], seed=0).low, bootstrap_ci([0.0, 1.0], seed=0).high) == (
        0.0, 1.0)
    c = bootstrap_ci([2.5] * 7, seed=1)
    assert (c.low, c.mean, c.high) == (2.5, 2.5, 2.5)
    # a large normal sample: close to the normal-theory interval mean +- 1.96 sd / sqrt(n)
    x = np.random.default_rng(1).normal(0.0, 1.0, 2000)
    iv = bootstrap_ci(x, seed=0)
    half = 1.959964 * x.std() / math.sqrt(x.size)
    assert iv.low == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert iv.high == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_t_interval_equals_scipy() -> None:
    x = [0.72, 0.75, 0.74, 0.61]
    iv = t_interval(x)
    want = t.interval(0.95, 3, loc=np.mean(x), scale=np.std(x, ddof=1) / 2)
    assert (iv.low, iv.high) == pytest.approx(want, abs=1e-12)
    assert iv.method == "student-t" and iv.n == 4


# ---------------------------------------------------------------- paired tests


def test_mcnemar_p_equals_binomtest_and_hand_values() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        a, b = rng.random(30) < 0.6, rng.random(30) < 0.4
        res = mcnemar_exact(a, b)
        a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
        assert (res.a_only, res.b_only, res.n) == (a_only, b_only, 30)
        want = binomtest(b_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
        assert res.p_value == want
        assert res.diff == pytest.approx(b.mean() - a.mean())
        assert res.ci_low < res.diff < res.ci_high
    # 6 discordant pairs, all one way: p = 2 / 2^6
    a = [True] * 6 + [False] * 4
    b = [False] * 10
    assert mcnemar_exact(a, b).p_value == pytest.approx(2 / 64)
    assert mcnemar_exact(a, a).p_value == 1.0  # no discordant pairs


def test_mcnemar_interval_all_concordant_is_wilson_width() -> None:
    """40/40 under both: Newcombe's interval is -+(1 - Wilson low of 40/40), not zero-width."""
    res = mcnemar_exact([True] * 40, [True] * 40)
    w = binomial_ci(40, 40, method="wilson")
    assert (res.diff, res.ci_low, res.ci_high) == pytest.approx((0.0, w.low - 1, 1 - w.low))
    assert res.test == "mcnemar-exact" and res.to_json()["ci_method"] == "newcombe-paired-score"


def test_mcnemar_interval_covers_the_true_difference() -> None:
    """Coverage of the paired score interval in simulation (Newcombe 1998: close to 95%)."""
    rng = np.random.default_rng(1)
    probs = [0.4, 0.1, 0.2, 0.3]  # both, a only, b only, neither: true diff 0.1
    hits, sims = 0, 400
    for _ in range(sims):
        c = rng.choice(4, size=40, p=probs)
        res = mcnemar_exact((c == 0) | (c == 1), (c == 0) | (c == 2))
        hits += res.ci_low <= 0.1 <= res.ci_high
    assert 0.91 <= hits / sims <= 0.99


def test_paired_bootstrap_known_cases() -> None:
    a = np.arange(30, dtype=float)
    shifted = paired_bootstrap(a, a + 1, seed=0)
    assert (shifted.diff, shifted.ci_low, shifted.ci_high) == (1.0, 1.0, 1.0)
    assert shifted.p_value == pytest.approx(2 / 2001) and shifted.n == 30
    same = paired_bootstrap(a, a, seed=0)
    assert (same.diff, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    # the interval is the bootstrap interval of the differences, not of either sample
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 5, 50), rng.normal(0, 0.1, 50)
    res = paired_bootstrap(x, x + y, seed=4)
    want = bootstrap_ci(y, seed=4)
    assert (res.ci_low, res.ci_high) == pytest.approx((want.low, want.high), abs=1e-12)
    assert isinstance(res, PairedTest) and res.to_json()["test"] == "paired-bootstrap"


# ---------------------------------------------------------------- formatting


def test_ranges_and_intervals_print_differently() -> None:
    assert format_range([0.74, 0.72, 0.75], percent=True) == "range 72-75"
    assert format_range([-1.2, 0.5]) == "range -1.20 to 0.50"
    assert format_interval(0.72, 0.75, percent=True) == "[72, 75]"
    assert format_interval(-0.1, 0.25) == "[-0.10, 0.25]"


# ---------------------------------------------------------------- aggregates (rliable-style)


def test_iqm_equals_trim_mean_on_hand_examples() -> None:
    assert iqm(np.arange(1.0, 9.0)) == 4.5  # drops 1, 2 and 7, 8
    assert iqm(np.array([0.0, 0.0, 0.0, 1.0, 10.0])) == pytest.approx(1 / 3)  # one each end
    assert iqm(np.array([1.0, 2.0, 6.0])) == 3.0  # fewer than 4: the plain mean
    x = np.random.default_rng(0).random((7, 3))
    assert iqm(x) == pytest.approx(trim_mean(x.ravel(), 0.25))
    assert optimality_gap(np.array([1.0, 0.5, 0.0, 1.2])) == pytest.approx(1.5 / 4)


def test_stratified_bootstrap_known_answers() -> None:
    point, lo, hi = stratified_bootstrap([np.full(4, 0.3), np.full(2, 0.3)], iqm)
    assert point == lo == hi == pytest.approx(0.3)
    # one task, runs 0 and 1: resampled IQMs (means of 2) are 0, 0.5, 1 -> interval [0, 1]
    assert stratified_bootstrap([np.array([0.0, 1.0])], iqm) == (0.5, 0.0, 1.0)
    # stratified: the constant task is never resampled away, so the low end is mean(1, 0, 0)
    point, lo, hi = stratified_bootstrap([np.array([1.0]), np.array([0.0, 1.0])], iqm)
    assert (point, lo, hi) == pytest.approx((2 / 3, 1 / 3, 1.0))
    with pytest.raises(ConfigError):
        stratified_bootstrap([], iqm)


def _row(env: str, enc: str, shift: str, success: float, **kw: Any) -> dict[str, Any]:
    return {"env_id": env, "encoder": enc, "kind": kw.get("kind", "learned"), "shift": shift,
            "success": success, "return": kw.get("ret", success), "encoder_seed": kw.get("es", 0),
            "agent_seed": kw.get("seed", 0), "agent_dir": kw.get("dir", f"{enc}{kw.get('es', 0)}"),
            "metrics": kw.get("metrics", {}), "success_ci": kw.get("sci", [0.0, 1.0]),
            "return_ci": kw.get("rci", [0.0, 1.0]), "success_ci_method": "clopper-pearson",
            "return_ci_method": "percentile-bootstrap",
            "episode_successes": kw.get("es_list"), "episode_returns": kw.get("er_list")}


def test_group_aggregates_and_single_run_groups_print_no_interval() -> None:
    table = [_row("E", "vae", "in", s, es=i) for i, s in enumerate([0.2, 0.4, 0.6, 0.8])]
    table.append(_row("E", "state", "in", 0.9, kind="baseline"))
    aggs = {a["encoder"]: a for a in group_aggregates(table, resamples=500)}
    assert aggs["vae"]["iqm"] == pytest.approx(0.5) and aggs["vae"]["runs"] == 4
    assert aggs["all learned"]["iqm"] == aggs["vae"]["iqm"]
    assert aggs["state"]["iqm_ci"] == [0.9, 0.9]
    md = markdown(list(aggs.values()))
    assert "90% (1 run per env, no CI)" in md and "[0.9" not in md
    lo, hi = aggs["vae"]["iqm_ci"]
    assert f"50% [{100 * lo:.0f}, {100 * hi:.0f}]" in md


# ---------------------------------------------------------------- rank correlations


def test_spearman_ci_point_equals_scipy_and_monotone_case() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.random(8), rng.random(8)
    c = spearman_ci(x, y, resamples=300)
    assert c["rho"] == pytest.approx(spearmanr(x, y).statistic)
    assert c["ci_low"] <= c["ci_high"] and c["n"] == 8 and c["resamples"] == 300
    mono = spearman_ci([1, 2, 3, 4, 5], [10, 20, 25, 40, 41], resamples=300)
    assert (mono["rho"], mono["ci_low"], mono["ci_high"]) == pytest.approx((1.0, 1.0, 1.0))
    # three points, two with equal x: x is constant in (2/3)^3 + (1/3)^3 = 1/3 of the resamples
    tied = spearman_ci([1, 1, 2], [1, 2, 3], resamples=900)
    assert tied["degenerate_resamples"] / 900 == pytest.approx(1 / 3, abs=0.06)
    assert math.isnan(spearman_ci([1, 2], [2, 1])["rho"])


def test_proxy_correlations_on_a_hand_made_table() -> None:
    def r(enc: str, es: int, seed: int, shift: str, proxy: float, success: float
          ) -> dict[str, Any]:
        return _row("E", enc, shift, success, es=es, seed=seed,
                    metrics={f"proxy_mlp_{shift}": proxy})

    table = [r("a", 0, 0, "ood2", 0.1, 0.0), r("a", 0, 1, "ood2", 0.1, 0.2),
             r("b", 0, 0, "ood2", 0.5, 0.5), r("c", 0, 0, "ood2", 0.9, 0.4),
             r("c", 1, 0, "ood2", 0.7, 0.9)]
    corr = proxy_correlations(table)
    (c,) = corr["E"].values()
    # encoder runs: a/s0 (0.1, mean 0.1), b/s0 (0.5, 0.5), c/s0 (0.9, 0.4), c/s1 (0.7, 0.9)
    want = spearmanr([0.1, 0.5, 0.9, 0.7], [0.1, 0.5, 0.4, 0.9]).statistic
    assert list(corr["E"]) == ["ood2"] and c["success"]["n"] == 4
    assert c["success"]["rho"] == pytest.approx(want) == pytest.approx(0.4)


# ---------------------------------------------------------------- the study report's cells


def test_across_runs_one_two_and_three_runs() -> None:
    one = across_runs([_row("E", "v", "in", 0.75, sci=[0.6, 0.86], rci=[1.0, 2.0], ret=1.5)],
                      "success")
    assert one.ci == (0.6, 0.86) and one.ci_method == "clopper-pearson" and one.spread is None
    assert one.format(percent=True) == "75% [60, 86]"
    two = across_runs([_row("E", "v", "in", s) for s in (0.72, 0.75)], "success")
    assert two.ci is None and two.format(percent=True) == "74% (range 72-75, 2 runs)"
    vals = [0.72, 0.75, 0.74]
    three = across_runs([_row("E", "v", "in", s, ret=-s) for s in vals], "success")
    want = t.interval(0.95, 2, loc=np.mean(vals), scale=np.std(vals, ddof=1) / math.sqrt(3))
    assert three.ci == pytest.approx(want) and three.ci_method == "student-t"
    lo, hi = want
    assert three.format(percent=True) == (f"74% [{100 * lo:.0f}, {100 * hi:.0f}] "
                                          "(range 72-75, 3 runs)")
    ret = across_runs([_row("E", "v", "in", s, ret=-s) for s in vals], "return")
    assert ret.format(percent=False).endswith("(range -0.75 to -0.72, 3 runs)")
    # success intervals over runs stay within 0-100%
    assert across_runs([_row("E", "v", "in", s) for s in (0.0, 1.0, 1.0)], "success").ci == (
        0.0, 1.0)
    md = headline([_row("E", "v", "in", s, es=i) for i, s in enumerate((0.72, 0.75))])
    assert "74% (range 72-75, 2 runs)" in md and "[72, 75]" not in md


def test_paired_shift_tests_use_the_episode_lists() -> None:
    ins = [True] * 8 + [False] * 2
    ood = [True] * 2 + [False] * 8
    r_in = [1.0 * s for s in ins]
    r_ood = [x - 0.5 for x in r_in]
    table = [_row("E", "v", "in", 0.8, es_list=ins, er_list=r_in),
             _row("E", "v", "ood2", 0.2, es_list=ood, er_list=r_ood),
             _row("E", "w", "in", 0.5), _row("E", "w", "ood2", 0.5)]  # no lists: skipped
    md, data = paired_shift_tests(table)
    (d,) = data
    assert d["shift"] == "ood2" and d["success"]["p_value"] == pytest.approx(2 / 64)
    assert (d["success"]["a_only"], d["success"]["b_only"]) == (6, 0)
    assert d["return"]["diff"] == -0.5 and d["return"]["ci_low"] == d["return"]["ci_high"] == -0.5
    assert "80% -> 20%" in md and "| 6 / 0 | 0.031 |" in md
    assert paired_shift_tests(table[2:]) == ("", [])


def test_interval_keeps_its_old_constructor() -> None:
    iv = Interval(1.0, 0.5, 1.5, 10, 0.95, 2000)
    assert iv.method == "percentile-bootstrap" and iv.to_json()["resamples"] == 2000


def test_aggregates_of_two_runs_print_a_range_not_a_ci() -> None:
    from sparseshift.experiments.study.aggregates import group_aggregates, markdown

    table = [{"encoder": e, "kind": "learned", "env_id": "e", "shift": "in", "success": s}
             for e, runs in (("two", (0.2, 0.4)), ("three", (0.2, 0.4, 0.6)))
             for s in runs]
    md = markdown(group_aggregates(table, resamples=200))
    two = next(line for line in md.splitlines() if line.startswith("| two |"))
    three = next(line for line in md.splitlines() if line.startswith("| three |"))
    assert "30% (range 20-40, 2 runs, no CI)" in two and "[" not in two
    assert "[" in three and "range" not in three
