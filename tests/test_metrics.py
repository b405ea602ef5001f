"""Metric sanity brackets on synthetic codes (no model): identity codes score high, random and
constant codes about zero, a rotation of the factors low; the discretisation rule; the probes."""

from __future__ import annotations

import numpy as np
import pytest

from sparseshift.envs.core.factors import Factor, FactorSpec, colour_factors
from sparseshift.representations import metrics as M
from sparseshift.representations.probes import fit_probes

N_TRAIN, N_TEST, F = 1000, 500, 4


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, [6, 8, 5, 7], size=(N_TRAIN + N_TEST, F)).astype(np.float64)


@pytest.fixture(scope="module")
def labels(factors: np.ndarray) -> np.ndarray:
    t = M.discretise_factors(factors)
    assert t.names == ("factor_0", "factor_1", "factor_2", "factor_3")
    return t.labels


def scores(codes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    m = M.all_metrics(codes[:N_TRAIN], labels[:N_TRAIN], codes[N_TRAIN:], labels[N_TRAIN:],
                      seed=0, factor_vae_train=500, factor_vae_eval=300)
    return M.summary(m)


def test_identity_codes_score_high(factors: np.ndarray, labels: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    codes = (factors - factors.mean(0)) / factors.std(0) + rng.normal(0, 0.01, factors.shape)
    s = scores(codes, labels)
    assert 0.9 <= s["mig"] <= 1.0
    assert s["dci_disentanglement"] >= 0.9 and s["dci_completeness"] >= 0.9
    assert s["dci_informativeness_test"] >= 0.9
    assert s["modularity"] >= 0.9 and s["explicitness_test"] >= 0.9
    assert s["factor_vae_eval"] >= 0.9


def test_random_codes_score_about_zero(factors: np.ndarray, labels: np.ndarray) -> None:
    codes = np.random.default_rng(2).normal(size=factors.shape)
    s = scores(codes, labels)
    assert s["mig"] < 0.05
    assert s["dci_disentanglement"] < 0.1 and s["dci_completeness"] < 0.1
    assert s["dci_informativeness_test"] < 0.3  # chance is about 1/6
    assert s["sap"] < 0.05
    assert s["explicitness_test"] < 0.6  # chance is 0.5


def test_constant_codes_score_zero(factors: np.ndarray, labels: np.ndarray) -> None:
    s = scores(np.zeros_like(factors), labels)
    for key in ("mig", "dci_disentanglement", "dci_completeness", "sap", "modularity",
                "factor_vae_eval"):
        assert s[key] == pytest.approx(0.0, abs=1e-6), key


def test_a_rotation_of_the_factors_scores_low(factors: np.ndarray, labels: np.ndarray) -> None:
    z = (factors - factors.mean(0)) / factors.std(0)
    hadamard = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
    s = scores(z @ hadamard, labels)  # every code mixes every factor equally
    assert s["mig"] < 0.1
    assert s["dci_disentanglement"] < 0.2 and s["dci_completeness"] < 0.2
    assert s["modularity"] < 0.5
    assert s["explicitness_test"] > 0.9  # still linearly decodable: only disentanglement drops


def test_mig_and_modularity_on_known_matrices() -> None:
    assert M.modularity(np.array([[1.0, 0.0], [0.0, 2.0]])) == 1.0
    assert M.modularity(np.array([[1.0, 1.0], [0.0, 0.0]])) == 0.0  # even mix, and a dead code
    labels = np.repeat(np.arange(4), 50)[:, None]
    one = M.mig(np.stack([labels[:, 0] * 1.0, np.zeros(200)], 1), labels)
    assert one["mig"] == pytest.approx(1.0)
    twice = M.mig(np.stack([labels[:, 0] * 1.0, labels[:, 0] * 2.0], 1), labels)
    assert twice["mig"] == pytest.approx(0.0)  # the information sits in two codes: no gap


def test_factor_vae_without_active_dims_is_zero() -> None:
    rng = np.random.default_rng(0)
    codes = rng.normal(0, 0.01, (200, 3))  # every variance below the 0.05 pruning threshold
    labels = rng.integers(0, 3, (200, 2))
    out = M.factor_vae_score(codes, M.grouped_batches(codes, labels), 2, rng, 10, 10)
    assert out == {"factor_vae_train": 0.0, "factor_vae_eval": 0.0, "factor_vae_active_dims": 0}


def test_discretisation_rule() -> None:
    spec = FactorSpec((
        Factor("cell", "discrete", 0.0, 3.0, (0.0, 1.0, 2.0, 3.0)),
        Factor("angle", "continuous", -1.0, 1.0),
        Factor("slot", "continuous", 0.0, 1.0),
        *colour_factors("cube"),
        Factor("fixed", "continuous", 0.0, 1.0),
    ))
    rng = np.random.default_rng(0)
    n = 400
    palette = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.9]])
    pal_idx = rng.integers(0, 3, n)
    f = np.column_stack([
        rng.integers(0, 4, n) * 1.0,
        rng.uniform(-1, 1, n),
        rng.integers(0, 5, n) / 4.0,
        palette[pal_idx],
        np.full(n, 0.5),
    ])
    t = M.discretise_factors(f, spec)
    assert t.names == ("cell", "angle", "slot", "cube") and t.dropped == ("fixed",)
    assert t.rules[1] == "20 equal bins over [-1, 1]" and t.rules[3] == "palette index (3 colours)"
    assert np.array_equal(t.labels[:, 0], f[:, 0].astype(int))
    assert np.array_equal(t.labels[:, 1], np.clip(np.floor((f[:, 1] + 1) / 2 * 20), 0, 19))
    assert np.array_equal(t.labels[:, 2], np.round(f[:, 2] * 4).astype(int))
    # palette index: a bijection with the colour drawn
    assert len({(a, b) for a, b in zip(pal_idx, t.labels[:, 3], strict=True)}) == 3


def test_train_test_indices_shrink_keeping_the_ratio() -> None:
    rng = np.random.default_rng(0)
    tr, te = M.train_test_indices(300, 10000, 5000, rng)
    assert (len(tr), len(te)) == (200, 100)
    assert not set(tr.tolist()) & set(te.tolist())
    tr, te = M.train_test_indices(20000, 10000, 5000, rng)
    assert (len(tr), len(te)) == (10000, 5000)


def test_probes_r2_is_high_for_informative_codes_and_low_for_noise() -> None:
    rng = np.random.default_rng(0)
    f = rng.uniform(-1, 1, (800, 3))
    codes = np.column_stack([f[:, 0] * 2 + 1, np.sin(2 * f[:, 1]), f[:, 2] ** 3])
    fp = fit_probes(codes[:600], f[:600], seed=0)
    r2 = fp.r2(codes[600:], f[600:])
    lin, mlp = [float(v or 0) for v in r2["linear"]], [float(v or 0) for v in r2["mlp"]]
    assert min(lin) > 0.75 and lin[0] > 0.99
    assert min(mlp) > 0.9
    noise = rng.normal(size=(800, 3))
    r2n = fit_probes(noise[:600], f[:600]).r2(noise[600:], f[600:])
    assert max(float(v or 0) for v in r2n["linear"]) < 0.1
    const = fp.r2(codes[600:], np.zeros((200, 3)))
    assert const["linear"] == [None, None, None]


def test_wide_codes_use_the_fast_sap_and_capped_explicitness(factors: np.ndarray,
                                                              labels: np.ndarray) -> None:
    """Above 64 code dims SAP is Kumar et al.'s squared-correlation form (one matrix product,
    not D x F SVC fits) and explicitness fits on at most 2,000 codes; both still separate an
    identity code padded with noise dims from pure noise. Up to 64 dims the exact path runs."""
    rng = np.random.default_rng(3)
    z = (factors - factors.mean(0)) / factors.std(0)
    wide = np.concatenate([z, rng.normal(size=(len(z), 96))], axis=1)  # 100 dims
    noise = rng.normal(size=wide.shape)
    tr, te = slice(0, N_TRAIN), slice(N_TRAIN, None)
    good = M.sap(wide[tr], labels[tr], wide[te], labels[te])
    bad = M.sap(noise[tr], labels[tr], noise[te], labels[te])
    assert good["sap_method"] == bad["sap_method"] == "corr"
    assert good["sap"] > 0.5 and bad["sap"] < 0.05
    assert M.sap(z[tr], labels[tr], z[te], labels[te])["sap_method"] == "svc"
    ex = M.modularity_explicitness(wide[tr], labels[tr], wide[te], labels[te], wide_max_train=500)
    assert ex["explicitness_max_train"] == 500 and ex["explicitness_test"] > 0.75
    ex_noise = M.modularity_explicitness(noise[tr], labels[tr], noise[te], labels[te],
                                         wide_max_train=500)
    assert ex_noise["explicitness_test"] < 0.6  # chance is 0.5
    assert M.modularity_explicitness(z[tr], labels[tr], z[te], labels[te])[
        "explicitness_max_train"] is None
