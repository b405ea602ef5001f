"""Crash-safe storage: part files, the manifest, and assembly of the final HDF5 file.

Every file is written to a unique temporary name, fsync'ed and moved into place with
``os.replace`` (then the directory is fsync'ed), so a reader only ever sees complete files: a part
that exists is finished. Parts are compressed by the workers that make them; assembly copies their
compressed HDF5 chunks into the final file unchanged (``read_direct_chunk``/``write_direct_chunk``),
so it costs little more than the I/O and never re-compresses.
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sparseshift.envs.data.layout import (
    CHECKSUM_GROUP,
    COMPRESSION,
    COMPRESSION_LEVEL,
    FORMAT,
    FORMAT_VERSION,
    FRAME_ARRAYS,
    arrays_of,
    chunk_checksums,
    chunk_rows,
    fingerprint,
    stored_attr,
)
from sparseshift.envs.io import commit_file, write_json_atomic

_commit = commit_file


def tmp_name(path: Path) -> Path:
    """A temporary sibling of ``path`` unique to this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_json(path: Path, value: Any) -> None:
    write_json_atomic(path, value)


def remove_tree(directory: Path) -> None:
    """Remove ``directory`` and the files in it (no subfolders), unlinking in parallel threads:
    each unlink of a freshly synced file waits ~4 ms on the filesystem journal, and concurrent
    ones share that wait (30 parts: ~100 ms one by one, ~10 ms this way)."""
    from concurrent.futures import ThreadPoolExecutor

    files = [p for p in directory.iterdir() if not p.is_dir()]
    with ThreadPoolExecutor(min(16, max(1, len(files)))) as pool:
        for _ in pool.map(lambda p: p.unlink(missing_ok=True), files):
            pass
    shutil.rmtree(directory)  # anything else (and the folder itself)


def part_path(parts: Path, index: int) -> Path:
    return parts / f"part-{index:06d}.h5"


def _create(f: h5py.File, name: str, shape: tuple[int, ...], dtype: np.dtype[Any],
            rows: int) -> h5py.Dataset:
    return f.create_dataset(
        name, shape=shape, dtype=dtype, chunks=(rows, *shape[1:]), maxshape=(None, *shape[1:]),
        compression=COMPRESSION, compression_opts=COMPRESSION_LEVEL,
    )


def write_deflated(dset: h5py.Dataset, arr: np.ndarray) -> None:
    """Write ``arr`` chunk by chunk, compressed with zlib: the exact bytes HDF5's deflate filter
    stores (checked by the tests, which read the data back through h5py)."""
    rows = int(dset.chunks[0])
    zeros = (0,) * (arr.ndim - 1)
    for i in range(0, len(arr), rows):
        block = arr[i : i + rows]
        if len(block) < rows:  # an edge chunk is stored full size
            pad = np.zeros((rows - len(block), *arr.shape[1:]), arr.dtype)
            block = np.concatenate([block, pad])
        data = zlib.compress(np.ascontiguousarray(block).data, COMPRESSION_LEVEL)
        dset.id.write_direct_chunk((i, *zeros), data)


def write_part(path: Path, arrays: Mapping[str, np.ndarray], part_rows: int) -> None:
    """Write one part (compressed like the final file, with its chunk checksums) atomically."""
    tmp = tmp_name(path)
    with h5py.File(tmp, "w") as f:
        for name, arr in arrays.items():
            rows = chunk_rows(name, part_rows)
            dset = _create(f, name, arr.shape, arr.dtype, rows)
            if name in FRAME_ARRAYS:
                write_deflated(dset, arr)
            else:
                dset[...] = arr
            f[f"{CHECKSUM_GROUP}/{name}"] = chunk_checksums(arr, rows)
    _commit(tmp, path)


def part_ok(path: Path, kind: str, rows: int) -> bool:
    """True if ``path`` is a readable part with every array of ``rows`` rows."""
    try:
        with h5py.File(path, "r") as f:
            return all(f[n].shape[0] == rows for n in arrays_of(kind))
    except (OSError, KeyError, ValueError):
        return False


class Assembler:
    """Builds the final file from finished parts, added one by one in index order.

    The file grows at a temporary name (:func:`tmp_name`) and appears at ``out`` only in
    :meth:`finish`, so it can be filled while later parts are still being made (the collector's
    writer process does that) or all at once (:func:`assemble`). Chunks are copied compressed
    (``read_direct_chunk`` / ``write_direct_chunk``), never re-compressed, and always in index
    order, so the file is the same whichever way it was filled.
    """

    def __init__(self, out: Path, kind: str, n: int, part_rows: int) -> None:
        self.out, self.kind, self.n, self.part_rows = out, kind, n, part_rows
        self.tmp = tmp_name(out)
        self.f = h5py.File(self.tmp, "w")
        self.sums: dict[str, list[np.ndarray]] = {name: [] for name in arrays_of(kind)}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.added = 0

    def add(self, path: Path) -> None:
        """Copy part ``self.added`` (the next in order) from ``path``."""
        row0 = self.added * self.part_rows
        with h5py.File(path, "r") as p:
            if not self.shapes:
                for name in arrays_of(self.kind):
                    self.shapes[name] = (self.n, *p[name].shape[1:])
                    _create(self.f, name, self.shapes[name], p[name].dtype,
                            chunk_rows(name, self.part_rows))
            for name in arrays_of(self.kind):
                src, dst = p[name].id, self.f[name].id
                rows, zeros = chunk_rows(name, self.part_rows), (0,) * (len(self.shapes[name]) - 1)
                for r in range(0, p[name].shape[0], rows):
                    mask, data = src.read_direct_chunk((r, *zeros))
                    dst.write_direct_chunk((row0 + r, *zeros), data, mask)
                self.sums[name].append(p[f"{CHECKSUM_GROUP}/{name}"][...])
        self.added += 1

    def finish(self, attrs: Mapping[str, Any]) -> str:
        """Write checksums and attributes, move the file to ``out``; return the fingerprint."""
        f = self.f
        merged = {name: np.concatenate(v).astype(np.uint32) for name, v in self.sums.items()}
        for name, v in merged.items():
            f[f"{CHECKSUM_GROUP}/{name}"] = v
        stored = {key: stored_attr(value) for key, value in attrs.items()}
        stored.update({"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
                       "n": self.n})
        digest = fingerprint(self.kind, merged, self.shapes, stored)
        f.attrs.update({**stored, "fingerprint": digest})
        f.close()
        _commit(self.tmp, self.out)
        return digest

    def abort(self) -> None:
        """Close and remove the temporary file."""
        self.f.close()
        self.tmp.unlink(missing_ok=True)


def assemble(out: Path, parts: list[Path], kind: str, n: int, part_rows: int,
             attrs: Mapping[str, Any]) -> str:
    """Copy the parts' chunks into ``out`` (via a temp file + rename); return the fingerprint."""
    asm = Assembler(out, kind, n, part_rows)
    try:
        for path in parts:
            asm.add(path)
        return asm.finish(attrs)
    except BaseException:
        asm.abort()
        raise
