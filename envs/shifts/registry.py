"""The one place shift names live: colour splits, nuisances and compositions, with their kinds,
severities and the scene features they need; user shifts from files or from Python.

Kinds:

* ``colours``: a colour split of the OOD protocol (Dittadi et al., ICLR 2021; Traeuble, Dittadi
  et al., ICLR 2022): ``in`` (the colours the policy trained on), ``ood1`` (seen by the encoder,
  not by the policy), ``ood2`` (seen by neither). Not graded.
* ``nuisance``: one registered :class:`~sparseshift.envs.shifts.nuisance.Nuisance` on IN colours,
  graded 1-5 (default 3) or by a continuous strength in [0, 5].
* ``composition``: several nuisances, each at its own severity at the shift's level 3, on a colour
  split; level ``L`` scales every component's severity by ``L / 3`` (capped at 5). ``real`` is the
  shipped one: the sim-to-real imitation (:data:`REAL`).

A user shift file (``.toml`` or ``.json``, at most :data:`MAX_SHIFT_FILE_BYTES`)::

    name = "dusk"                 # letters, digits, _ and -; not a registered name
    summary = "dim, warm light"   # optional
    colours = "in"                # optional: in (default), ood1 or ood2
    [nuisances]                   # nuisance -> severity at the shift's level 3, in [0, 5]
    lighting = 4
    ambient = 2

Commands take it by path wherever they take a shift name (``--shifts in,dusk.toml:1-5``) and
record its text verbatim with its SHA-256 (eval.json, agent.json, the study report). From Python,
:meth:`ShiftRegistry.with_shift` and :meth:`ShiftRegistry.with_nuisance` return an extended
registry (registries are immutable: no global state).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from sparseshift.envs.infra.errors import ConfigError, choice_error, safe_repr
from sparseshift.envs.infra.io import cwd_on_path
from sparseshift.envs.shifts.colours import SPLITS
from sparseshift.envs.shifts.nuisance import FEATURES, Nuisance
from sparseshift.envs.shifts.nuisances import NUISANCES
from sparseshift.envs.shifts.severity import (
    DEFAULT_LEVEL,
    MAX_SEVERITY,
    ShiftRequest,
    check_severity,
    parse_requests,
)

KINDS: tuple[str, ...] = ("colours", "nuisance", "composition")
#: The colour splits, in protocol order (declared with the colour schemes).
COLOUR_SPLITS: tuple[str, ...] = SPLITS
MAX_SHIFT_FILE_BYTES = 64 << 10
_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,39}$")
_SUFFIXES = (".toml", ".json")


@dataclass(frozen=True)
class ShiftDef:
    """A named shift: its kind, colour split and (for graded kinds) nuisance components, each
    with its severity at the shift's level 3. ``source``: a user file's verbatim text."""

    name: str
    kind: str
    summary: str
    colours: str = "in"
    components: tuple[tuple[str, float], ...] = ()
    source: str | None = None

    @property
    def graded(self) -> bool:
        return self.kind != "colours"

    def definition(self) -> dict[str, Any]:
        """The JSON record of this definition (what reports and eval.json store)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "summary": self.summary,
                               "colours": self.colours,
                               "nuisances": {n: s for n, s in self.components}}
        if self.source is not None:
            out["source"] = self.source
        return out

    @property
    def digest(self) -> str:
        """SHA-256 of the verbatim file text (user shifts) or of the canonical definition."""
        text = self.source if self.source is not None else json.dumps(
            self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class EnvShift:
    """What an env's ``shift`` kwarg takes: resolved nuisances with effective severities (frozen
    and picklable, so worker processes rebuild the same shift)."""

    label: str
    components: tuple[tuple[Nuisance, float], ...]

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(n.needs for n, _ in self.components))


@dataclass(frozen=True)
class ResolvedShift:
    """One shift asked for, resolved: label (results key), definition, severity, colour split and
    the nuisances at their effective severities."""

    label: str
    shift: ShiftDef
    severity: float | None
    components: tuple[tuple[Nuisance, float], ...] = ()

    @property
    def name(self) -> str:
        return self.shift.name

    @property
    def kind(self) -> str:
        return self.shift.kind

    @property
    def colours(self) -> str:
        return self.shift.colours

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(n.needs for n, _ in self.components))

    def env_shift(self) -> EnvShift | None:
        """The env kwarg ``shift`` for this shift (None: colours only)."""
        active = tuple((n, s) for n, s in self.components if s > 0)
        return EnvShift(self.label, active) if active else None

    def record(self) -> dict[str, Any]:
        """What eval.json and reports store: the definition verbatim, its digest, the severity
        and each nuisance's effective severity."""
        return {"label": self.label, "name": self.name, "kind": self.kind,
                "severity": self.severity, "colours": self.colours,
                "effective": {n.name: s for n, s in self.components},
                "definition": self.shift.definition(), "sha256": self.shift.digest}


@dataclass(frozen=True)
class ShiftRegistry:
    """Named nuisances and shifts (immutable; extend with :meth:`with_nuisance` /
    :meth:`with_shift`)."""

    nuisances: Mapping[str, Nuisance]
    shifts: Mapping[str, ShiftDef]
    base_dir: Path | None = field(default=None, compare=False)

    # ---------------------------------------------------------------- building
    def with_nuisance(self, nuisance: Nuisance, summary: str | None = None) -> ShiftRegistry:
        """This registry plus ``nuisance`` (and a graded shift of the same name)."""
        if not isinstance(nuisance, Nuisance):
            raise ConfigError(f"{safe_repr(nuisance)} is not a Nuisance")
        name = nuisance.name
        _check_name(name, "nuisance name")
        if name in self.nuisances or name in self.shifts:
            raise ConfigError(f"shift name {name!r} is already registered")
        unknown = set(nuisance.needs) - set(FEATURES)
        if unknown:
            raise ConfigError(f"nuisance {name!r} needs unknown scene features "
                              f"{sorted(unknown)}; valid: {', '.join(FEATURES)}")
        for p, table in nuisance.levels.items():
            if len(table) != 5:
                raise ConfigError(f"nuisance {name!r}: level table {p!r} needs 5 magnitudes")
        d = ShiftDef(name, "nuisance", summary or nuisance.summary, "in",
                     ((name, float(DEFAULT_LEVEL)),))
        return replace(self, nuisances=MappingProxyType({**self.nuisances, name: nuisance}),
                       shifts=MappingProxyType({**self.shifts, name: d}))

    def with_shift(self, shift: ShiftDef) -> ShiftRegistry:
        """This registry plus the composition or colour shift ``shift`` (checked)."""
        self._check_def(shift)
        if shift.name in self.shifts:
            raise ConfigError(f"shift name {shift.name!r} is already registered")
        return replace(self, shifts=MappingProxyType({**self.shifts, shift.name: shift}))

    def relative_to(self, base_dir: str | os.PathLike[str] | None) -> ShiftRegistry:
        """The same registry, reading relative shift-file paths from ``base_dir``."""
        return replace(self, base_dir=None if base_dir is None else Path(base_dir))

    def _check_def(self, d: ShiftDef) -> None:
        _check_name(d.name, "shift name")
        if d.kind not in KINDS:
            raise choice_error("shift kind", d.kind, KINDS)
        if d.colours not in COLOUR_SPLITS:
            raise choice_error(f"shift {d.name!r} colours", d.colours, COLOUR_SPLITS)
        if d.kind == "colours" and d.components:
            raise ConfigError(f"colour shift {d.name!r} cannot have nuisances")
        if d.kind != "colours" and not d.components:
            raise ConfigError(f"shift {d.name!r} needs at least one nuisance")
        for n, s in d.components:
            if n not in self.nuisances:
                raise choice_error(f"shift {d.name!r} nuisance", n, tuple(self.nuisances))
            check_severity(s, f"shift {d.name!r} severity of {n}")

    # ---------------------------------------------------------------- reading
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.shifts)

    def get(self, name: str) -> ShiftDef:
        if name in self.shifts:
            return self.shifts[name]
        if name.lower().endswith(_SUFFIXES):
            return self.load_file(name)
        raise choice_error("shift", name, (*self.shifts, "FILE.toml", "FILE.json"))

    def load_file(self, path: str | os.PathLike[str]) -> ShiftDef:
        """A user shift file (module docstring), through the bounded reader."""
        from sparseshift.envs.infra.io import parse_json, parse_toml, read_capped

        p = Path(path)
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        if not p.is_file():
            raise ConfigError(f"shift file {p} not found")
        data = read_capped(p, "shift file", MAX_SHIFT_FILE_BYTES)
        parse = parse_toml if p.suffix.lower() == ".toml" else parse_json
        raw = parse(data, str(p), "shift file", max_bytes=MAX_SHIFT_FILE_BYTES)
        if not isinstance(raw, dict):
            raise ConfigError(f"shift file {p}: the top level must be a table")
        text = data.decode("utf-8")
        return self._from_raw(raw, str(p), text)

    def _from_raw(self, raw: Mapping[str, Any], where: str, source: str) -> ShiftDef:
        allowed = {"name", "summary", "colours", "nuisances"}
        extra = sorted(set(raw) - allowed)
        if extra:
            raise ConfigError(f"shift file {where}: unknown key {extra[0]!r}; valid: "
                              f"{', '.join(sorted(allowed))}")
        name = raw.get("name")
        if not isinstance(name, str):
            raise ConfigError(f"shift file {where}: 'name' (a string) is required")
        _check_name(name, f"shift file {where}: name")
        if name in self.shifts:
            raise ConfigError(f"shift file {where}: name {name!r} is already a registered "
                              "shift; choose another")
        summary = raw.get("summary", f"user shift from {Path(where).name}")
        if not isinstance(summary, str) or len(summary) > 200:
            raise ConfigError(f"shift file {where}: 'summary' must be a string of at most "
                              "200 characters")
        colours = raw.get("colours", "in")
        if colours not in COLOUR_SPLITS:
            raise choice_error(f"shift file {where}: colours", colours, COLOUR_SPLITS)
        nuis = raw.get("nuisances", {})
        if not isinstance(nuis, dict):
            raise ConfigError(f"shift file {where}: 'nuisances' must be a table of "
                              "nuisance = severity")
        comps = []
        for n, s in nuis.items():
            if n not in self.nuisances:
                raise choice_error(f"shift file {where}: nuisance", n, tuple(self.nuisances))
            comps.append((n, check_severity(s, f"shift file {where}: severity of {n}")))
        kind = "composition" if comps else "colours"
        d = ShiftDef(name, kind, summary, colours, tuple(comps), source)
        self._check_def(d)
        return d

    def resolve(self, request: ShiftRequest | str) -> ResolvedShift:
        """One request (or one token such as ``"real:3"``) -> a resolved shift."""
        if isinstance(request, str):
            reqs = parse_requests(request)
            if len(reqs) != 1:
                raise ConfigError(f"{request!r} names {len(reqs)} shifts; one expected")
            request = reqs[0]
        d = self.get(request.name)
        sev = request.severity
        if not d.graded:
            if sev is not None:
                raise ConfigError(f"shift {d.name!r} is a colour split and takes no severity "
                                  f"(got {request.label!r})")
            return ResolvedShift(d.name, d, None)
        level = float(DEFAULT_LEVEL) if sev is None else sev
        comps = tuple((self.nuisances[n], min(MAX_SEVERITY, s * level / DEFAULT_LEVEL))
                      for n, s in d.components)
        # The default severity keeps the bare name (``real`` is ``real:3``, keyed ``real``).
        label = d.name if sev is None else ShiftRequest(d.name, level).label
        return ResolvedShift(label, d, level, comps)

    def resolve_all(self, spec: str | Sequence[str] | Iterable[ShiftRequest],
                    env: SceneOffer | None = None) -> tuple[ResolvedShift, ...]:
        """A shift list -> resolved shifts; with ``env`` (an env id and its scene features:
        :func:`sparseshift.envs.registry.scene_offer`), each must be supported there (one
        :class:`ConfigError` line naming the shift, the env and the missing feature)."""
        if isinstance(spec, str) or (isinstance(spec, Sequence) and all(
                isinstance(s, str) for s in spec)):
            reqs: tuple[ShiftRequest, ...] = parse_requests(spec)
        else:
            reqs = tuple(spec)  # type: ignore[arg-type]
        out = tuple(self.resolve(r) for r in reqs)
        keys = [(r.name, r.severity) for r in out]
        for i, k in enumerate(keys):
            if k in keys[:i]:
                raise ConfigError(f"shift {out[i].label!r} listed twice (the default severity of "
                                  f"a graded shift is {DEFAULT_LEVEL})")
        if env is not None:
            for r in out:
                check_supported(r, env.features, env.env_id)
        return out

    def supported(self, env: SceneOffer) -> tuple[str, ...]:
        """The registered shift names the env supports."""
        return tuple(n for n, d in self.shifts.items()
                     if all(self.nuisances[c].needs <= env.features for c, _ in d.components))

    def defaults(self, env: SceneOffer) -> tuple[str, ...]:
        """The shifts a study, the demo, the scorecard and the proxy task use when none are
        given: every colour split, then every composition the env supports (of the shipped
        registry: ``real`` on TriFinger, nothing more on a grid)."""
        have = self.supported(env)
        return (tuple(n for n in have if self.shifts[n].kind == "colours")
                + tuple(n for n in have if self.shifts[n].kind == "composition"))


class SceneOffer(NamedTuple):
    """An env id and the scene features (:data:`~sparseshift.envs.shifts.nuisance.FEATURES`)
    its env offers to shifts; :func:`sparseshift.envs.registry.scene_offer` reads them from the
    env registry."""

    env_id: str
    features: frozenset[str]


def check_supported(shift: ResolvedShift | EnvShift, features: frozenset[str],
                    env_id: str) -> None:
    """ConfigError unless ``env_id`` (with scene ``features``) offers what ``shift`` needs."""
    missing = sorted(shift.needs - features)
    if missing:
        raise ConfigError(f"shift {shift.label!r} needs scene feature(s) {', '.join(missing)}, "
                          f"which {env_id} does not offer (it offers: "
                          f"{', '.join(sorted(features))})")


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{what} must be lower-case letters, digits, _ or - (at most 40, "
                          f"starting with a letter), got {safe_repr(name)}")


#: The sim-to-real imitation: each nuisance at its severity for ``real:3`` (docs/shifts.md).
#: Camera jitter at level 1 is the calibration uncertainty of the real cameras; distortion at 3
#: is the real lens; blur at 1 (0.3-0.6 px at 64 px) and noise at 2 keep a 64-px frame about as
#: sharp as a downsampled camera image; lighting, ambient and colour follow the magnitudes of the
#: earlier fixed mixture.
REAL: tuple[tuple[str, float], ...] = (
    ("lighting", 3.0), ("ambient", 3.0), ("camera", 1.0), ("colour", 3.0), ("blur", 1.0),
    ("noise", 2.0), ("distortion", 3.0),
)


@cache
def default_registry() -> ShiftRegistry:
    """The shipped shifts: the colour splits, every shipped nuisance and ``real``."""
    reg = ShiftRegistry(MappingProxyType({}), MappingProxyType({
        "in": ShiftDef("in", "colours", "the colours the policy trained on", "in"),
        "ood1": ShiftDef("ood1", "colours", "colours the encoder saw, the policy did not",
                         "ood1"),
        "ood2": ShiftDef("ood2", "colours", "colours neither the encoder nor the policy saw",
                         "ood2"),
    }))
    for n in NUISANCES:
        reg = reg.with_nuisance(n)
    return reg.with_shift(ShiftDef(
        "real", "composition", "sim-to-real imitation: lighting, ambient, camera calibration "
        "error, colour, blur, sensor noise and the real TriFinger lens", "in", REAL))


#: Installed entry points of this group add shifts: each value (``module:attr``) is a
#: :class:`Nuisance`, a :class:`ShiftDef`, or a sequence of them.
SHIFT_GROUP = "sparseshift.shifts"
#: A module the user allows with ``--plugin MODULE`` adds the shifts in this attribute.
PLUGIN_ATTR = "SPARSESHIFT_SHIFTS"


def registry_with(modules: Iterable[str] = (), *,
                  base: ShiftRegistry | None = None) -> ShiftRegistry:
    """``base`` (the default registry) plus the shifts of installed ``sparseshift.shifts`` entry
    points and of the user-allowed ``modules`` (their :data:`PLUGIN_ATTR`; a module without it
    adds nothing). Modules are imported only because the user named them."""
    import importlib
    from importlib import metadata

    reg = base or default_registry()
    found: list[tuple[str, object]] = []
    for ep in sorted(metadata.entry_points(group=SHIFT_GROUP), key=lambda e: e.name):
        found.append((f"entry point {ep.name!r}", ep.load()))
    for m in sorted(set(modules)):
        try:
            with cwd_on_path():
                mod = importlib.import_module(m)
        except ImportError as exc:
            raise ConfigError(f"plugin module {m!r} cannot be imported: {exc}") from None
        if hasattr(mod, PLUGIN_ATTR):
            found.append((f"{m}.{PLUGIN_ATTR}", getattr(mod, PLUGIN_ATTR)))
    for where, value in found:
        items = value if isinstance(value, list | tuple) else (value,)
        for item in items:
            if isinstance(item, Nuisance):
                if item.name not in reg.nuisances or reg.nuisances[item.name] != item:
                    reg = reg.with_nuisance(item)
            elif isinstance(item, ShiftDef):
                if reg.shifts.get(item.name) != item:
                    reg = reg.with_shift(item)
            else:
                raise ConfigError(f"{where}: {safe_repr(item)} is neither a Nuisance nor a "
                                  "ShiftDef")
    return reg


def registry_for(spec: str | Sequence[str] | None = None,
                 registry: ShiftRegistry | None = None) -> ShiftRegistry:
    """``registry`` if given; else the shipped registry, plus the installed
    ``sparseshift.shifts`` entry points when ``spec`` names a shift the shipped one lacks (so
    the common case imports nothing)."""
    if registry is not None:
        return registry
    reg = default_registry()
    if spec is None:
        return reg
    names = {r.name for r in parse_requests(spec)}
    known = set(reg.names)
    if all(n in known or n.lower().endswith((".toml", ".json")) for n in names):
        return reg
    return registry_with()
