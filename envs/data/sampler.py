"""Batches for learners: single frames, intervention pairs, temporal pairs and sequences.

Every method draws indices with the sampler's own seeded ``np.random.Generator`` and gathers rows
by vectorised indexing, so a sampler is deterministic for a seed and costs a few array copies per
batch.

Temporal pairs and sequences never cross an episode boundary. For a gap ``g`` the valid starts are
the frames with at least ``g`` frames left in their episode; with the starts sorted by frames left
(once, at construction), the valid starts for any ``g`` are a prefix of that order, so drawing a
start uniformly among them is one ``integers`` call. A gap range ``(lo, hi)`` is sampled uniformly
over all valid (start, gap) pairs: gap ``g`` with probability proportional to its number of starts.
"""

from __future__ import annotations

import numpy as np

from sparseshift.envs.data.dataset import Dataset
from sparseshift.envs.infra.errors import ConfigError

Batch = dict[str, np.ndarray]


def frames_left(episode_starts: np.ndarray) -> np.ndarray:
    """For each frame, how many frames follow it in its episode."""
    n = len(episode_starts)
    starts = np.flatnonzero(episode_starts)
    if n and (len(starts) == 0 or starts[0] != 0):
        starts = np.concatenate([[0], starts])
    ends = np.append(starts[1:], n) - 1  # last frame of each episode
    episode = np.cumsum(np.isin(np.arange(n), starts)) - 1
    return (ends[episode] - np.arange(n)).astype(np.int64)


class Sampler:
    """Seeded batch sampler over a :class:`~sparseshift.envs.data.dataset.Dataset`."""

    def __init__(self, ds: Dataset, seed: int = 0) -> None:
        self.ds = ds
        self.rng = np.random.default_rng(seed)
        if ds.kind == "video":
            left = frames_left(np.asarray(ds.take("episode_starts", np.arange(len(ds)))))
            # starts by frames left, descending; _count[g] = number of starts with >= g left
            self._order = np.argsort(-left, kind="stable")
            self._count = np.bincount(left)[::-1].cumsum()[::-1]

    def _need(self, kind: str, what: str) -> None:
        if self.ds.kind != kind:
            raise ConfigError(f"{what} needs a {kind} dataset; {self.ds.path} holds {self.ds.kind}")

    @staticmethod
    def _check_batch(batch: int) -> None:
        if batch <= 0:
            raise ConfigError(f"batch size must be positive, got {batch}")

    def frames(self, batch: int) -> Batch:
        """Single frames, uniformly (for pairs datasets over both sides of every pair)."""
        self._check_batch(batch)
        ds = self.ds
        if ds.kind == "video":
            idx = self.rng.integers(len(ds), size=batch)
            return {"x": ds.take("frames", idx), "factors": ds.take("factors", idx)}
        i = self.rng.integers(2 * len(ds), size=batch)
        b = i >= len(ds)
        x = np.empty((batch, *ds.shapes["frames_a"][1:]), np.uint8)
        f = np.empty((batch, len(ds.factor_spec)), np.float32)
        for side, sel in (("a", ~b), ("b", b)):
            rows = i[sel] - (len(ds) if side == "b" else 0)
            x[sel] = ds.take(f"frames_{side}", rows)
            f[sel] = ds.take(f"factors_{side}", rows)
        return {"x": x, "factors": f}

    def intervention_pairs(self, batch: int) -> Batch:
        """Intervention pairs (Locatello et al. 2020) with the exact mask of changed factors."""
        self._need("pairs", "intervention_pairs")
        self._check_batch(batch)
        ds = self.ds
        idx = self.rng.integers(len(ds), size=batch)
        return {"x1": ds.take("frames_a", idx), "x2": ds.take("frames_b", idx),
                "factors1": ds.take("factors_a", idx), "factors2": ds.take("factors_b", idx),
                "changed": ds.take("changed", idx)}

    def _starts(self, batch: int, gaps: np.ndarray) -> np.ndarray:
        """Uniform starts with at least ``gaps[i]`` frames left in their episode."""
        return self._order[(self.rng.random(batch) * self._count[gaps]).astype(np.int64)]

    def _gap_counts(self, lo: int, hi: int, what: str) -> np.ndarray:
        if lo < 0 or hi < lo:
            raise ConfigError(f"{what} must satisfy 0 <= lo <= hi, got ({lo}, {hi})")
        longest = len(self._count) - 1
        if lo > longest:
            raise ConfigError(f"{what} {lo} is longer than the longest episode allows "
                              f"({longest + 1} frames)")
        return self._count[lo : min(hi, longest) + 1]

    def temporal_index(
        self, batch: int, gap: int | tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (t, t+g) of ``batch`` temporal pairs within episodes (see temporal_pairs)."""
        self._need("video", "temporal_pairs")
        self._check_batch(batch)
        lo, hi = (gap, gap) if isinstance(gap, int | np.integer) else (int(gap[0]), int(gap[1]))
        counts = self._gap_counts(int(lo), int(hi), "gap")
        if len(counts) == 1:
            gaps = np.full(batch, lo, np.int64)
        else:
            gaps = lo + self.rng.choice(len(counts), size=batch, p=counts / counts.sum())
        t = self._starts(batch, gaps)
        return t, t + gaps

    def temporal_pairs(self, batch: int, gap: int | tuple[int, int]) -> Batch:
        """Frames t and t+g of one episode; ``gap`` is g or an inclusive range (lo, hi)."""
        t, u = self.temporal_index(batch, gap)
        ds = self.ds
        f1, f2 = ds.take("factors", t), ds.take("factors", u)
        return {"x1": ds.take("frames", t), "x2": ds.take("frames", u),
                "factors1": f1, "factors2": f2, "changed": f1 != f2}

    def sequence_index(self, batch: int, length: int) -> np.ndarray:
        """Row indices [batch, length] of runs of consecutive frames within one episode."""
        self._need("video", "sequences")
        self._check_batch(batch)
        if length < 1:
            raise ConfigError(f"sequence length must be >= 1, got {length}")
        self._gap_counts(length - 1, length - 1, "sequence length - 1 =")
        t = self._starts(batch, np.full(batch, length - 1, np.int64))
        return t[:, None] + np.arange(length)

    def sequences(self, batch: int, length: int) -> Batch:
        """``batch`` runs of ``length`` consecutive frames, each within one episode."""
        idx = self.sequence_index(batch, length)
        return {"x": self.ds.take("frames", idx), "factors": self.ds.take("factors", idx)}
