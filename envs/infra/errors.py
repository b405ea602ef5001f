"""Errors for bad user input.

Every error a user can cause by passing a bad argument (an unknown id, a colour outside [0, 1], an
image size that is not a multiple of 8, ...) is a :class:`ConfigError`. It subclasses ``ValueError``
so library users can catch it the usual way, and the CLI turns it into one line and exit status 2.

Messages quote the value given through :func:`safe_repr`: one short line whatever it is (a
5000-digit integer, whose ``repr`` raises ``ValueError``, a megabyte of text, a 2-D array).
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: Largest image size (pixels per side) anything in sparseshift renders, trains on or allocates
#: observation spaces for: 512 x 512 x 3 bytes is 768 KiB a frame. Checked by
#: :func:`check_image_size` before any renderer, buffer or space is built.
MAX_IMAGE_SIZE = 512
#: Longest episode (steps) an env accepts, through its ``max_episode_steps`` kwarg or
#: ``gymnasium.make(id, max_episode_steps=n)``.
MAX_EPISODE_STEPS = 1_000_000
#: Integers with more digits than this are quoted as "an integer of N digits" (``repr`` of one
#: over 4300 digits raises ValueError, and the digits tell a user nothing).
_MAX_INT_DIGITS = 40


class ConfigError(ValueError):
    """A user-supplied value is invalid; the message names the problem and the valid choices."""


def _int_text(value: int) -> str:
    digits = max(1, math.floor((abs(int(value)).bit_length() - 1) * math.log10(2)) + 1)
    if digits <= _MAX_INT_DIGITS:
        return repr(int(value))
    sign = "-" if value < 0 else ""
    return f"<{sign}an integer of about {digits} digits>"


class _Repr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxstring = 60
        self.maxother = 60
        self.maxlong = 60
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 6
        self.maxdict = 4
        self.maxlevel = 3

    def repr_int(self, x: int, level: int) -> str:
        return _int_text(x)


_REPR = _Repr()


def safe_repr(value: object) -> str:
    """``repr(value)`` as one short line (at most about 80 characters), for error messages;
    never raises."""
    try:
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            text = _int_text(int(value))
        elif isinstance(value, np.ndarray):
            text = f"<array of shape {value.shape} and dtype {value.dtype}>"
        else:
            text = _REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    return " ".join(text.split())[:100]


def choice_error(what: str, got: object, valid: Iterable[object]) -> ConfigError:
    """Build the standard 'unknown X' error that lists the valid choices."""
    choices = ", ".join(str(v) for v in valid)
    return ConfigError(f"unknown {what} {safe_repr(got)}; valid: {choices}")


@contextmanager
def naming(name: str) -> Iterator[None]:
    """Re-raise a :class:`ConfigError` from the block with ``name:`` in front, unless its
    message already names ``name`` (so every env kwarg error names the kwarg)."""
    try:
        yield
    except ConfigError as exc:
        if name in str(exc):
            raise
        raise ConfigError(f"{name}: {exc}") from None


def is_number(value: object) -> bool:
    """A real number (Python or NumPy, ints included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def check_image_size(size: int, max_size: int = MAX_IMAGE_SIZE) -> int:
    """Image sizes must be positive multiples of 8 (the conv nets halve the size four times), at
    most ``max_size`` (:data:`MAX_IMAGE_SIZE`)."""
    ok = is_number(size) and (not isinstance(size, float | np.floating) or (
        math.isfinite(size) and float(size).is_integer()))
    if not ok:
        raise ConfigError(f"image size must be an integer, got {safe_repr(size)}")
    n = int(size)
    if n <= 0 or n % 8 != 0 or n > max_size:
        raise ConfigError(f"image size must be a positive multiple of 8 and at most {max_size}, "
                          f"got {safe_repr(n)}")
    return n


def check_episode_steps(value: object) -> int:
    """An episode length: a Python int in ``[1, MAX_EPISODE_STEPS]`` (not gymnasium's ``-1`` for
    "no limit": every sparseshift episode ends). Floats and NumPy integers are refused as
    gymnasium's TimeLimit refuses them, so every way of making an env takes the same values."""
    want = _bounds(1, MAX_EPISODE_STEPS, "an integer")
    if not isinstance(value, int):
        raise ConfigError(f"max_episode_steps must be {want}, got {safe_repr(value)}")
    return check_int_arg("max_episode_steps", value, 1, MAX_EPISODE_STEPS)


def _bounds(low: float | None, high: float | None, kind: str) -> str:
    if low == 1 and high is None and kind == "an integer":
        return "a positive integer"
    if low is not None and high is not None:
        return f"{kind} in [{low:g}, {high:g}]" if kind != "an integer" else \
            f"{kind} in [{int(low)}, {int(high)}]"
    if low is not None:
        return f"{kind} >= {low:g}"
    if high is not None:
        return f"{kind} <= {high:g}"
    return kind


def check_int_arg(name: str, value: object, low: int | None = None,
                  high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; integral finite floats pass, bools, text and
    anything else are a :class:`ConfigError` naming ``name`` (safe for integers of any size)."""
    ok = is_number(value)
    if ok and not isinstance(value, numbers.Integral):
        f = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(f) and f.is_integer()
    if ok:
        n = int(value)  # type: ignore[call-overload]
        if (low is None or n >= low) and (high is None or n <= high):
            return n
    raise ConfigError(f"{name} must be {_bounds(low, high, 'an integer')}, "
                      f"got {safe_repr(value)}")


def check_number_arg(name: str, value: object, low: float | None = None,
                     high: float | None = None) -> float:
    """``value`` as a finite float in ``[low, high]``; bools, text and anything else are a
    :class:`ConfigError` naming ``name``."""
    if is_number(value):
        try:
            f = float(value)  # type: ignore[arg-type]
        except OverflowError:  # an int beyond the float range
            f = math.inf
        if math.isfinite(f) and (low is None or f >= low) and (high is None or f <= high):
            return f
    want = "a finite number" if low is None and high is None else \
        _bounds(low, high, "a finite number")
    raise ConfigError(f"{name} must be {want}, got {safe_repr(value)}")


def check_flag_arg(name: str, value: object) -> bool:
    """``value`` if it is True or False (NumPy bools too), else a :class:`ConfigError`."""
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name} must be True or False, got {safe_repr(value)}")
    return bool(value)


def check_choice_arg(name: str, value: object, choices: Iterable[str | None]) -> Any:
    """``value`` if it is one of ``choices`` (strings, and None where allowed), compared only
    when it is a string or None (so dicts, arrays and other odd values cannot break ``in``)."""
    options = tuple(choices)
    if (value is None or isinstance(value, str)) and value in options:
        return value
    raise choice_error(name, value, ("None" if c is None else c for c in options))
