"""Shared helpers for the dataset tests (tiny ColourGrid collections)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sparseshift.agents.collect.collect import collect
from sparseshift.envs.data.config import CollectConfig

GRID = "sparseshift/ColourGrid-v0"


def make(path: Path, kind: str = "video", n: int = 300, workers: int = 1, **kw: Any) -> Path:
    """Collect a tiny ColourGrid dataset (64-row parts) at ``path``."""
    writer = kw.pop("writer", "auto")
    cfg = CollectConfig(GRID, kind, n=n, part_rows=kw.pop("part_rows", 64), **kw)
    collect(cfg, path, workers=workers, progress=False, writer=writer)
    return path


def raw_chunks(path: Path) -> dict[str, list[bytes]]:
    """The stored (compressed) bytes of every chunk of every dataset in the file."""
    out: dict[str, list[bytes]] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.chunks is None:
                out[name] = [obj[...].tobytes()]
            elif isinstance(obj, h5py.Dataset):
                dsid = obj.id
                out[name] = [bytes(dsid.read_direct_chunk(dsid.get_chunk_info(i).chunk_offset)[1])
                             for i in range(dsid.get_num_chunks())]

        f.visititems(visit)
    return out


def arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f if isinstance(f[k], h5py.Dataset)}
