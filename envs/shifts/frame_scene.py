"""The scene of an env that only has images (grid worlds): frames and background surfaces.

Such an env offers the ``frame`` feature and, when it knows which pixels are background, the
``surfaces`` feature; it has no lights or camera to move. Lens distortion needs a focal length: an
image-only scene is taken as seen through a lens of the TriFinger cameras' field of view (52
degrees vertical) and, by default, the calibrated lens of the real camera60
(:data:`~sparseshift.envs.shifts.lenses.DEFAULT_LENS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.shifts.lenses import DEFAULT_LENS, Lens
from sparseshift.envs.shifts.nuisance import CameraRig, LightRig

#: Vertical field of view (degrees) an image-only scene is taken to be seen with (TriFinger's).
FIELD_OF_VIEW_DEG = 52.0


class FrameScene:
    """A :class:`~sparseshift.envs.shifts.nuisance.Scene` with frames (and surfaces) only.

    ``width``: the image width in pixels; ``surface_mask``: returns the bool HxW background mask
    of the frame being rendered (None: the scene offers no ``surfaces``); ``lens``: the
    distortion coefficients the ``distortion`` nuisance uses at level 3.
    """

    def __init__(self, width: int, surface_mask: Callable[[], np.ndarray] | None = None,
                 lens: Lens = DEFAULT_LENS) -> None:
        self._width = int(width)
        self._mask = surface_mask
        self._lens = lens
        self._features = frozenset({"frame"} | ({"surfaces"} if surface_mask else set()))

    @property
    def features(self) -> frozenset[str]:
        return self._features

    @property
    def focal_px(self) -> float:
        """``width / (2 tan(fov / 2))`` with the TriFinger cameras' 52-degree field of view."""
        return self._width / (2.0 * math.tan(math.radians(FIELD_OF_VIEW_DEG / 2.0)))

    def restore(self) -> None:
        """Nothing to restore: frame nuisances keep no scene state."""

    def lights(self) -> LightRig:
        raise ConfigError("this env has no lights to change (scene features: "
                          f"{', '.join(sorted(self._features))})")

    def camera(self) -> CameraRig:
        raise ConfigError("this env has no camera to move (scene features: "
                          f"{', '.join(sorted(self._features))})")

    def surface_mask(self) -> np.ndarray:
        if self._mask is None:
            raise ConfigError("this env does not offer background surfaces")
        return np.asarray(self._mask(), dtype=bool)

    def lens(self) -> Lens:
        return self._lens
