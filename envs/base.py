"""The interface every sparseshift env implements on top of ``gymnasium.Env``.

A :class:`FactorEnv` knows its ground truth: a declared
:class:`~sparseshift.envs.factors.FactorSpec`, the
current factor vector, how to sample factors from its own distribution (restricted to its colour
splits), how to set any subset of factors exactly, and per-object segmentation masks. Dataset
collection (intervention pairs, Locatello et al. 2020) and evaluation (FG-ARI for Slot Attention)
use only this interface, so they work for every env.

Contract, shared by all envs:

* Constructor kwargs are validated before anything is built (:func:`checked_init`): a bad value,
  an unknown kwarg or a bad ``gymnasium.make(id, max_episode_steps=...)`` is one
  :class:`~sparseshift.envs.errors.ConfigError` line naming the kwarg, whether the env is made
  by ``gymnasium.make``, :func:`sparseshift.envs.registry.make` or its class.
* ``reset(options={"factors": {...}})`` sets the given factors exactly (by factor or group
  name, or a full vector); the others are sampled as usual. Values are validated
  (:class:`ConfigError` naming the factor: numbers only, finite, within the factor's range).
* ``info["factors"]`` is the float32 factor vector at reset and after every step.
* ``render_frame()`` returns the observation camera's uint8 HxWx3 frame of the current state (with
  the env's shift applied), ``segmentation()`` an int32 HxW map whose values index
  ``object_names``.
"""

from __future__ import annotations

import abc
import functools
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from types import FrameType
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

import gymnasium as gym
import numpy as np

from sparseshift.envs.colours import ColourScheme, load_scheme, parse_splits
from sparseshift.envs.config import SEED_MAX
from sparseshift.envs.errors import (
    ConfigError,
    check_choice_arg,
    check_episode_steps,
    check_int_arg,
    choice_error,
    naming,
    safe_repr,
)
from sparseshift.envs.factors import FactorSpec

ObsT = TypeVar("ObsT")
ActT = TypeVar("ActT")
P = ParamSpec("P")
SelfT = TypeVar("SelfT")

#: The code of ``gymnasium.make``: an env constructed from that frame also checks the
#: ``max_episode_steps`` gymnasium took for its TimeLimit (see :func:`checked_init`).
_GYM_MAKE_CODE = getattr(getattr(gym.envs.registration, "make", None), "__code__", None)


def _check_gym_make_steps(frame: FrameType | None) -> None:
    """If ``frame`` is ``gymnasium.make``'s, check the ``max_episode_steps`` it was given.

    gymnasium consumes that argument itself (it never reaches the env) and wraps the env in a
    TimeLimit *after* building it; ``-1`` even means "no limit". Reading it here makes
    ``gymnasium.make(id, max_episode_steps=n)`` refuse exactly what the env's own
    ``max_episode_steps`` kwarg and :func:`sparseshift.envs.registry.make` refuse, before
    anything is built.
    """
    if frame is None or _GYM_MAKE_CODE is None or frame.f_code is not _GYM_MAKE_CODE:
        return
    steps = frame.f_locals.get("max_episode_steps")
    if steps is not None:
        check_episode_steps(steps)


def checked_init(
    init: Callable[Concatenate[SelfT, P], None],
) -> Callable[Concatenate[SelfT, P], None]:
    """Decorate an env's ``__init__``: unknown kwargs (and too many positional arguments) are a
    :class:`ConfigError` listing the valid kwargs instead of a TypeError, and an env made by
    ``gymnasium.make`` also checks gymnasium's ``max_episode_steps`` -- all before ``__init__``
    runs. ``__init__`` itself checks every value before it builds anything. The signature is
    kept (``inspect.signature`` of the class still lists the kwargs)."""
    sig = inspect.signature(init)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = frozenset(p.name for p in list(sig.parameters.values())[1:] if p.kind in kinds)
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())

    @functools.wraps(init)
    def wrapper(self: SelfT, /, *args: P.args, **kwargs: P.kwargs) -> None:
        cls = type(self).__name__
        unknown = sorted(set(kwargs) - names)
        if unknown and not open_kwargs:
            raise ConfigError(f"unknown {cls} argument(s) "
                              f"{', '.join(safe_repr(k) for k in unknown)}; valid: "
                              f"{', '.join(sorted(names))}")
        try:
            sig.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"{cls}: {exc}") from None
        frame = sys._getframe(1)
        try:
            _check_gym_make_steps(frame)
        finally:
            del frame
        init(self, *args, **kwargs)

    return wrapper

#: ``proprio``: the proprioceptive vector of ``pixels_proprio`` alone, nothing rendered (the
#: ``sensors`` baseline of the agents: what a policy knows without any image).
OBS_MODES: tuple[str, ...] = ("pixels", "state", "pixels_proprio", "proprio")


class FactorEnv(gym.Env[ObsT, ActT], abc.ABC, Generic[ObsT, ActT]):
    """Gymnasium env with declared ground-truth factors, colour splits and segmentation."""

    factor_spec: FactorSpec
    colour_scheme: ColourScheme
    colours: tuple[str, ...]
    obs_mode: str
    image_size: int
    object_names: tuple[str, ...]

    #: The factors the task's reward depends on that the policy must read from the image: with
    #: the ``pixels_proprio`` observations agents on frozen encoders get, what proprioception does
    #: not carry (ObjectReach: the cube's x and y; the finger joints are proprioception). Names,
    #: or ``fnmatch`` patterns (``object*.x``) for envs whose factors depend on their kwargs;
    #: resolved against a factor spec by :meth:`resolve_task_factors`. Empty: no task, or none
    #: declared (the OOD proxy task then reports no task score). See :func:`task_factors`.
    task_factors: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def resolve_task_factors(cls, spec: FactorSpec) -> tuple[str, ...]:
        """The factors of ``spec`` (a factor spec of this env) that :attr:`task_factors` names,
        in spec order. Envs whose task depends on their kwargs override this."""
        return tuple(n for n in spec.names if any(fnmatchcase(n, p) for p in cls.task_factors))

    @property
    def factor_names(self) -> tuple[str, ...]:
        return self.factor_spec.names

    @property
    def settable_groups(self) -> tuple[str, ...]:
        """Factor groups that ``set_factors`` and ``sample_factors(groups=...)`` accept.

        All groups by default; an env whose layout comes from elsewhere (MiniGrid) narrows it.
        """
        return self.factor_spec.groups

    def configure(
        self,
        obs_mode: str,
        render_mode: str | None,
        colours: str | Sequence[str],
        colour_scheme: str,
        colour_seed: int,
        scheme_objects: Sequence[str],
    ) -> None:
        """Validate and set what every env takes alike: observation and render modes, colour
        splits and the seeded colour scheme (which must colour ``scheme_objects``). Errors are
        one :class:`ConfigError` line naming the kwarg."""
        self.obs_mode = check_choice_arg("obs_mode", obs_mode, OBS_MODES)
        self.render_mode = check_choice_arg("render_mode", render_mode, (None, "rgb_array"))
        with naming("colours"):
            self.colours = parse_splits(colours)
        with naming("colour_seed"):
            seed = check_int_arg("colour seed", colour_seed, 0, SEED_MAX)
        with naming("colour_scheme"):
            self.colour_scheme = load_scheme(colour_scheme, seed)
            self.colour_scheme.require(scheme_objects)

    @staticmethod
    def reset_factors(options: Mapping[str, Any] | None) -> Any:
        """The ``"factors"`` entry of ``reset`` options (None if absent): a mapping of factor or
        group names to values, or a full factor vector (list, tuple or array; its values are
        checked by the factor spec). Other keys and other types are a :class:`ConfigError`."""
        if options is None:
            return None
        if not isinstance(options, Mapping):
            raise ConfigError("reset options must be a dict such as {'factors': {...}}, got "
                              f"{safe_repr(options)}")
        unknown = sorted((k for k in options if k != "factors"), key=safe_repr)
        if unknown:
            raise choice_error("reset option", unknown[0], ("factors",))
        factors = options.get("factors")
        if factors is None or isinstance(factors, Mapping | list | tuple | np.ndarray):
            return factors
        raise ConfigError("reset factors must be a dict of factor or group names to values, or "
                          f"a full factor vector, got {safe_repr(factors)}")

    @property
    def colour_objects(self) -> dict[str, str]:
        """Colour group -> object of the colour scheme it draws from.

        Default rule: ``<name><digits>_colour`` draws from scheme object ``<name>`` (so
        ``object2_colour`` uses the ``object`` palette); envs with other names override this.
        """
        out = {}
        for g in self.factor_spec.groups:
            first = self.factor_spec.factors[self.factor_spec.group_indices(g)[0]]
            if first.kind == "colour":
                out[g] = g.removesuffix("_colour").rstrip("0123456789")
        return out

    @abc.abstractmethod
    def get_factors(self) -> np.ndarray:
        """The current factor vector (float32, spec order)."""

    @abc.abstractmethod
    def set_factors(self, values: Mapping[str, Any] | np.ndarray) -> None:
        """Set factors exactly (validated); unspecified ones keep their values; velocities zero."""

    @abc.abstractmethod
    def sample_factors(
        self,
        rng: np.random.Generator,
        base: np.ndarray | None = None,
        groups: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Sample a valid factor vector from the env's distribution and colour splits.

        With ``base`` and ``groups``, only the factors of those groups are resampled and the rest
        are copied from ``base``; the result must still be a valid state (e.g. no two grid objects
        on one cell). Resampled values may coincide with the old ones; callers that need a real
        change resample again.
        """

    @abc.abstractmethod
    def render_frame(self) -> np.ndarray:
        """uint8 HxWx3 frame of the current state from the observation camera."""

    @abc.abstractmethod
    def segmentation(self) -> np.ndarray:
        """int32 HxW map of the current state; values index ``object_names``."""


def env_class(env_id: str) -> type[FactorEnv[Any, Any]]:
    """The env class of a registered sparseshift id (imports its module, makes no env)."""
    import importlib

    from sparseshift.envs.registry import entry

    module, _, name = entry(env_id).entry_point.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, FactorEnv)):
        raise TypeError(f"{env_id}: {cls!r} is not a FactorEnv")
    return cls


def task_factors(env_id: str, spec: FactorSpec | None = None) -> tuple[str, ...]:
    """The task factors (:attr:`FactorEnv.task_factors`) of ``env_id``, resolved against
    ``spec`` (e.g. the factor spec a dataset or proxy frame set recorded). Without ``spec``: the
    class's ``FACTOR_SPEC`` if it has one (TriFinger), else the spec of the env made with its
    registry defaults. Empty when the env declares none."""
    cls = env_class(env_id)
    if not cls.task_factors:
        return ()
    if spec is None:
        spec = getattr(cls, "FACTOR_SPEC", None)
    if spec is None:
        from sparseshift.envs.registry import make

        env = make(env_id)
        try:
            spec = env.unwrapped.factor_spec  # type: ignore[attr-defined]
        finally:
            env.close()
    assert spec is not None
    return cls.resolve_task_factors(spec)
