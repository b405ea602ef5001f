"""Adjusted Rand index (Hubert & Arabie 1985, *Comparing Partitions*) of segmentations, vectorised
over a batch, and the foreground ARI of Slot Attention (Locatello et al. 2020; Greff et al. 2019):
the ARI over the pixels whose ground-truth label is not background.

For two labelings of the same ``n`` points with contingency table ``n_ij`` (row sums ``a_i``,
column sums ``b_j``) the ARI is computed from the pair-confusion counts exactly as
:func:`sklearn.metrics.adjusted_rand_score` does (same special cases)::

    tp = sum_ij n_ij^2 - n                 (pairs together in both)
    fp = sum_j b_j^2 - sum_ij n_ij^2        (together in pred only)
    fn = sum_i a_i^2 - sum_ij n_ij^2        (together in truth only)
    tn = n^2 - tp - fp - fn - n             (apart in both)
    ARI = 2 (tp tn - fn fp) / ((tp + fn)(fn + tn) + (tp + fp)(fp + tn)),   1 if fn = fp = 0

which equals Hubert & Arabie's ``(sum C(n_ij,2) - E) / (max - E)``. The identical-partitions case
(including fewer than two points) is 1. :func:`foreground_ari` returns NaN for images without
any foreground pixel so that callers can exclude them (they carry no information).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def contingency(true_ids: np.ndarray, pred_ids: np.ndarray, valid: np.ndarray | None = None
                ) -> np.ndarray:
    """Per-row contingency tables ``[B, T, P]`` (int64) of integer labelings ``[B, N]``.

    ``T``/``P`` are one more than the largest label in the batch; labels must be >= 0. Points
    where ``valid`` is False are not counted.
    """
    t = np.asarray(true_ids)
    p = np.asarray(pred_ids)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"labelings must both be [B, N], got {t.shape} and {p.shape}")
    b, n = t.shape
    if t.size and (t.min() < 0 or p.min() < 0):
        raise ValueError("labels must be non-negative integers")
    nt = int(t.max()) + 1 if t.size else 1
    np_ = int(p.max()) + 1 if p.size else 1
    rows = np.arange(b, dtype=np.int64)[:, None] * (nt * np_)
    flat = (rows + t.astype(np.int64) * np_ + p.astype(np.int64)).ravel()
    weights = None if valid is None else np.asarray(valid, dtype=bool).reshape(b * n)
    if weights is not None:
        flat = flat[weights]
    counts = np.bincount(flat, minlength=b * nt * np_)
    return counts.reshape(b, nt, np_).astype(np.int64)


def ari_from_contingency(table: np.ndarray) -> np.ndarray:
    """ARI ``[B]`` (float64) of contingency tables ``[B, T, P]`` (sklearn's special cases)."""
    c = np.asarray(table, dtype=np.int64)
    n = c.sum(axis=(1, 2))
    sum_sq = np.square(c).sum(axis=(1, 2))
    a_sq = np.square(c.sum(axis=2)).sum(axis=1)
    b_sq = np.square(c.sum(axis=1)).sum(axis=1)
    tp = (sum_sq - n).astype(np.float64)
    fp = (b_sq - sum_sq).astype(np.float64)
    fn = (a_sq - sum_sq).astype(np.float64)
    tn = (np.square(n) - b_sq - a_sq + sum_sq).astype(np.float64)
    num = 2.0 * (tp * tn - fn * fp)
    den = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    perfect = (fn == 0) & (fp == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ari = np.where(perfect, 1.0, num / np.where(den == 0, 1.0, den))
    return ari


def adjusted_rand_index(true_ids: np.ndarray, pred_ids: np.ndarray,
                        valid: np.ndarray | None = None) -> np.ndarray:
    """ARI per row ``[B]`` of integer labelings ``[B, ...]`` (e.g. ``[B, H, W]`` segmentations),
    counting only points where ``valid`` is True; matches :func:`sklearn.metrics.
    adjusted_rand_score` on each row's valid points."""
    t = np.asarray(true_ids)
    b = t.shape[0]
    v = None if valid is None else np.asarray(valid).reshape(b, -1)
    return ari_from_contingency(contingency(t.reshape(b, -1), np.asarray(pred_ids).reshape(b, -1),
                                            v))


def foreground_ari(true_seg: np.ndarray, pred_ids: np.ndarray,
                   background_ids: Sequence[int] = (0,)) -> np.ndarray:
    """Foreground ARI per image ``[B]``: the ARI over pixels whose ground-truth label is not in
    ``background_ids`` (Locatello et al. 2020). NaN for images without foreground pixels.

    ``true_seg`` and ``pred_ids`` are integer maps ``[B, H, W]`` (predictions: e.g. the argmax of
    the decoder's alpha masks over slots).
    """
    t = np.asarray(true_seg)
    fg = ~np.isin(t, np.asarray(background_ids, dtype=t.dtype))
    ari = adjusted_rand_index(t, pred_ids, fg)
    has_fg = fg.reshape(t.shape[0], -1).any(axis=1)
    return np.where(has_fg, ari, np.nan)
