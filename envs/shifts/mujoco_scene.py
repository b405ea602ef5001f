"""The scene of a MuJoCo env: its lights, its observation camera and its background surfaces.

:class:`MujocoScene` implements :class:`~sparseshift.envs.shifts.nuisance.Scene` (and the
:class:`~sparseshift.envs.shifts.nuisance.LightRig` and
:class:`~sparseshift.envs.shifts.nuisance.CameraRig` it hands out) for any ``mujoco.MjModel``.
It snapshots the nominal lights (direction, diffuse and ambient of every light, the headlight's
ambient and diffuse) and the observation camera's pose when it is made; :meth:`restore` writes them
back (the shift runtime calls it at every reset), and the rig methods change them relative to the
current state. The model is changed in place, so the env must run ``mj_forward`` (which computes
the world-frame light directions and camera pose) before it renders: envs draw a shift's episode
before they apply the reset state.

Only array arithmetic is done here (no MuJoCo calls), so importing this module does not import
MuJoCo: the env that owns the model has already selected the GL backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.shifts.lenses import Lens
from sparseshift.envs.shifts.nuisance import FEATURES, CameraRig, LightRig


def quat_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """The unit quaternion ``(w, x, y, z)`` of a 3x3 rotation matrix (Shepperd's method)."""
    r = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    tr = float(np.trace(r))
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + r[i, i] - r[j, j] - r[k, k], 1e-300))
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    out = np.array(q)
    return out / np.linalg.norm(out)


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The Hamilton product ``a b`` of two ``(w, x, y, z)`` quaternions (``b`` applied first,
    in ``a``'s frame)."""
    aw, ax, ay, az = (float(v) for v in a)
    bw, bx, by, bz = (float(v) for v in b)
    return np.array([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw])


class MujocoScene:
    """A MuJoCo model's lights, observation camera and surfaces, as a shift's scene.

    ``model``: the env's own ``mujoco.MjModel`` (changed in place); ``camera_id``: the
    observation camera; ``image_height``: rendered frame height in pixels (for the focal
    length); ``lens``: the ``(k1, k2, p1, p2, k3)`` the ``distortion`` nuisance uses at level 3;
    ``surface_mask``: returns the bool HxW mask of the background surfaces of the frame being
    rendered (None: the scene offers no ``surfaces``).
    """

    def __init__(self, model: Any, camera_id: int, image_height: int, lens: Lens,
                 surface_mask: Callable[[], np.ndarray] | None = None) -> None:
        self._model = model
        self._cam = int(camera_id)
        self._height = int(image_height)
        self._lens = lens
        self._mask = surface_mask
        feats = set(FEATURES) if surface_mask is not None else set(FEATURES) - {"surfaces"}
        self._features = frozenset(feats)
        m = model
        self._light_dir = np.array(m.light_dir, dtype=np.float64)
        self._light_diffuse = np.array(m.light_diffuse, dtype=np.float64)
        self._light_ambient = np.array(m.light_ambient, dtype=np.float64)
        self._head_ambient = np.array(m.vis.headlight.ambient, dtype=np.float64)
        self._head_diffuse = np.array(m.vis.headlight.diffuse, dtype=np.float64)
        self._cam_pos = np.array(m.cam_pos[self._cam], dtype=np.float64)
        self._cam_quat = np.array(m.cam_quat[self._cam], dtype=np.float64)

    # ---------------------------------------------------------------- Scene
    @property
    def features(self) -> frozenset[str]:
        return self._features

    @property
    def focal_px(self) -> float:
        """The camera's focal length in pixels: ``height / (2 tan(fovy / 2))``."""
        fovy = float(self._model.cam_fovy[self._cam])
        return self._height / (2.0 * math.tan(math.radians(fovy) / 2.0))

    def restore(self) -> None:
        """Put every light and the observation camera back to the nominal state."""
        m = self._model
        m.light_dir[:] = self._light_dir
        m.light_diffuse[:] = self._light_diffuse
        m.light_ambient[:] = self._light_ambient
        m.vis.headlight.ambient[:] = self._head_ambient
        m.vis.headlight.diffuse[:] = self._head_diffuse
        m.cam_pos[self._cam] = self._cam_pos
        m.cam_quat[self._cam] = self._cam_quat

    def lights(self) -> LightRig:
        return self

    def camera(self) -> CameraRig:
        return self

    def surface_mask(self) -> np.ndarray:
        if self._mask is None:
            raise ConfigError("this scene does not offer background surfaces")
        return np.asarray(self._mask(), dtype=bool)

    def lens(self) -> Lens:
        return self._lens

    # ---------------------------------------------------------------- LightRig
    def rotate_lights(self, rotation: np.ndarray) -> None:
        """Rotate every light's direction by ``rotation`` (world frame)."""
        m = self._model
        rot = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        m.light_dir[:] = np.asarray(m.light_dir, dtype=np.float64) @ rot.T

    def scale_lights(self, factor: float) -> None:
        """Scale every light's and the headlight's diffuse intensity (clipped to [0, 1])."""
        m = self._model
        m.light_diffuse[:] = np.clip(np.asarray(m.light_diffuse) * factor, 0.0, 1.0)
        m.vis.headlight.diffuse[:] = np.clip(np.asarray(m.vis.headlight.diffuse) * factor,
                                             0.0, 1.0)

    def shift_ambient(self, offset: float) -> None:
        """Add ``offset`` to every light's and the headlight's ambient level (clipped)."""
        m = self._model
        m.light_ambient[:] = np.clip(np.asarray(m.light_ambient) + offset, 0.0, 1.0)
        m.vis.headlight.ambient[:] = np.clip(np.asarray(m.vis.headlight.ambient) + offset,
                                             0.0, 1.0)

    # ---------------------------------------------------------------- CameraRig
    def move_camera(self, offset: np.ndarray, rotation: np.ndarray) -> None:
        """Translate the camera by ``offset`` (world frame; the camera's parent is the world
        body) and rotate it by ``rotation`` in its own frame."""
        m, c = self._model, self._cam
        m.cam_pos[c] = np.asarray(m.cam_pos[c], dtype=np.float64) + np.asarray(offset)
        q = quat_multiply(np.asarray(m.cam_quat[c], dtype=np.float64),
                          quat_from_matrix(rotation))
        m.cam_quat[c] = q / np.linalg.norm(q)
