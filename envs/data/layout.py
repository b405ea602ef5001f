"""The on-disk layout of sparseshift datasets (HDF5, format version 3), in one place.

A dataset is one HDF5 file. Root attributes (JSON strings where structured) describe it; every array
is a chunked, compressed dataset along the first (row) axis; ``/checksums/<name>`` holds one CRC-32
per HDF5 chunk of ``/<name>``, computed over the chunk's *decoded* bytes in C order, so checksums do
not depend on the compression filter and a user can recompute them with plain h5py. The full layout
is documented in ``docs/datasets.md``.

Most arrays have one row per recorded step (video) or pair (pairs). Format 3 video datasets add the
policy's observation (``obs/<key>``, one row per step, for every part of the observation that is not
the frame) and the observation after the last step of every episode (``final/...``, one row per
episode, in episode order), so a video is also an offline-RL dataset of (s, a, r, s') transitions.
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
#: 3: video datasets also store the policy's observation (``obs/<key>``) and every episode's final
#: observation (``final/...``). Version 1 and 2 files still load (without those arrays).
FORMAT_VERSION = 3
READABLE_VERSIONS: tuple[int, ...] = (1, 2, 3)
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
#: Row arrays of frames: rendered into the collector's shared part buffers and compressed by
#: :func:`sparseshift.agents.collect.store.write_deflated`.
FRAME_ARRAYS: frozenset[str] = frozenset({"frames", "frames_a", "frames_b"})
#: Prefix of the policy observation arrays (format 3 video): ``obs/<key>``, one row per step.
OBS_PREFIX = "obs/"
#: Prefix of the per-episode arrays (format 3 video): one row per episode, the observation after
#: the episode's last step: ``final/frames``, ``final/factors`` and ``final/obs/<key>``.
FINAL_PREFIX = "final/"
FINAL_FRAMES = "final/frames"
FINAL_FACTORS = "final/factors"
#: Every array of frames (row or per-episode): these stay on disk when a dataset does not fit RAM.
IMAGE_ARRAYS: frozenset[str] = FRAME_ARRAYS | {FINAL_FRAMES}
#: Rows per HDF5 chunk of the small per-episode arrays (``final/factors``, ``final/obs/<key>``).
EPISODE_CHUNK_ROWS = 256

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

#: Largest dataset (rows) collected or read; larger requests and files are refused.
MAX_ROWS = 10**9


def arrays_of(kind: str, obs_keys: tuple[str, ...] = (),
              version: int = FORMAT_VERSION) -> tuple[str, ...]:
    """The array names a dataset of ``kind`` and format ``version`` holds; ``obs_keys`` are the
    stored parts of the policy observation (format 3 video, see :func:`observation_layout`)."""
    if kind != "video":
        return PAIRS_ARRAYS
    if version < 3:
        return VIDEO_ARRAYS
    obs = tuple(OBS_PREFIX + k for k in obs_keys)
    final = tuple(FINAL_PREFIX + OBS_PREFIX + k for k in obs_keys)
    return (*VIDEO_ARRAYS, *obs, FINAL_FRAMES, FINAL_FACTORS, *final)


def per_episode(name: str) -> bool:
    """True for arrays with one row per episode (``final/...``) rather than one per row."""
    return name.startswith(FINAL_PREFIX)


def chunk_rows(name: str, part_rows: int) -> int:
    """Rows per HDF5 chunk of array ``name`` in a dataset collected in parts of ``part_rows``."""
    if name in IMAGE_ARRAYS:
        return FRAME_CHUNK_ROWS
    return EPISODE_CHUNK_ROWS if per_episode(name) else part_rows


def observation_layout(space: Any, image_size: int) -> dict[str, Any]:
    """How the policy observations of an env with observation space ``space`` are stored.

    Returns ``{"space": "box" | "dict", "pixels": KEY, "arrays": {key: {"dtype", "shape"}}}``:
    ``pixels`` names the part of the observation that is the frame (``""``: the whole observation
    is the frame; ``None``: the observation holds no frame), and ``arrays`` the other parts, stored
    as ``obs/<key>`` (``state`` for a plain vector observation). Frames are never stored twice:
    they are ``frames``. ``space`` is a gymnasium Box or Dict of Boxes.
    """
    import gymnasium as gym

    def is_frame(s: Any) -> bool:
        return (isinstance(s, gym.spaces.Box) and s.dtype == np.uint8
                and tuple(s.shape) == (image_size, image_size, 3))

    def entry(s: Any) -> dict[str, Any]:
        if not isinstance(s, gym.spaces.Box):
            raise TypeError(f"cannot record observations of space {type(s).__name__}")
        return {"dtype": np.dtype(s.dtype).name, "shape": [int(d) for d in s.shape]}

    if isinstance(space, gym.spaces.Dict):
        frames = [k for k, s in space.spaces.items() if is_frame(s)]
        arrays = {str(k): entry(s) for k, s in space.spaces.items() if k not in frames[:1]}
        return {"space": "dict", "pixels": frames[0] if frames else None, "arrays": arrays}
    if is_frame(space):
        return {"space": "box", "pixels": "", "arrays": {}}
    return {"space": "box", "pixels": None, "arrays": {"state": entry(space)}}


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
