"""Declared ground-truth factors of variation.

Every sparseshift env declares a :class:`FactorSpec`: an ordered tuple of scalar factors, each
with a kind (``continuous``, ``discrete`` or ``colour``) and a range or a set of values. Factors
that change together under one mechanism share a *group*: the three RGB channels of the cube
colour are the factors ``cube_colour.r/.g/.b`` of group ``cube_colour``. Interventions ("sparse
mechanism shifts", Locatello et al. 2020, *Weakly-Supervised Disentanglement Without
Compromises*) act on groups.

Envs report factors as a float32 vector in spec order (``info["factors"]``) and accept any subset
through ``reset(options={"factors": {...}})``, keyed by factor name or by group name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sparseshift.envs.infra.errors import ConfigError, is_number, safe_repr

FactorKind = Literal["continuous", "discrete", "colour"]
KINDS: tuple[str, ...] = ("continuous", "discrete", "colour")


def _to_float(name: str, value: object) -> float:
    """A factor value as float: a real number within the float range; anything else is a
    :class:`ConfigError` naming the factor."""
    if not is_number(value):
        raise ConfigError(f"factor {name!r} must be a number, got {safe_repr(value)}")
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise ConfigError(f"factor {name!r} must be a finite number, got "
                          f"{safe_repr(value)}") from None


def _numbers(what: str, value: object, n: int) -> np.ndarray:
    """``value`` (a number, or a list, tuple or array of ``n`` numbers) as float64 ``[n]``
    without converting text or other objects; ConfigError naming ``what`` otherwise."""
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise ConfigError(f"factor {what!r} takes {n} value(s), got an array of shape "
                              f"{value.shape}")
        if value.dtype.kind in "iuf":
            value = value.astype(np.float64).reshape(-1)
        else:
            value = value.reshape(-1).tolist()
    if isinstance(value, np.ndarray):
        arr = value
    elif is_number(value):
        arr = np.array([_to_float(what, value)])
    elif isinstance(value, list | tuple):
        if len(value) != n:
            arr = None
        else:
            if not all(is_number(v) for v in value):
                bad = next(v for v in value if not is_number(v))
                raise ConfigError(f"factor {what!r} takes numbers, got {safe_repr(bad)} in "
                                  f"{safe_repr(value)}")
            arr = np.array([_to_float(what, v) for v in value], dtype=np.float64)
    else:
        want = "must be a number" if n == 1 else f"takes {n} numbers"
        raise ConfigError(f"factor {what!r} {want}, got {safe_repr(value)}")
    if arr is None or arr.shape != (n,):
        raise ConfigError(f"factor {what!r} takes {n} value(s), got {safe_repr(value)}")
    return arr


@dataclass(frozen=True)
class Factor:
    """One scalar factor of variation.

    ``low``/``high`` bound the value (inclusive). Discrete factors also list their ``values``.
    ``group`` names the mechanism the factor belongs to (defaults to the factor's own name).
    """

    name: str
    kind: FactorKind
    low: float
    high: float
    values: tuple[float, ...] = ()
    group: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(
                f"factor {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}"
            )
        if not self.low <= self.high:
            raise ConfigError(f"factor {self.name!r}: low {self.low} > high {self.high}")
        if self.kind == "discrete" and not self.values:
            raise ConfigError(f"discrete factor {self.name!r} needs its values")
        if not self.group:
            object.__setattr__(self, "group", self.name)

    def check(self, value: float) -> float:
        """Return ``value`` as float if it is allowed, else raise :class:`ConfigError` (a
        number: not a bool, text or anything else)."""
        v = _to_float(self.name, value)
        if not np.isfinite(v):
            raise ConfigError(f"factor {self.name!r} must be finite, got {safe_repr(value)}")
        if self.kind == "discrete":
            if not np.any(np.isclose(v, self.values, atol=1e-6)):
                raise ConfigError(
                    f"factor {self.name!r} must be one of {list(self.values)}, "
                    f"got {safe_repr(value)}"
                )
        elif not (self.low - 1e-6 <= v <= self.high + 1e-6):
            what = "colour channel" if self.kind == "colour" else "factor"
            raise ConfigError(
                f"{what} {self.name!r} must lie in [{self.low:g}, {self.high:g}], "
                f"got {safe_repr(value)}"
            )
        return v

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "group": self.group,
        }
        if self.values:
            out["values"] = list(self.values)
        return out


@dataclass(frozen=True)
class FactorSpec:
    """An ordered collection of factors; the order is the layout of factor vectors."""

    factors: tuple[Factor, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _groups: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    _bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        groups: dict[str, list[int]] = {}
        for i, f in enumerate(self.factors):
            if f.name in index:
                raise ConfigError(f"duplicate factor name {f.name!r}")
            index[f.name] = i
            groups.setdefault(f.group, []).append(i)
        clash = set(groups) & {n for n in index if n not in groups}
        if clash:
            raise ConfigError(f"group names clash with factor names: {sorted(clash)}")
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_groups", {g: tuple(v) for g, v in groups.items()})
        disc = np.array([f.kind == "discrete" for f in self.factors], dtype=bool)
        width = max((len(f.values) for f in self.factors), default=0)
        values = np.full((int(disc.sum()), max(width, 1)), np.nan)
        for row, f in enumerate(f for f in self.factors if f.kind == "discrete"):
            values[row, : len(f.values)] = f.values
        bounds = (
            np.array([f.low for f in self.factors]) - 1e-6,
            np.array([f.high for f in self.factors]) + 1e-6,
            disc,
            values,
        )
        object.__setattr__(self, "_bounds", bounds)

    def __len__(self) -> int:
        return len(self.factors)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(f.kind for f in self.factors)

    @property
    def groups(self) -> tuple[str, ...]:
        """Group (mechanism) names in order of first appearance."""
        return tuple(self._groups)

    @property
    def low(self) -> np.ndarray:
        return np.array([f.low for f in self.factors], dtype=np.float32)

    @property
    def high(self) -> np.ndarray:
        return np.array([f.high for f in self.factors], dtype=np.float32)

    def index(self, name: str) -> int:
        """Position of factor ``name`` in factor vectors."""
        try:
            return self._index[name]
        except KeyError:
            raise ConfigError(
                f"unknown factor {safe_repr(name)}; valid: {', '.join(self.names)}"
            ) from None

    def group_indices(self, group: str) -> tuple[int, ...]:
        """Positions of the factors of ``group`` (a group name or a single factor's name)."""
        if group in self._groups:
            return self._groups[group]
        if group in self._index:
            return (self._index[group],)
        raise ConfigError(
            f"unknown factor or group {safe_repr(group)}; valid: {', '.join(self.groups)}"
        )

    def group_mask(self, groups: Sequence[str]) -> np.ndarray:
        """Boolean mask over factors that is True for every factor of the given groups."""
        mask = np.zeros(len(self), dtype=bool)
        for g in groups:
            mask[list(self.group_indices(g))] = True
        return mask

    def check_vector(self, vec: np.ndarray) -> np.ndarray:
        """Validate a full factor vector and return it as float32.

        Vectorised (this runs on every ``set_factors``); only on failure does it fall back to the
        per-factor check, which raises the error naming the first bad factor.
        """
        n = len(self)
        if isinstance(vec, np.ndarray) and (vec.ndim != 1 or vec.dtype.kind in "iuf"):
            arr = vec.astype(np.float64, copy=False) if vec.dtype.kind in "iuf" else vec
        elif isinstance(vec, list | tuple | np.ndarray) and len(vec) == n:
            for name, v in zip(self.names, vec, strict=True):
                if not is_number(v):
                    raise ConfigError(f"factor {name!r} must be a number, got {safe_repr(v)} "
                                      "in the factor vector")
            arr = np.array([_to_float(name, v) for name, v in zip(self.names, vec, strict=True)])
        elif isinstance(vec, list | tuple | np.ndarray):
            raise ConfigError(f"a factor vector must hold {n} numbers (one per factor, in "
                              f"spec order), got {len(vec)}: {safe_repr(vec)}")
        else:
            raise ConfigError(f"factors must be a dict of factor or group names to values, or a "
                              f"vector of {n} numbers, got {safe_repr(vec)}")
        if arr.shape != (n,):
            raise ConfigError(f"factor vector must have shape ({n},), got {arr.shape}")
        low, high, disc, values = self._bounds
        ok = np.isfinite(arr) & (arr >= low) & (arr <= high)
        if disc.any():
            near = np.abs(arr[disc, None] - values) <= 1e-6
            ok[disc] &= near.any(axis=1)
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            self.factors[bad].check(arr[bad])
        return arr.astype(np.float32)

    def update(
        self, base: np.ndarray, values: Mapping[str, Any] | np.ndarray | Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply ``values`` (by factor or group name, or a full vector) on top of ``base``.

        Returns the new float64 vector and a boolean mask of the factors that were set.
        Every value is validated; a group name takes a sequence with one value per factor.
        """
        out = np.array(base, dtype=np.float64, copy=True)
        set_mask = np.zeros(len(self), dtype=bool)
        if not isinstance(values, Mapping):
            full = self.check_vector(values)  # type: ignore[arg-type]
            return full.astype(np.float64), np.ones(len(self), dtype=bool)
        for key, val in values.items():
            idx = self.group_indices(str(key))
            arr = _numbers(str(key), val, len(idx))
            for i, v in zip(idx, arr, strict=True):
                out[i] = self.factors[i].check(float(v))
                set_mask[i] = True
        return out, set_mask

    def as_dict(self, vec: np.ndarray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, np.asarray(vec), strict=True)}

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.factors]

    @classmethod
    def from_json(cls, items: Sequence[Mapping[str, Any]]) -> FactorSpec:
        return cls(
            tuple(
                Factor(
                    name=str(d["name"]),
                    kind=d["kind"],
                    low=float(d["low"]),
                    high=float(d["high"]),
                    values=tuple(float(x) for x in d.get("values", ())),
                    group=str(d.get("group", "")),
                )
                for d in items
            )
        )


def colour_factors(group: str) -> tuple[Factor, Factor, Factor]:
    """The three RGB channel factors (kind ``colour``, range [0, 1]) of one object's colour."""
    return tuple(  # type: ignore[return-value]
        Factor(f"{group}.{c}", "colour", 0.0, 1.0, group=group) for c in "rgb"
    )
