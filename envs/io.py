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
import re
import secrets
import stat
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


#: Temporary names are ``.<final name>.<token><suffix>``: the 32 hex digits of ``token`` are
#: random, so no other file has the name; a lock's journal lists only names of this shape.
TEMP_NAME = re.compile(r"\.(?P<final>.+)\.(?P<token>[0-9a-f]{32})(?P<suffix>(\.[^./]+)*)")
#: Length of a temporary name's final-name part, at most (file names are 255 bytes at most).
_TEMP_STEM = 160


def temp_name(path: str | os.PathLike[str], suffix: str = ".tmp") -> Path:
    """A new temporary sibling of ``path``, never the name of another file
    (:data:`TEMP_NAME`)."""
    out = Path(path)
    return out.with_name(f".{out.name[:_TEMP_STEM]}.{secrets.token_hex(16)}{suffix}")


def create_temp(path: str | os.PathLike[str], suffix: str = ".tmp") -> Path:
    """Create an empty temporary sibling of ``path`` (:func:`temp_name`) and return it. When an
    :func:`output_lock` of this process holds a folder above it, the name is recorded in that
    lock's journal first, so that a later run of the lock holder removes it if this process is
    killed before the file is renamed or removed (and nothing else is ever removed)."""
    tmp = temp_name(path, suffix)
    journal = held_journal(tmp.parent)
    if journal is not None:
        journal.record_temp(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """The one way files are written: yields a temporary path next to ``path``
    (:func:`create_temp`: a unique name, recorded in the journal of the output lock held above
    it); when the block ends normally it is flushed, given the usual permissions and renamed
    over ``path`` (:func:`commit_file`); on any error (disk full included) it is removed, so
    nothing half-written is ever left or read as complete."""
    out = Path(path)
    check_output_file(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"cannot create the folder of {out}: a file is in the way") from None
    tmp = create_temp(out, suffix)
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


#: Bytes the writability probe reserves: a disk with less free space is "full".
PROBE_BYTES = 1 << 20


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a folder this process cannot write files in or whose disk is
    full: a one-line :class:`ConfigError`. Creates a uniquely named probe file there, reserves
    :data:`PROBE_BYTES` for it and removes it (that exact file, nothing else)."""
    d = Path(folder)
    probe = d / f".sparseshift-probe.{secrets.token_hex(16)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if disk_full(exc):
            raise ConfigError(f"cannot write to {d}: the disk is full; free space or use "
                              "another --out") from None
        raise ConfigError(f"cannot write to {d} ({exc.strerror or exc}); use another --out "
                          "or fix its permissions") from None
    try:
        _reserve(fd, d)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def _reserve(fd: int, d: Path) -> None:
    """Reserve :data:`PROBE_BYTES` for the probe file ``fd`` in ``d`` (or, where the filesystem
    cannot, check its free space)."""
    full = ConfigError(f"cannot write to {d}: the disk is full (less than "
                       f"{PROBE_BYTES >> 20} MiB free); free space or use another --out")
    try:
        os.posix_fallocate(fd, 0, PROBE_BYTES)
        return
    except AttributeError:  # no posix_fallocate (macOS)
        pass
    except OSError as exc:
        if disk_full(exc):
            raise full from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise ConfigError(f"cannot write to {d} ({exc.strerror or exc}); use another "
                              "--out") from None
    st = os.statvfs(d)
    if st.f_bavail * st.f_frsize < PROBE_BYTES:
        raise full


def output_dir(path: str | os.PathLike[str], marker: str) -> Path:
    """``path`` as the output folder of an artifact whose marker file is ``marker`` (see
    :data:`MARKERS`): created if needed and checked to be writable with free space
    (:func:`check_writable`); an existing file, a folder holding another kind of artifact, a
    read-only folder or a full disk is a one-line :class:`ConfigError`, before any work."""
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
    except OSError as exc:
        if disk_full(exc):
            raise ConfigError(f"cannot create {out}: the disk is full; free space or use "
                              "another --out") from None
        raise ConfigError(f"cannot create {out} ({exc.strerror or exc}); use another "
                          "--out") from None
    check_writable(out)
    return out


LOCK_FILE = ".lock"
#: The lock's journal (JSON lines, next to :data:`LOCK_FILE`): the temporary files the lock
#: holder created, and what else it records about its own files (e.g. a collection's process
#: ids). Written before each temporary file is created, read by the next holder.
JOURNAL_FILE = ".lock.journal"
#: A journal larger than this is read only this far (it holds short lines, a few per write).
JOURNAL_MAX_BYTES = 16 << 20


class Journal:
    """The journal of an output folder's lock (:data:`JOURNAL_FILE`): which files the lock
    holder created, so that the next holder removes exactly those it left (and nothing else).

    Lines are appended with one ``write`` (atomic with ``O_APPEND``), so processes of the same
    command may record too. Entries ``{"temp": RELATIVE_PATH}`` are temporary files
    (:func:`create_temp`), removed by :meth:`remove_temps`; other entries are the holder's own
    (:meth:`entries`).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.root = self.folder.resolve()
        self.path = self.folder / JOURNAL_FILE

    def record(self, entry: Mapping[str, Any]) -> None:
        """Append ``entry`` (a JSON object)."""
        line = json.dumps(dict(entry), sort_keys=True, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                     FILE_MODE)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def record_temp(self, path: str | os.PathLike[str]) -> None:
        """Record the temporary file ``path`` (inside :attr:`folder`) before it is created."""
        p = Path(path)
        self.record({"temp": os.path.relpath(p.parent.resolve() / p.name, self.root)})

    def entries(self) -> list[dict[str, Any]]:
        """The journal's JSON-object lines (others, and a missing journal, give nothing)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return []
        try:
            with os.fdopen(fd, "rb") as fh:
                data = fh.read(JOURNAL_MAX_BYTES)
        except OSError:
            return []
        out = []
        for line in data.splitlines():
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def temp_path(self, entry: Mapping[str, Any]) -> Path | None:
        """The temporary file an entry names, if it is one this lock's holder may remove: a
        relative path inside :attr:`folder`, without symbolic links on the way, to a name of
        :data:`TEMP_NAME`'s shape."""
        rel = entry.get("temp")
        if not isinstance(rel, str) or not rel or "\0" in rel or os.path.isabs(rel):
            return None
        parts = Path(rel).parts
        if any(p in ("", ".", "..") for p in parts) or not TEMP_NAME.fullmatch(parts[-1]):
            return None
        where = self.folder
        for part in parts[:-1]:
            where = where / part
            if where.is_symlink() or not where.is_dir():
                return None
        return where / parts[-1]

    def remove_temps(self) -> list[Path]:
        """Remove the recorded temporary files that still exist as regular files (never
        through a symbolic link); return them."""
        removed = []
        for entry in self.entries():
            path = self.temp_path(entry)
            if path is not None and remove_own_file(path):
                removed.append(path)
        return removed

    def close(self) -> None:
        """When the lock is released: keep only the temporary files that still exist (the
        holder handles its other entries before it releases the lock); remove the journal if
        nothing is left."""
        keep = [e for e in self.entries()
                if (p := self.temp_path(e)) is not None and p.is_file()]
        try:
            if keep:
                atomic_write_text(self.path, "".join(
                    json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in keep))
            elif not self.path.is_symlink():
                self.path.unlink(missing_ok=True)
        except (OSError, ConfigError):
            pass  # the next holder reads it as it is


def remove_own_file(path: str | os.PathLike[str]) -> bool:
    """Remove ``path`` if it is a regular file (not a symbolic link, not a folder): for files
    this process identified exactly as its own. Whether it removed it."""
    p = Path(path)
    try:
        if not stat.S_ISREG(p.lstat().st_mode):
            return False
        p.unlink()
    except OSError:
        return False
    return True


#: Journals of the output locks this process holds, by resolved folder.
_HELD: dict[Path, Journal] = {}


def held_journal(folder: str | os.PathLike[str]) -> Journal | None:
    """The journal of the innermost output lock this process holds on ``folder`` or a folder
    above it (None when it holds none)."""
    if not _HELD:
        return None
    here = Path(folder).resolve()
    for d in (here, *here.parents):
        if d in _HELD:
            return _HELD[d]
    return None


@contextlib.contextmanager
def output_lock(directory: str | os.PathLike[str]) -> Iterator[Journal]:
    """Hold an exclusive lock on an output folder for the block (released by the kernel even on
    kill -9); a second writer gets a one-line :class:`ConfigError`. Yields the lock's
    :class:`Journal`: every temporary file created under the folder while the lock is held is
    recorded there first (:func:`atomic_output`), and the temporary files a killed holder left
    are removed once the lock is held: exactly those, never a file found by its name's pattern."""
    d = Path(directory)
    try:
        fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"cannot lock {d} ({exc.strerror or exc}); use another "
                          "--out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another sparseshift process is writing {d}; wait for it or use "
                              "another --out") from None
        journal = Journal(d)
        journal.remove_temps()
        _HELD[journal.root] = journal
        try:
            yield journal
        finally:
            _HELD.pop(journal.root, None)
            journal.close()
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
