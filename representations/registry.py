"""The learner registry: a static table of the built-in learners, resolved lazily.

:data:`BUILTIN_LEARNERS` maps each built-in name to a small loader function that imports the
learner's module plainly, inside the function, and returns its class. So importing this module
imports no learner (and no torch), a learner's module is imported only when the learner is asked
for, and the learner modules never import this one back (no import cycle). The table is immutable
and the module holds no other state.

Extension points, without global state: a learner name of the form ``"package.module:ClassName"``
(for example ``"my_project.learners:MyVAE"``) resolves to that :class:`Learner` subclass when the
user names it (``TrainConfig.learner``, ``train-rep --learner``, a study config they wrote), and
an installed package can offer learners as entry points of the group ``sparseshift.learners``
(their names then work like built-in ones). Both are the user's code, imported by name
(:mod:`sparseshift.representations.external`). A *file* never chooses code: when a ``run.json``
names ``module:Class``, :func:`learner_class` imports it only if the user allowed that module
(``--plugin MODULE``, :class:`~sparseshift.representations.external.Plugins`) or it is an
installed entry point; otherwise it is a one-line :class:`ConfigError` saying how to allow it.

Importing this module imports no torch (the command line lists the learners from it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sparseshift.envs.infra.errors import ConfigError, choice_error
from sparseshift.representations.model_config import LearnerConfig

if TYPE_CHECKING:
    from sparseshift.representations.base import Learner
    from sparseshift.representations.plugins import Plugins


def _ada_gvae() -> type[Learner]:
    from sparseshift.representations.weak import AdaGVAE

    return AdaGVAE


def _ada_mlvae() -> type[Learner]:
    from sparseshift.representations.weak import AdaMLVAE

    return AdaMLVAE


def _beta_vae() -> type[Learner]:
    from sparseshift.representations.vae import BetaVAE

    return BetaVAE


def _nwm() -> type[Learner]:
    from sparseshift.representations.nwm import NWM

    return NWM


def _slot_attention() -> type[Learner]:
    from sparseshift.representations.slots import SlotAttention

    return SlotAttention


#: Built-in learners: registry name -> a loader that imports the learner's module and returns its
#: class. Each class declares the same ``name``.
BUILTIN_LEARNERS: Mapping[str, Callable[[], type[Learner]]] = MappingProxyType({
    "ada_gvae": _ada_gvae,
    "ada_mlvae": _ada_mlvae,
    "beta_vae": _beta_vae,
    "nwm": _nwm,
    "slot_attention": _slot_attention,
})


def is_class_spec(name: str) -> bool:
    """True for names of the form ``"package.module:ClassName"`` (an external learner)."""
    return ":" in name


def _import_class(spec: str) -> Any:
    """The object ``"module:Qual.Name"`` names; a one-line :class:`ConfigError` if it is absent."""
    from sparseshift.representations.plugins import import_object, is_code_spec

    if not is_code_spec(spec):
        raise ConfigError(f"learner {spec!r} is neither a built-in learner ("
                          f"{', '.join(BUILTIN_LEARNERS)}) nor 'package.module:ClassName'")
    return import_object(spec, "learner")


def _check_learner_class(spec: str, obj: Any) -> type[Learner]:
    from sparseshift.representations.base import Learner

    if not (isinstance(obj, type) and issubclass(obj, Learner)):
        what = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        raise ConfigError(f"learner {spec!r} is not a subclass of "
                          f"sparseshift.representations.base.Learner (got {what})")
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise ConfigError(f"learner {spec!r} is abstract (does not implement {missing})")
    return obj


def learner_class(name: str, plugins: Plugins | None = None, where: str = "") -> type[Learner]:
    """The learner class called ``name``: a built-in name, an installed ``sparseshift.learners``
    entry point or ``"package.module:ClassName"``.

    ``where`` names the file that named the learner ("" when the user named it): a
    ``module:Class`` named by a file is imported only when ``plugins`` allows its module or it is
    an installed entry point. Unknown built-in names list the valid ones; a ``module:Class`` name
    that cannot be imported, does not exist or is not a concrete :class:`Learner` subclass is a
    one-line :class:`ConfigError`.
    """
    from sparseshift.representations.plugins import LEARNER_GROUP, Plugins, entry_point_spec, refuse

    if is_class_spec(name):
        if where and not (plugins or Plugins()).allows(name, LEARNER_GROUP):
            raise refuse(name, "learner", where)
        return _check_learner_class(name, _import_class(name))
    try:
        load = BUILTIN_LEARNERS[name]
    except KeyError:
        installed = entry_point_spec(name, LEARNER_GROUP)
        if installed is not None:
            return _check_learner_class(name, _import_class(installed))
        raise choice_error("learner", name, sorted(BUILTIN_LEARNERS)) from None
    cls = _check_learner_class(name, load())
    if cls.name != name:  # the table and the class must agree (checked by the tests too)
        raise RuntimeError(f"{cls.__module__}:{cls.__qualname__} declares name {cls.name!r}, "
                           f"registered as {name!r}")
    return cls


def learner_names() -> tuple[str, ...]:
    """The built-in learner names, sorted (external ``module:Class`` learners are not listed)."""
    return tuple(sorted(BUILTIN_LEARNERS))


def make_learner(name: str, config: LearnerConfig | Mapping[str, Any] | None = None,
                 plugins: Plugins | None = None, where: str = "") -> Learner:
    """Instantiate learner ``name`` from its config (or a dict of options, or the defaults);
    ``plugins`` and ``where`` as in :func:`learner_class`. Every learner is built here: its
    config's parameter estimate is checked against
    :data:`~sparseshift.representations.model_config.MAX_PARAMS` first (a one-line
    :class:`ConfigError` naming the fields that size it; learners whose config gives no
    estimate are built as they are)."""
    cls = learner_class(name, plugins, where)
    if config is None:
        config = cls.config_cls()
    elif not isinstance(config, LearnerConfig):
        config = cls.config_cls.from_json(config)
    config.check_params()
    return cls(config)
