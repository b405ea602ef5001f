"""Lens distortion coefficients of real cameras, for the ``distortion`` nuisance.

Coefficients are OpenCV's Brown-Conrady ``(k1, k2, p1, p2, k3)`` in normalised image coordinates,
so they apply at any image size once the focal length in pixels is known. The TriFinger values are
the platform's calibration of its three cameras (``camera_params/camera{60,180,300}_cropped_and_
downsampled.yml`` of ``trifinger_simulation``; Wuthrich et al. 2020), rounded to five decimals.
This module imports nothing heavy, so image-only envs (grids) read it without loading MuJoCo.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: ``(k1, k2, p1, p2, k3)``.
Lens = tuple[float, float, float, float, float]

#: The calibrated lenses of the real TriFinger platform cameras, by camera name.
TRIFINGER_LENSES: Mapping[str, Lens] = MappingProxyType({
    "camera60": (-0.23805, 0.10826, -0.00246, 0.00005, -0.02723),
    "camera180": (-0.23739, 0.14669, -0.00336, 0.00022, -0.13565),
    "camera300": (-0.23391, 0.09394, -0.00279, -0.00007, -0.01742),
})

#: The lens a scene without a real counterpart borrows (grids, the overview camera): camera60's.
DEFAULT_LENS: Lens = TRIFINGER_LENSES["camera60"]
