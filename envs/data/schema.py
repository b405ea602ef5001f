"""What a dataset file must hold, checked before anything sized by the file is allocated.

:func:`~sparseshift.envs.data.dataset.open_dataset` reads a file through this gate: every root
attribute is a single value of bounded size, UTF-8, and (for structured ones) JSON of bounded
depth and integer length, with the type and range the layout gives it; every array is a chunked
HDF5 dataset of the dtype and row shape its kind needs, with one row per dataset row (or per
episode) and one checksum per chunk. Sizes come only from the array shapes, which are compared
with each other, with the attributes and, before a byte of data is read, with the file's size
(deflate cannot expand data more than about 1000 times) and the memory budget. Every refusal is a
one-line :class:`~sparseshift.envs.infra.errors.ConfigError` naming the file and the attribute or
array.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sparseshift.envs.core.factors import FactorSpec
from sparseshift.envs.data.layout import (
    CHECKSUM_GROUP,
    FINAL_FACTORS,
    FINAL_PREFIX,
    IMAGE_ARRAYS,
    KINDS,
    MAX_ROWS,
    OBS_PREFIX,
    READABLE_VERSIONS,
    arrays_of,
    per_episode,
)
from sparseshift.envs.infra.errors import MAX_IMAGE_SIZE, ConfigError, safe_repr

#: Root attributes stored as JSON text, and the JSON type each must parse to.
JSON_ATTRS: Mapping[str, type] = {
    "env_kwargs": dict, "colour_scheme": dict, "factor_spec": list, "collector": dict,
    "versions": dict,
}
#: Largest root attribute read (bytes of text): real ones are a few KiB.
MAX_ATTR_BYTES = 1 << 20
#: Deepest nesting of a JSON attribute (real ones nest 4 or 5 levels).
MAX_JSON_DEPTH = 32
#: Longest integer (digits) in a JSON attribute: more is never a count, seed or size.
MAX_INT_DIGITS = 40
#: Most factors a dataset may declare, and values of all discrete factors together.
MAX_FACTORS = 4096
MAX_FACTOR_VALUES = 1 << 16
#: Most parts of a policy observation (``obs/<key>`` arrays) and values in one stored row.
MAX_OBS_KEYS = 64
MAX_ROW_VALUES = 1 << 20
#: The most decoded bytes a file may declare per byte it holds: deflate's limit is 1032:1;
#: unwritten chunks (which HDF5 reads as zeros) would otherwise let a tiny file declare
#: terabytes.
MAX_EXPANSION = 1100
#: Bytes every file may declare beyond that (small files of small arrays).
EXPANSION_SLACK = 1 << 20
#: Largest chunk of a frame array (the collector writes 8 frames: 6 MiB at 512 px): a dataset
#: read from disk allocates a chunk per read.
MAX_IMAGE_CHUNK = 64 << 20
#: Compression filters a dataset may use (the collector writes deflate).
FILTERS: tuple[str | None, ...] = ("gzip", None)

#: Arrays of factor values (checked to be finite).
FACTOR_ARRAYS: frozenset[str] = frozenset({"factors", "factors_a", "factors_b", FINAL_FACTORS})

_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_FLOAT = frozenset("f")
_INT = frozenset("iu")
_NUMBER = frozenset("iuf")
_BOOL = frozenset("b")


def attr_error(path: Path, name: str, why: str) -> ConfigError:
    return ConfigError(f"{path}: attribute {name!r} {why}; the file is damaged or not a "
                       "sparseshift dataset")


def array_error(path: Path, name: str, why: str) -> ConfigError:
    return ConfigError(f"{path}: array {name!r} {why}; the file is damaged or not a "
                       "sparseshift dataset")


# ------------------------------------------------------------------------------ attributes
def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_JSON_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


def parse_json(path: Path, name: str, text: object, want: type) -> Any:
    """The JSON attribute ``name``: bounded text, depth and integers, of JSON type ``want``."""
    if not isinstance(text, str):
        raise attr_error(path, name, f"must be JSON text, got {type(text).__name__}")
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        raise attr_error(path, name, f"nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise attr_error(path, name, f"is not valid JSON ({safe_repr(str(exc))})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise attr_error(path, name, f"nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(value, want):
        what = "a JSON object" if want is dict else "a JSON list"
        raise attr_error(path, name, f"must be {what}, got {type(value).__name__}")
    return value


def plain_attr(path: Path, name: str, value: Any) -> Any:
    """An attribute value as str, int, float or bool (bytes decoded as UTF-8)."""
    if isinstance(value, np.ndarray):
        raise attr_error(path, name, f"must be a single value, not an array of shape "
                         f"{value.shape}")
    if isinstance(value, bytes | np.bytes_):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise attr_error(path, name, "is not UTF-8 text") from None
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):  # np.bytes_.item()
        raise attr_error(path, name, "is not UTF-8 text")
    if not isinstance(value, str | int | float | bool):
        raise attr_error(path, name, f"has an unsupported type {type(value).__name__}")
    if isinstance(value, str) and len(value) > MAX_ATTR_BYTES:
        raise attr_error(path, name, f"is longer than {MAX_ATTR_BYTES >> 20} MiB")
    return value


def read_attrs(path: Path, f: h5py.File) -> dict[str, Any]:
    """Every root attribute as a plain value (see :func:`plain_attr`), each checked to be a
    single value of bounded size before it is read."""
    out: dict[str, Any] = {}
    try:
        names = list(f.attrs.keys())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot list the root attributes ({safe_repr(str(exc))}); "
                          "the file is damaged") from None
    if len(names) > 256:
        raise ConfigError(f"{path}: {len(names)} root attributes; a sparseshift dataset has "
                          "about 20")
    for name in names:
        if not isinstance(name, str) or not _KEY.fullmatch(name):
            raise ConfigError(f"{path}: a root attribute has the name {safe_repr(name)}; the "
                              "file is damaged or not a sparseshift dataset")
        try:
            aid = f.attrs.get_id(name)
            shape, dtype = aid.shape, aid.dtype
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise attr_error(path, name, f"cannot be read ({safe_repr(str(exc))})") from None
        if shape not in ((), None) and int(np.prod(shape)) != 1:
            raise attr_error(path, name, f"must be a single value, not an array of shape "
                             f"{tuple(shape)}")
        if dtype.itemsize > MAX_ATTR_BYTES or dtype.kind not in "SOUiufb":
            raise attr_error(path, name, f"has an unsupported type {dtype}")
        try:
            value = f.attrs[name]
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            raise attr_error(path, name, f"cannot be read ({type(exc).__name__}: "
                             f"{safe_repr(str(exc))})") from None
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(())[()]
        out[name] = plain_attr(path, name, value)
    return out


def _int_attr(path: Path, attrs: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = attrs.get(name)
    if value is None:
        raise attr_error(path, name, "is missing")
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise attr_error(path, name, f"must be an integer in [{low}, {high}], got "
                         f"{safe_repr(value)}")
    return value


def _str_attr(path: Path, attrs: Mapping[str, Any], name: str, longest: int = 200) -> str:
    value = attrs.get(name)
    if value is None:
        raise attr_error(path, name, "is missing")
    if not isinstance(value, str) or not value or len(value) > longest or not value.isprintable():
        raise attr_error(path, name, f"must be printable text of at most {longest} "
                         f"characters, got {safe_repr(value)}")
    return value


def factor_spec(path: Path, raw: Any) -> FactorSpec:
    """The factor spec of the ``factor_spec`` attribute, checked before it is built."""
    name = "factor_spec"
    if not isinstance(raw, list) or not raw:
        raise attr_error(path, name, "must be a non-empty list of factors")
    if len(raw) > MAX_FACTORS:
        raise attr_error(path, name, f"declares {len(raw)} factors, more than {MAX_FACTORS}")
    values = 0
    for i, d in enumerate(raw):
        if not isinstance(d, dict):
            raise attr_error(path, name, f"entry {i} must be a JSON object, got "
                             f"{type(d).__name__}")
        for key in ("name", "kind"):
            if not isinstance(d.get(key), str) or not 0 < len(d[key]) <= 200:
                raise attr_error(path, name, f"entry {i}: {key!r} must be text")
        if not isinstance(d.get("group", ""), str) or len(d.get("group", "")) > 200:
            raise attr_error(path, name, f"entry {i}: 'group' must be text")
        for key in ("low", "high"):
            v = d.get(key)
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise attr_error(path, name, f"factor {d['name']!r}: {key!r} must be a finite "
                                 f"number, got {safe_repr(v)}")
        vals = d.get("values", [])
        if not isinstance(vals, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in vals):
            raise attr_error(path, name, f"factor {d['name']!r}: 'values' must be a list of "
                             "finite numbers")
        values += len(vals)
    discrete = sum(1 for d in raw if d.get("kind") == "discrete")
    widest = max((len(d.get("values", [])) for d in raw), default=0)
    if values > MAX_FACTOR_VALUES or discrete * widest > MAX_FACTOR_VALUES:
        raise attr_error(path, name, f"declares more than {MAX_FACTOR_VALUES} discrete values")
    try:
        return FactorSpec.from_json(raw)
    except ConfigError as exc:
        raise attr_error(path, name, f"is invalid ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise attr_error(path, name, f"is invalid ({type(exc).__name__}: "
                         f"{safe_repr(str(exc))})") from None


def observation(path: Path, collector: Mapping[str, Any]) -> dict[str, Any]:
    """The ``collector.observation`` layout of a format-3 video file, checked."""
    name = "collector"
    obs = collector.get("observation") or {}
    if not isinstance(obs, dict):
        raise attr_error(path, name, "observation must be a JSON object")
    arrays = obs.get("arrays", {})
    if not isinstance(arrays, dict) or len(arrays) > MAX_OBS_KEYS:
        raise attr_error(path, name, f"observation.arrays must map at most {MAX_OBS_KEYS} keys "
                         "to their dtype and shape")
    for key, entry in arrays.items():
        if not _KEY.fullmatch(key):
            raise attr_error(path, name, f"observation key {safe_repr(key)} is not a plain name")
        ok = isinstance(entry, dict) and isinstance(entry.get("dtype"), str) and isinstance(
            entry.get("shape"), list) and len(entry["shape"]) <= 4 and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_ROW_VALUES
            for s in entry["shape"])
        if ok:
            try:
                ok = np.dtype(entry["dtype"]).kind in "iufb"
            except TypeError:
                ok = False
        if not ok or int(np.prod(entry["shape"])) > MAX_ROW_VALUES:
            raise attr_error(path, name, f"observation.arrays[{key!r}] must be "
                             "{'dtype': a numeric dtype, 'shape': [up to 4 sizes]}")
    pixels = obs.get("pixels")
    if pixels is not None and not isinstance(pixels, str):
        raise attr_error(path, name, "observation.pixels must be text or null")
    if obs.get("space", "box") not in ("box", "dict"):
        raise attr_error(path, name, "observation.space must be 'box' or 'dict'")
    return dict(obs)


class Header:
    """A file's root attributes, checked in two stages: at construction what the array names
    and the fingerprint depend on (format version, kind, rows, the observation layout), in
    :meth:`check_content` (after the fingerprint matched) everything else."""

    def __init__(self, path: Path, stored: dict[str, Any]) -> None:
        self.path = path
        self.stored = stored
        parsed = dict(stored)
        for name, want in JSON_ATTRS.items():
            if name in stored:
                parsed[name] = parse_json(path, name, stored[name], want)
        self.version = _int_attr(path, stored, "format_version", 0, 1 << 16)
        if self.version not in READABLE_VERSIONS:
            raise ConfigError(f"{path} has format version {self.version}; this sparseshift "
                              f"reads versions {', '.join(map(str, READABLE_VERSIONS))} "
                              "(re-collect it)")
        self.kind = _str_attr(path, stored, "kind")
        if self.kind not in KINDS:
            raise ConfigError(f"{path}: unknown dataset kind {safe_repr(self.kind)}")
        if stored.get("n") == 0:
            raise ConfigError(f"{path}: attribute 'n' is 0: the dataset is empty (no rows); "
                              "collect it again with --n >= 1")
        self.n = _int_attr(path, stored, "n", 1, MAX_ROWS)
        self.fingerprint = _str_attr(path, stored, "fingerprint")
        if not _FINGERPRINT.fullmatch(self.fingerprint):
            raise attr_error(path, "fingerprint", "must be 64 hexadecimal digits")
        if self.version >= 3 and "collector" not in parsed:
            raise attr_error(path, "collector", "is missing")
        parsed.setdefault("collector", {})
        parsed.setdefault("env_kwargs", {})
        self.observation = (observation(path, parsed["collector"])
                            if self.version >= 3 and self.kind == "video" else {})
        self.obs_keys: tuple[str, ...] = tuple(self.observation.get("arrays", {}))
        self.names = arrays_of(self.kind, self.obs_keys, self.version)
        self.attrs = parsed
        self.env_id = ""
        self.image_size = 0
        self.factor_spec = FactorSpec(())

    def check_content(self) -> None:
        """The attributes the arrays are not named by: env id, image size, factor spec and the
        optional provenance (seed, part rows, colours, render preset, creation time)."""
        path, stored = self.path, self.stored
        self.env_id = _str_attr(path, stored, "env_id")
        self.image_size = _int_attr(path, stored, "image_size", 8, MAX_IMAGE_SIZE)
        if self.image_size % 8:
            raise attr_error(path, "image_size", f"must be a multiple of 8, got "
                             f"{self.image_size}")
        if "factor_spec" not in self.attrs:
            raise attr_error(path, "factor_spec", "is missing")
        self.factor_spec = factor_spec(path, self.attrs["factor_spec"])
        for name in ("seed", "part_rows"):
            if name in stored:
                _int_attr(path, stored, name, 0, 1 << 62)
        for name in ("colours", "render_preset", "created"):
            if name in stored:
                _str_attr(path, stored, name)


# ------------------------------------------------------------------------------ arrays
def _row_layout(h: Header, name: str) -> tuple[tuple[int, ...] | None, frozenset[str], str]:
    """(row shape or None for any, dtype kinds, dtype text) array ``name`` must have."""
    s, nf = h.image_size, len(h.factor_spec)
    if name in IMAGE_ARRAYS:
        return (s, s, 3), frozenset("u"), "uint8"
    if name in FACTOR_ARRAYS:
        return (nf,), _FLOAT, "float"
    if name == "changed":
        return (nf,), _BOOL, "bool"
    if name == "intervened":
        return None, _BOOL, "bool"
    if name in ("episode_starts", "terminated", "truncated"):
        return (), _BOOL, "bool"
    if name == "rewards":
        return (), _FLOAT, "float"
    if name == "actions":
        return None, _NUMBER, "numeric"
    key = name.removeprefix(FINAL_PREFIX).removeprefix(OBS_PREFIX)
    entry = h.observation["arrays"][key]
    dtype = np.dtype(entry["dtype"])
    return tuple(entry["shape"]), frozenset(dtype.kind), dtype.name


class Layout:
    """Shapes, dtypes and chunk rows of a file's arrays and the length of their checksum
    arrays, read from the file's metadata (no data read): :meth:`check_budget` before any data
    is read, :meth:`check_rows` once the header's content is checked."""

    def __init__(self, path: Path, f: h5py.File, h: Header) -> None:
        self.path = path
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, np.dtype[Any]] = {}
        self.rows: dict[str, int] = {}
        self.sum_counts: dict[str, int] = {}
        for name in h.names:
            d = _dataset(path, f, name)
            shape = tuple(int(x) for x in d.shape)
            if len(shape) < 1 or len(shape) > 5:
                raise array_error(path, name, f"has shape {shape}; arrays have a row axis and "
                                  "at most 4 more")
            if not per_episode(name) and shape[0] != h.n:
                raise array_error(path, name, f"has {shape[0]} rows, but attribute 'n' says "
                                  f"{h.n}")
            if per_episode(name) and shape[0] > h.n:
                raise array_error(path, name, f"has {shape[0]} rows, more than the {h.n} "
                                  "steps of the dataset")
            chunks = d.chunks
            if chunks is None or tuple(chunks[1:]) != shape[1:] or chunks[0] < 1:
                raise array_error(path, name, f"is not stored in chunks of whole rows "
                                  f"(chunks {chunks})")
            chunk_bytes = int(np.prod(chunks)) * np.dtype(d.dtype).itemsize
            if name in IMAGE_ARRAYS and chunk_bytes > MAX_IMAGE_CHUNK:
                raise array_error(path, name, f"is stored in chunks of {_size(chunk_bytes)} "
                                  f"(at most {_size(MAX_IMAGE_CHUNK)}: frames are read by chunk "
                                  "when a dataset does not fit in memory)")
            if d.compression not in FILTERS:
                raise array_error(path, name, f"uses the filter {d.compression!r}; sparseshift "
                                  "datasets use gzip")
            self.shapes[name], self.dtypes[name] = shape, np.dtype(d.dtype)
            self.rows[name] = int(chunks[0])
            want = -(-shape[0] // int(chunks[0]))
            s = _dataset(path, f, f"{CHECKSUM_GROUP}/{name}")
            if tuple(s.shape) != (want,) or s.dtype.kind not in _INT:
                raise array_error(path, f"{CHECKSUM_GROUP}/{name}", f"has shape "
                                  f"{tuple(s.shape)} and dtype {s.dtype}, expected ({want},) "
                                  f"integers: one checksum per chunk of {name!r}")
            self.sum_counts[name] = want

    def check_rows(self, h: Header) -> None:
        """Each array's dtype and row shape, as its kind and the header need."""
        path, nf = self.path, len(h.factor_spec)
        for name, shape in self.shapes.items():
            row, kinds, text = _row_layout(h, name)
            if row is not None and shape[1:] != row:
                if name in FACTOR_ARRAYS or name == "changed":
                    raise array_error(path, name, f"has {shape[1:][0] if shape[1:] else 0} "
                                      f"factor columns, but attribute 'factor_spec' declares "
                                      f"{nf} factors")
                raise array_error(path, name, f"has row shape {list(shape[1:])}, expected "
                                  f"{list(row)}")
            if name == "intervened" and (len(shape) != 2 or not 0 < shape[1] <= nf):
                raise array_error(path, name, f"has row shape {list(shape[1:])}, expected one "
                                  f"flag per factor group (at most {nf})")
            if name == "actions" and (len(shape) > 3 or int(np.prod(shape[1:])) > 4096):
                raise array_error(path, name, f"has row shape {list(shape[1:])}; actions are "
                                  "scalars or small vectors")
            dtype = self.dtypes[name]
            if dtype.kind not in kinds or (text == "uint8" and dtype != np.uint8):
                raise array_error(path, name, f"has dtype {dtype}, expected {text}")

    def nbytes(self, names: Any = None) -> int:
        """Decoded bytes of the arrays ``names`` (default all)."""
        chosen = self.shapes if names is None else names
        return sum(int(np.prod(self.shapes[n])) * self.dtypes[n].itemsize for n in chosen)

    def check_budget(self, file_bytes: int, budget: int, resident_limit: int) -> bool:
        """Whether the whole dataset fits ``budget`` (then it is loaded into RAM); a
        :class:`ConfigError` when the file declares more than it can hold or when the arrays
        that are always loaded (everything but frames, and the checksums) need more than
        ``resident_limit`` bytes."""
        path = self.path
        sums = 8 * sum(self.sum_counts.values())
        total = self.nbytes() + sums
        most = MAX_EXPANSION * file_bytes + EXPANSION_SLACK
        if total > most:
            raise ConfigError(f"{path}: its arrays declare {_size(total)} of data, more than a "
                              f"file of {_size(file_bytes)} can hold; the file is damaged or "
                              "forged")
        small = [n for n in self.shapes if n not in IMAGE_ARRAYS]
        resident = self.nbytes(small) + sums
        if resident > resident_limit:
            raise ConfigError(f"{path}: its arrays other than frames need {_size(resident)} "
                              f"in memory, more than the {_size(resident_limit)} available")
        return total <= budget


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def _dataset(path: Path, f: h5py.File, name: str) -> h5py.Dataset:
    try:
        obj = f.get(name)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise array_error(path, name, f"cannot be read ({safe_repr(str(exc))})") from None
    if obj is None:
        raise array_error(path, name, "is missing")
    if not isinstance(obj, h5py.Dataset):
        raise array_error(path, name, f"is a {type(obj).__name__}, not an array")
    return obj


def check_finite(path: Path, name: str, arr: np.ndarray, spec: FactorSpec) -> None:
    """Refuse NaN or infinite factor values (naming the first row and factor)."""
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = (int(x) for x in np.argwhere(bad)[0])
        raise array_error(path, name, f"holds a non-finite factor value ({arr[row, col]} at "
                          f"row {row}, factor {spec.names[col]!r})")


