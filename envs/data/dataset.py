"""Open a sparseshift dataset: validated, checksummed, in RAM when it fits, else read by chunk.

Compressed HDF5 datasets cannot be memory-mapped, so :func:`open_dataset` loads every array into RAM
when the decoded size fits a memory budget (default: half the available memory) and verifies every
chunk checksum while doing so. When it does not fit, the frame arrays stay on disk (everything else,
which is small, is still loaded): :meth:`Dataset.take` then reads the chunks a batch touches
(one frame per chunk; consecutive frames in one call), verifying each chunk's checksum.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sparseshift.envs.data.layout import (
    CHECKSUM_GROUP,
    FORMAT,
    FRAME_ARRAYS,
    KINDS,
    READABLE_VERSIONS,
    arrays_of,
    fingerprint,
)
from sparseshift.envs.errors import ConfigError
from sparseshift.envs.factors import FactorSpec

#: Rows read per HDF5 call while loading to RAM (a multiple of every chunk size in practice).
LOAD_ROWS = 1024
JSON_ATTRS: frozenset[str] = frozenset({
    "env_kwargs", "colour_scheme", "factor_spec", "collector", "versions",
})


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


class Dataset:
    """A collected dataset (see ``docs/datasets.md``); build it with :func:`open_dataset`."""

    def __init__(self, path: Path, f: h5py.File, memory_budget: int) -> None:
        self.path = path
        self._file: h5py.File | None = f
        self._stored_attrs = {k: _plain(v) for k, v in f.attrs.items()}
        self.attrs: dict[str, Any] = {
            k: json.loads(v) if k in JSON_ATTRS else v for k, v in self._stored_attrs.items()
        }
        self.kind: str = str(self.attrs["kind"])
        self.env_id: str = str(self.attrs["env_id"])
        self.image_size: int = int(self.attrs["image_size"])
        self.factor_spec: FactorSpec = FactorSpec.from_json(self.attrs["factor_spec"])
        self.fingerprint: str = str(self.attrs["fingerprint"])
        self._n = int(self.attrs["n"])
        self._names = arrays_of(self.kind)
        self._sums = {n: np.asarray(f[f"{CHECKSUM_GROUP}/{n}"][...]) for n in self._names}
        self._rows = {n: int(f[n].chunks[0]) for n in self._names}
        self.shapes = {n: tuple(int(s) for s in f[n].shape) for n in self._names}
        self.dtypes = {n: np.dtype(f[n].dtype) for n in self._names}
        self.nbytes = sum(int(np.prod(s)) * self.dtypes[n].itemsize for n, s in self.shapes.items())
        self._check_structure()
        self.in_memory = self.nbytes <= memory_budget
        self._arrays: dict[str, np.ndarray] = {
            n: self._load(n) for n in self._names if self.in_memory or n not in FRAME_ARRAYS
        }
        if self.in_memory:
            self.close()

    # -- structure and verification ---------------------------------------------------------
    def _check_structure(self) -> None:
        for n, shape in self.shapes.items():
            expect = -(-shape[0] // self._rows[n])
            if shape[0] != self._n or self._sums[n].shape != (expect,):
                raise ConfigError(f"{self.path}: array {n!r} has {shape[0]} rows and "
                                  f"{len(self._sums[n])} checksums; file is damaged")
        version = int(self.attrs["format_version"])
        if fingerprint(self.kind, self._sums, self.shapes, self._stored_attrs,
                       version) != self.fingerprint:
            raise ConfigError(f"{self.path}: checksums or attributes do not match the "
                              "fingerprint; file is damaged or was edited")

    def _chunk_error(self, name: str, chunk: int, why: str) -> CorruptError:
        rows = self._rows[name]
        return CorruptError(f"{self.path}: corrupt data in {name!r} chunk {chunk} (rows "
                            f"{chunk * rows}-{min(self._n, (chunk + 1) * rows) - 1}): {why}")

    def _read(self, name: str, start: int, stop: int, out: np.ndarray) -> None:
        """Read rows [start, stop) of ``name`` into ``out`` and verify their chunk checksums."""
        assert self._file is not None
        rows = self._rows[name]
        try:
            self._file[name].read_direct(out, np.s_[start:stop])
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
        for start in range(0, self._n, step):
            stop = min(self._n, start + step)
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
                self._load(n)
        return sum(len(s) for s in self._sums.values())

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

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
        """Rows ``idx`` (any shape of int indices) of array ``name``, as a new array."""
        if name in self._arrays:
            return self._arrays[name][idx]
        uniq, inverse = np.unique(np.asarray(idx).reshape(-1), return_inverse=True)
        buf = np.empty((len(uniq), *self.shapes[name][1:]), self.dtypes[name])
        rows = self._rows[name]
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(uniq)], strict=True):
            a, b = int(uniq[lo]), int(uniq[hi - 1]) + 1  # one run of consecutive rows
            a0, b0 = a - a % rows, min(self._n, -(-b // rows) * rows)  # chunk-aligned
            block = buf[lo:hi] if (a0, b0) == (a, b) else np.empty(
                (b0 - a0, *self.shapes[name][1:]), self.dtypes[name])
            self._read(name, a0, b0, block)
            buf[lo:hi] = block[a - a0 : b - a0]
        return buf[inverse].reshape(*np.shape(idx), *self.shapes[name][1:])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
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


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


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
        fmt, version = f.attrs.get("format"), f.attrs.get("format_version")
        if _plain(fmt) != FORMAT:
            raise ConfigError(f"{p} is not a sparseshift dataset (no format attribute {FORMAT!r})")
        if _plain(version) not in READABLE_VERSIONS:
            raise ConfigError(f"{p} has format version {_plain(version)}; this sparseshift reads "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))} (re-collect it)")
        if _plain(f.attrs.get("kind")) not in KINDS:
            raise ConfigError(f"{p}: unknown dataset kind {_plain(f.attrs.get('kind'))!r}")
        ds = Dataset(p, f, default_budget() if memory_budget is None else memory_budget)
    except ConfigError:
        f.close()
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        f.close()
        raise ConfigError(f"{p} is damaged or incomplete ({type(exc).__name__}: {exc})") from None
    if verify:
        ds.verify()
    return ds
