"""PyTorch adapters: sparseshift datasets as ``torch.utils.data`` datasets for ``DataLoader``.

Map-style datasets (every item addressable by index; shuffle with the DataLoader's own seeded
``generator``):

* :class:`FrameDataset`: single frames (a pairs dataset: both sides of every pair);
* :class:`InterventionPairDataset`: intervention pairs with the mask of changed factors (pairs);
* :class:`TemporalPairDataset`: frames ``t`` and ``t + g`` of one episode, every valid (t, g) once
  (video);
* :class:`SequenceDataset`: runs of consecutive frames within one episode (video);
* :class:`TransitionDataset`: offline-RL transitions (s, a, r, s', terminated, truncated) with the
  policy's observations (video of format 3).

and :class:`SampledBatches`, an ``IterableDataset`` of whole batches drawn like
:class:`~sparseshift.envs.data.sampler.Sampler` (use ``DataLoader(..., batch_size=None)``).

Items are dicts of tensors with the keys of the :class:`Sampler` batches. Frames stay uint8
``[H, W, 3]`` (channels last, RGB; a sequence ``[L, H, W, 3]``) unless a ``transform`` is given: it
is called on every image tensor of an item (``x``, ``x1``, ``x2``, the frame of an observation)
separately, e.g. :func:`to_float_chw` (float32 ``[3, H, W]`` in [0, 1]).

Workers: each adapter holds a :class:`~sparseshift.envs.data.dataset.Dataset`, which pickles as its
path, memory budget and fingerprint and opens its own HDF5 handle in every process that reads, so
``num_workers > 0`` works with ``fork`` (workers share the parent's in-RAM arrays) and ``spawn``
(each worker opens the file: it loads it into its own RAM when it fits the budget, so give
``memory_budget=0`` to read from disk in every worker). A DataLoader batch is read with one
vectorised :meth:`Dataset.take` per array (``__getitems__``), so a batch decodes each HDF5 chunk it
touches once. Given the same ``generator`` seed a DataLoader yields the same batches for every
``num_workers``; :class:`SampledBatches` does too, whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset as _TorchDataset
from torch.utils.data import IterableDataset, get_worker_info

from sparseshift.envs.data.dataset import Dataset, open_dataset
from sparseshift.envs.data.sampler import Sampler, frames_left
from sparseshift.envs.infra.errors import ConfigError

__all__ = [
    "FrameDataset",
    "InterventionPairDataset",
    "SampledBatches",
    "SequenceDataset",
    "TemporalPairDataset",
    "TransitionDataset",
    "to_float_chw",
]

Item = dict[str, Any]
Transform = Callable[[torch.Tensor], Any]
#: Keys of image tensors in items and batches (the transform is applied to each).
IMAGE_KEYS: frozenset[str] = frozenset({"x", "x1", "x2"})


def to_float_chw(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float32 ``[..., 3, H, W]`` in [0, 1] (a ``transform``)."""
    return x.movedim(-1, -3).to(torch.float32).div_(255.0)


def _open(data: str | Path | Dataset, memory_budget: int | None) -> Dataset:
    if isinstance(data, Dataset):
        return data
    return open_dataset(data, memory_budget=memory_budget)


def _need(ds: Dataset, kind: str, what: str) -> None:
    if ds.kind != kind:
        raise ConfigError(f"{what} need a {kind} dataset; {ds.path} holds {ds.kind}")


def _check_index(idx: np.ndarray, n: int) -> np.ndarray:
    if len(idx) and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"index {int(idx.min())}..{int(idx.max())} out of range for {n} items")
    return idx % max(n, 1)


class _Adapter(_TorchDataset[Item]):
    """Common part of the map-style adapters: batched fetching, tensors and the transform."""

    def __init__(self, data: str | Path | Dataset, transform: Transform | None,
                 memory_budget: int | None) -> None:
        self.ds = _open(data, memory_budget)
        self.transform = transform

    def __len__(self) -> int:
        raise NotImplementedError

    def _columns(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays ``[len(idx), ...]`` of every key for items ``idx`` (in range)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Item:
        return self.__getitems__([int(index)])[0]

    def __getitems__(self, indices: list[int]) -> list[Item]:
        """Items ``indices`` (a DataLoader fetches a whole batch with one call)."""
        idx = _check_index(np.asarray(indices, np.int64).reshape(-1), len(self))
        cols = _tensors(self._columns(idx), self.transform)
        return [{k: v[i] for k, v in cols.items()} for i in range(len(idx))]


def _tensors(cols: dict[str, Any], transform: Transform | None, batched: bool = False,
             images: frozenset[str] = IMAGE_KEYS) -> dict[str, Any]:
    """numpy columns -> tensors; the transform on the ``images`` keys (per item, or per batch
    when ``batched``)."""
    out: dict[str, Any] = {}
    for k, v in cols.items():
        if isinstance(v, dict):
            out[k] = _tensors(v, transform, batched, images)
            continue
        t = torch.from_numpy(np.ascontiguousarray(v))
        if transform is not None and k in images:
            out[k] = transform(t) if batched else _PerItem(t, transform)
        else:
            out[k] = t
    return out


class _PerItem:
    """A batch of images whose items are transformed when taken one by one."""

    def __init__(self, batch: torch.Tensor, transform: Transform) -> None:
        self.batch, self.transform = batch, transform

    def __getitem__(self, i: int) -> Any:
        return self.transform(self.batch[i])


class FrameDataset(_Adapter):
    """Single frames ``{"x": uint8 [H, W, 3], "factors": float32 [F]}``: a video's rows, or both
    sides of every pair of a pairs dataset (items ``0..N-1`` the first frames, ``N..2N-1`` the
    second)."""

    def __init__(self, data: str | Path | Dataset, transform: Transform | None = None,
                 memory_budget: int | None = None) -> None:
        super().__init__(data, transform, memory_budget)

    def __len__(self) -> int:
        return len(self.ds) * (1 if self.ds.kind == "video" else 2)

    def _columns(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        ds = self.ds
        if ds.kind == "video":
            return {"x": ds.take("frames", idx), "factors": ds.take("factors", idx)}
        b = idx >= len(ds)
        x = np.empty((len(idx), *ds.shapes["frames_a"][1:]), np.uint8)
        f = np.empty((len(idx), len(ds.factor_spec)), np.float32)
        for side, sel in (("a", ~b), ("b", b)):
            rows = idx[sel] - (len(ds) if side == "b" else 0)
            x[sel] = ds.take(f"frames_{side}", rows)
            f[sel] = ds.take(f"factors_{side}", rows)
        return {"x": x, "factors": f}


class InterventionPairDataset(_Adapter):
    """Intervention pairs (Locatello et al. 2020) of a pairs dataset: ``{"x1", "x2": uint8
    [H, W, 3], "factors1", "factors2": float32 [F], "changed": bool [F]}``."""

    def __init__(self, data: str | Path | Dataset, transform: Transform | None = None,
                 memory_budget: int | None = None) -> None:
        super().__init__(data, transform, memory_budget)
        _need(self.ds, "pairs", "intervention pairs")

    def __len__(self) -> int:
        return len(self.ds)

    def _columns(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        ds = self.ds
        return {"x1": ds.take("frames_a", idx), "x2": ds.take("frames_b", idx),
                "factors1": ds.take("factors_a", idx), "factors2": ds.take("factors_b", idx),
                "changed": ds.take("changed", idx)}


class _Episodic(_Adapter):
    """Video adapters over (start, gap) pairs that stay within one episode."""

    def __init__(self, data: str | Path | Dataset, transform: Transform | None,
                 memory_budget: int | None, what: str) -> None:
        super().__init__(data, transform, memory_budget)
        _need(self.ds, "video", what)
        self.left = frames_left(np.asarray(self.ds.take("episode_starts",
                                                        np.arange(len(self.ds)))))

    def _gaps(self, lo: int, hi: int, what: str) -> None:
        """Index every (t, g) with ``lo <= g <= hi`` and ``left[t] >= g``: gap by gap, starts in
        time order within a gap."""
        if lo < 0 or hi < lo:
            raise ConfigError(f"{what} must satisfy 0 <= lo <= hi, got ({lo}, {hi})")
        longest = int(self.left.max()) if len(self.left) else -1
        if lo > longest:
            raise ConfigError(f"{what} {lo} is longer than the longest episode allows "
                              f"({longest + 1} frames)")
        self._gap_values = np.arange(lo, min(hi, longest) + 1)
        # rows by frames left (descending, time order among equals): the starts valid for gap g
        # are a prefix of this order, so one array serves every gap
        self._order = np.argsort(-self.left, kind="stable")
        counts = np.bincount(self.left)[::-1].cumsum()[::-1]
        self._offsets = np.concatenate([[0], np.cumsum(counts[self._gap_values])])
        if len(self._gap_values) == 1:  # one gap: keep time order
            self._order = np.sort(self._order[: self._offsets[1]])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _index(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start rows, gaps) of items ``idx``."""
        g = np.searchsorted(self._offsets, idx, side="right") - 1
        if len(self._gap_values) == 1:
            return self._order[idx], np.full(len(idx), self._gap_values[0])
        return self._order[idx - self._offsets[g]], self._gap_values[g]


class TemporalPairDataset(_Episodic):
    """Frames ``t`` and ``t + g`` of one episode: ``{"x1", "x2", "factors1", "factors2",
    "changed"}`` (as :meth:`Sampler.temporal_pairs`). ``gap`` is ``g`` or an inclusive range
    ``(lo, hi)``: the items are every valid (t, g) pair once, so uniform sampling over items is
    :class:`Sampler`'s uniform sampling over all valid pairs."""

    def __init__(self, data: str | Path | Dataset, gap: int | tuple[int, int] = 1,
                 transform: Transform | None = None, memory_budget: int | None = None) -> None:
        super().__init__(data, transform, memory_budget, "temporal pairs")
        lo, hi = (gap, gap) if isinstance(gap, int | np.integer) else (int(gap[0]), int(gap[1]))
        self._gaps(int(lo), int(hi), "gap")

    def index(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (t, t + g) of ``items``."""
        t, g = self._index(_check_index(np.asarray(items, np.int64).reshape(-1), len(self)))
        return t, t + g

    def _columns(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        t, g = self._index(idx)
        u = t + g
        ds = self.ds
        f1, f2 = ds.take("factors", t), ds.take("factors", u)
        return {"x1": ds.take("frames", t), "x2": ds.take("frames", u),
                "factors1": f1, "factors2": f2, "changed": f1 != f2}


class SequenceDataset(_Episodic):
    """Runs of ``length`` consecutive frames within one episode, every valid start once, in time
    order: ``{"x": uint8 [L, H, W, 3], "factors": float32 [L, F]}`` (as
    :meth:`Sampler.sequences`)."""

    def __init__(self, data: str | Path | Dataset, length: int,
                 transform: Transform | None = None, memory_budget: int | None = None) -> None:
        super().__init__(data, transform, memory_budget, "sequences")
        if length < 1:
            raise ConfigError(f"sequence length must be >= 1, got {length}")
        self.length = length
        self._gaps(length - 1, length - 1, "sequence length - 1 =")

    def _columns(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        t, _ = self._index(idx)
        rows = t[:, None] + np.arange(self.length)
        return {"x": self.ds.take("frames", rows), "factors": self.ds.take("factors", rows)}


class TransitionDataset(_Adapter):
    """Offline-RL transitions of a format-3 video: ``{"obs", "action", "reward", "next_obs",
    "terminated", "truncated"}``, one per row. ``obs`` is what the policy saw (the frame, the
    state vector, or a dict such as ``{"pixels", "proprio"}``); ``next_obs`` is the next row's
    observation, or the episode's final observation at its last step (``terminated`` or
    ``truncated``; a collection part's last row is truncated). With ``factors=True`` items also
    hold ``factors`` and ``next_factors``."""

    def __init__(self, data: str | Path | Dataset, transform: Transform | None = None,
                 memory_budget: int | None = None, factors: bool = False) -> None:
        super().__init__(data, transform, memory_budget)
        self.ds._need_observations("transitions")
        ends = self.ds.episode_ends()
        self._end = np.zeros(len(self.ds), bool)
        self._end[ends] = True
        self._episode = np.cumsum(self._end) - self._end  # episode of each row
        self.factors = factors

    def __len__(self) -> int:
        return len(self.ds)

    def _columns(self, idx: np.ndarray) -> dict[str, Any]:
        ds = self.ds
        end = self._end[idx]
        nxt = np.where(end, 0, np.minimum(idx + 1, len(ds) - 1))
        obs = _observation_columns(ds, idx)
        now, final = _observation_columns(ds, nxt[~end]), _observation_columns(
            ds, self._episode[idx[end]], final=True)
        out: dict[str, Any] = {
            "obs": obs,
            "action": ds.take("actions", idx),
            "reward": ds.take("rewards", idx),
            "next_obs": _merge(now, final, end),
            "terminated": ds.take("terminated", idx),
            "truncated": ds.take("truncated", idx),
        }
        if self.factors:
            f_now, f_final = ds.take("factors", nxt[~end]), ds.take(
                "final/factors", self._episode[idx[end]])
            out["factors"] = ds.take("factors", idx)
            out["next_factors"] = _merge(f_now, f_final, end)
        return out

    def __getitems__(self, indices: list[int]) -> list[Item]:
        idx = _check_index(np.asarray(indices, np.int64).reshape(-1), len(self))
        key = self.ds.observation.get("pixels") or _FRAME
        cols = _tensors(_rename_frames(self._columns(idx), self.ds), self.transform,
                        images=frozenset({key, _FRAME}))
        return [_pick(cols, i) for i in range(len(idx))]


def _observation_columns(ds: Dataset, rows: np.ndarray, final: bool = False) -> Any:
    return ds.observations(rows, final=final)


def _merge(a: Any, b: Any, mask: np.ndarray) -> Any:
    """Rows of ``a`` where ``mask`` is False and of ``b`` where it is True (dicts per key)."""
    if isinstance(a, dict):
        return {k: _merge(a[k], b[k], mask) for k in a}
    out = np.empty((len(mask), *a.shape[1:]), a.dtype)
    out[~mask], out[mask] = a, b
    return out


#: Key under which a frame-only observation travels until it is unwrapped (:func:`_pick`).
_FRAME = "\0frame"


def _rename_frames(cols: dict[str, Any], ds: Dataset) -> dict[str, Any]:
    """Wrap frame-only observations as ``{_FRAME: frames}`` so the transform finds them."""
    if ds.observation.get("pixels") == "":
        return {k: ({_FRAME: v} if k in ("obs", "next_obs") else v) for k, v in cols.items()}
    return cols


def _pick(cols: dict[str, Any], i: int) -> Item:
    out: Item = {}
    for k, v in cols.items():
        if isinstance(v, dict):
            picked = _pick(v, i)
            out[k] = picked[_FRAME] if set(picked) == {_FRAME} else picked
        else:
            out[k] = v[i]
    return out


#: What :class:`SampledBatches` can draw: Sampler method and the dataset kind it needs.
BATCHES: dict[str, str | None] = {
    "frames": None,
    "intervention_pairs": "pairs",
    "temporal_pairs": "video",
    "sequences": "video",
}


class SampledBatches(IterableDataset[Item]):
    """Whole batches drawn as :class:`~sparseshift.envs.data.sampler.Sampler` draws them:
    ``what`` is ``frames``, ``intervention_pairs``, ``temporal_pairs`` (with ``gap``) or
    ``sequences`` (with ``length``). Use ``DataLoader(SampledBatches(...), batch_size=None,
    num_workers=W)``.

    Batch ``b`` is drawn with ``np.random.default_rng([seed, b])`` and worker ``w`` of ``W`` makes
    batches ``w, w + W, ...``, which the DataLoader yields in order: the stream is the same for
    every ``num_workers``. ``num_batches=None`` never ends.
    """

    def __init__(self, data: str | Path | Dataset, what: str, batch_size: int, seed: int = 0,
                 num_batches: int | None = None, gap: int | tuple[int, int] = 1,
                 length: int = 8, transform: Transform | None = None,
                 memory_budget: int | None = None) -> None:
        super().__init__()
        if what not in BATCHES:
            raise ConfigError(f"cannot sample {what!r}; choose one of {', '.join(BATCHES)}")
        if batch_size <= 0:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        if num_batches is not None and num_batches < 0:
            raise ConfigError(f"num_batches must be >= 0 or None, got {num_batches}")
        self.ds = _open(data, memory_budget)
        need = BATCHES[what]
        if need is not None:
            _need(self.ds, need, what.replace("_", " "))
        self.what, self.batch_size, self.seed = what, batch_size, seed
        self.num_batches, self.gap, self.length = num_batches, gap, length
        self.transform = transform
        self._sampler: Sampler | None = None
        self.draw(0)  # bad gaps or lengths fail here, not in a worker

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sampler": None}  # each process builds its own

    def draw(self, b: int) -> Item:
        """Batch ``b`` of the stream."""
        if self._sampler is None:
            self._sampler = Sampler(self.ds)
        self._sampler.rng = np.random.default_rng([self.seed, b])
        s = self._sampler
        if self.what == "frames":
            batch = s.frames(self.batch_size)
        elif self.what == "intervention_pairs":
            batch = s.intervention_pairs(self.batch_size)
        elif self.what == "temporal_pairs":
            batch = s.temporal_pairs(self.batch_size, self.gap)
        else:
            batch = s.sequences(self.batch_size, self.length)
        return _tensors(dict(batch), self.transform, batched=True)

    def __iter__(self) -> Iterator[Item]:
        info = get_worker_info()
        w, count = (0, 1) if info is None else (info.id, info.num_workers)
        b = w
        while self.num_batches is None or b < self.num_batches:
            yield self.draw(b)
            b += count
