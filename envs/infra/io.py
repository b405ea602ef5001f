"""Atomic file output, provenance and the one reading gate shared by every stage.

Nothing half-written is ever read as complete: every artifact file is written to a temporary
sibling, flushed to disk, renamed over its final name (atomic on POSIX) and the directory entry is
synced. Every artifact also records :func:`package_versions`.

Every JSON or TOML file the platform reads goes through one gate (:func:`read_json`,
:func:`read_document`, :func:`parse_json` for JSON stored inside other files): bounded size,
UTF-8, bounded nesting and integer length, no NaN unless asked, then a typed schema check
(:func:`check_schema`); paths an artifact names must stay inside its folder (:func:`inside`).
Every violation is one :class:`ConfigError` line naming the file and the field.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import re
import secrets
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from sparseshift.envs.infra.errors import ConfigError

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


@contextlib.contextmanager
def cwd_on_path() -> Iterator[None]:
    """The current folder on ``sys.path`` while a user-named module is imported (a console
    script, unlike ``python -m``, does not put it there)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a folder this process cannot write files in or whose disk is
    full: a one-line :class:`ConfigError`. Creates a uniquely named probe file there, reserves
    :data:`PROBE_BYTES` for it and removes it (that exact file, nothing else)."""
    d = Path(folder)
    probe = d / f".sparseshift-probe.{secrets.token_hex(16)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise _unwritable(exc, f"cannot write to {d}", "or fix its permissions") from None
    try:
        _reserve(fd, d)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def _unwritable(exc: OSError, what: str, hint: str = "") -> ConfigError:
    """The one-line error of a folder that cannot be written (full disk or another cause)."""
    if disk_full(exc):
        return ConfigError(f"{what}: the disk is full; free space or use another --out")
    return ConfigError(f"{what} ({exc.strerror or exc}); use another --out"
                       + (f" {hint}" if hint else ""))


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
        raise _unwritable(exc, f"cannot create {out}") from None
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


# ---------------------------------------------------------------------------- the reading gate
#
# Every JSON or TOML file the platform reads (run.json, agent.json, DONE.json, eval.json,
# evaluations.json, encoder.json, study markers, --config files) and every JSON string stored
# inside another file (checkpoint metadata) goes through :func:`read_json` /
# :func:`read_document` / :func:`parse_json`:
#
# 1. size: at most the cap of its kind (:data:`MAX_BYTES`) is read; a larger file, or one that is
#    not a regular file (a FIFO, a device), is one line;
# 2. UTF-8: anything else is one line naming the file;
# 3. nesting: the raw text's bracket depth is measured before parsing (strings and comments
#    skipped), at most :data:`MAX_DEPTH`, with at most :data:`MAX_CONTAINERS` arrays and objects,
#    so the recursive parsers never raise RecursionError; the parsed value is walked again
#    (iteratively: TOML's dotted keys nest without brackets);
# 4. numbers: integer literals of at most :data:`MAX_INT_DIGITS` digits (Python refuses more
#    than 4300 with a ValueError, and no field needs more than a few), NaN and infinities
#    refused unless the caller allows them; strings must be valid Unicode (no lone surrogates),
#    TOML dates and times are refused;
# 5. the top level must be an object, then a typed schema check (:func:`check_schema`) of every
#    field the reader uses: one :class:`ConfigError` line naming the file and the field.
#
# Memory: parsing needs at most about ten times the file's size, so the caps (at most 16 MiB)
# bound what a hostile file can make a reader allocate to about 200 MB.

#: Deepest nesting of arrays and objects (TOML tables) in any file the platform reads (those it
#: writes nest at most about eight levels).
MAX_DEPTH = 64
#: Most arrays and objects in one document.
MAX_CONTAINERS = 1 << 18
#: Most digits of an integer literal (seeds, step counts and sizes need at most 20).
MAX_INT_DIGITS = 40
_INT_BITS = int(MAX_INT_DIGITS * 3.33) + 1
#: Size cap of a file the gate reads when its kind has none in :data:`MAX_BYTES`.
DEFAULT_MAX_BYTES = 4 << 20
#: Size caps by kind of file (the ``what`` of :func:`read_json`).
MAX_BYTES: Mapping[str, int] = MappingProxyType({
    "config file": 1 << 20, "agent file": 4 << 20, "run file": 4 << 20,
    "training record": 1 << 20, "evaluation": 16 << 20, "evaluations file": 16 << 20,
    "encoder file": 1 << 20, "stage marker": 4 << 20, "artifact format stamp": 64 << 10,
    "checkpoint metadata": 16 << 20,
})


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.3g} MiB" if n >= 1 << 20 else f"{n / 1024:.3g} KiB"


def _unreadable(where: str, what: str, why: str) -> ConfigError:
    return ConfigError(f"{where} is not a readable {what} ({why})")


def read_capped(path: str | os.PathLike[str], what: str = "file",
                max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` (default: the cap of
    ``what`` in :data:`MAX_BYTES`); a missing, unreadable, larger or non-regular file (a FIFO,
    a device) is a one-line :class:`ConfigError` naming it. Never blocks on a FIFO."""
    p = Path(path)
    cap = MAX_BYTES.get(what, DEFAULT_MAX_BYTES) if max_bytes is None else max_bytes
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"no {what} at {p}") from None
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise _unreadable(str(p), what, why) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _unreadable(str(p), what, "not a regular file")
        if st.st_size > cap:
            raise _unreadable(str(p), what, f"{_mib(st.st_size)}, more than the {_mib(cap)} "
                                             "it may have")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            block = os.read(fd, min(1 << 20, cap + 1 - size))
            if not block:
                break
            chunks.append(block)
            size += len(block)
    except OSError as exc:
        raise _unreadable(str(p), what, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if size > cap:  # it grew while being read
        raise _unreadable(str(p), what, f"more than the {_mib(cap)} it may have")
    return b"".join(chunks)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_TOML_SKIP = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
                        r"|'[^'\n]*'|#[^\n]*")
_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))


def _nesting(text: str, toml: bool) -> tuple[int, int]:
    """(deepest bracket nesting, number of opening brackets) of ``text``, strings (and TOML
    comments) skipped; linear time, bounded memory."""
    bare = (_TOML_SKIP if toml else _JSON_STRING).sub("", text).encode("utf-8", "surrogatepass")
    codes = np.frombuffer(bare, dtype=np.uint8)
    depth = top = opened = 0
    for start in range(0, codes.size, 1 << 20):
        c = codes[start:start + (1 << 20)]
        up = (c == _OPEN[0]) | (c == _OPEN[1])
        down = (c == _CLOSE[0]) | (c == _CLOSE[1])
        moves = up.astype(np.int32)[up | down] - down.astype(np.int32)[up | down]
        if moves.size:
            levels = np.cumsum(moves, dtype=np.int64) + depth
            top = max(top, int(levels.max()))
            depth = int(levels[-1])
            opened += int(up.sum())
    return top, opened


def _check_tree(value: Any, where: str, what: str, allow_nan: bool) -> None:
    """Walk a parsed document (iteratively) for what the parsers let through: nesting beyond
    :data:`MAX_DEPTH`, huge integers, non-finite numbers, lone surrogates, TOML dates."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth > MAX_DEPTH:
                raise _unreadable(where, what, f"nested deeper than {MAX_DEPTH} levels")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                if isinstance(k, str):
                    _check_text(k, where, what)
                if isinstance(x, dict | list | str | int | float) or x is None:
                    stack.append((x, depth + 1))
                else:
                    raise _unreadable(where, what, f"{type(x).__name__} values are not accepted")
        elif isinstance(v, str):
            _check_text(v, where, what)
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, int):
            if v.bit_length() > _INT_BITS:
                raise _unreadable(where, what, f"an integer of more than {MAX_INT_DIGITS} digits")
        elif isinstance(v, float):
            if not allow_nan and not math.isfinite(v):
                raise _unreadable(where, what, "NaN or an infinite number")
        else:
            raise _unreadable(where, what, f"{type(v).__name__} values are not accepted")


def _check_text(s: str, where: str, what: str) -> None:
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise _unreadable(where, what, "a string that is not valid Unicode") from None


def parse_json(data: bytes | str, where: str, what: str = "file", *,
               allow_nan: bool = False, max_bytes: int | None = None) -> Any:
    """The JSON value of ``data`` (the text of ``where``) through the gate (see the section's
    comment): size, UTF-8, nesting, integer length, NaN; one-line :class:`ConfigError`s
    ``"<where> is not a readable <what> (<why>)"``."""
    return _parse(data, where, what, toml=False, allow_nan=allow_nan, max_bytes=max_bytes)


def parse_toml(data: bytes | str, where: str, what: str = "file", *,
               allow_nan: bool = False, max_bytes: int | None = None) -> dict[str, Any]:
    """The TOML document ``data`` through the gate (as :func:`parse_json`)."""
    value: dict[str, Any] = _parse(data, where, what, toml=True, allow_nan=allow_nan,
                                   max_bytes=max_bytes)
    return value


def _parse(data: bytes | str, where: str, what: str, *, toml: bool, allow_nan: bool,
           max_bytes: int | None) -> Any:
    cap = MAX_BYTES.get(what, DEFAULT_MAX_BYTES) if max_bytes is None else max_bytes
    if len(data) > cap:
        raise _unreadable(where, what, f"{_mib(len(data))}, more than the {_mib(cap)} it "
                                       "may have")
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _unreadable(where, what, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at "
                                           f"offset {exc.start}") from None
    else:
        text = data
    depth, containers = _nesting(text, toml)
    if depth > MAX_DEPTH:
        raise _unreadable(where, what, f"nested deeper than {MAX_DEPTH} levels")
    if containers > MAX_CONTAINERS:
        raise _unreadable(where, what, f"more than {MAX_CONTAINERS} arrays and objects")

    def number(s: str) -> float:
        f = float(s)
        if not allow_nan and not math.isfinite(f):
            raise _unreadable(where, what, f"the number {s[:20]} is out of range")
        return f

    def integer(s: str) -> int:
        if len(s.lstrip("-+")) > MAX_INT_DIGITS:
            raise _unreadable(where, what, f"an integer of {len(s.lstrip('-+'))} digits; at "
                                           f"most {MAX_INT_DIGITS}")
        return int(s)

    def constant(s: str) -> float:
        if not allow_nan:
            raise _unreadable(where, what, f"{s} is not a number it accepts")
        return float(s.replace("Infinity", "inf"))

    try:
        if toml:
            value: Any = _tomllib().loads(text, parse_float=number)
        else:
            value = json.loads(text, parse_int=integer, parse_float=number,
                               parse_constant=constant)
    except ConfigError:
        raise
    except json.JSONDecodeError as exc:
        raise _unreadable(where, what, f"{exc.msg} at line {exc.lineno} column "
                                       f"{exc.colno}") from None
    except RecursionError:  # not reached after the nesting check; never a traceback
        raise _unreadable(where, what, f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # TOMLDecodeError, and int() of more than 4300 digits
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "integer string conversion" in first:
            first = f"an integer of more than 4300 digits; at most {MAX_INT_DIGITS}"
        raise _unreadable(where, what, first[:200]) from None
    _check_tree(value, where, what, allow_nan)
    return value


def _tomllib() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def read_json(path: str | os.PathLike[str], what: str = "file", *, schema: Any = None,
              max_bytes: int | None = None, allow_nan: bool = False) -> dict[str, Any]:
    """A JSON object from ``path`` through the gate: at most ``max_bytes`` (default: the cap of
    ``what`` in :data:`MAX_BYTES`), UTF-8, nesting, integer length, no NaN unless
    ``allow_nan``, a JSON object at the top, and ``schema`` (:func:`check_schema`) if given.
    Anything else is a one-line :class:`ConfigError` naming the file (``what`` says what it
    should have been) and, for a schema violation, the field."""
    p = Path(path)
    data = read_capped(p, what, max_bytes)
    value = parse_json(data, str(p), what, allow_nan=allow_nan, max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise ConfigError(f"{p} is not a {what} (a JSON object)")
    if schema is not None:
        check_schema(value, schema, str(p))
    return value


def read_document(path: str | os.PathLike[str], what: str = "config file", *,
                  schema: Any = None, max_bytes: int | None = None) -> dict[str, Any]:
    """The object of a JSON (``.json``) or TOML (``.toml``) file through the gate (as
    :func:`read_json`; other suffixes are refused)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ConfigError(f"{what} {p} must end in .json or .toml")
    if suffix == ".json":
        return read_json(p, what, schema=schema, max_bytes=max_bytes)
    data = read_capped(p, what, max_bytes)
    value = parse_toml(data, str(p), what, max_bytes=max_bytes)
    if schema is not None:
        check_schema(value, schema, str(p))
    return value


# ---------------------------------------------------------------------------- typed schemas


class Choice:
    """Schema: one of the given values (compared only with values of the same JSON type)."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def __repr__(self) -> str:
        return "one of " + ", ".join(json.dumps(v) for v in self.values)


class MapOf:
    """Schema: an object whose every value matches ``spec`` (any keys)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class Check:
    """Schema: a value for which ``ok(value)`` is true (``desc`` says what that is)."""

    def __init__(self, desc: str, ok: Callable[[Any], bool]) -> None:
        self.desc, self.ok = desc, ok


#: Schema of a SHA-256 hex digest.
DIGEST = Check("a SHA-256 hex digest", lambda v: isinstance(v, str) and len(v) == 64
               and all(c in "0123456789abcdef" for c in v))


def describe(spec: Any) -> str:
    """What a schema ``spec`` accepts, in words."""
    if spec is str:
        return "a string"
    if spec is int:
        return "an integer"
    if spec is float:
        return "a number"
    if spec is bool:
        return "true or false"
    if spec is type(None) or spec is None:
        return "null"
    if spec is dict:
        return "an object"
    if spec is list:
        return "a list"
    if spec is object:
        return "any value"
    if isinstance(spec, tuple):
        return " or ".join(describe(s) for s in spec)
    if isinstance(spec, list):
        return f"a list of {describe(spec[0])}" if spec else "a list"
    if isinstance(spec, dict | MapOf):
        return "an object"
    if isinstance(spec, Choice):
        return repr(spec)
    if isinstance(spec, Check):
        return spec.desc
    return str(spec)


def _matches(value: Any, spec: Any) -> bool:
    """Whether ``value`` has the shape of ``spec`` at its own level (not its members)."""
    if spec is object:
        return True
    if spec is str:
        return isinstance(value, str)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec is float:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))
    if spec is bool:
        return isinstance(value, bool)
    if spec is type(None) or spec is None:
        return value is None
    if spec is dict or isinstance(spec, dict | MapOf):
        return isinstance(value, dict)
    if spec is list or isinstance(spec, list):
        return isinstance(value, list)
    if isinstance(spec, tuple):
        return any(_matches(value, s) for s in spec)
    if isinstance(spec, Choice):
        return any(type(value) is type(c) and value == c for c in spec.values)
    if isinstance(spec, Check):
        try:
            return bool(spec.ok(value))
        except Exception:  # a check never raises out of the gate
            return False
    raise TypeError(f"not a schema: {spec!r}")


def check_schema(value: Any, spec: Any, where: str, field: str = "") -> Any:
    """Check ``value`` against the schema ``spec``; return it. Schemas are: ``str``, ``int``
    (not bool), ``float`` (any finite number), ``bool``, ``None``, ``dict``/``list`` (any),
    ``object`` (anything); a tuple of schemas (any of them); ``[spec]`` (a list of those);
    ``{"key": spec, "opt?": spec}`` (an object with those keys, ``?`` marking optional ones;
    other keys are allowed); :class:`MapOf` (an object of any keys), :class:`Choice`,
    :class:`Check`. A violation is one :class:`ConfigError` line naming ``where`` (the file)
    and the field (``policy.observation_space.shape[0]``)."""
    stack: list[tuple[Any, Any, str]] = [(value, spec, field)]
    while stack:
        v, s, name = stack.pop()
        if isinstance(s, tuple):
            nested = [m for m in s if isinstance(m, dict | list | MapOf)]
            if not _matches(v, s):
                raise _schema_error(where, name, s, v)
            for m in nested:  # the member whose container type fits checks the members
                if _matches(v, m):
                    stack.append((v, m, name))
                    break
            continue
        if not _matches(v, s):
            raise _schema_error(where, name, s, v)
        if isinstance(s, list) and s:
            stack.extend((x, s[0], f"{name}[{i}]") for i, x in enumerate(v))
        elif isinstance(s, MapOf):
            stack.extend((x, s.spec, _join(name, str(k))) for k, x in v.items())
        elif isinstance(s, dict):
            for key, sub in s.items():
                optional = key.endswith("?")
                k = key[:-1] if optional else key
                if k not in v:
                    if not optional:
                        raise ConfigError(f"{where}: {_join(name, k)} is missing")
                    continue
                stack.append((v[k], sub, _join(name, k)))
    return value


def _join(name: str, key: str) -> str:
    return f"{name}.{key}" if name else key


def _schema_error(where: str, name: str, spec: Any, value: Any) -> ConfigError:
    from sparseshift.envs.infra.errors import safe_repr

    what = name or "the top level"
    return ConfigError(f"{where}: {what} must be {describe(spec)}, got {safe_repr(value)}")


def inside(folder: str | os.PathLike[str], rel: Any, where: str, field: str) -> Path:
    """``folder / rel`` for a path that an artifact file names (``field`` of ``where``),
    refused (one line) unless it stays inside ``folder``: a non-empty relative path without
    ``..``, NUL bytes or symbolic links that lead out of the folder."""
    from sparseshift.envs.infra.errors import safe_repr

    base = Path(folder)
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise ConfigError(f"{where}: {field} must be a path inside {base}, got {safe_repr(rel)}")
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise ConfigError(f"{where}: {field} {safe_repr(rel)} leads out of {base}; an artifact "
                          "names only files inside its own folder")
    target = base / p
    try:
        ok = target.resolve().is_relative_to(base.resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long
        ok = False
    if not ok:
        raise ConfigError(f"{where}: {field} {safe_repr(rel)} leads out of {base} through a "
                          "symbolic link; an artifact names only files inside its own folder")
    return target


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
