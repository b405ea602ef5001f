"""Offscreen rendering of the TriFinger scene: presets, one renderer per env, segmentation.

On the CPU (Mesa llvmpipe) shadows and multisampling dominate the frame cost (about 25x), so the
default ``fast`` preset turns both off and sizes the offscreen buffer to the image; ``pretty`` turns
them on for videos and figures. Segmentation uses MuJoCo's id-colour rendering and maps geom ids to
:data:`~sparseshift.envs.trifinger.model.OBJECT_NAMES` through a lookup table (vectorised).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sparseshift.envs.core.gl import gl_error
from sparseshift.envs.infra.errors import check_image_size, choice_error
from sparseshift.envs.trifinger.model import ModelIndex


@dataclass(frozen=True)
class RenderPreset:
    """Rendering quality settings, applied to an env's own model before its renderer is made."""

    name: str
    shadows: bool
    shadowsize: int  # shadow map size; 0 disables the shadow pass
    offsamples: int  # multisampling of the offscreen buffer; 0 disables it


PRESETS: dict[str, RenderPreset] = {
    "fast": RenderPreset("fast", shadows=False, shadowsize=0, offsamples=0),
    "pretty": RenderPreset("pretty", shadows=True, shadowsize=2048, offsamples=4),
}


def get_preset(name: str) -> RenderPreset:
    """The preset called ``name`` (``fast`` or ``pretty``); ConfigError otherwise."""
    if not isinstance(name, str) or name not in PRESETS:
        raise choice_error("render preset", name, PRESETS)
    return PRESETS[name]


def configure_model(model: mujoco.MjModel, preset: RenderPreset, image_size: int) -> None:
    """Apply ``preset`` and an ``image_size`` square offscreen buffer to ``model`` (in place)."""
    model.vis.quality.shadowsize = preset.shadowsize
    model.vis.quality.offsamples = preset.offsamples
    model.vis.global_.offwidth = image_size
    model.vis.global_.offheight = image_size
    model.light_castshadow[:] = preset.shadows


class FrameRenderer:
    """One ``mujoco.Renderer`` bound to one camera, rendering into preallocated buffers."""

    def __init__(
        self,
        model: mujoco.MjModel,
        index: ModelIndex,
        image_size: int,
        camera: str,
        goal_markers: bool = False,
    ) -> None:
        self.image_size = check_image_size(image_size)
        self._index = index
        try:
            self._renderer = mujoco.Renderer(model, self.image_size, self.image_size)
        except Exception as exc:  # context creation failed: name the fix
            raise gl_error(exc) from exc
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = index.cameras[camera]
        self._option = mujoco.MjvOption()
        self._option.sitegroup[:] = 0
        if goal_markers:
            self._option.sitegroup[4] = 1
        self._seg_option = mujoco.MjvOption()
        self._seg_option.sitegroup[:] = 0
        self._rgb = np.empty((self.image_size, self.image_size, 3), dtype=np.uint8)
        self._seg = np.empty((self.image_size, self.image_size, 2), dtype=np.int32)
        # lut[geom_id + 1] -> object index; entry 0 is "no geom" (background).
        self._lut = np.concatenate([[0], index.geom_object]).astype(np.int32)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """Render the current state; returns the internal buffer (copy it to keep it)."""
        self._renderer.update_scene(data, self._camera, self._option)
        return self._renderer.render(out=self._rgb)

    def segmentation(self, data: mujoco.MjData) -> np.ndarray:
        """int32 HxW map of object indices (see ``OBJECT_NAMES``); goal markers are ignored."""
        r = self._renderer
        r.update_scene(data, self._camera, self._seg_option)
        r.enable_segmentation_rendering()
        try:
            seg = r.render(out=self._seg)
        finally:
            r.disable_segmentation_rendering()
        objid, objtype = seg[..., 0], seg[..., 1]
        is_geom = objtype == int(mujoco.mjtObj.mjOBJ_GEOM)
        return self._lut[np.where(is_geom, objid + 1, 0)]

    def close(self) -> None:
        self._renderer.close()
