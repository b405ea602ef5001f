"""The one config format: frozen dataclasses that check their own fields and round-trip JSON.

Every configuration in sparseshift (collection, learners, training, evaluation, agents, schedules,
studies) is a frozen dataclass deriving from :class:`Config`. The base gives each of them:

* type checks at construction, from the field annotations (``int``, ``float``, ``str``, ``bool``,
  ``Literal[...]``, ``X | None``, unions, ``tuple[X, ...]``, fixed tuples, ``Mapping[str, Any]``,
  nested configs), with lists coerced to tuples and JSON objects to nested configs, and bounds from
  the field metadata (:func:`opt`); a violation is one
  :class:`~sparseshift.envs.infra.errors.ConfigError` line naming the field, the expected value
  and what was given;
* :meth:`Config.to_json` / :meth:`Config.from_json` (unknown keys are an error listing the valid
  ones), :meth:`Config.load` for a JSON or TOML file;
* per-field help text and command-line flag names in the metadata, from which
  :mod:`sparseshift.experiments.commands.options` derives the CLI flags, so a default lives in
  one place.

The value helpers (:func:`check_int`, :func:`check_number`, :func:`check_choice`) and the one
``KEY=VALUE`` parser (:func:`parse_assignments`, :func:`parse_text`) are shared by every layer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from sparseshift.envs.infra.errors import ConfigError, choice_error, safe_repr

C = TypeVar("C", bound="Config")

#: Upper bound of seeds everywhere (NumPy's SeedSequence takes more, but artifacts store seeds as
#: JSON numbers and SB3 adds the env index to the seed).
SEED_MAX = 2**31 - 1024


def opt(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
        min: float | None = None, max: float | None = None, gt: float | None = None,
        lt: float | None = None, max_len: int | None = None, flag: str | None = None,
        cli: bool = True, metavar: str | None = None, invert: bool = False) -> Any:
    """A config field with its help text and checks.

    ``min``/``max`` bound numbers inclusively, ``gt``/``lt`` exclusively; on a tuple field they
    bound every item, and ``max_len`` its length. Choices are a ``Literal[...]`` annotation.
    ``flag`` renames the command-line flag (default ``--field-name``); ``cli=False`` keeps a
    field off the command line; ``invert`` makes a bool field a ``--flag`` that sets it to False
    (e.g. ``progress`` as ``--quiet``).
    """
    meta = {"help": help, "min": min, "max": max, "gt": gt, "lt": lt, "max_len": max_len,
            "flag": flag, "cli": cli, "metavar": metavar, "invert": invert}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---------------------------------------------------------------------------- value checks


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _bounds_text(kind: str, low: float | None, high: float | None, low_open: bool = False,
                 high_open: bool = False) -> str:
    if low == 1 and kind == "an integer" and not low_open:
        return "a positive integer" + ("" if high is None else f" <= {_num(high)}")
    if low is not None and high is not None:
        return (f"{kind} in {'(' if low_open else '['}{_num(low)}, {_num(high)}"
                f"{')' if high_open else ']'}")
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {_num(high)}"
    return kind


def check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]`` (bools and non-integral numbers refused)."""
    if isinstance(value, float | np.floating) and math.isfinite(value) \
            and float(value).is_integer():
        value = int(value)
    if not _is_int(value) or (low is not None and value < low) or (  # type: ignore[operator]
            high is not None and value > high):  # type: ignore[operator]
        raise ConfigError(f"{name} must be {_bounds_text('an integer', low, high)}, "
                          f"got {safe_repr(value)}")
    return int(value)  # type: ignore[call-overload]


def check_number(name: str, value: object, low: float | None = None, high: float | None = None,
                 *, low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the bounds (``*_open``: the bound itself excluded)."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_) and _finite(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = not ((low is not None and (v < low or (low_open and v == low)))
                  or (high is not None and (v > high or (high_open and v == high))))
    if not ok:
        want = (_bounds_text("a number", low, high, low_open, high_open)
                if low is not None or high is not None else "a finite number")
        raise ConfigError(f"{name} must be {want}, got {safe_repr(value)}")
    return float(value)  # type: ignore[arg-type]


def _finite(value: Any) -> bool:
    """Whether a number is finite as a float (an int beyond the float range is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def check_choice(name: str, value: object, choices: Iterable[object]) -> Any:
    """``value`` if it is one of ``choices``, else the standard 'unknown X' error."""
    options = tuple(choices)
    if value not in options:
        raise choice_error(name, value, options)
    return value


def check_seed(name: str, value: object) -> int:
    """A seed: an integer in ``[0, SEED_MAX]``."""
    return check_int(name, value, 0, SEED_MAX)


# ---------------------------------------------------------------------------- typed values


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + (
            " or none" if type(None) in args else "")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of ({_type_name(args[0])})"
        return "a list of " + ", ".join(_type_name(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, Config):
        return f"a {tp.__name__} object"
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return "an object of key/value pairs"
    return str(tp)


def literal_choices(tp: Any) -> tuple[Any, ...] | None:
    """The choices of a ``Literal[...]`` (or ``Literal[...] | None``) annotation, else None."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return args
    if origin in (typing.Union, types.UnionType):
        lits = [a for a in args if a is not type(None)]
        if len(lits) == 1 and typing.get_origin(lits[0]) is Literal:
            return typing.get_args(lits[0])
    return None


class _Mismatch(Exception):
    """A value does not have the annotated type (message: what was expected)."""


def coerce(tp: Any, value: Any) -> Any:
    """``value`` checked against annotation ``tp`` and normalised (lists -> tuples, dicts ->
    nested configs, integral numbers -> int for int fields, ints -> float for float fields).
    Raises :class:`_Mismatch` with the expected type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        for a in members:
            try:
                return coerce(a, value)
            except _Mismatch:
                continue
            except ConfigError:
                if len(members) == 1:  # X | None: X's own one-line error
                    raise
                continue
        raise _Mismatch(_type_name(tp))
    if origin is Literal:
        if value in args and not (isinstance(value, bool) and not any(
                isinstance(a, bool) for a in args)):
            return value
        raise _Mismatch(_type_name(tp))
    if tp is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        raise _Mismatch("true or false")
    if tp is int:
        if _is_int(value):
            return int(value)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise _Mismatch("an integer")
    if tp is float:
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
                value, bool | np.bool_):
            if not _finite(value):
                raise _Mismatch("a finite number")
            return float(value)
        raise _Mismatch("a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch("a string")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
            raise _Mismatch(_type_name(tp))
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v) for v in items)
        if args and len(items) != len(args):
            raise _Mismatch(_type_name(tp))
        return tuple(coerce(a, v) for a, v in zip(args, items, strict=False)) if args \
            else tuple(items)
    if isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return tp.from_json(value)
        if isinstance(value, str) and hasattr(tp, "parse"):
            return tp.parse(value)  # a config with a text form, e.g. LRSchedule's "W:D:R"
        raise _Mismatch(_type_name(tp))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _Mismatch(_type_name(tp))
        return {str(k): v for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch(f"a {tp.__name__}")
    return value


def to_jsonable(value: Any) -> Any:
    """Configs, tuples and mappings as plain JSON values."""
    if isinstance(value, Config):
        return value.to_json()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def parse_text(tp: Any, text: str) -> Any:
    """Command-line ``text`` as a value of annotation ``tp``: ``none``/``null`` for optional
    fields, ``true``/``false`` for bools, comma-separated items for tuples (``32,32,64,64``), JSON
    for mappings; numbers accept ``1e5`` for integers when integral. Raises ValueError naming what
    was expected."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    stripped = text.strip()
    if origin in (typing.Union, types.UnionType):
        if stripped.lower() in ("none", "null") and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        for a in members:
            try:
                return parse_text(a, text)
            except ValueError as exc:
                if len(members) == 1:  # X | None: X's own message says what was expected
                    raise ValueError(f"{exc}" + (" or none" if type(None) in args else "")
                                     ) from None
                continue
        raise ValueError(_type_name(tp))
    if origin is Literal:
        for choice in args:
            if str(choice) == stripped:
                return choice
        raise ValueError(_type_name(tp))
    if origin is tuple:
        parts = [t.strip() for t in stripped.split(",")] if stripped else []
        if len(args) == 2 and args[1] is Ellipsis:
            try:
                return tuple(parse_text(args[0], t) for t in parts)
            except ValueError as exc:
                raise ValueError(f"comma-separated items, each {exc}") from None
        if len(parts) != len(args):
            raise ValueError(f"{len(args)} comma-separated items")
        return tuple(parse_text(a, t) for a, t in zip(args, parts, strict=True))
    if tp is bool:
        low = stripped.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError("true or false")
    if tp is int:
        try:
            return int(stripped)
        except ValueError:
            pass
        try:
            number = float(stripped)
        except ValueError:
            raise ValueError("an integer") from None
        if math.isfinite(number) and number.is_integer():
            return int(number)
        raise ValueError("an integer")
    if tp is float:
        try:
            return float(stripped)
        except ValueError:
            raise ValueError("a number") from None
    if tp is str:
        return text
    if tp is Any:
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    if isinstance(tp, type) and issubclass(tp, Config) and hasattr(tp, "parse") \
            and not stripped.startswith("{"):
        try:
            return tp.parse(text)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    if origin in (dict, Mapping) or tp in (dict, Mapping) or (
            isinstance(tp, type) and issubclass(tp, Config)):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            raise ValueError("a JSON object") from None
        if not isinstance(value, dict):
            raise ValueError("a JSON object")
        return value
    raise ValueError(f"a {tp} (not settable from the command line)")


def parse_assignments(items: Iterable[str], flag: str) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` -> ``{KEY: VALUE}`` (raw text); malformed items and repeated keys
    are a one-line :class:`ConfigError` naming ``flag``. The one KEY=VALUE parser of the CLI."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        if key in out:
            raise ConfigError(f"{flag}: {key!r} given twice")
        out[key] = text
    return out


def parse_typed_assignments(items: Iterable[str], types_by_key: Mapping[str, Any], flag: str,
                            what: str) -> dict[str, Any]:
    """``KEY=VALUE`` items parsed by the annotation of each key in ``types_by_key``; unknown keys
    list the valid ones (``what`` names the set, e.g. ``VAEConfig option``)."""
    out: dict[str, Any] = {}
    for key, text in parse_assignments(items, flag).items():
        if key not in types_by_key:
            raise ConfigError(f"{flag}: unknown {what} {key!r}; valid: "
                              f"{', '.join(sorted(types_by_key))}")
        try:
            out[key] = parse_text(types_by_key[key], text)
        except ValueError as exc:
            raise ConfigError(f"{flag} {key}={text!r}: {what.split()[0]}.{key} expects "
                              f"{exc}") from None
    return out


def check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    """The bounds of a field's :func:`opt` (``min``, ``max``, ``gt``, ``lt``; item by item and
    ``max_len`` for a tuple) on its value; non-finite floats are refused."""
    if isinstance(value, tuple):
        n = meta.get("max_len")
        try:
            if n is not None and len(value) > n:
                raise ConfigError(name)
            for item in value:
                check_bounds(name, item, meta)
        except ConfigError:
            kind = "an integer" if all(_is_int(v) for v in value) else "a number"
            each = _bounds_text(kind, *_limits(meta, kind == "an integer"))
            raise ConfigError(f"{name} must be a list of {'' if n is None else f'at most {n} '}"
                              f"items, each {each}, got {safe_repr(value)}") from None
        return
    if isinstance(value, bool) or value is None:
        return
    if _is_int(value):
        low, high, _, _ = _limits(meta, True)
        if low is not None or high is not None:
            check_int(name, value, None if low is None else int(low),
                      None if high is None else int(high))
    elif isinstance(value, float):
        low, high, low_open, high_open = _limits(meta, False)
        check_number(name, value, low, high, low_open=low_open, high_open=high_open)


def _limits(meta: Mapping[str, Any], integer: bool
            ) -> tuple[float | None, float | None, bool, bool]:
    """(low, high, low_open, high_open) of a field's metadata; open bounds of an integer field
    become the next integer inside."""
    low, high = meta.get("min"), meta.get("max")
    gt, lt = meta.get("gt"), meta.get("lt")
    if integer:
        return (math.floor(gt) + 1 if low is None and gt is not None else low,
                math.ceil(lt) - 1 if high is None and lt is not None else high, False, False)
    return (gt if low is None else low, lt if high is None else high,
            low is None and gt is not None, high is None and lt is not None)


# ---------------------------------------------------------------------------- the base


@dataclass(frozen=True)
class Config:
    """Base of every sparseshift config (a frozen dataclass; see the module docstring).

    Subclasses declare fields (with :func:`opt` for help and bounds, ``Literal[...]`` for
    choices) and may override :meth:`validate` for checks that involve several fields (and the
    defaults derived from several fields); they do not override ``__post_init__``.
    """

    #: Name used in messages (default: the class name).
    config_name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                value = coerce(hints[f.name], value)
            except _Mismatch as exc:
                choices = literal_choices(hints[f.name])
                if choices is not None:
                    raise choice_error(f.name.replace("_", " "), value, choices) from None
                raise ConfigError(f"{f.name} must be {exc}, got {safe_repr(value)}") from None
            check_bounds(f.name, value, f.metadata)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Checks across fields (field types and bounds are already checked); a subclass calls
        its parent's first."""

    @classmethod
    def name_for_messages(cls) -> str:
        return cls.config_name or cls.__name__

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples become lists, nested configs dicts)."""
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_json(cls: type[C], data: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_json`; unknown keys and missing required fields are a
        :class:`ConfigError`, values are type-checked."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a {cls.name_for_messages()} must be a JSON object, got "
                              f"{type(data).__name__}")
        names = cls.field_names()
        unknown = sorted(str(k) for k in set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown {cls.name_for_messages()} option(s) {unknown}; valid: "
                              f"{', '.join(sorted(names))}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING
                    and f.init]
        missing = [n for n in required if n not in data]
        if missing:
            raise ConfigError(f"{cls.name_for_messages()} needs {', '.join(missing)}")
        return cls(**dict(data))

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls: type[C], path: str | Path, overrides: Mapping[str, Any] | None = None) -> C:
        """The config in a JSON or TOML file (by suffix, through the reading gate of
        :func:`read_config_file`), with ``overrides`` applied on top; an invalid value is one
        line naming the file and the field."""
        values = {**read_config_file(path, cls), **dict(overrides or {})}
        try:
            return cls.from_json(values)
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None


def read_config_file(path: str | Path, cls: type[Config] | None = None) -> dict[str, Any]:
    """A JSON (``.json``) or TOML (``.toml``) file's top-level object, read through the gate of
    :mod:`sparseshift.envs.infra.io` (at most 1 MiB, UTF-8, nesting, integer length, no NaN or
    infinity); one-line errors naming the file. With ``cls``, each option must be a field of
    ``cls`` and have its type (checked field by field, before anything is built: a list where
    an object is expected, text for a number), so callers may use the values as they are."""
    from sparseshift.envs.infra.io import read_document

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no config file at {p}")
    data = read_document(p, "config file")
    if cls is not None:
        check_fields(cls, data, f"config file {p}")
    return data


def check_fields(cls: type[Config], data: Mapping[str, Any], where: str) -> None:
    """Each key of ``data`` is a field of ``cls`` and its value has the field's type (nested
    configs are built to check them; checks across fields are left to ``cls`` itself); one
    line naming ``where`` and the field."""
    hints = _hints(cls)
    names = cls.field_names()
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ConfigError(f"{where}: unknown {cls.name_for_messages()} option(s) {unknown}; "
                          f"valid: {', '.join(sorted(names))}")
    for key, value in data.items():
        try:
            coerce(hints[key], value)
        except _Mismatch as exc:
            choices = literal_choices(hints[key])
            if choices is not None:
                raise ConfigError(f"{where}: {choice_error(key, value, choices)}") from None
            raise ConfigError(f"{where}: {key} must be {exc}, got {safe_repr(value)}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def default_of(cls: type[Config], name: str) -> Any:
    """The default of field ``name`` of ``cls`` (without building an instance)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            raise ConfigError(f"{cls.__name__}.{name} has no default")
    raise KeyError(name)


def field_types(cls: type[Config]) -> dict[str, Any]:
    """Field name -> resolved annotation of a config class."""
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
