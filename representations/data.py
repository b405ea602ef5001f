"""Batches for the learners from sparseshift datasets (:mod:`sparseshift.envs.data`), reproducibly.

Every training step's batch is a pure function of ``(seed, step)``: step ``t`` draws from a
:class:`sparseshift.envs.data.Sampler` whose generator is seeded with a number derived from the run
seed and
``t`` (:func:`derive_seed`). Resuming at any step therefore needs no sampler state, and the
batch does not depend on how often the run was interrupted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparseshift.envs.infra.errors import ConfigError

#: Independent RNG streams derived from one run seed.
STREAM_DATA, STREAM_NOISE, STREAM_VIZ, STREAM_EVAL, STREAM_INIT = 0, 1, 2, 3, 4
PAIRS_MODES: tuple[str, ...] = ("intervention", "temporal")


def derive_seed(seed: int, stream: int, step: int = 0) -> int:
    """A 63-bit seed for ``(seed, stream, step)`` via :class:`numpy.random.SeedSequence`."""
    state = np.random.SeedSequence([int(seed), int(stream), int(step)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1]))


def open_data(data: Any) -> Any:
    """Open a dataset path with :func:`sparseshift.envs.data.open_dataset`; pass dataset objects
    through."""
    if isinstance(data, str | os.PathLike):
        from sparseshift.envs.data import open_dataset

        return open_dataset(os.fspath(data), verify=False)
    return data


def dataset_info(ds: Any) -> dict[str, Any]:
    """What a run records about its training data."""
    return {
        "fingerprint": str(ds.fingerprint),
        "kind": str(ds.kind),
        "env_id": str(ds.env_id),
        "image_size": int(ds.image_size),
        "size": len(ds),
        "factor_names": list(ds.factor_spec.names),
    }


def num_frames(ds: Any) -> int:
    """Frames in a dataset: its length for video, both images of every pair for pairs."""
    return len(ds) if ds.kind == "video" else 2 * len(ds)


def frames_at(ds: Any, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames and factors at ``idx`` in ``[0, num_frames(ds))`` (pairs: ``i < len(ds)`` is image
    a of pair ``i``, else image b of pair ``i - len(ds)``). Reads through ``Dataset.take``, so it
    also works for datasets that do not fit in RAM."""
    idx = np.asarray(idx, dtype=np.int64)
    if ds.kind == "video":
        return ds.take("frames", idx), ds.take("factors", idx).astype(np.float32)
    n = len(ds)
    frames = np.empty((len(idx), ds.image_size, ds.image_size, 3), np.uint8)
    factors = np.empty((len(idx), len(ds.factor_spec)), np.float32)
    for side, sel in (("a", idx < n), ("b", idx >= n)):
        rows = idx[sel] - (n if side == "b" else 0)
        frames[sel] = ds.take(f"frames_{side}", rows)
        factors[sel] = ds.take(f"factors_{side}", rows)
    return frames, factors


@dataclass(frozen=True)
class BatchSpec:
    """What one training batch is: the learner's batch kind plus how pairs are made."""

    batch_kind: str
    batch: int
    pairs: str = "intervention"
    gap: tuple[int, int] = (1, 1)
    seq_len: int = 8

    @property
    def images_per_batch(self) -> int:
        per = {"singles": 1, "pairs": 2, "sequences": self.seq_len}[self.batch_kind]
        return self.batch * per


def resolve_pairs(batch_kind: str, learner: str, ds_kind: str, pairs: str | None) -> str:
    """Check that a dataset can feed a learner; returns the pairs mode (``intervention`` default).

    A video dataset feeds a pairs learner only with ``pairs="temporal"``; intervention pairs need a
    pairs dataset; sequences need video.
    """
    if pairs is not None and pairs not in PAIRS_MODES:
        raise ConfigError(f"unknown pairs mode {pairs!r}; valid: {', '.join(PAIRS_MODES)}")
    if batch_kind != "pairs" and pairs is not None:
        raise ConfigError(f"--pairs applies to pair learners; {learner!r} trains on {batch_kind}")
    if batch_kind == "pairs":
        if ds_kind == "video" and pairs != "temporal":
            raise ConfigError(
                f"learner {learner!r} needs pairs but the dataset is video; pass --pairs temporal "
                "--gap K to pair frames t and t+K, or use a pairs dataset"
            )
        if ds_kind == "pairs" and pairs == "temporal":
            raise ConfigError("temporal pairs need a video dataset; this dataset holds pairs")
    if batch_kind == "sequences" and ds_kind != "video":
        raise ConfigError(f"learner {learner!r} needs sequences, which only a video dataset has")
    return pairs or "intervention"


class BatchSource:
    """``source(step)`` -> numpy batch for the learner; deterministic in ``(seed, step)``.

    One :class:`sparseshift.envs.data.Sampler` is built (its construction scans a video dataset's
    episodes);
    before each batch its public ``rng`` is replaced by a generator seeded from ``(seed, step)``.
    """

    def __init__(self, ds: Any, spec: BatchSpec, seed: int) -> None:
        from sparseshift.envs.data import Sampler

        self.spec = spec
        self.seed = seed
        self._sampler = Sampler(ds, seed=derive_seed(seed, STREAM_DATA))

    def sampler(self, stream: int, step: int) -> Any:
        """The shared sampler, reseeded for ``(stream, step)``."""
        self._sampler.rng = np.random.default_rng(derive_seed(self.seed, stream, step))
        return self._sampler

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        s = self.sampler(STREAM_DATA, step)
        spec = self.spec
        if spec.batch_kind == "singles":
            return {"x": s.frames(spec.batch)["x"]}
        if spec.batch_kind == "sequences":
            return {"x": s.sequences(spec.batch, spec.seq_len)["x"]}
        if spec.pairs == "temporal":
            lo, hi = spec.gap
            b = s.temporal_pairs(spec.batch, lo if lo == hi else (lo, hi))
        else:
            b = s.intervention_pairs(spec.batch)
        return {"x1": b["x1"], "x2": b["x2"]}
