"""Code a user allowed: the rule that files are data, never code, for learners and encoders.

A module is imported only when the user named it (``--encoder package.module:factory``,
``--learner package.module:Class``, ``--plugin MODULE``, a config they wrote: :class:`Plugins`)
or it is an installed entry point (:data:`ENCODER_GROUP`, :data:`LEARNER_GROUP`); a module that a
file names is otherwise refused in one line (:func:`refuse`). :func:`import_object` is the one
place that imports such a name. Imports nothing of ours but the infrastructure, so the learner
registry and the checkpoint readers build on it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import cwd_on_path

#: Entry-point groups through which installed packages offer encoders and learners.
ENCODER_GROUP = "sparseshift.encoders"
LEARNER_GROUP = "sparseshift.learners"

@dataclass(frozen=True)
class Plugins:
    """Modules the user allowed to be imported for them (``--plugin MODULE``, a config they
    wrote, or a module they named in ``--encoder``/``--learner``). Installed entry points of
    :data:`ENCODER_GROUP` and :data:`LEARNER_GROUP` are allowed without being listed."""

    modules: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *names: str | None) -> Plugins:
        return cls(frozenset(n for n in names if n))

    def with_spec(self, spec: str) -> Plugins:
        """These plugins plus the module of ``spec`` (``module:attr``), which the user named."""
        module = spec.partition(":")[0]
        return Plugins(self.modules | {module}) if module else self

    def allows(self, spec: str, group: str) -> bool:
        """Whether ``module:attr`` may be imported: its module (or a parent package) was allowed
        by the user, or it is the value of an installed entry point of ``group``."""
        module = spec.partition(":")[0]
        parts = module.split(".")
        if any(".".join(parts[:i]) in self.modules for i in range(1, len(parts) + 1)):
            return True
        return any(ep.value.replace(" ", "") == spec for ep in entry_points(group))


def entry_points(group: str) -> tuple[metadata.EntryPoint, ...]:
    """The installed entry points of ``group`` (name order)."""
    return tuple(sorted(metadata.entry_points(group=group), key=lambda ep: ep.name))


def entry_point_spec(name: str, group: str) -> str | None:
    """``module:attr`` of the installed entry point ``name`` in ``group`` (None if absent)."""
    for ep in entry_points(group):
        if ep.name == name:
            return ep.value.replace(" ", "")
    return None


def is_code_spec(text: str) -> bool:
    """True for ``package.module:attr`` (and not an existing path, e.g. ``C:\\x``)."""
    module, sep, attr = text.partition(":")
    return bool(sep and module and attr) and all(p.isidentifier() for p in module.split(".")) \
        and all(p.isidentifier() for p in attr.split("."))


def refuse(spec: str, what: str, where: str) -> ConfigError:
    """The one-line refusal of a file-named module."""
    module = spec.partition(":")[0]
    return ConfigError(
        f"{where} names {what} {spec!r}, code from module {module!r} that you did not name: "
        f"sparseshift never imports a module because a file names it; if you trust it, pass "
        f"--plugin {module} (Python: sparseshift.representations.plugins.Plugins.of("
        f"{module!r})) or install it as an entry "
        f"point in group {ENCODER_GROUP if what == 'encoder factory' else LEARNER_GROUP}")


def import_object(spec: str, what: str) -> Any:
    """The object ``module:Qual.Name`` names (the caller has checked that it is allowed)."""
    if not is_code_spec(spec):
        raise ConfigError(f"{what} {spec!r} is not of the form package.module:name")
    module_name, _, qualname = spec.partition(":")
    try:
        with cwd_on_path():
            obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {spec!r}: cannot import module {module_name!r} "
                          f"({type(exc).__name__}: {exc})") from None
    for i, part in enumerate(qualname.split(".")):
        if not hasattr(obj, part):
            where = ".".join([module_name, *qualname.split(".")[:i]])
            raise ConfigError(f"{what} {spec!r}: {where!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj
