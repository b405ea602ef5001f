"""The shipped nuisances. Magnitudes per level 1..5 are in each class's ``levels``; draws per
episode are in [m/2, m] with a random sign or direction (:mod:`~sparseshift.envs.shifts.nuisance`).

Scene nuisances (MuJoCo envs): ``lighting`` (direction and intensity), ``ambient``, ``camera``
(pose jitter; level 1 is the order of the real TriFinger cameras' calibration uncertainty,
Wuthrich et al. 2020). Frame nuisances (every env): ``colour`` (colour temperature and channel
gains), ``blur``, ``noise`` (sensor noise), ``distortion`` (radial and tangential lens distortion;
level 3 is the calibrated distortion of the real TriFinger camera the env looks through),
``jpeg`` (compression) and ``texture`` (a stripe or checker pattern on the background surfaces:
the arena and table, or the grid floor). These are the nuisances domain randomisation varies to
cross the reality gap (Tobin et al. 2017), applied as test-time shifts, graded like ImageNet-C
(Hendrycks & Dietterich, ICLR 2019).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from sparseshift.envs.shifts.nuisance import (
    CODEC,
    OPTICS,
    SENSOR,
    SURFACE,
    Nuisance,
    Scene,
    random_rotation,
    signed,
)

_F = frozenset


def _levels(**tables: tuple[float, ...]) -> Mapping[str, tuple[float, ...]]:
    for k, v in tables.items():
        if len(v) != 5 or any(b < a for a, b in itertools.pairwise(v)):
            raise ValueError(f"level table {k}: five non-decreasing magnitudes expected")
    return MappingProxyType(tables)


@dataclass(frozen=True)
class Lighting(Nuisance):
    """Light direction (tilt, degrees) and diffuse intensity (relative change)."""

    name: ClassVar[str] = "lighting"
    summary: ClassVar[str] = "tilt every light and scale its intensity"
    needs: ClassVar[frozenset[str]] = _F({"lights"})
    levels: ClassVar[Mapping[str, tuple[float, ...]]] = _levels(
        tilt_deg=(10.0, 20.0, 30.0, 45.0, 60.0), intensity=(0.10, 0.20, 0.35, 0.50, 0.65))

    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        rig = scene.lights()
        rig.rotate_lights(random_rotation(rng, self.magnitude("tilt_deg", severity)))
        rig.scale_lights(1.0 + signed(rng, self.magnitude("intensity", severity)))


@dataclass(frozen=True)
class Ambient(Nuisance):
    """Ambient light level (additive, in MuJoCo's 0..1 light units)."""

    name: ClassVar[str] = "ambient"
    summary: ClassVar[str] = "raise or lower the ambient light level"
    needs: ClassVar[frozenset[str]] = _F({"lights"})
    levels: ClassVar[Mapping[str, tuple[float, ...]]] = _levels(
        offset=(0.04, 0.08, 0.12, 0.20, 0.30))

    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        scene.lights().shift_ambient(signed(rng, self.magnitude("offset", severity)))


@dataclass(frozen=True)
class CameraJitter(Nuisance):
    """Camera pose jitter: per-axis position (metres) and rotation about a random axis
    (degrees). Level 1 is of the order of the real cameras' calibration uncertainty (0.3-0.6 mm,
    rotation entries 0.0013-0.0034)."""

    name: ClassVar[str] = "camera"
    summary: ClassVar[str] = "jitter the observation camera's position and orientation"
    needs: ClassVar[frozenset[str]] = _F({"camera"})
    levels: ClassVar[Mapping[str, tuple[float, ...]]] = _levels(
        position_m=(0.0005, 0.002, 0.005, 0.010, 0.020),
        rotation_deg=(0.2, 0.5, 1.0, 2.0, 4.0))

    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        m = self.magnitude("position_m", severity)
        direction = rng.normal(size=3)
        direction /= max(float(np.linalg.norm(direction)), 1e-12)
        offset = direction * rng.uniform(0.5 * m, m)
        scene.camera().move_camera(offset, random_rotation(
            rng, self.magnitude("rotation_deg", severity)))


@dataclass(frozen=True)
class Colour(Nuisance):
    """Colour temperature (red gain 1 + t, blue gain 1 - t) and per-channel gain jitter."""

    name: ClassVar[str] = "colour"
    summary: ClassVar[str] = "colour temperature and per-channel gains"
    needs: ClassVar[frozenset[str]] = _F({"frame"})
    levels: ClassVar[Mapping[str, tuple[float, ...]]] = _levels(
        temperature=(0.03, 0.06, 0.10, 0.15, 0.20), channel_gain=(0.01, 0.02, 0.04, 0.06, 0.08))
    stage: ClassVar[int | None] = SENSOR

    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        t = signed(rng, self.magnitude("temperature", severity))
        g = self.magnitude("channel_gain", severity)
        jitter = np.array([signed(rng, g) for _ in range(3)])
        return (np.array([1 + t, 1.0, 1 - t]) + jitter).astype(np.float32)

    def frame(self, image: np.ndarray, state: Any, rng: np.random.Generator,
              scene: Scene) -> np.ndarray:
        image *= state
        return image


@dataclass(frozen=True)
class Blur(Nuisance):
    """Gaussian blur; sigma as a fraction of the image width (level 1 draws 0.32-0.64 px at
    64 px: below about 0.3 px a Gaussian kernel changes nothing)."""

    name: ClassVar[str] = "blur"
    summary: ClassVar[str] = "Gaussian defocus blur"
    needs: ClassVar[frozenset[str]] = _F({"frame"})
    levels: ClassVar[Mapping[str, tuple[float, ...]]] = _levels(
        sigma=(0.010, 0.014, 0.018, 0.024, 0.032))
    stage: ClassVar[int | None] = OPTICS

    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        m = self.magnitude("sigma", severity)
        return float(rng.uniform(0.5 * m, m))

    def frame(self, image: np.ndarray, state: Any, rng: np.random.Generator,
              scene: Scene) -> np.ndarray:
        import cv2  # on use: importing cv2 changes LD_LIBRARY_PATH
        sigma = float(state) * image.shape[1]
        if sigma <= 0.05:
            return image
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)


@dataclass(frozen=True)
class Noise(Nuisance):
    """Per-pixel Gaussian sensor noise; std in 0..255 units, drawn anew every frame."""

    name: ClassVar[str] = "noise"
    summary: ClassVar[str] = "Gaussian sensor noise, every frame"
    needs: ClassVar[frozenset[str]] = _F({"frame"})
    levels: ClassVar[Mapping[str, tuple[float, ...]]] = _levels(std=(3.0, 6.0, 10.0, 16.0, 24.0))
    stage: ClassVar[int | None] = SENSOR

    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        return self.magnitude("std", severity)

    def frame(self, image: np.ndarray, state: Any, rng: np.random.Generator,
              scene: Scene) -> np.ndarray:
        if state > 0:
            image += rng.normal(0.0, state, size=image.shape).astype(np.float32)
        return image


@dataclass(frozen=True)
class Distortion(Nuisance):
    """Lens distortion (OpenCV's Brown-Conrady model: radial k1, k2, k3, tangential p1, p2).
    ``scale`` multiplies the scene's lens coefficients: the calibrated real TriFinger camera's at
    level 3 (:meth:`Scene.lens`), twice them at level 5. Deterministic: a lens does not change."""

    name: ClassVar[str] = "distortion"
    summary: ClassVar[str] = "radial and tangential lens distortion (real TriFinger lens at 3)"
    needs: ClassVar[frozenset[str]] = _F({"frame"})
    levels: ClassVar[Mapping[str, tuple[float, ...]]] = _levels(
        scale=(0.25, 0.5, 1.0, 1.5, 2.0))
    stage: ClassVar[int | None] = OPTICS

    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        coeffs = np.asarray(scene.lens(), dtype=np.float64) * self.magnitude("scale", severity)
        return _DistortionMaps(tuple(float(c) for c in coeffs), float(scene.focal_px))

    def frame(self, image: np.ndarray, state: Any, rng: np.random.Generator,
              scene: Scene) -> np.ndarray:
        import cv2  # on use: importing cv2 changes LD_LIBRARY_PATH
        mx, my = state.maps(image.shape[0], image.shape[1])
        return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class _DistortionMaps:
    """Remap tables of one lens: output pixel (distorted) -> the ideal image's pixel."""

    def __init__(self, coeffs: tuple[float, ...], focal_px: float) -> None:
        self.coeffs, self.focal = coeffs, focal_px
        self._maps: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def maps(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        if (h, w) not in self._maps:
            import cv2  # on use: importing cv2 changes LD_LIBRARY_PATH
            k = np.array([[self.focal, 0, (w - 1) / 2], [0, self.focal, (h - 1) / 2], [0, 0, 1]])
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
            pts = np.stack([xs.ravel(), ys.ravel()], axis=1).reshape(-1, 1, 2)
            # Each output pixel sees the ray that the lens bends onto it: undistort its position.
            und = cv2.undistortPoints(pts, k, np.array(self.coeffs), P=k).reshape(h, w, 2)
            self._maps[(h, w)] = (und[..., 0].astype(np.float32), und[..., 1].astype(np.float32))
        return self._maps[(h, w)]


@dataclass(frozen=True)
class Jpeg(Nuisance):
    """JPEG compression; ``loss`` is 100 minus the JPEG quality (level 5: quality 12)."""

    name: ClassVar[str] = "jpeg"
    summary: ClassVar[str] = "JPEG compression artefacts"
    needs: ClassVar[frozenset[str]] = _F({"frame"})
    levels: ClassVar[Mapping[str, tuple[float, ...]]] = _levels(
        loss=(20.0, 40.0, 60.0, 75.0, 88.0))
    stage: ClassVar[int | None] = CODEC

    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        return round(100 - self.magnitude("loss", severity))

    def frame(self, image: np.ndarray, state: Any, rng: np.random.Generator,
              scene: Scene) -> np.ndarray:
        if state >= 100:
            return image
        import cv2  # on use: importing cv2 changes LD_LIBRARY_PATH
        u8 = np.clip(image + 0.5, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(state)])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
            return image
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        assert decoded is not None
        return np.asarray(decoded[..., ::-1], dtype=np.float32)


@dataclass(frozen=True)
class Texture(Nuisance):
    """A stripe or checker pattern on the background surfaces (arena, table, grid floor): the
    pattern's cells move a fraction ``contrast`` of the way towards white on dark pixels and
    towards black on light ones (so black floors get a texture too), with a random period (1/16
    to 1/4 of the image), orientation and phase per episode. The rest of the surface keeps the
    colour its factors say."""

    name: ClassVar[str] = "texture"
    summary: ClassVar[str] = "a stripe or checker texture on the background surfaces"
    needs: ClassVar[frozenset[str]] = _F({"frame", "surfaces"})
    levels: ClassVar[Mapping[str, tuple[float, ...]]] = _levels(
        contrast=(0.08, 0.15, 0.25, 0.35, 0.50))
    stage: ClassVar[int | None] = SURFACE

    def episode(self, severity: float, rng: np.random.Generator, scene: Scene) -> Any:
        c = self.magnitude("contrast", severity)
        return _Pattern(float(rng.uniform(0.5 * c, c)), bool(rng.integers(2)),
                        float(rng.uniform(1 / 16, 1 / 4)), float(rng.uniform(0, np.pi)),
                        float(rng.uniform(0, 1)), float(rng.uniform(0, 1)))

    def frame(self, image: np.ndarray, state: Any, rng: np.random.Generator,
              scene: Scene) -> np.ndarray:
        cells = state.cells(*image.shape[:2]) & scene.surface_mask()
        px = image[cells]
        target = np.where(px.mean(axis=-1, keepdims=True) < 128.0, 255.0, 0.0)
        image[cells] = px + state.contrast * (target - px)
        return image


class _Pattern:
    """One episode's stripe or checker pattern; its cell mask is computed once per image size."""

    def __init__(self, contrast: float, checker: bool, period: float, angle: float, px: float,
                 py: float) -> None:
        self.contrast, self.checker, self.period = contrast, checker, period
        self.angle, self.px, self.py = angle, px, py
        self._cells: dict[tuple[int, int], np.ndarray] = {}

    def cells(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._cells:
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) / (self.period * w)
            c, s = np.cos(self.angle), np.sin(self.angle)
            on = (np.floor(xs * c + ys * s + self.px).astype(np.int64) % 2).astype(bool)
            if self.checker:
                on ^= (np.floor(-xs * s + ys * c + self.py).astype(np.int64) % 2).astype(bool)
            self._cells[(h, w)] = on
        return self._cells[(h, w)]


#: The shipped nuisances, in registry (and documentation) order.
NUISANCES: tuple[Nuisance, ...] = (Lighting(), Ambient(), CameraJitter(), Colour(), Blur(),
                                   Noise(), Distortion(), Jpeg(), Texture())
