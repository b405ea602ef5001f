"""The nuisance contract: what a graded rendering shift is and what it may touch in an env.

A :class:`Nuisance` is a stateless, frozen description (so it pickles into worker processes). For
each episode it draws its parameters from a seeded generator and may change the env's *scene*
(lights, camera) through the :class:`Scene` the env offers; for each frame it may transform the
image. Magnitudes come from a table of five levels per parameter (ImageNet-C's grading, Hendrycks &
Dietterich, ICLR 2019) and are interpolated linearly for continuous strengths (0 is no change).
Per-episode draws take a magnitude uniformly in [m/2, m] with a random sign or direction, so a
higher level is always a stronger episode (a domain-randomisation draw, Tobin et al. 2017, graded).

Scene features an env can offer (:attr:`Scene.features`):

* ``frame``: the rendered uint8 HxWx3 image (every env);
* ``lights``: directional lights and an ambient level (:class:`LightRig`);
* ``camera``: the observation camera's pose and focal length (:class:`CameraRig`);
* ``surfaces``: a mask of the background surfaces (arena, table, grid floor) of the current frame.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from sparseshift.envs.shifts.severity import LEVELS

FEATURES: tuple[str, ...] = ("frame", "lights", "camera", "surfaces")

#: Frame stages, applied in this order within a frame: surfaces, optics, sensor, codec.
SURFACE, OPTICS, SENSOR, CODEC = 0, 1, 2, 3


@runtime_checkable
class LightRig(Protocol):
    """The scene's lights, relative to their nominal state (restored at every episode)."""

    def rotate_lights(self, rotation: np.ndarray) -> None:
        """Rotate every directional light's direction by the 3x3 ``rotation``."""

    def scale_lights(self, factor: float) -> None:
        """Scale the diffuse intensity of every light (clipped to [0, 1])."""

    def shift_ambient(self, offset: float) -> None:
        """Add ``offset`` to the ambient level of every light (clipped to [0, 1])."""


@runtime_checkable
class CameraRig(Protocol):
    """The observation camera, relative to its nominal pose (restored at every episode)."""

    def move_camera(self, offset: np.ndarray, rotation: np.ndarray) -> None:
        """Translate the camera by ``offset`` (metres, world frame) and rotate it by the 3x3
        ``rotation`` (applied in the camera frame)."""


class Scene(Protocol):
    """What an env offers its shift: features, the nominal-state restore, rigs and masks."""

    @property
    def features(self) -> frozenset[str]: ...

    @property
    def focal_px(self) -> float:
        """The observation camera's focal length in pixels (for lens distortion)."""

    def restore(self) -> None:
        """Put lights and camera back to their nominal state."""

    def lights(self) -> LightRig: ...

    def camera(self) -> CameraRig: ...

    def surface_mask(self) -> np.ndarray:
        """bool HxW: the background surfaces of the frame being rendered."""

    def lens(self) -> tuple[float, float, float, float, float]:
        """The distortion coefficients (k1, k2, p1, p2, k3) the real camera has at level 3."""


@dataclass(frozen=True)
class Nuisance(abc.ABC):
    """One graded nuisance. Subclasses set the class variables and implement :meth:`episode`
    (and :meth:`frame` if they change images); instances must stay frozen and picklable."""

    #: Registry name (lower case, digits and ``_``).
    name: ClassVar[str]
    summary: ClassVar[str]
    #: Scene features it needs (an env without one of them does not support it).
    needs: ClassVar[frozenset[str]]
    #: Parameter -> magnitude at levels 1..5 (units in the class docstring).
    levels: ClassVar[Mapping[str, tuple[float, ...]]]
    #: Frame stage (:data:`SURFACE`, :data:`OPTICS`, :data:`SENSOR`, :data:`CODEC`); None: no
    #: frame transform.
    stage: ClassVar[int | None] = None

    def magnitude(self, param: str, severity: float) -> float:
        """``param``'s magnitude at ``severity``: the level table, linear in between, 0 at 0."""
        table = self.levels[param]
        return float(np.interp(severity, (0.0, *map(float, LEVELS)), (0.0, *table)))

    @abc.abstractmethod
    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        """Draw this episode's parameters (and change the scene); returns the frame state."""

    def frame(self, image: np.ndarray, state: Any, rng: np.random.Generator,
              scene: Scene) -> np.ndarray:
        """Transform one float32 HxWx3 image in 0..255 (may work in place); the default keeps
        it."""
        return image


def signed(rng: np.random.Generator, magnitude: float) -> float:
    """A draw of size in [m/2, m] with a random sign (0 when ``magnitude`` is 0)."""
    return float(rng.choice((-1.0, 1.0)) * rng.uniform(0.5 * magnitude, magnitude))


def rotation_matrix(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues: the 3x3 rotation by ``angle_rad`` about ``axis``."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / max(float(np.linalg.norm(a)), 1e-12)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)


def random_rotation(rng: np.random.Generator, magnitude_deg: float) -> np.ndarray:
    """A rotation about a random axis by an angle of size in [m/2, m] degrees."""
    return rotation_matrix(rng.normal(size=3), np.deg2rad(signed(rng, magnitude_deg)))
