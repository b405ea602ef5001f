"""Disentanglement metrics on codes ``[N, D]`` and discretised factors ``[N, F]`` (numpy only).

Definitions and protocols follow disentanglement_lib (Locatello et al. 2019, *Challenging Common
Assumptions in the Unsupervised Learning of Disentangled Representations*):

* **MIG** (Chen et al. 2018): codes discretised by a 20-bin histogram per dim; mutual information
  ``I(code_i; factor_j)``; MIG = mean over factors of the gap between the two largest MIs divided
  by the factor's entropy.
* **DCI** (Eastwood & Williams 2018): one gradient-boosted-trees classifier per factor on the codes
  (sklearn ``GradientBoostingClassifier``; disentanglement_lib uses 100 estimators, the default
  here is ``dci_estimators=30`` with ``dci_max_train=2000`` to keep evaluation of a small dataset
  under a minute -- pass 100 / None for the full protocol). Feature importances give ``R [D, F]``.
  Disentanglement = sum_i rho_i (1 - H_F(P_i.)), rho_i = share of code i in the total importance;
  completeness = sum_j rho_j (1 - H_D(P_.j)); informativeness = classifier test accuracy.
* **SAP** (Kumar et al. 2018), discrete factors: a ``LinearSVC(C=0.01, class_weight="balanced")``
  per (code dim, factor) on the single code dim; SAP = mean over factors of the gap between the
  best two test accuracies.
* **Modularity / explicitness** (Ridgeway & Zemel 2018): modularity from the histogram MI matrix;
  explicitness = one-vs-rest ROC-AUC of a logistic regression on standardised codes, averaged.
* **FactorVAE score** (Kim & Mnih 2018): global code variances; dims with variance < 0.05 are
  pruned; each vote fixes one factor in a batch of 64, normalises the batch's code variances by
  the global ones and votes (argmin dim, factor); a majority-vote classifier's accuracy is the
  score.
  :func:`factor_vae_score` takes the batches from a callback:
  :mod:`sparseshift.representations.evaluate`
  renders them with the env or approximates them by grouping dataset samples
  (:func:`grouped_batches`).

Factors are discretised by :func:`discretise_factors` (the rule is in its docstring). Every function
takes a seeded :class:`numpy.random.Generator` (or a seed) where it needs randomness.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats
from sklearn.metrics import mutual_info_score

from sparseshift.envs.core.factors import FactorSpec

NUM_BINS = 20
MAX_PALETTE = 32
PRUNE_VARIANCE = 0.05


@dataclass(frozen=True)
class Targets:
    """Discretised factors: one integer label column per target, plus how each was made."""

    names: tuple[str, ...]
    labels: np.ndarray  # int64 [N, T]
    rules: tuple[str, ...]
    dropped: tuple[str, ...] = ()  # constant in the data, left out of the metrics


def _value_index(x: np.ndarray) -> np.ndarray:
    return np.unique(x, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _bin(x: np.ndarray, low: float, high: float, bins: int) -> np.ndarray:
    if high <= low:
        return np.zeros(len(x), np.int64)
    idx = np.floor((x - low) / (high - low) * bins).astype(np.int64)
    return np.clip(idx, 0, bins - 1)


def discretise_factors(factors: np.ndarray, spec: FactorSpec | None = None,
                       bins: int = NUM_BINS, max_palette: int = MAX_PALETTE) -> Targets:
    """Integer labels for the metrics, by this rule:

    1. A group whose factors are all colour channels and whose RGB triples take at most
       ``max_palette`` distinct values in the data becomes ONE target named after the group,
       labelled by the index of its triple among the distinct ones (the palette index).
    2. Otherwise each factor is its own target: discrete factors by the index of their value;
       continuous factors and colour channels by the index of their value when they take at most
       ``bins`` distinct values in the data (e.g. grid positions), else by ``bins`` equal-width bins
       over the declared ``[low, high]``.
    3. Targets that are constant in the data are dropped (listed in ``dropped``).

    Without a spec every column is treated as continuous over its observed range.
    """
    f = np.asarray(factors, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"factors must be [N, F], got shape {f.shape}")
    names: list[str] = []
    cols: list[np.ndarray] = []
    rules: list[str] = []
    groups: list[tuple[str, list[int]]]
    if spec is None:
        groups = [(f"factor_{j}", [j]) for j in range(f.shape[1])]
    else:
        if len(spec) != f.shape[1]:
            raise ValueError(f"factors have {f.shape[1]} columns, the spec {len(spec)}")
        groups = [(g, list(spec.group_indices(g))) for g in spec.groups]
    for group, idx in groups:
        kinds = {spec.factors[i].kind for i in idx} if spec is not None else {"continuous"}
        if spec is not None and kinds == {"colour"} and len(idx) > 1:
            rows, inverse = np.unique(f[:, idx], axis=0, return_inverse=True)
            if len(rows) <= max_palette:
                names.append(group)
                cols.append(inverse.reshape(-1).astype(np.int64))
                rules.append(f"palette index ({len(rows)} colours)")
                continue
        for i in idx:
            name = spec.factors[i].name if spec is not None else group
            x = f[:, i]
            distinct = len(np.unique(x))
            if spec is not None and spec.factors[i].kind == "discrete":
                values = np.asarray(spec.factors[i].values)
                cols.append(np.abs(x[:, None] - values[None]).argmin(1).astype(np.int64))
                rules.append(f"value index ({len(values)} values)")
            elif distinct <= bins:
                cols.append(_value_index(x))
                rules.append(f"value index ({distinct} values)")
            else:
                low, high = ((spec.factors[i].low, spec.factors[i].high) if spec is not None
                             else (float(x.min()), float(x.max())))
                cols.append(_bin(x, low, high, bins))
                rules.append(f"{bins} equal bins over [{low:g}, {high:g}]")
            names.append(name)
    keep = [j for j, c in enumerate(cols) if len(np.unique(c)) > 1]
    dropped = tuple(names[j] for j in range(len(names)) if j not in keep)
    labels = (np.stack([cols[j] for j in keep], axis=1) if keep
              else np.zeros((len(f), 0), np.int64))
    return Targets(tuple(names[j] for j in keep), labels, tuple(rules[j] for j in keep), dropped)


def histogram_discretise(codes: np.ndarray, bins: int = NUM_BINS) -> np.ndarray:
    """disentanglement_lib's ``_histogram_discretize``: 20 equal-width bins per code dim."""
    out = np.zeros(codes.shape, np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], bins)[1]
        out[:, i] = np.digitize(codes[:, i], edges[:-1])
    return out


def mutual_info_matrix(disc_codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``m[i, j] = I(code_i; factor_j)`` in nats, ``[D, F]``."""
    return np.array([[mutual_info_score(labels[:, j], disc_codes[:, i])
                      for j in range(labels.shape[1])] for i in range(disc_codes.shape[1])])


def entropies(labels: np.ndarray) -> np.ndarray:
    return np.array([mutual_info_score(labels[:, j], labels[:, j])
                     for j in range(labels.shape[1])])


def mig(codes: np.ndarray, labels: np.ndarray, bins: int = NUM_BINS) -> dict[str, Any]:
    """Mutual Information Gap (Chen et al. 2018) with disentanglement_lib's discretisation."""
    m = mutual_info_matrix(histogram_discretise(codes, bins), labels)
    h = entropies(labels)
    if m.shape[0] < 2:
        return {"mig": 0.0, "mig_per_factor": [0.0] * labels.shape[1]}
    top = np.sort(m, axis=0)[::-1]
    per = (top[0] - top[1]) / h
    return {"mig": float(per.mean()), "mig_per_factor": per.tolist()}


def _split(n_train: int, codes: np.ndarray, labels: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return codes[:n_train], labels[:n_train], codes[n_train:], labels[n_train:]


def _normalised_entropy_complement(weights: np.ndarray, base: int) -> np.ndarray:
    """``1 - H_base(rows of weights)`` (disentanglement_lib adds 1e-11 to avoid empty rows)."""
    return 1.0 - scipy.stats.entropy(weights.T + 1e-11, base=base)


#: Widest code DCI scores with disentanglement_lib's exact method (one gradient-boosted-trees
#: classifier per factor); wider codes (the NWM's 512-dim sheet) use the L1 estimator, whose
#: boosted trees would take many minutes.
DCI_EXACT_MAX_DIMS = 64
DCI_METHODS: tuple[str, ...] = ("auto", "gbt", "l1")


def _dci_importance_gbt(codes_train: np.ndarray, labels_train: np.ndarray,
                        codes_test: np.ndarray, labels_test: np.ndarray, j: int, seed: int,
                        estimators: int) -> tuple[np.ndarray, float, float]:
    from sklearn.ensemble import GradientBoostingClassifier

    clf = GradientBoostingClassifier(n_estimators=estimators, random_state=seed)
    clf.fit(codes_train, labels_train[:, j])
    return (np.abs(clf.feature_importances_),
            float(np.mean(clf.predict(codes_train) == labels_train[:, j])),
            float(np.mean(clf.predict(codes_test) == labels_test[:, j])))


def _dci_importance_l1(codes_train: np.ndarray, labels_train: np.ndarray,
                       codes_test: np.ndarray, labels_test: np.ndarray, j: int, seed: int
                       ) -> tuple[np.ndarray, float, float]:
    """Importance of each code dim for factor ``j``: the mean absolute weight of an
    L1-regularised (one-vs-rest) logistic regression on standardised codes (the lasso variant of
    DCI's regressor, Eastwood & Williams 2018)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    mean, std = codes_train.mean(0), codes_train.std(0) + 1e-8
    xtr, xte = (codes_train - mean) / std, (codes_test - mean) / std
    y = labels_train[:, j]
    if len(np.unique(y)) < 2:
        return np.zeros(codes_train.shape[1]), 1.0, float(np.mean(labels_test[:, j] == y[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = OneVsRestClassifier(LogisticRegression(
            l1_ratio=1.0, C=0.1, solver="liblinear", max_iter=200, random_state=seed)).fit(xtr, y)
    coef = np.concatenate([np.abs(e.coef_) for e in clf.estimators_])
    return (coef.mean(0), float(np.mean(clf.predict(xtr) == y)),
            float(np.mean(clf.predict(xte) == labels_test[:, j])))


def dci(codes_train: np.ndarray, labels_train: np.ndarray, codes_test: np.ndarray,
        labels_test: np.ndarray, seed: int = 0, estimators: int = 30,
        max_train: int | None = 2000, method: str = "auto") -> dict[str, Any]:
    """DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018).

    ``method``: ``gbt`` is disentanglement_lib's (gradient-boosted trees per factor, importance
    from the trees); ``l1`` the fast L1-logistic estimator of :func:`_dci_importance_l1`;
    ``auto`` takes ``gbt`` up to :data:`DCI_EXACT_MAX_DIMS` code dims, ``l1`` above. The method
    used is returned as ``dci_method``.
    """
    if method not in DCI_METHODS:
        raise ValueError(f"unknown DCI method {method!r}")
    d, f = codes_train.shape[1], labels_train.shape[1]
    used = ("gbt" if d <= DCI_EXACT_MAX_DIMS else "l1") if method == "auto" else method
    if max_train is not None:
        codes_train, labels_train = codes_train[:max_train], labels_train[:max_train]
    r = np.zeros((d, f))
    acc_train, acc_test = [], []
    for j in range(f):
        if used == "gbt":
            imp, a_tr, a_te = _dci_importance_gbt(codes_train, labels_train, codes_test,
                                                  labels_test, j, seed, estimators)
        else:
            imp, a_tr, a_te = _dci_importance_l1(codes_train, labels_train, codes_test,
                                                 labels_test, j, seed)
        r[:, j] = imp
        acc_train.append(a_tr)
        acc_test.append(a_te)
    total = r.sum()
    if total <= 0 or f < 2 or d < 2:
        dis = comp = 0.0
    else:
        dis = float(np.sum(_normalised_entropy_complement(r, f) * r.sum(1) / total))
        comp = float(np.sum(_normalised_entropy_complement(r.T, d) * r.sum(0) / total))
    return {
        "dci_disentanglement": dis,
        "dci_completeness": comp,
        "dci_informativeness_train": float(np.mean(acc_train)),
        "dci_informativeness_test": float(np.mean(acc_test)),
        "dci_importance": r.tolist(),
        "dci_method": used,
    }


def sap(codes_train: np.ndarray, labels_train: np.ndarray, codes_test: np.ndarray,
        labels_test: np.ndarray, method: str = "auto") -> dict[str, Any]:
    """Separated Attribute Predictability (Kumar et al. 2018).

    ``method``: ``svc`` is disentanglement_lib's discrete-factor score (a LinearSVC per code
    dimension and factor, test accuracy: ``D * F`` fits); ``corr`` is Kumar et al.'s
    continuous-factor score (squared Pearson correlation of each code dimension with each
    factor's label on the test codes, one matrix product); ``auto`` takes ``svc`` up to
    :data:`DCI_EXACT_MAX_DIMS` code dims and ``corr`` above (a 512-dim code needs about 10,000
    SVC fits). The method used is returned as ``sap_method``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    d, f = codes_train.shape[1], labels_train.shape[1]
    used = ("svc" if d <= DCI_EXACT_MAX_DIMS else "corr") if method == "auto" else method
    if used not in ("svc", "corr"):
        raise ValueError(f"unknown SAP method {method!r}")
    if used == "corr":
        x = codes_test - codes_test.mean(0)
        y = labels_test - labels_test.mean(0)
        sx, sy = np.sqrt((x * x).sum(0)), np.sqrt((y * y).sum(0))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = (x.T @ y) / np.outer(sx, sy)
        score = np.nan_to_num(np.square(corr), nan=0.0)
        top = np.sort(score, axis=0)[::-1] if d >= 2 else score
        return {"sap": float(np.mean(top[0] - top[1])) if d >= 2 else 0.0,
                "sap_matrix": score.tolist(), "sap_method": used}
    score = np.zeros((d, f))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(d):
            xi, xt = codes_train[:, i : i + 1], codes_test[:, i : i + 1]
            if np.ptp(xi) == 0:
                continue  # a constant code predicts nothing (0, below any real classifier)
            for j in range(f):
                clf = LinearSVC(C=0.01, class_weight="balanced")
                clf.fit(xi, labels_train[:, j])
                score[i, j] = np.mean(clf.predict(xt) == labels_test[:, j])
    if d < 2:
        return {"sap": 0.0, "sap_matrix": score.tolist(), "sap_method": used}
    top = np.sort(score, axis=0)[::-1]
    return {"sap": float(np.mean(top[0] - top[1])), "sap_matrix": score.tolist(),
            "sap_method": used}


def modularity(mi: np.ndarray) -> float:
    """Ridgeway & Zemel 2018 modularity from an MI matrix ``[D, F]`` (codes with no MI score 0)."""
    sq = np.square(mi)
    top = sq.max(axis=1)
    if sq.shape[1] < 2:
        return 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (sq.sum(1) - top) / (top * (sq.shape[1] - 1))
    score = np.where(top == 0, 0.0, 1.0 - delta)
    return float(np.mean(score))


def _explicitness_one(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                      y_test: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    clf = LogisticRegression(max_iter=500).fit(x_train, y_train)

    def auc(x: np.ndarray, y: np.ndarray) -> float:
        p = clf.predict_proba(x)
        scores = [roc_auc_score(y == c, p[:, k]) for k, c in enumerate(clf.classes_)
                  if 0 < np.sum(y == c) < len(y)]
        return float(np.mean(scores)) if scores else float("nan")

    return auc(x_train, y_train), auc(x_test, y_test)


def modularity_explicitness(codes_train: np.ndarray, labels_train: np.ndarray,
                            codes_test: np.ndarray, labels_test: np.ndarray,
                            bins: int = NUM_BINS, wide_max_train: int = 2000) -> dict[str, Any]:
    """Modularity (histogram MI) and explicitness (logistic-regression ROC-AUC; Ridgeway &
    Zemel 2018). Codes wider than :data:`DCI_EXACT_MAX_DIMS` fit explicitness on at most
    ``wide_max_train`` training codes (as DCI does), recorded as ``explicitness_max_train``."""
    from sklearn.preprocessing import StandardScaler

    mi = mutual_info_matrix(histogram_discretise(codes_train, bins), labels_train)
    capped = codes_train.shape[1] > DCI_EXACT_MAX_DIMS
    if capped:
        codes_train, labels_train = codes_train[:wide_max_train], labels_train[:wide_max_train]
    scaler = StandardScaler().fit(codes_train)
    xtr, xte = scaler.transform(codes_train), scaler.transform(codes_test)
    per = [_explicitness_one(xtr, labels_train[:, j], xte, labels_test[:, j])
           for j in range(labels_train.shape[1])]
    return {
        "modularity": modularity(mi),
        "explicitness_train": float(np.nanmean([p[0] for p in per])),
        "explicitness_test": float(np.nanmean([p[1] for p in per])),
        "explicitness_max_train": wide_max_train if capped else None,
    }


FixedBatch = Callable[[int, np.random.Generator], np.ndarray]


def factor_vae_score(global_codes: np.ndarray, fixed_batch: FixedBatch, num_factors: int,
                     rng: np.random.Generator, num_train: int = 10000, num_eval: int = 5000
                     ) -> dict[str, Any]:
    """FactorVAE score (Kim & Mnih 2018), disentanglement_lib protocol.

    ``global_codes`` (e.g. 10,000 codes of random observations) give the global variances;
    ``fixed_batch(k, rng)`` returns the codes ``[batch, D]`` of a batch in which factor ``k`` is
    fixed and the others vary.
    """
    global_var = np.var(global_codes, axis=0, ddof=1)
    active = global_var >= PRUNE_VARIANCE
    if not active.any():
        return {"factor_vae_train": 0.0, "factor_vae_eval": 0.0, "factor_vae_active_dims": 0}

    def votes(n: int) -> np.ndarray:
        v = np.zeros((num_factors, global_codes.shape[1]), np.int64)
        for _ in range(n):
            k = int(rng.integers(num_factors))
            local = np.var(fixed_batch(k, rng), axis=0, ddof=1)
            v[k, int(np.argmin(local[active] / global_var[active]))] += 1
        return v

    train_votes, eval_votes = votes(num_train), votes(num_eval)
    classifier = train_votes.argmax(axis=0)
    cols = np.arange(train_votes.shape[1])
    return {
        "factor_vae_train": float(train_votes[classifier, cols].sum() / train_votes.sum()),
        "factor_vae_eval": float(eval_votes[classifier, cols].sum() / eval_votes.sum()),
        "factor_vae_active_dims": int(active.sum()),
    }


def grouped_batches(codes: np.ndarray, labels: np.ndarray, batch: int = 64) -> FixedBatch:
    """Approximate "fix factor k, sample the rest" by grouping observed samples: draw a reference
    sample, then ``batch`` samples (with replacement) that share its label of factor ``k``; the
    other factors vary as they do in the data given that label."""
    members = [
        [np.flatnonzero(labels[:, k] == v) for v in range(int(labels[:, k].max()) + 1)]
        for k in range(labels.shape[1])
    ]

    def fixed(k: int, rng: np.random.Generator) -> np.ndarray:
        ref = int(rng.integers(len(codes)))
        pool = members[k][int(labels[ref, k])]
        return codes[rng.choice(pool, size=batch, replace=True)]

    return fixed


def train_test_indices(n: int, num_train: int, num_test: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train and a test sample drawn without replacement; when
    ``n < num_train + num_test`` both shrink, keeping their ratio."""
    if n < num_train + num_test:
        num_train = max(1, (n * num_train) // (num_train + num_test))
        num_test = max(1, n - num_train)
    perm = rng.permutation(n)
    return perm[:num_train], perm[num_train : num_train + num_test]


def all_metrics(codes_train: np.ndarray, labels_train: np.ndarray, codes_test: np.ndarray,
                labels_test: np.ndarray, seed: int = 0, dci_estimators: int = 30,
                dci_max_train: int | None = 2000, factor_vae: bool = True,
                factor_vae_train: int = 10000, factor_vae_eval: int = 5000,
                factor_vae_batch: int = 64) -> dict[str, Any]:
    """Every metric of this module on one train/test split (FactorVAE by grouping)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    out.update(mig(codes_train, labels_train))
    out.update(dci(codes_train, labels_train, codes_test, labels_test, seed, dci_estimators,
                   dci_max_train))
    out.update(sap(codes_train, labels_train, codes_test, labels_test))
    out.update(modularity_explicitness(codes_train, labels_train, codes_test, labels_test))
    if factor_vae:
        codes = np.concatenate([codes_train, codes_test])
        labels = np.concatenate([labels_train, labels_test])
        out.update(factor_vae_score(codes[:10000], grouped_batches(codes, labels, factor_vae_batch),
                                    labels.shape[1], rng, factor_vae_train, factor_vae_eval))
    return out


def summary(metrics: dict[str, Any], keys: Sequence[str] = (
        "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_test", "sap",
        "modularity", "explicitness_test", "factor_vae_eval")) -> dict[str, float]:
    """The headline scalars of a metrics dict."""
    return {k: float(metrics[k]) for k in keys if k in metrics}
