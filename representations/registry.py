"""The learner registry: learners by name, filled by the :func:`register_learner` decorator.

This dict is the only module-level mutable state of :mod:`representations`. Importing
:mod:`sparseshift.representations.registry` imports the built-in learners so the registry is
complete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sparseshift.envs.errors import choice_error
from sparseshift.representations.base import Learner, LearnerConfig

LEARNERS: dict[str, type[Learner]] = {}

L = TypeVar("L", bound=type[Learner])


def register_learner(name: str) -> Callable[[L], L]:
    """Class decorator: register a :class:`Learner` subclass under ``name``."""

    def deco(cls: L) -> L:
        if name in LEARNERS and LEARNERS[name] is not cls:
            raise ValueError(f"learner name {name!r} is already registered")
        cls.name = name
        LEARNERS[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    # Imported for their @register_learner side effect.
    from sparseshift.representations import nwm, slots, vae, weak  # noqa: F401


def learner_class(name: str) -> type[Learner]:
    """The learner class registered as ``name``; unknown names list the valid ones."""
    _load_builtins()
    try:
        return LEARNERS[name]
    except KeyError:
        raise choice_error("learner", name, sorted(LEARNERS)) from None


def learner_names() -> tuple[str, ...]:
    _load_builtins()
    return tuple(sorted(LEARNERS))


def make_learner(name: str, config: LearnerConfig | Mapping[str, Any] | None = None) -> Learner:
    """Instantiate learner ``name`` from its config (or a dict of options, or the defaults)."""
    cls = learner_class(name)
    if config is None:
        config = cls.config_cls()
    elif not isinstance(config, LearnerConfig):
        config = cls.config_cls.from_json(config)
    return cls(config)
