"""Errors for bad user input.

Every error a user can cause by passing a bad argument (an unknown id, a colour outside [0, 1], an
image size that is not a multiple of 8, ...) is a :class:`ConfigError`. It subclasses ``ValueError``
so library users can catch it the usual way, and the CLI turns it into one line and exit status 2.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A user-supplied value is invalid; the message names the problem and the valid choices."""


def choice_error(what: str, got: object, valid: Iterable[object]) -> ConfigError:
    """Build the standard 'unknown X' error that lists the valid choices."""
    choices = ", ".join(str(v) for v in valid)
    return ConfigError(f"unknown {what} {got!r}; valid: {choices}")


def check_image_size(size: int) -> int:
    """Image sizes must be positive multiples of 8 (the conv nets halve the size four times)."""
    if isinstance(size, bool) or not isinstance(size, int | float) or int(size) != size:
        raise ConfigError(f"image size must be an integer, got {size!r}")
    size = int(size)
    if size <= 0 or size % 8 != 0:
        raise ConfigError(f"image size must be a positive multiple of 8, got {size}")
    return size
