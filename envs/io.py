"""Atomic file output and provenance shared by every stage.

Nothing half-written is ever read as complete: every artifact file is written to a temporary
sibling, flushed to disk, renamed over its final name (atomic on POSIX) and the directory entry is
synced. Every artifact also records :func:`package_versions`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import platform
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from sparseshift.envs.errors import ConfigError

#: Permissions of files written here (what ``open(path, "w")`` gives under the usual umask 022).
FILE_MODE = 0o644

#: Distributions whose versions every artifact records.
VERSIONED: tuple[str, ...] = (
    "sparseshift", "numpy", "torch", "gymnasium", "mujoco", "stable-baselines3", "minigrid",
    "h5py", "safetensors", "scikit-learn",
)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Flush ``tmp`` to disk and rename it to ``final`` (same folder), durably, with the usual
    permissions (``mkstemp`` creates 0600 files; artifacts are meant to be shared)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


def check_output_file(path: str | os.PathLike[str]) -> None:
    """Refuse, before any work, an output path that can never be written as a file: an
    existing folder, or a parent that is a file."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; give a file path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{parent} is a file, not a folder")
            break


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """The one way files are written: yields a temporary path next to ``path``; when the block
    ends normally it is flushed, given the usual permissions and renamed over ``path``
    (:func:`commit_file`); on any error (disk full included) it is removed, so nothing
    half-written is ever left or read as complete."""
    out = Path(path)
    check_output_file(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"cannot create the folder of {out}: a file is in the way") from None
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        commit_file(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


#: Marker files of each kind of output folder, to refuse writing one kind into another.
MARKERS: Mapping[str, str] = MappingProxyType({
    "run.json": "a representation run", "agent.json": "an agent",
    "study_config.json": "a study", "manifest.json": "a collection's parts",
    "disentangle_config.json": "a disentanglement study",
})


def output_dir(path: str | os.PathLike[str], marker: str) -> Path:
    """``path`` as the output folder of an artifact whose marker file is ``marker`` (see
    :data:`MARKERS`): created if needed; an existing file, or a folder holding another kind of
    artifact, is a one-line :class:`ConfigError`."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    for name, what in MARKERS.items():
        if name != marker and (out / name).exists():
            raise ConfigError(f"--out {out} holds {what} ({name}); use another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"cannot create {out}: a file is in the way") from None
    return out


LOCK_FILE = ".lock"


@contextlib.contextmanager
def output_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on an output folder for the block (released by the kernel even on
    kill -9); a second writer gets a one-line :class:`ConfigError`. Temporary files a killed
    writer left (``.*.tmp*``) are removed once the lock is held."""
    d = Path(directory)
    fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another sparseshift process is writing {d}; wait for it or use "
                              "another --out") from None
        for stale in d.rglob(".*.tmp*"):
            if stale.is_file():
                stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(value: Any) -> Any:
    """A copy of ``value`` that is strict JSON: NaN and infinities become ``null``, numpy scalars
    and arrays plain numbers and lists, tuples lists."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> Path:
    """Write ``value`` as indented, key-sorted, strict JSON atomically (NaN/inf as ``null``)."""
    text = json.dumps(strict_json(value), indent=2, sort_keys=True, default=str,
                      allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode())


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or quota) is full: an ``OSError`` with ENOSPC/EDQUOT, or
    a library error (HDF5, safetensors) whose message carries that errno."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return any(m in text for m in ("No space left on device", "errno = 28", "os error 28",
                                   "Disk quota exceeded"))


def disk_full_message(exc: BaseException) -> str:
    """One line for a full disk: what to do, and that nothing half-written was kept."""
    where = getattr(exc, "filename", None)
    at = f" while writing {where}" if where else ""
    return (f"the disk is full{at}; nothing half-written was kept: free space and run the same "
            "command again (finished parts and checkpoints are reused)")


def read_json(path: str | os.PathLike[str], what: str = "file") -> dict[str, Any]:
    """A JSON object from ``path``; a missing, unreadable or non-object file is a one-line
    :class:`ConfigError` naming it (``what`` says what it should have been)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no {what} at {p}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{p} is not a readable {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p} is not a {what} (a JSON object)")
    return data


def save_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an RGB uint8 ``[H, W, 3]`` image as PNG atomically."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"save_png needs uint8 [H, W, 3], got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Python and the versions of :data:`VERSIONED` (``"not installed"`` where absent)."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
