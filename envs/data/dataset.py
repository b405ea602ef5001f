"""Open a sparseshift dataset: validated, checksummed, in RAM when it fits, else read by chunk.

Compressed HDF5 datasets cannot be memory-mapped, so :func:`open_dataset` loads every array into RAM
when the decoded size fits a memory budget (default: half the available memory) and verifies every
chunk checksum while doing so. When it does not fit, the frame arrays stay on disk (everything else,
which is small, is still loaded): :meth:`Dataset.take` then reads the chunks a batch touches
(one frame per chunk; consecutive frames in one call), verifying each chunk's checksum.

A :class:`Dataset` works in several processes (``torch.utils.data.DataLoader`` workers): a dataset
on disk opens its own HDF5 handle in each process that reads (a handle inherited through ``fork``
is never used), and pickling sends the path, memory budget and fingerprint only, never an h5py
object or the arrays; the copy opens the file again and checks that the fingerprint is the same.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sparseshift.envs.core.factors import FactorSpec
from sparseshift.envs.data.layout import (
    CHECKSUM_GROUP,
    FINAL_FACTORS,
    FINAL_FRAMES,
    FINAL_PREFIX,
    FORMAT,
    IMAGE_ARRAYS,
    OBS_PREFIX,
    fingerprint,
    per_episode,
)
from sparseshift.envs.data.schema import (
    FACTOR_ARRAYS,
    Header,
    Layout,
    check_finite,
    read_attrs,
)
from sparseshift.envs.infra.errors import ConfigError, safe_repr

#: Rows read per HDF5 call while loading to RAM (a multiple of every chunk size in practice).
LOAD_ROWS = 1024


def default_budget() -> int:
    """Half of the available memory (``/proc/meminfo``), or 4 GiB if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 4 << 30


class CorruptError(ConfigError):
    """A chunk's content does not match its checksum (or cannot be decoded)."""


#: HDF5 handles inherited through ``fork``: kept referenced, never used or closed, in the child.
_INHERITED: list[h5py.File] = []


class Dataset:
    """A collected dataset (see ``docs/datasets.md``); build it with :func:`open_dataset`.

    ``ds[i]`` is row ``i`` of every row array as a dict of numpy arrays (video: ``frames``,
    ``factors``, ``actions``, ``rewards``, ``episode_starts``, ``terminated``, ``truncated`` and
    ``obs/<key>``; pairs: ``frames_a``, ``frames_b``, ``factors_a``, ``factors_b``, ``changed``,
    ``intervened``), so ``torch.utils.data.DataLoader(open_dataset(path), batch_size=64)`` works;
    :mod:`sparseshift.envs.data.torch_datasets` has adapters for frames, pairs, sequences and
    transitions.
    """

    def __init__(self, path: Path, f: h5py.File, memory_budget: int) -> None:
        self.path = path
        self.memory_budget = memory_budget
        self._file: h5py.File | None = f
        self._pid = os.getpid()
        # Everything sized by the file is checked before it is allocated (schema module):
        # attributes one by one (bounded, UTF-8, JSON of bounded depth), the arrays' shapes
        # against each other, the file's size and the memory budget, then the checksums and
        # the fingerprint, then the content of the attributes and the arrays' row layouts.
        header = Header(path, read_attrs(path, f))
        layout = Layout(path, f, header)
        self.in_memory = layout.check_budget(_file_size(path), memory_budget,
                                             max(memory_budget, default_budget()))
        self._stored_attrs = header.stored
        self.attrs: dict[str, Any] = header.attrs
        self.kind: str = header.kind
        self.fingerprint: str = header.fingerprint
        self.version = header.version
        self._n = header.n
        #: How policy observations are stored (format 3 video; ``{}`` otherwise): see
        #: :func:`~sparseshift.envs.data.layout.observation_layout`.
        self.observation: dict[str, Any] = header.observation
        self.obs_keys: tuple[str, ...] = header.obs_keys
        self._names = header.names
        self._rows = layout.rows
        self.shapes = layout.shapes
        self.dtypes = layout.dtypes
        self.nbytes = layout.nbytes()
        self._sums = {n: np.asarray(f[f"{CHECKSUM_GROUP}/{n}"][...]) for n in self._names}
        self._check_structure()
        header.check_content()
        layout.check_rows(header)
        self.env_id: str = header.env_id
        self.image_size: int = header.image_size
        self.factor_spec: FactorSpec = header.factor_spec
        self._arrays: dict[str, np.ndarray] = {
            n: self._load(n) for n in self._names if self.in_memory or n not in IMAGE_ARRAYS
        }
        for n in FACTOR_ARRAYS & set(self._arrays):
            check_finite(path, n, self._arrays[n], self.factor_spec)
        self._check_episodes()
        if self.in_memory:
            self.close()

    # -- structure and verification ---------------------------------------------------------
    def _check_structure(self) -> None:
        if fingerprint(self.kind, self._sums, self.shapes, self._stored_attrs,
                       self.version) != self.fingerprint:
            raise ConfigError(f"{self.path}: checksums or attributes do not match the "
                              "fingerprint; file is damaged or was edited")

    def _check_episodes(self) -> None:
        """Per-episode arrays hold one row per episode end (format 3 video)."""
        final = [n for n in self._names if per_episode(n)]
        if final:
            ends = int(np.count_nonzero(self._arrays["terminated"] | self._arrays["truncated"]))
            for n in final:
                if self.shapes[n][0] != ends:
                    raise ConfigError(f"{self.path}: {n!r} has {self.shapes[n][0]} rows for "
                                      f"{ends} episodes; file is damaged")

    def _chunk_error(self, name: str, chunk: int, why: str) -> CorruptError:
        rows = self._rows[name]
        return CorruptError(f"{self.path}: corrupt data in {name!r} chunk {chunk} (rows "
                            f"{chunk * rows}-{min(self.shapes[name][0], (chunk + 1) * rows) - 1})"
                            f": {why}")

    def _handle(self) -> h5py.File:
        """The HDF5 file, opened by this process (a handle inherited through ``fork`` is left
        alone: HDF5 handles must not be shared between processes)."""
        if self._file is None or self._pid != os.getpid():
            if self._file is not None:
                _INHERITED.append(self._file)
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                self._file = None
                raise ConfigError(f"cannot reopen {self.path} ({exc})") from None
            self._pid = os.getpid()
        return self._file

    def _read(self, name: str, start: int, stop: int, out: np.ndarray) -> None:
        """Read rows [start, stop) of ``name`` into ``out`` and verify their chunk checksums."""
        rows = self._rows[name]
        try:
            self._handle()[name].read_direct(out, np.s_[start:stop])
        except OSError as exc:  # a filter failed to decode a damaged chunk: find which
            if stop - start <= rows:
                raise self._chunk_error(name, start // rows, f"cannot decode ({exc})") from None
            for a in range(start, stop, rows):
                self._read(name, a, min(stop, a + rows), out[a - start : a - start + rows])
        for c in range(start // rows, -(-stop // rows)):
            block = out[c * rows - start : (c + 1) * rows - start]
            if zlib.crc32(np.ascontiguousarray(block).data) != int(self._sums[name][c]):
                raise self._chunk_error(name, c, "checksum mismatch")

    def _load(self, name: str) -> np.ndarray:
        arr = np.empty(self.shapes[name], self.dtypes[name])
        step = max(LOAD_ROWS // self._rows[name], 1) * self._rows[name]
        n = self.shapes[name][0]
        for start in range(0, n, step):
            stop = min(n, start + step)
            self._read(name, start, stop, arr[start:stop])
        return arr

    def verify(self) -> int:
        """Check every chunk checksum (reading the file if not in RAM); return the chunk count."""
        if self.in_memory:
            for n, arr in self._arrays.items():
                rows = self._rows[n]
                for c, want in enumerate(self._sums[n]):
                    if zlib.crc32(arr[c * rows : (c + 1) * rows].data) != int(want):
                        raise self._chunk_error(n, c, "checksum mismatch")
        else:
            for n in self._names:
                self._verify_on_disk(n)
        return sum(len(s) for s in self._sums.values())

    def _verify_on_disk(self, name: str) -> None:
        """Read every chunk of ``name`` (a block of about :data:`LOAD_ROWS` rows at a time, into
        one buffer) and check its checksum."""
        n = self.shapes[name][0]
        step = max(LOAD_ROWS // self._rows[name], 1) * self._rows[name]
        buf = np.empty((min(n, step), *self.shapes[name][1:]), self.dtypes[name])
        for start in range(0, n, step):
            stop = min(n, start + step)
            self._read(name, start, stop, buf[: stop - start])

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def names(self) -> tuple[str, ...]:
        """The arrays this dataset holds (see ``docs/datasets.md``)."""
        return self._names

    @property
    def row_arrays(self) -> tuple[str, ...]:
        """The arrays with one row per step or pair (what ``ds[i]`` returns)."""
        return tuple(n for n in self._names if not per_episode(n))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """Row ``index`` of every row array (a negative index counts from the end)."""
        i = int(index)
        if not -self._n <= i < self._n:
            raise IndexError(f"row {index} of a dataset with {self._n} rows")
        i %= self._n
        return {n: self.take(n, np.asarray(i)) for n in self.row_arrays}

    def __getitems__(self, indices: list[int]) -> list[dict[str, np.ndarray]]:
        """Rows ``indices`` (what a DataLoader fetches for one batch; each chunk read once)."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        if len(idx) and (idx.min() < -self._n or idx.max() >= self._n):
            raise IndexError(f"rows {idx.min()}..{idx.max()} of a dataset with {self._n} rows")
        idx %= max(self._n, 1)
        cols = {n: self.take(n, idx) for n in self.row_arrays}
        return [{n: v[k] for n, v in cols.items()} for k in range(len(idx))]

    def __reduce__(self) -> tuple[Any, tuple[str, int, str]]:
        """Pickle as (path, memory budget, fingerprint): the copy opens the file again (in RAM or
        on disk as its own budget allows) and refuses a file whose content changed."""
        return _reopen, (str(self.path), self.memory_budget, self.fingerprint)

    def episode_ends(self) -> np.ndarray:
        """Row of the last step of every episode (a video's episodes end at a ``terminated`` or
        ``truncated`` row; the ``final/...`` arrays have one row per entry, in this order)."""
        self._need_video("episodes")
        return np.flatnonzero(self.array("terminated") | self.array("truncated"))

    def _need_video(self, what: str) -> None:
        if self.kind != "video":
            raise ConfigError(f"{what} need a video dataset; {self.path} holds {self.kind}")

    def _need_observations(self, what: str) -> None:
        self._need_video(what)
        if self.version < 3:
            raise ConfigError(f"{what} need a dataset of format 3 or later (policy observations "
                              f"and final observations); {self.path} is format {self.version}: "
                              "collect it again")

    def array(self, name: str) -> np.ndarray:
        """The whole array ``name`` in RAM (ConfigError if the dataset does not fit the budget)."""
        if name not in self._names:
            raise ConfigError(
                f"a {self.kind} dataset has no {name!r}; it has {', '.join(self._names)}")
        if name not in self._arrays:
            raise ConfigError(f"{self.path} is larger than the memory budget; read it with a "
                              "Sampler or open it with a larger memory_budget")
        return self._arrays[name]

    def take(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any shape of int indices, each in ``[0, rows)``) of array ``name``, as a
        new array; a negative or out-of-range row, or a non-integer index, is a
        :class:`ConfigError` naming the file and the array."""
        if name not in self._names:
            self.array(name)  # the error naming the arrays there are
        idx = self._check_rows(name, idx)
        if name in self._arrays:
            return self._arrays[name][idx]
        uniq, inverse = np.unique(np.asarray(idx).reshape(-1), return_inverse=True)
        buf = np.empty((len(uniq), *self.shapes[name][1:]), self.dtypes[name])
        rows, n = self._rows[name], self.shapes[name][0]
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(uniq)], strict=True):
            a, b = int(uniq[lo]), int(uniq[hi - 1]) + 1  # one run of consecutive rows
            a0, b0 = a - a % rows, min(n, -(-b // rows) * rows)  # chunk-aligned
            block = buf[lo:hi] if (a0, b0) == (a, b) else np.empty(
                (b0 - a0, *self.shapes[name][1:]), self.dtypes[name])
            self._read(name, a0, b0, block)
            buf[lo:hi] = block[a - a0 : b - a0]
        return buf[inverse].reshape(*np.shape(idx), *self.shapes[name][1:])

    def _check_rows(self, name: str, idx: Any) -> np.ndarray:
        arr = np.asarray(idx)
        if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
            raise ConfigError(f"{self.path}: rows of {name!r} must be integer indices, got "
                              f"{arr.dtype} {safe_repr(arr)}")
        arr = arr.astype(np.int64, copy=False)
        n = self.shapes[name][0]
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
            bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
            raise ConfigError(f"{self.path}: row {bad} of {name!r} is out of range: it has "
                              f"{n} rows (0 to {n - 1}; no negative rows)")
        return arr

    def close(self) -> None:
        """Close the HDF5 file (a dataset on disk opens it again when it next reads)."""
        if self._file is not None:
            if self._pid == os.getpid():
                self._file.close()
            else:
                _INHERITED.append(self._file)
            self._file = None

    def __repr__(self) -> str:
        where = "in RAM" if self.in_memory else "on disk"
        return f"Dataset({str(self.path)!r}, kind={self.kind}, n={self._n}, {self.env_id}, {where})"

    # -- named arrays (the documented API) ----------------------------------------------------
    @property
    def frames(self) -> np.ndarray:
        return self.array("frames")

    @property
    def factors(self) -> np.ndarray:
        return self.array("factors")

    @property
    def actions(self) -> np.ndarray:
        return self.array("actions")

    @property
    def rewards(self) -> np.ndarray:
        return self.array("rewards")

    @property
    def episode_starts(self) -> np.ndarray:
        return self.array("episode_starts")

    @property
    def frames_a(self) -> np.ndarray:
        return self.array("frames_a")

    @property
    def frames_b(self) -> np.ndarray:
        return self.array("frames_b")

    @property
    def factors_a(self) -> np.ndarray:
        return self.array("factors_a")

    @property
    def factors_b(self) -> np.ndarray:
        return self.array("factors_b")

    @property
    def changed(self) -> np.ndarray:
        return self.array("changed")

    @property
    def terminated(self) -> np.ndarray:
        return self.array("terminated")

    @property
    def truncated(self) -> np.ndarray:
        return self.array("truncated")

    @property
    def obs(self) -> dict[str, np.ndarray]:
        """The stored parts of the policy observation of every row (format 3 video), by key:
        ``state`` for a vector observation, e.g. ``proprio`` for a dict one (its frame is
        ``frames``); empty when the policy saw only the frame."""
        self._need_observations("policy observations")
        return {k: self.array(OBS_PREFIX + k) for k in self.obs_keys}

    @property
    def final_frames(self) -> np.ndarray:
        """The frame after the last step of every episode (format 3 video), [E, H, W, 3]."""
        self._need_observations("final observations")
        return self.array(FINAL_FRAMES)

    @property
    def final_factors(self) -> np.ndarray:
        """The factors after the last step of every episode (format 3 video), [E, F]."""
        self._need_observations("final observations")
        return self.array(FINAL_FACTORS)

    @property
    def final_obs(self) -> dict[str, np.ndarray]:
        """``obs`` after the last step of every episode (format 3 video), by key."""
        self._need_observations("final observations")
        return {k: self.array(FINAL_PREFIX + OBS_PREFIX + k) for k in self.obs_keys}

    def observations(self, rows: np.ndarray, final: bool = False) -> Any:
        """The policy's observations of ``rows`` (or, with ``final``, of episodes ``rows``' final
        observations) as the env gave them: the frames (``pixels`` mode), the vector (``state``)
        or a dict with the frame under its key (``pixels_proprio``). Format 3 video only."""
        self._need_observations("policy observations")
        pre = FINAL_PREFIX if final else ""
        frame_key = self.observation.get("pixels")
        parts = {k: self.take(pre + OBS_PREFIX + k, rows) for k in self.obs_keys}
        if frame_key == "":
            return self.take(FINAL_FRAMES if final else "frames", rows)
        if self.observation.get("space") == "box":
            return parts["state"]
        if frame_key is not None:
            parts = {frame_key: self.take(FINAL_FRAMES if final else "frames", rows), **parts}
        return parts


def _reopen(path: str, memory_budget: int, digest: str) -> Dataset:
    """Unpickle a :class:`Dataset`: open ``path`` again, refusing a file with other content."""
    ds = open_dataset(path, memory_budget=memory_budget)
    if ds.fingerprint != digest:
        raise ConfigError(f"{path} changed since it was opened (fingerprint {ds.fingerprint[:16]}, "
                          f"was {digest[:16]})")
    return ds


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc})") from None


def open_dataset(
    path: str | Path, verify: bool = False, memory_budget: int | None = None
) -> Dataset:
    """Open the dataset at ``path``; ConfigError (one line) if it is missing, not a sparseshift
    dataset, of another format version, truncated or corrupt.

    Datasets that fit ``memory_budget`` bytes (default :func:`default_budget`) are loaded into RAM
    with every chunk checksum verified; larger ones are verified chunk by chunk as they are read,
    or completely at open with ``verify=True``.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"no dataset at {p}")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise ConfigError(f"{p} is not a readable HDF5 file ({exc})") from None
    try:
        try:
            fmt = f.attrs.get("format")
        except (OSError, KeyError, ValueError, TypeError):
            fmt = None
        if not isinstance(fmt, str | bytes) or _plain(fmt) != FORMAT:
            raise ConfigError(f"{p} is not a sparseshift dataset (no format attribute {FORMAT!r})")
        ds = Dataset(p, f, default_budget() if memory_budget is None else memory_budget)
    except ConfigError:
        f.close()
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, RecursionError) as exc:
        f.close()
        raise ConfigError(f"{p} is damaged or incomplete ({type(exc).__name__}: "
                          f"{safe_repr(str(exc))})") from None
    if verify:
        ds.verify()
    return ds
