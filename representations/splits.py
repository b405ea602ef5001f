"""The proxy task's shift list (:mod:`sparseshift.representations.proxy`), checked without
rendering anything: what :class:`~sparseshift.representations.config.EvalConfig` and
:class:`~sparseshift.representations.config.ProxyConfig` validate their ``splits`` with
(Träuble et al. 2022's OOD proxy: probes trained on IN frames, scored under each shift)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.shifts.registry import registry_for

if TYPE_CHECKING:
    from sparseshift.envs.shifts.registry import ResolvedShift, ShiftRegistry

#: The key of the probes' training frames (IN colours, no shift); no shift may take this label.
TRAIN = "train"


def check_splits(splits: Sequence[str], registry: ShiftRegistry | None = None
                 ) -> tuple[str, ...]:
    """The labels of the proxy shifts ``splits`` (the list syntax; names, severities and files
    checked, no env yet), one :class:`ConfigError` line naming the proxy otherwise."""
    out = resolve_splits(splits, registry)
    return tuple(r.label for r in out)


def resolve_splits(splits: Sequence[str], registry: ShiftRegistry | None = None
                   ) -> tuple[ResolvedShift, ...]:
    """``splits`` resolved (:func:`~sparseshift.envs.shifts.registry.registry_for`: the shipped
    registry, or the user's when a name is not in it); none may take the label :data:`TRAIN`."""
    try:
        out = registry_for(splits, registry).resolve_all(splits)
    except ConfigError as exc:
        raise ConfigError(f"proxy splits: {exc}") from None
    if any(r.label == TRAIN for r in out):
        raise ConfigError(f"proxy splits: {TRAIN!r} names the probes' training frames; rename "
                          "that shift")
    return out
