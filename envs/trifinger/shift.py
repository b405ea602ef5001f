"""The ``real`` shift: an imitation of the sim-to-real rendering gap.

Each episode draws a lighting change (direction, intensity, ambient level), a small pose jitter of
the observation camera, a colour temperature (per-channel gains) and a blur level; each frame then
gets Gaussian sensor noise. These are the nuisances that domain randomisation varies to cross the
reality gap (Tobin et al. 2017, *Domain Randomization for Transferring Deep Neural Networks from
Simulation to the Real World*), applied here as a test-time shift instead. The real TriFinger
cameras (Wuthrich et al. 2020) add lens distortion and motion blur, which are not modelled.

All randomness comes from a generator the env seeds from its own RNG at reset, so two envs with the
same seed give identical frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import mujoco
import numpy as np

from sparseshift.envs.errors import check_number_arg, choice_error

SHIFTS: tuple[str | None, ...] = (None, "real")
#: Largest ``shift_strength`` (the env's ``MAX_SHIFT_STRENGTH``): every magnitude scales with it,
#: and at 10 the lights already tilt by up to 300 degrees.
MAX_STRENGTH = 10.0


@dataclass(frozen=True)
class RealShiftStrengths:
    """Maximum magnitudes at ``shift_strength=1``; every value scales linearly with the strength.

    Per-episode values are drawn uniformly in ``[-max, max]`` (blur: ``[0, max]``).
    """

    light_tilt_deg: float = 30.0  # rotation of the directional light's direction
    light_intensity: float = 0.35  # relative change of the light's diffuse intensity
    ambient: float = 0.12  # additive change of the ambient level (light + headlight)
    camera_pos_m: float = 0.01  # per-axis camera position jitter
    camera_rot_deg: float = 1.0  # camera rotation jitter about a random axis
    colour_temperature: float = 0.10  # red gain 1 + t, blue gain 1 - t
    channel_gain: float = 0.04  # independent per-channel gain jitter
    blur_sigma: float = 0.012  # Gaussian blur sigma as a fraction of the image width
    noise_std: float = 5.0  # per-pixel Gaussian noise std in 0..255 units (every frame)


def check_shift(shift: str | None, strength: float) -> tuple[str | None, float]:
    """Validate the ``shift`` and ``shift_strength`` env kwargs."""
    if shift == "none":
        shift = None
    if shift not in SHIFTS:
        raise choice_error("shift", shift, SHIFTS)
    return shift, check_number_arg("shift_strength", strength, 0.0, MAX_STRENGTH)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    quat = np.empty(4)
    mujoco.mju_axisAngle2Quat(quat, axis / np.linalg.norm(axis), angle)
    return quat


class RealShift:
    """Applies the ``real`` shift to one env's model (per episode) and frames (per frame)."""

    def __init__(
        self,
        model: mujoco.MjModel,
        camera_id: int,
        strength: float,
        strengths: RealShiftStrengths | None = None,
    ) -> None:
        self.strength = float(strength)
        self.strengths = strengths or RealShiftStrengths()
        self._model = model
        self._cam = camera_id
        self._cam_pos = model.cam_pos[camera_id].copy()
        self._cam_quat = model.cam_quat[camera_id].copy()
        self._light_dir = model.light_dir.copy()
        self._light_diffuse = model.light_diffuse.copy()
        self._light_ambient = model.light_ambient.copy()
        self._head_ambient = model.vis.headlight.ambient.copy()
        self._head_diffuse = model.vis.headlight.diffuse.copy()
        self._rng = np.random.default_rng(0)
        self._gains = np.ones(3, dtype=np.float32)
        self._blur = 0.0

    def new_episode(self, rng: np.random.Generator) -> None:
        """Draw this episode's lighting, camera jitter, gains and blur; seed the frame noise."""
        k, st, m = self.strength, self.strengths, self._model
        self._rng = np.random.default_rng(int(rng.integers(2**63)))
        r = self._rng

        def u(scale: float, n: int | None = None) -> np.ndarray:
            return r.uniform(-scale * k, scale * k, size=n)

        # Lighting: tilt every light's direction, scale its intensity, shift ambient levels.
        for i in range(m.nlight):
            axis = r.normal(size=3)
            rot = np.empty(9)
            mujoco.mju_quat2Mat(rot, _rotation(axis, float(np.deg2rad(u(st.light_tilt_deg)))))
            m.light_dir[i] = rot.reshape(3, 3) @ self._light_dir[i]
        scale = 1.0 + float(u(st.light_intensity))
        amb = float(u(st.ambient))
        m.light_diffuse[:] = np.clip(self._light_diffuse * scale, 0.0, 1.0)
        m.light_ambient[:] = np.clip(self._light_ambient + amb, 0.0, 1.0)
        m.vis.headlight.ambient[:] = np.clip(self._head_ambient + amb, 0.0, 1.0)
        m.vis.headlight.diffuse[:] = np.clip(self._head_diffuse * scale, 0.0, 1.0)
        # Camera pose jitter.
        m.cam_pos[self._cam] = self._cam_pos + u(st.camera_pos_m, 3)
        dq = _rotation(r.normal(size=3), float(np.deg2rad(u(st.camera_rot_deg))))
        quat = np.empty(4)
        mujoco.mju_mulQuat(quat, self._cam_quat, dq)
        m.cam_quat[self._cam] = quat
        # Colour temperature and channel gains; blur level.
        t = float(u(st.colour_temperature))
        self._gains = (np.array([1 + t, 1.0, 1 - t]) + u(st.channel_gain, 3)).astype(np.float32)
        self._blur = float(r.uniform(0.0, st.blur_sigma * k))

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Return a new uint8 frame with gains, blur and this frame's sensor noise applied."""
        img: np.ndarray = frame.astype(np.float32) * self._gains
        sigma = self._blur * frame.shape[1]
        if sigma > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)
        noise = self.strengths.noise_std * self.strength
        if noise > 0:
            img += self._rng.normal(0.0, noise, size=img.shape).astype(np.float32)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)
