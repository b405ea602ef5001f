"""Colour splits: which colours agents train on (IN), which only encoders see (OOD1), and which
nothing trains on (OOD2), following the OOD protocol of Dittadi et al. (ICLR 2021) and Traeuble,
Dittadi et al. (ICLR 2022).

A *colour scheme* is data (``assets/colours/<name>.json``): for every coloured object of an env
family it gives either a discrete palette per split or an RGB box per split (CausalWorld-style
intervention spaces). Schemes are selected by name and seeded: seed 0 keeps the assignment in the
file, any other seed permutes each discrete palette across the splits with the split sizes kept, so
studies can average over assignments. Splits are checked to be disjoint when a scheme loads.

Nothing here is global state: a :class:`ColourScheme` is an immutable value passed to envs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from sparseshift.envs.infra.config import SEED_MAX
from sparseshift.envs.infra.errors import ConfigError, check_int_arg, choice_error, safe_repr

SPLITS: tuple[str, ...] = ("in", "ood1", "ood2")
#: Minimum L-infinity distance between colours of different splits of a discrete palette.
MIN_SEPARATION = 0.05


def parse_splits(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Parse ``"in"``, ``"in+ood1"``, ``"all"`` or a list or tuple of split names."""
    if isinstance(spec, str):
        parts = SPLITS if spec == "all" else tuple(p.strip() for p in spec.split("+"))
    elif isinstance(spec, list | tuple):
        parts = tuple(spec)
    else:
        raise ConfigError(f"colour splits must be text such as 'in+ood1' or a list of split "
                          f"names, got {safe_repr(spec)}; valid: {', '.join(SPLITS)}, all")
    if not parts:
        raise ConfigError(f"empty colour split; valid: {', '.join(SPLITS)}, joined by '+', or all")
    for p in parts:
        if not isinstance(p, str) or p not in SPLITS:
            raise choice_error("colour split", p, (*SPLITS, "all"))
    if len(set(parts)) != len(parts):
        raise ConfigError(f"colour split {safe_repr(spec)} names a split twice")
    return tuple(s for s in SPLITS if s in parts)


def check_rgb(rgb: Sequence[float] | np.ndarray, what: str = "colour") -> np.ndarray:
    """Validate one RGB colour with channels in [0, 1]; return it as float64 array."""
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.shape != (3,):
        raise ConfigError(f"{what} must be 3 RGB values in [0, 1], got {np.asarray(rgb).tolist()}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0.0) or np.any(arr > 1.0):
        raise ConfigError(f"{what} channels must lie in [0, 1], got {arr.tolist()}")
    return arr


@dataclass(frozen=True)
class ColourSet:
    """The colours of one object, per split: a discrete palette or a continuous RGB box."""

    object: str
    palettes: Mapping[str, np.ndarray] | None = None  # split -> [n, 3]
    boxes: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None  # split -> (low, high)

    @property
    def discrete(self) -> bool:
        return self.palettes is not None

    def colours(self, split: str) -> np.ndarray:
        """The palette of ``split`` ([n, 3] float); only for discrete sets."""
        if self.palettes is None:
            raise ConfigError(f"colours of {self.object!r} are continuous boxes, not a palette")
        return self.palettes[split]

    def sample(self, rng: np.random.Generator, splits: Sequence[str]) -> np.ndarray:
        """Draw one colour: a split uniformly among ``splits``, then a colour within it.

        Discrete: uniform over the union of the palettes (so every colour is equally likely).
        Continuous: a split with probability proportional to its box volume, then uniform in it.
        """
        if self.palettes is not None:
            pool = np.concatenate([self.palettes[s] for s in splits], axis=0)
            return pool[int(rng.integers(len(pool)))].copy()
        assert self.boxes is not None
        vols = np.array([np.prod(self.boxes[s][1] - self.boxes[s][0]) for s in splits])
        s = splits[int(rng.choice(len(splits), p=vols / vols.sum()))]
        low, high = self.boxes[s]
        return rng.uniform(low, high)

    def split_of(self, rgb: np.ndarray, tol: float = 1e-3) -> str | None:
        """The split a colour belongs to, or None if it is in none."""
        arr = np.asarray(rgb, dtype=np.float64)
        for s in SPLITS:
            if self.palettes is not None:
                if np.any(np.all(np.abs(self.palettes[s] - arr) <= tol, axis=1)):
                    return s
            else:
                assert self.boxes is not None
                low, high = self.boxes[s]
                if np.all(arr >= low - tol) and np.all(arr <= high + tol):
                    return s
        return None

    def to_json(self) -> dict[str, Any]:
        if self.palettes is not None:
            return {s: self.palettes[s].round(6).tolist() for s in SPLITS}
        assert self.boxes is not None
        return {
            s: {"low": self.boxes[s][0].tolist(), "high": self.boxes[s][1].tolist()}
            for s in SPLITS
        }


@dataclass(frozen=True)
class ColourScheme:
    """A named, seeded assignment of colours to splits for every coloured object of an env."""

    name: str
    seed: int
    objects: Mapping[str, ColourSet]
    description: str = ""

    def __getitem__(self, obj: str) -> ColourSet:
        try:
            return self.objects[obj]
        except KeyError:
            what = f"coloured object in scheme {self.name!r}"
            raise choice_error(what, obj, self.objects) from None

    def require(self, objects: Sequence[str]) -> None:
        """Raise if the scheme does not colour every object an env needs."""
        missing = [o for o in objects if o not in self.objects]
        if missing:
            raise ConfigError(
                f"colour scheme {self.name!r} has no colours for {missing}; it covers "
                f"{sorted(self.objects)}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "objects": {k: v.to_json() for k, v in self.objects.items()},
        }


def available_schemes() -> tuple[str, ...]:
    """Names of the colour schemes shipped in ``assets/colours``."""
    root = resources.files("sparseshift.assets") / "colours"
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json")))


def _check_disjoint(name: str, obj: str, cs: ColourSet) -> None:
    if cs.palettes is not None:
        for i, a in enumerate(SPLITS):
            for b in SPLITS[i + 1 :]:
                pa, pb = cs.palettes[a], cs.palettes[b]
                d = np.abs(pa[:, None, :] - pb[None, :, :]).max(axis=2)
                if d.size and d.min() < MIN_SEPARATION:
                    raise ConfigError(
                        f"colour scheme {name!r}: {obj} splits {a} and {b} share a colour "
                        f"(closer than {MIN_SEPARATION})"
                    )
        return
    assert cs.boxes is not None
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            (la, ha), (lb, hb) = cs.boxes[a], cs.boxes[b]
            if np.all(np.minimum(ha, hb) > np.maximum(la, lb)):
                raise ConfigError(f"colour scheme {name!r}: {obj} boxes {a} and {b} overlap")


def _parse_set(name: str, obj: str, raw: Mapping[str, Any]) -> ColourSet:
    if set(raw) != set(SPLITS):
        raise ConfigError(f"colour scheme {name!r}: {obj} must define exactly {SPLITS}")
    if all(isinstance(raw[s], list) for s in SPLITS):
        pals = {}
        for s in SPLITS:
            arr = np.array([check_rgb(c, f"{name}/{obj}/{s} colour") for c in raw[s]])
            if arr.shape[0] == 0:
                raise ConfigError(f"colour scheme {name!r}: {obj}/{s} has no colours")
            pals[s] = arr.reshape(-1, 3)
        return ColourSet(obj, palettes=pals)
    boxes = {}
    for s in SPLITS:
        low = check_rgb(raw[s]["low"], f"{name}/{obj}/{s} low")
        high = check_rgb(raw[s]["high"], f"{name}/{obj}/{s} high")
        if np.any(high <= low):
            raise ConfigError(f"colour scheme {name!r}: {obj}/{s} box is empty")
        boxes[s] = (low, high)
    return ColourSet(obj, boxes=boxes)


def _permute(cs: ColourSet, rng: np.random.Generator) -> ColourSet:
    if cs.palettes is None:
        return cs
    sizes = [len(cs.palettes[s]) for s in SPLITS]
    pool = np.concatenate([cs.palettes[s] for s in SPLITS])[rng.permutation(sum(sizes))]
    cuts = np.cumsum(sizes)[:-1]
    parts = np.split(pool, cuts)
    return ColourSet(cs.object, palettes=dict(zip(SPLITS, parts, strict=True)))


def load_scheme(name: str, seed: int = 0) -> ColourScheme:
    """Load colour scheme ``name`` (see :func:`available_schemes`), split assignment ``seed``
    (an integer in ``[0, SEED_MAX]``); anything else is a :class:`ConfigError` (cached)."""
    valid = available_schemes()
    if not isinstance(name, str) or name not in valid:
        raise choice_error("colour scheme", name, valid)
    return _load_scheme(name, check_int_arg("colour seed", seed, 0, SEED_MAX))


@lru_cache(maxsize=64)
def _load_scheme(name: str, seed: int) -> ColourScheme:
    path = resources.files("sparseshift.assets") / "colours" / f"{name}.json"
    raw = json.loads(path.read_text())
    objects = {obj: _parse_set(name, obj, spec) for obj, spec in raw["objects"].items()}
    if seed != 0:
        rng = np.random.default_rng(seed)
        objects = {obj: _permute(cs, rng) for obj, cs in objects.items()}
    for obj, cs in objects.items():
        _check_disjoint(name, obj, cs)
    return ColourScheme(name, seed, objects, str(raw.get("description", "")))
