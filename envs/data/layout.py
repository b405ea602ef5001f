"""The on-disk layout of sparseshift datasets (HDF5, format version 2), in one place.

A dataset is one HDF5 file. Root attributes (JSON strings where structured) describe it; every array
is a chunked, compressed dataset along the first (row) axis; ``/checksums/<name>`` holds one CRC-32
per HDF5 chunk of ``/<name>``, computed over the chunk's *decoded* bytes in C order, so checksums do
not depend on the compression filter and a user can recompute them with plain h5py. The full layout
is documented in ``docs/datasets.md``.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

FORMAT = "sparseshift-dataset"
#: 2: the fingerprint also covers the root attributes (env id, factor spec, collector config, ...),
#: so an edited attribute fails verification. Version 1 files (arrays only) still load.
FORMAT_VERSION = 2
READABLE_VERSIONS: tuple[int, ...] = (1, 2)
#: Root attributes the fingerprint does not cover: itself, and provenance that differs between
#: otherwise identical collections (time, library versions).
UNCOVERED_ATTRS: frozenset[str] = frozenset({"fingerprint", "created", "versions"})
KINDS: tuple[str, ...] = ("video", "pairs")

#: Arrays of each kind, in the order they are written.
VIDEO_ARRAYS: tuple[str, ...] = (
    "frames", "factors", "actions", "rewards", "episode_starts", "terminated", "truncated",
)
PAIRS_ARRAYS: tuple[str, ...] = (
    "frames_a", "frames_b", "factors_a", "factors_b", "changed", "intervened",
)
FRAME_ARRAYS: frozenset[str] = frozenset({"frames", "frames_a", "frames_b"})

#: Compression of every array: HDF5's standard deflate filter at level 1 (chosen by measurement
#: against lzf and none, see docs/datasets.md; readable by every HDF5 tool, unlike lzf).
COMPRESSION = "gzip"
COMPRESSION_LEVEL = 1
#: Rows (frames) per HDF5 chunk of a frame array. 8 frames (~100 KB decoded at 64 px) compress
#: and load about twice as well as single frames and make 8x fewer chunks to copy at assembly,
#: while a random read of a dataset too large for RAM decodes only 8 frames (docs/datasets.md).
FRAME_CHUNK_ROWS = 8
#: Default rows per collection part; a multiple of FRAME_CHUNK_ROWS. Other arrays use one HDF5
#: chunk per part, so parts copy into the final file chunk by chunk without re-compression.
DEFAULT_PART_ROWS = 1024

CHECKSUM_GROUP = "checksums"


def arrays_of(kind: str) -> tuple[str, ...]:
    """The array names a dataset of ``kind`` holds."""
    return VIDEO_ARRAYS if kind == "video" else PAIRS_ARRAYS


def chunk_rows(name: str, part_rows: int) -> int:
    """Rows per HDF5 chunk of array ``name`` in a dataset collected in parts of ``part_rows``."""
    return FRAME_CHUNK_ROWS if name in FRAME_ARRAYS else part_rows


def chunk_checksums(arr: np.ndarray, rows: int) -> np.ndarray:
    """CRC-32 of each block of ``rows`` rows of ``arr`` (decoded bytes, C order), as uint32."""
    arr = np.ascontiguousarray(arr)
    n = len(arr)
    return np.array(
        [zlib.crc32(arr[i : i + rows].data) for i in range(0, n, rows)], dtype=np.uint32
    ).reshape(-1)


def fingerprint(kind: str, checksums: Mapping[str, np.ndarray], shapes: Mapping[str, Any],
                attrs: Mapping[str, Any] | None = None, version: int = FORMAT_VERSION) -> str:
    """Hex SHA-256 identifying a dataset's content: its kind, array shapes and chunk checksums and
    (version 2) its root attributes as stored, except :data:`UNCOVERED_ATTRS`."""
    h = hashlib.sha256(f"{FORMAT}/{version}/{kind}".encode())
    for name in sorted(checksums):
        h.update(f"{name}{list(shapes[name])}".encode())
        h.update(np.ascontiguousarray(checksums[name], dtype="<u4").tobytes())
    if version >= 2:
        covered = {k: v for k, v in (attrs or {}).items() if k not in UNCOVERED_ATTRS}
        h.update(dumps(covered).encode())
    return h.hexdigest()


def stored_attr(value: Any) -> str | int | float:
    """How a root attribute is stored: plain strings and numbers as they are, anything else as
    canonical JSON."""
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    return dumps(value)


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys) used for structured attributes and config comparison."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
