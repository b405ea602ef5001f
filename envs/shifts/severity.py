"""The severity grammar shared by every command, config and Python call that names a shift.

``NAME``            the shift at its default severity (nuisances: level 3; colour splits: none)
``NAME:L``          integer level ``L`` in 1..5 (ImageNet-C's five levels)
``NAME:A-B``        every level from ``A`` to ``B`` (``lighting:1-5`` is five shifts)
``NAME@S``          a continuous strength ``S`` in [0, 5] (level ``L`` is strength ``L``)

A list is comma-separated (``in,ood2,lighting:1-5,real:3``). ``NAME`` may also be the path of a
shift file (``.toml`` or ``.json``, :mod:`sparseshift.envs.shifts.registry`). Colour splits take
no severity. Every error is one :class:`~sparseshift.envs.infra.errors.ConfigError` line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sparseshift.envs.infra.errors import ConfigError, safe_repr

#: Integer levels, like ImageNet-C (Hendrycks & Dietterich, ICLR 2019).
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: The level a nuisance or composition gets when none is given.
DEFAULT_LEVEL = 3
#: Largest continuous strength (= the top level).
MAX_SEVERITY = 5.0
#: Longest shift list a command or config may give (after level ranges are expanded).
MAX_SHIFTS = 256
_NAME = r"[A-Za-z0-9_.\-/\\~]+?"
_TOKEN = re.compile(rf"^(?P<name>{_NAME})(?:(?P<sep>[:@])(?P<sev>[^:@]+))?$")


@dataclass(frozen=True, order=True)
class ShiftRequest:
    """One shift asked for: its name (or file) and severity (None: the shift's default)."""

    name: str
    severity: float | None = None

    @property
    def label(self) -> str:
        """``in``, ``lighting:3``, ``lighting@2.5``: how results are keyed and printed."""
        if self.severity is None:
            return self.name
        s = self.severity
        if float(s).is_integer() and int(s) in LEVELS:
            return f"{self.name}:{int(s)}"
        return f"{self.name}@{s:g}"


def check_severity(value: object, what: str = "severity") -> float:
    """A finite number in [0, MAX_SEVERITY] (bools and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number in [0, {MAX_SEVERITY:g}], got "
                          f"{safe_repr(value)}")
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= MAX_SEVERITY:
        raise ConfigError(f"{what} must be in [0, {MAX_SEVERITY:g}], got {safe_repr(value)}")
    return v


def _level(text: str, token: str) -> int:
    if not text.isdigit() or int(text) not in LEVELS:
        raise ConfigError(f"shift {safe_repr(token)}: severity level must be an integer 1-5 "
                          f"(or NAME@STRENGTH for a continuous strength in [0, {MAX_SEVERITY:g}])")
    return int(text)


def parse_token(token: str) -> tuple[ShiftRequest, ...]:
    """One list entry -> its requests (a level range gives several)."""
    t = token.strip()
    m = _TOKEN.match(t) if t and len(t) <= 300 else None
    if m is None:
        raise ConfigError(f"bad shift {safe_repr(token)}; expected NAME, NAME:LEVEL (1-5), "
                          "NAME:A-B or NAME@STRENGTH")
    name, sep, sev = m.group("name"), m.group("sep"), m.group("sev")
    if sep is None:
        return (ShiftRequest(name),)
    if sep == "@":
        try:
            value = float(sev)
        except ValueError:
            raise ConfigError(f"shift {safe_repr(token)}: strength must be a number in "
                              f"[0, {MAX_SEVERITY:g}]") from None
        return (ShiftRequest(name, check_severity(value, f"shift {token!r} strength")),)
    lo, dash, hi = sev.partition("-")
    a = _level(lo.strip(), t)
    b = _level(hi.strip(), t) if dash else a
    if b < a:
        raise ConfigError(f"shift {safe_repr(token)}: level range {a}-{b} is empty")
    return tuple(ShiftRequest(name, float(k)) for k in range(a, b + 1))


def parse_requests(spec: str | Sequence[str]) -> tuple[ShiftRequest, ...]:
    """``"in,lighting:1-3"`` or a list of such tokens -> requests, in order, each label once."""
    if isinstance(spec, str):
        tokens = spec.split(",")
    elif isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec):
        tokens = [t for s in spec for t in s.split(",")]
    else:
        raise ConfigError(f"shifts must be a comma-separated string or a list of strings, got "
                          f"{safe_repr(spec)}")
    out: list[ShiftRequest] = []
    for tok in tokens:
        if tok.strip():
            out.extend(parse_token(tok))
        if len(out) > MAX_SHIFTS:
            raise ConfigError(f"more than {MAX_SHIFTS} shifts asked for")
    if not out:
        raise ConfigError("no shifts given")
    labels = [r.label for r in out]
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup is not None:
        raise ConfigError(f"shift {dup!r} listed twice")
    return tuple(out)
