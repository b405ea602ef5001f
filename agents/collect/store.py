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
    per_episode,
    stored_attr,
)
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import commit_file, remove_own_file, write_json_atomic

_commit = commit_file


def tmp_name(path: Path) -> Path:
    """The temporary sibling of ``path`` this process writes it under: ``.NAME.tmpPID``.

    Collection records the process id of every process it starts in its lock's journal before
    the process writes anything, so a later run removes exactly the temporary files a killed
    process left (:func:`sparseshift.agents.collect.collect.pid_temp`), including the final file's,
    which lies outside the locked staging folder (so a random name recorded there could not
    cover it). The file is created exclusively (:func:`create_h5`): never through a symbolic
    link or over a file that is not this process's."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def create_h5(tmp: Path) -> h5py.File:
    """Create the HDF5 file ``tmp`` (a :func:`tmp_name`) exclusively: HDF5's ``x`` mode opens
    with ``O_CREAT | O_EXCL``, which fails on any existing name, a symbolic link (even a
    dangling one) included, so nothing a link points to is ever truncated. A regular file left
    at this exact name (by an earlier process with the same id that was killed) is removed
    first; anything else there is a one-line :class:`ConfigError`."""
    remove_own_file(tmp)
    try:
        return h5py.File(tmp, "x")
    except FileExistsError:
        raise ConfigError(f"{tmp} exists and is not a regular file (a symbolic link?); "
                          "sparseshift writes its temporary files itself: remove it") from None


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
    """Write one part (compressed like the final file, with its chunk checksums) atomically;
    when it fails (a full disk included) its temporary file is removed: that exact file,
    created by this call, nothing else."""
    tmp = tmp_name(path)
    f = create_h5(tmp)
    try:
        with f:
            for name, arr in arrays.items():
                rows = chunk_rows(name, part_rows)
                dset = _create(f, name, arr.shape, arr.dtype, rows)
                if name in FRAME_ARRAYS:
                    write_deflated(dset, arr)
                else:
                    dset[...] = arr
                f[f"{CHECKSUM_GROUP}/{name}"] = chunk_checksums(arr, rows)
        _commit(tmp, path)
    except BaseException:
        remove_own_file(tmp)
        raise


def part_ok(path: Path, names: tuple[str, ...], rows: int) -> bool:
    """True if ``path`` is a readable part holding arrays ``names``: every row array with ``rows``
    rows, every per-episode array with one row per episode end."""
    try:
        with h5py.File(path, "r") as f:
            if not all(f[n].shape[0] == rows for n in names if not per_episode(n)):
                return False
            episodes = [n for n in names if per_episode(n)]
            if episodes:
                ends = int(np.count_nonzero(f["terminated"][...] | f["truncated"][...]))
                return all(f[n].shape[0] == ends for n in episodes)
            return True
    except (OSError, KeyError, ValueError):
        return False


class _Stream:
    """A per-episode array of the final file, filled in order: rows wait until a whole chunk is
    there, which is compressed (like :func:`write_deflated`), checksummed and written."""

    def __init__(self, dset: h5py.Dataset) -> None:
        self.dset = dset
        self.rows = int(dset.chunks[0])
        self.pending: list[np.ndarray] = []
        self.waiting = 0
        self.written = 0
        self.sums: list[int] = []

    def add(self, arr: np.ndarray) -> None:
        self.pending.append(arr)
        self.waiting += len(arr)
        if self.waiting >= self.rows:
            block = np.concatenate(self.pending)
            full = len(block) - len(block) % self.rows
            self._write(block[:full])
            self.pending, self.waiting = [block[full:]], len(block) - full

    def _write(self, block: np.ndarray) -> None:
        self.dset.resize(self.written + len(block), axis=0)
        zeros = (0,) * (block.ndim - 1)
        for i in range(0, len(block), self.rows):
            chunk = block[i : i + self.rows]
            self.sums.append(zlib.crc32(np.ascontiguousarray(chunk).data))
            if len(chunk) < self.rows:  # the edge chunk is stored full size
                pad = np.zeros((self.rows - len(chunk), *block.shape[1:]), block.dtype)
                chunk = np.concatenate([chunk, pad])
            data = zlib.compress(np.ascontiguousarray(chunk).data, COMPRESSION_LEVEL)
            self.dset.id.write_direct_chunk((self.written + i, *zeros), data)
        self.written += len(block)

    def finish(self) -> tuple[tuple[int, ...], np.ndarray]:
        """Write the rows still waiting; return the array's shape and chunk checksums."""
        if self.waiting:
            self._write(np.concatenate(self.pending))
        self.pending, self.waiting = [], 0
        return tuple(int(d) for d in self.dset.shape), np.array(self.sums, np.uint32)


class Assembler:
    """Builds the final file from finished parts, added one by one in index order.

    The file grows at a temporary name (:func:`tmp_name`) and appears at ``out`` only in
    :meth:`finish`, so it can be filled while later parts are still being made (the collector's
    writer process does that) or all at once (:func:`assemble`). Row arrays' chunks are copied
    compressed (``read_direct_chunk`` / ``write_direct_chunk``), never re-compressed; per-episode
    arrays (``final/...``: a part holds as many rows as it has episodes) are re-chunked and
    compressed here. Parts are always added in index order, so the file is the same whichever
    way it was filled.
    """

    def __init__(self, out: Path, kind: str, n: int, part_rows: int,
                 names: tuple[str, ...] | None = None) -> None:
        self.out, self.kind, self.n, self.part_rows = out, kind, n, part_rows
        self.names = arrays_of(kind) if names is None else names
        self.tmp = tmp_name(out)
        self.f = create_h5(self.tmp)
        self.sums: dict[str, list[np.ndarray]] = {
            name: [] for name in self.names if not per_episode(name)}
        self.streams: dict[str, _Stream] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.added = 0

    def add(self, path: Path) -> None:
        """Copy part ``self.added`` (the next in order) from ``path``."""
        row0 = self.added * self.part_rows
        with h5py.File(path, "r") as p:
            if not self.shapes and not self.streams:
                for name in self.names:
                    rows = chunk_rows(name, self.part_rows)
                    if per_episode(name):
                        self.streams[name] = _Stream(_create(
                            self.f, name, (0, *p[name].shape[1:]), p[name].dtype, rows))
                        continue
                    self.shapes[name] = (self.n, *p[name].shape[1:])
                    _create(self.f, name, self.shapes[name], p[name].dtype, rows)
            for name in self.names:
                if per_episode(name):
                    self.streams[name].add(p[name][...])
                    continue
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
        for name, stream in self.streams.items():
            self.shapes[name], merged[name] = stream.finish()
        for name in self.names:
            f[f"{CHECKSUM_GROUP}/{name}"] = merged[name]
        stored = {key: stored_attr(value) for key, value in attrs.items()}
        stored.update({"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
                       "n": self.n})
        digest = fingerprint(self.kind, merged, self.shapes, stored)
        f.attrs.update({**stored, "fingerprint": digest})
        f.close()
        _commit(self.tmp, self.out)
        return digest

    def abort(self) -> None:
        """Close and remove the temporary file (the one this assembler created)."""
        try:
            self.f.close()
        finally:
            remove_own_file(self.tmp)


def assemble(out: Path, parts: list[Path], kind: str, n: int, part_rows: int,
             attrs: Mapping[str, Any], names: tuple[str, ...] | None = None) -> str:
    """Copy the parts' chunks into ``out`` (via a temp file + rename); return the fingerprint."""
    asm = Assembler(out, kind, n, part_rows, names)
    try:
        for path in parts:
            asm.add(path)
        return asm.finish(attrs)
    except BaseException:
        asm.abort()
        raise
