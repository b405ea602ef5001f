"""The interface every sparseshift env implements on top of ``gymnasium.Env``.

A :class:`FactorEnv` knows its ground truth: a declared
:class:`~sparseshift.envs.core.factors.FactorSpec`, the
current factor vector, how to sample factors from its own distribution (restricted to its colour
splits), how to set any subset of factors exactly, and per-object segmentation masks. Dataset
collection (intervention pairs, Locatello et al. 2020) and evaluation (FG-ARI for Slot Attention)
use only this interface, so they work for every env.

Contract, shared by all envs:

* Constructor kwargs are validated before anything is built (:func:`checked_init`): a bad value,
  an unknown kwarg or a bad ``gymnasium.make(id, max_episode_steps=...)`` is one
  :class:`~sparseshift.envs.infra.errors.ConfigError` line naming the kwarg, whether the env is made
  by ``gymnasium.make``, :func:`sparseshift.envs.registry.make` or its class.
* ``reset(options={"factors": {...}})`` sets the given factors exactly (by factor or group
  name, or a full vector); the others are sampled as usual. Values are validated
  (:class:`ConfigError` naming the factor: numbers only, finite, within the factor's range).
* ``info["factors"]`` is the float32 factor vector at reset and after every step.
* ``render_frame()`` returns the observation camera's uint8 HxWx3 frame of the current state (with
  the env's shift applied), ``segmentation()`` an int32 HxW map whose values index
  ``object_names``.
* Shifts (:mod:`sparseshift.envs.shifts`): every env takes the kwarg ``shift`` (None, ``"none"``,
  a token such as ``"real:4"`` or ``"noise@2.5"``, an
  :class:`~sparseshift.envs.shifts.registry.EnvShift` or a
  :class:`~sparseshift.envs.shifts.registry.ResolvedShift`) and declares the scene features it
  offers in :attr:`FactorEnv.SHIFT_FEATURES`; a shift that needs another feature is one
  :class:`ConfigError` line naming it. An env validates the kwarg with
  :meth:`FactorEnv.configure_shift` before it builds anything, hands its scene to
  :meth:`FactorEnv.attach_scene`, draws each episode's shift with
  :meth:`FactorEnv.new_shift_episode` after it has drawn the reset state (so an un-shifted env's
  random stream is unchanged) and passes its frames through :meth:`FactorEnv.apply_shift`.
* ``annotated_frame()`` returns what videos and figures draw: the frame with the task's goal or
  target visible, boxes to outline, and the shift's label and severity; it consumes no randomness.
"""

from __future__ import annotations

import abc
import functools
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import FrameType
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

import gymnasium as gym
import numpy as np

from sparseshift.envs.core.factors import FactorSpec
from sparseshift.envs.infra.config import SEED_MAX
from sparseshift.envs.infra.errors import (
    ConfigError,
    check_choice_arg,
    check_episode_steps,
    check_int_arg,
    choice_error,
    naming,
    safe_repr,
)
from sparseshift.envs.shifts.colours import ColourScheme, load_scheme, parse_splits
from sparseshift.envs.shifts.nuisance import Scene
from sparseshift.envs.shifts.registry import EnvShift
from sparseshift.envs.shifts.runtime import ShiftRuntime, env_shift_arg
from sparseshift.envs.shifts.severity import DEFAULT_LEVEL, parse_requests

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

@dataclass(frozen=True)
class LabelledBox:
    """A box to outline on a frame: pixel columns ``x0 <= x < x1`` and rows ``y0 <= y < y1``
    (end exclusive, frame pixels), and what it marks (``"target"``, ``"goal"``)."""

    x0: int
    y0: int
    x1: int
    y1: int
    label: str


@dataclass(frozen=True, eq=False)
class AnnotatedFrame:
    """What :meth:`FactorEnv.annotated_frame` returns: the uint8 HxWx3 ``image`` (the env's
    shift applied, the task's goal markers drawn where the env has them), ``boxes`` to outline
    (grid targets), and the ``shift`` label (None: un-shifted) with its ``severity`` (None:
    un-shifted or not graded)."""

    image: np.ndarray
    boxes: tuple[LabelledBox, ...] = ()
    shift: str | None = None
    severity: float | None = None


def severity_of(label: str) -> float | None:
    """The severity a shift label says: ``"lighting:4"`` is 4, ``"noise@2.5"`` 2.5, a bare graded
    name the default level 3; None for a label that is not a shift token."""
    try:
        (req,) = parse_requests(label)
    except (ConfigError, ValueError):
        return None
    return float(DEFAULT_LEVEL) if req.severity is None else float(req.severity)


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

    #: The scene features (:data:`sparseshift.envs.shifts.nuisance.FEATURES`) the env offers its
    #: ``shift``: ``frame`` (every env), ``lights``, ``camera``, ``surfaces``. The shift registry
    #: reads this to say which shifts an env supports.
    SHIFT_FEATURES: ClassVar[frozenset[str]] = frozenset({"frame"})
    #: The shift being applied (None: none); built by :meth:`attach_scene`.
    shift_runtime: ShiftRuntime | None = None
    _env_shift: EnvShift | None = None

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

    # ------------------------------------------------------------------ shifts
    def configure_shift(self, shift: object) -> EnvShift | None:
        """Validate the ``shift`` kwarg against :attr:`SHIFT_FEATURES` (one :class:`ConfigError`
        line naming ``shift``: a bad token, a colour split other than ``in``, a missing scene
        feature) and remember it; call before anything is built. Returns the nuisances to apply
        (None: none)."""
        with naming("shift"):
            env_shift = env_shift_arg(shift, frozenset(self.SHIFT_FEATURES), type(self).__name__)
        self._env_shift = env_shift
        self.shift_runtime = None
        return env_shift

    def attach_scene(self, scene: Callable[[], Scene] | None = None) -> None:
        """Build :attr:`shift_runtime` for the configured shift on the scene ``scene()`` returns
        (called only when a shift is set, so un-shifted envs build nothing). Without ``scene``:
        an image-only :class:`~sparseshift.envs.shifts.frame_scene.FrameScene` of
        ``image_size`` whose surfaces (if :attr:`SHIFT_FEATURES` has ``surfaces``) are the
        pixels ``segmentation()`` labels ``"background"``."""
        env_shift = self._env_shift
        if env_shift is None:
            self.shift_runtime = None
            return
        self.shift_runtime = ShiftRuntime(
            env_shift, scene() if scene is not None else self._frame_scene())

    def _frame_scene(self) -> Scene:
        from sparseshift.envs.shifts.frame_scene import FrameScene

        mask: Callable[[], np.ndarray] | None = None
        if "surfaces" in self.SHIFT_FEATURES:
            background = self.object_names.index("background")

            def mask() -> np.ndarray:
                return np.asarray(self.segmentation() == background)

        return FrameScene(self.image_size, mask)

    def new_shift_episode(self, rng: np.random.Generator) -> None:
        """Draw this episode's shift parameters from ``rng`` (nothing, and no draw, without a
        shift); call in ``reset`` after the reset state is drawn and before it is rendered."""
        if self.shift_runtime is not None:
            self.shift_runtime.new_episode(rng)

    def apply_shift(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` with the shift's frame nuisances applied (a new array), or ``frame`` itself
        without a shift."""
        rt = self.shift_runtime
        return frame if rt is None else rt.apply(frame)

    @property
    def shift_label(self) -> str | None:
        """The applied shift's label (``"real"``, ``"lighting:4"``, ``"noise@2.5"``) or None."""
        return None if self._env_shift is None else self._env_shift.label

    @property
    def shift_severity(self) -> float | None:
        """The applied shift's severity in [0, 5] (a bare graded name: 3), or None."""
        return None if self._env_shift is None else severity_of(self._env_shift.label)

    # ------------------------------------------------------------------ annotated frames
    def annotation_image(self) -> np.ndarray:
        """The image of :meth:`annotated_frame` (hook): the observation frame by default; envs
        with goal markers draw them. May consume the shift's frame randomness (it is restored)."""
        return self.render_frame()

    def target_boxes(self) -> tuple[LabelledBox, ...]:
        """Boxes of what the agent must reach, to outline on frames (hook; none by default)."""
        return ()

    def annotated_frame(self) -> AnnotatedFrame:
        """The current frame for videos and figures: :meth:`annotation_image` (shift applied),
        :meth:`target_boxes`, the shift label and severity. It consumes no randomness: the
        observations that follow are the ones the env would give without this call."""
        rt = self.shift_runtime
        saved = None if rt is None else rt.rng_states()
        try:
            image = np.asarray(self.annotation_image(), dtype=np.uint8)
        finally:
            if rt is not None and saved is not None:
                rt.set_rng_states(saved)
        return AnnotatedFrame(image, tuple(self.target_boxes()), self.shift_label,
                              self.shift_severity)

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
