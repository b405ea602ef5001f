"""The TriFinger base env: MuJoCo TriFingerPro with a cube, declared factors and colour splits.

Robot: Wuthrich et al. 2020, *TriFinger: An Open-Source Robot for Learning Dexterity*. Factors
(9 joint angles, cube position and yaw, cube/stage/finger colours) follow the TriFinger dataset of
Dittadi et al. (ICLR 2021), *On the Transfer of Disentangled Representations in Realistic Settings*.

Control: actions in [-1, 1]^9 set joint-position targets within the joint limits, tracked by PD
servos (kp, kd and torque limit of the real robot) for ``SUBSTEPS`` physics steps of 2 ms (25 Hz).
``action_mode="absolute"`` maps the action linearly onto the joint range; ``"delta"`` moves the
previous target by at most ``DELTA_SCALE`` rad per step (the target starts at the joint positions of
the reset state). Tasks (:mod:`sparseshift.envs.trifinger.tasks`) add goals, rewards and their
default mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from sparseshift.envs.base import FactorEnv
from sparseshift.envs.errors import ConfigError, check_image_size, choice_error
from sparseshift.envs.factors import Factor, FactorSpec, colour_factors
from sparseshift.envs.trifinger import model as M
from sparseshift.envs.trifinger.render import FrameRenderer, configure_model, get_preset
from sparseshift.envs.trifinger.shift import RealShift, check_shift

#: Cube centre factor range (m), as in the TriFinger dataset of Dittadi et al. 2021; the box fits
#: inside the boundary wall at any yaw.
CUBE_XY_RANGE = (-0.11, 0.11)
#: Cube yaw factor range; the cube looks the same every pi/2.
CUBE_YAW_RANGE = (-np.pi / 4, np.pi / 4)
#: Colour factor groups and the scheme object each one colours.
COLOUR_GROUPS: tuple[tuple[str, str], ...] = (
    ("cube_colour", "cube"),
    ("stage_colour", "stage"),
    ("fingers_colour", "fingers"),
)
N_PHYSICAL = 12  # 9 joints + cube x, y, yaw
#: Rejection-sampling attempts for a penetration-free configuration.
MAX_SAMPLE_TRIES = 200
#: Observation bounds (values are clipped into them): joint velocity (rad/s), positions (m).
VEL_BOUND = 30.0
POS_LOW = np.array([-0.4, -0.4, -0.1])
POS_HIGH = np.array([0.4, 0.4, 0.5])
#: Action modes: absolute joint targets, or increments of the previous target.
ACTION_MODES: tuple[str, ...] = ("absolute", "delta")
#: Largest target increment per step (rad) in ``delta`` mode: 2.5 rad/s at 25 Hz, a quarter of the
#: robot's velocity limit.
DELTA_SCALE = 0.1


def build_factor_spec() -> FactorSpec:
    """The TriFinger factors: joints, cube x/y/yaw, then the three colour groups."""
    joints = tuple(
        Factor(n, "continuous", float(lo), float(hi))
        for n, lo, hi in zip(M.JOINT_NAMES, M.JOINT_LOW, M.JOINT_HIGH, strict=True)
    )
    cube = (
        Factor("cube.x", "continuous", *CUBE_XY_RANGE),
        Factor("cube.y", "continuous", *CUBE_XY_RANGE),
        Factor("cube.yaw", "continuous", *CUBE_YAW_RANGE),
    )
    colours = tuple(f for g, _ in COLOUR_GROUPS for f in colour_factors(g))
    return FactorSpec(joints + cube + colours)


FACTOR_SPEC = build_factor_spec()


class TriFingerEnv(FactorEnv[Any, np.ndarray]):
    """TriFingerPro with a cube. Subclasses define the goal, reward and success.

    Keyword arguments (all validated, :class:`~sparseshift.envs.errors.ConfigError` naming the
    valid choices):

    * ``obs_mode``: ``pixels`` (uint8 HxWx3), ``state`` (float32 vector: joint positions 9, joint
      velocities 9, fingertip positions 9, cube position 3, cube quaternion 4, goal features) or
      ``pixels_proprio`` (dict: ``pixels`` and ``proprio`` = joint positions + goal features).
      Goal features are the task's goal, plus for Reach the tip-to-goal offsets.
    * ``action_mode``: ``absolute`` or ``delta`` (see the module docstring); None (the default)
      takes the task's ``DEFAULT_ACTION_MODE`` (Reach ``delta``, Push ``absolute``).
    * ``image_size``: positive multiple of 8 (64 default, 128 supported).
    * ``camera``: ``camera60`` (default), ``camera180``, ``camera300`` (the TriFinger platform
      cameras) or ``overview`` (an oblique view from further away).
    * ``render_preset``: ``fast`` (default; no shadows or multisampling) or ``pretty``.
    * ``colours``: colour splits sampled at reset (``in``, ``in+ood1``, ``all``, ...).
    * ``colour_scheme`` / ``colour_seed``: the scheme (``trifinger8`` or ``trifinger-cw``) and its
      split-assignment seed.
    * ``shift``: None or ``real`` (:mod:`sparseshift.envs.trifinger.shift`), scaled by
    ``shift_strength``.
    * ``max_episode_steps``: episode length (truncation) when constructed directly; None (the
      default) means no limit of its own: ``gymnasium.make`` adds its ``TimeLimit`` with the task's
      ``DEFAULT_MAX_EPISODE_STEPS`` (override with ``gymnasium.make(id, max_episode_steps=n)``).
    * ``render_mode``: None or ``rgb_array`` (``render()`` returns the observation camera frame).
    * ``goal_markers``: draw the goal as translucent green markers (off by default).
    """

    metadata: ClassVar[dict[str, Any]] = {  # type: ignore[misc]
        "render_modes": ["rgb_array"],
        "render_fps": round(1.0 / M.CONTROL_DT),
    }
    DEFAULT_MAX_EPISODE_STEPS: ClassVar[int] = 100
    DEFAULT_ACTION_MODE: ClassVar[str] = "absolute"
    GOAL_DIM: ClassVar[int] = 0
    object_names = M.OBJECT_NAMES

    def __init__(
        self,
        obs_mode: str = "pixels",
        image_size: int = 64,
        camera: str = "camera60",
        render_preset: str = "fast",
        colours: str | Sequence[str] = "in",
        colour_scheme: str = "trifinger8",
        colour_seed: int = 0,
        shift: str | None = None,
        shift_strength: float = 1.0,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        goal_markers: bool = False,
        action_mode: str | None = None,
    ) -> None:
        self.configure(obs_mode, render_mode, colours, colour_scheme, colour_seed,
                       [obj for _, obj in COLOUR_GROUPS])
        self.action_mode = self.DEFAULT_ACTION_MODE if action_mode is None else action_mode
        if self.action_mode not in ACTION_MODES:
            raise choice_error("action_mode", self.action_mode, ACTION_MODES)
        if camera not in M.CAMERAS:
            raise choice_error("camera", camera, M.CAMERAS)
        if max_episode_steps is not None and (
            isinstance(max_episode_steps, bool)
            or not isinstance(max_episode_steps, int)
            or max_episode_steps <= 0
        ):
            raise ConfigError(
                f"max_episode_steps must be a positive integer, got {max_episode_steps!r}"
            )
        self.image_size = check_image_size(image_size)
        self.camera = camera
        self.render_preset = get_preset(render_preset)
        self.shift, self.shift_strength = check_shift(shift, shift_strength)
        self.max_episode_steps = max_episode_steps
        self.goal_markers = bool(goal_markers)
        self.factor_spec = FACTOR_SPEC

        self.model = M.load_model()
        configure_model(self.model, self.render_preset, self.image_size)
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # for FK / collision checks while sampling
        self.index = M.ModelIndex.build(self.model)
        self._renderer: FrameRenderer | None = None
        self._real: RealShift | None = None
        if self.shift == "real":
            self._real = RealShift(self.model, self.index.cameras[camera], self.shift_strength)
        ix = self.index
        self._colour_slots = tuple(
            (np.array(FACTOR_SPEC.group_indices(g)), ix.materials[obj], obj)
            for g, obj in COLOUR_GROUPS
        )
        self._phys_low = FACTOR_SPEC.low[:N_PHYSICAL].astype(np.float64)
        self._phys_high = FACTOR_SPEC.high[:N_PHYSICAL].astype(np.float64)
        self._ctrl_scale = 0.5 * (M.JOINT_HIGH - M.JOINT_LOW)
        self._ctrl_offset = M.JOINT_LOW + self._ctrl_scale
        self._action = np.zeros(9, dtype=np.float64)
        self._target = M.DEFAULT_Q.copy()
        self._factor_buf = np.zeros(len(FACTOR_SPEC), dtype=np.float64)
        self._colour_values = np.zeros(len(FACTOR_SPEC) - N_PHYSICAL, dtype=np.float64)
        jq, jv = self.index.joint_qpos, self.index.joint_qvel
        if not (np.all(np.diff(jq) == 1) and np.all(np.diff(jv) == 1)):
            raise RuntimeError("TriFinger joints must be contiguous in qpos/qvel")
        self._jq = slice(int(jq[0]), int(jq[0]) + 9)
        self._jv = slice(int(jv[0]), int(jv[0]) + 9)
        self.goal = np.zeros(self.GOAL_DIM, dtype=np.float64)
        self._steps = 0

        glo, ghi = self._goal_bounds()
        self._proprio_low = np.concatenate([M.JOINT_LOW - 0.1, glo]).astype(np.float32)
        self._proprio_high = np.concatenate([M.JOINT_HIGH + 0.1, ghi]).astype(np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(9,), dtype=np.float32)
        self.observation_space = self._make_obs_space()
        self._state_low = self._state_space().low
        self._state_high = self._state_space().high
        # A valid state before the first reset (default pose, first IN colours).
        nominal = np.zeros(len(FACTOR_SPEC))
        nominal[:9] = M.DEFAULT_Q
        for idx, _, obj in self._colour_slots:
            cs = self.colour_scheme[obj]
            nominal[idx] = (
                cs.colours("in")[0] if cs.discrete else cs.sample(np.random.default_rng(0), ("in",))
            )
        self._nominal = nominal
        self._apply_factors(nominal)

    # ------------------------------------------------------------------ spaces
    def _goal_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of :meth:`_goal_features`."""
        return np.zeros(0), np.zeros(0)

    def _goal_features(self) -> np.ndarray:
        """What observations carry about the goal (the goal itself unless a task adds more)."""
        return self.goal

    def _state_space(self) -> spaces.Box:
        glo, ghi = self._goal_bounds()
        vel = VEL_BOUND * np.ones(9)
        low = np.concatenate(
            [M.JOINT_LOW - 0.1, -vel, np.tile(POS_LOW, 3), POS_LOW, -np.ones(4), glo]
        )
        high = np.concatenate(
            [M.JOINT_HIGH + 0.1, vel, np.tile(POS_HIGH, 3), POS_HIGH, np.ones(4), ghi]
        )
        return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    def _make_obs_space(self) -> spaces.Space[Any]:
        pixels = spaces.Box(0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8)
        if self.obs_mode == "pixels":
            return pixels
        if self.obs_mode == "state":
            return self._state_space()
        return spaces.Dict(
            {
                "pixels": pixels,
                "proprio": spaces.Box(self._proprio_low, self._proprio_high, dtype=np.float32),
            }
        )

    # ------------------------------------------------------------------ state access
    @property
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._jq].copy()

    @property
    def tip_positions(self) -> np.ndarray:
        """[3, 3] world positions of the fingertip centres."""
        return self.data.site_xpos[self.index.tip_sites]

    @property
    def cube_position(self) -> np.ndarray:
        a = self.index.cube_qpos
        return self.data.qpos[a : a + 3]

    @property
    def cube_quaternion(self) -> np.ndarray:
        a = self.index.cube_qpos
        return self.data.qpos[a + 3 : a + 7]

    # ------------------------------------------------------------------ factors
    def get_factors(self) -> np.ndarray:
        out = self._factor_buf
        # np.minimum/np.maximum: np.clip has a much larger per-call overhead on tiny arrays.
        np.maximum(
            np.minimum(self.data.qpos[self._jq], M.JOINT_HIGH, out=out[:9]),
            M.JOINT_LOW,
            out=out[:9],
        )
        a = self.index.cube_qpos
        np.maximum(
            np.minimum(self.data.qpos[a : a + 2], CUBE_XY_RANGE[1], out=out[9:11]),
            CUBE_XY_RANGE[0],
            out=out[9:11],
        )
        out[11] = M.cube_yaw(self.data.qpos[a + 3 : a + 7])
        out[12:] = self._colour_values
        return out.astype(np.float32)

    def set_factors(self, values: Mapping[str, Any] | np.ndarray) -> None:
        vec, _ = FACTOR_SPEC.update(self.get_factors(), values)
        self._apply_factors(vec)

    def _apply_factors(self, vec: np.ndarray) -> None:
        """Write a validated factor vector into the simulation (zero velocities) and recolour."""
        vec = np.asarray(vec, dtype=np.float64)
        self._put_physical(self.data, vec)
        self.data.qvel[:] = 0.0
        self.data.qacc_warmstart[:] = 0.0
        self.data.ctrl[:] = vec[:9]
        self._target[:] = vec[:9]  # delta actions continue from the joints that were set
        for idx, mat, _ in self._colour_slots:
            self.model.mat_rgba[mat, :3] = vec[idx]
        # Colours only change here; get_factors reads this cache (what the materials hold).
        mats = [m for _, m, _ in self._colour_slots]
        self._colour_values[:] = self.model.mat_rgba[mats, :3].ravel()
        mujoco.mj_forward(self.model, self.data)

    def _put_physical(self, data: mujoco.MjData, vec: np.ndarray) -> None:
        ix = self.index
        data.qpos[ix.joint_qpos] = vec[:9]
        a = ix.cube_qpos
        data.qpos[a : a + 3] = (vec[9], vec[10], M.CUBE_HALF_WIDTH)
        data.qpos[a + 3 : a + 7] = M.yaw_to_quat(float(vec[11]))

    def _penetration_free(self, vec: np.ndarray) -> bool:
        """True if the configuration has no finger or cube interpenetration (kinematics only)."""
        d = self._scratch
        self._put_physical(d, vec)
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_collision(self.model, d)
        if d.ncon == 0:
            return True
        return bool(np.all(d.contact.dist[: d.ncon] > -1e-4))

    def sample_factors(
        self,
        rng: np.random.Generator,
        base: np.ndarray | None = None,
        groups: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Sample factors: joints uniform within their limits, cube x/y/yaw uniform in their
        ranges, colours from the env's scheme restricted to its splits.

        Physical factors are rejection-sampled (up to ``MAX_SAMPLE_TRIES`` draws) until no finger
        touches the cube, the table, the wall or another finger, so stepping afterwards is calm.
        """
        if base is None:
            vec = self._nominal.copy()
            mask = np.ones(len(FACTOR_SPEC), dtype=bool)
            if groups is not None:
                vec = self.get_factors().astype(np.float64)
                mask = FACTOR_SPEC.group_mask(groups)
        else:
            vec = FACTOR_SPEC.check_vector(base).astype(np.float64)
            mask = (
                FACTOR_SPEC.group_mask(groups)
                if groups is not None
                else np.ones(len(FACTOR_SPEC), dtype=bool)
            )
        return self._sample(rng, vec, mask).astype(np.float32)

    def _sample(self, rng: np.random.Generator, vec: np.ndarray, mask: np.ndarray) -> np.ndarray:
        vec = vec.copy()
        for idx, _, obj in self._colour_slots:
            sel = mask[idx]
            if sel.any():
                rgb = self.colour_scheme[obj].sample(rng, self.colours)
                vec[idx[sel]] = rgb[sel]
        phys = np.flatnonzero(mask[:N_PHYSICAL])
        if phys.size:
            low, high = self._phys_low[phys], self._phys_high[phys]
            for _ in range(MAX_SAMPLE_TRIES):
                vec[phys] = rng.uniform(low, high)
                if self._penetration_free(vec):
                    break
        return vec

    def _sample_start(self, rng: np.random.Generator, vec: np.ndarray,
                      free: np.ndarray) -> np.ndarray:
        """The factors an episode starts from (``free``: those not given in the reset options).
        The factor distribution by default; tasks may start the robot elsewhere."""
        return self._sample(rng, vec, free)

    # ------------------------------------------------------------------ rendering
    def _frame_renderer(self) -> FrameRenderer:
        if self._renderer is None:
            self._renderer = FrameRenderer(
                self.model, self.index, self.image_size, self.camera, self.goal_markers
            )
        return self._renderer

    def render_frame(self) -> np.ndarray:
        frame = self._frame_renderer().render(self.data)
        if self._real is not None:
            return self._real.apply(frame)
        return frame.copy()

    def segmentation(self) -> np.ndarray:
        return self._frame_renderer().segmentation(self.data)

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.render_frame()
        return None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()

    # ------------------------------------------------------------------ task hooks
    def _sample_goal(self, rng: np.random.Generator, factors: np.ndarray) -> np.ndarray:
        """A goal for the episode that starts from ``factors``."""
        return np.zeros(0)

    def _place_goal_markers(self) -> None:
        """Move the (normally hidden) goal marker sites to the goal."""

    def _reward(self) -> tuple[float, bool]:
        return 0.0, False

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        given = self.reset_factors(options)
        mujoco.mj_resetData(self.model, self.data)
        if given is None:
            vec = self._sample_start(rng, self._nominal, np.ones(len(FACTOR_SPEC), dtype=bool))
        else:
            vec, set_mask = FACTOR_SPEC.update(self._nominal, given)
            vec = self._sample_start(rng, vec, ~set_mask)
        self.goal = self._sample_goal(rng, vec)
        self._place_goal_markers()
        if self._real is not None:
            self._real.new_episode(rng)
        self._apply_factors(vec)
        self._steps = 0
        _, success = self._reward()
        return self._obs(), {"factors": self.get_factors(), "is_success": success}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (9,):
            raise ValueError(f"TriFinger actions have shape (9,), got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"TriFinger action contains NaN or inf: {a.tolist()}")
        np.maximum(np.minimum(a, 1.0, out=self._action), -1.0, out=self._action)
        if self.action_mode == "delta":
            self._target += DELTA_SCALE * self._action
            np.clip(self._target, M.JOINT_LOW, M.JOINT_HIGH, out=self._target)
            self.data.ctrl[:] = self._target
        else:
            self.data.ctrl[:] = self._ctrl_offset + self._action * self._ctrl_scale
        mujoco.mj_step(self.model, self.data, M.SUBSTEPS)
        self._steps += 1
        reward, success = self._reward()
        truncated = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        info = {"factors": self.get_factors(), "is_success": success}
        return self._obs(), reward, False, truncated, info

    def _obs(self) -> Any:
        if self.obs_mode == "pixels":
            return self.render_frame()
        if self.obs_mode == "state":
            return self._state_obs()
        proprio = np.concatenate([self.joint_positions, self._goal_features()])
        return {
            "pixels": self.render_frame(),
            "proprio": np.clip(proprio, self._proprio_low, self._proprio_high).astype(np.float32),
        }

    def _state_obs(self) -> np.ndarray:
        d = self.data
        v = np.concatenate(
            [
                d.qpos[self._jq],
                d.qvel[self._jv],
                self.tip_positions.ravel(),
                self.cube_position,
                self.cube_quaternion,
                self._goal_features(),
            ]
        )
        return np.clip(v, self._state_low, self._state_high).astype(np.float32)


def unwrap(env: gym.Env[Any, Any]) -> TriFingerEnv:
    """The :class:`TriFingerEnv` under any gymnasium wrappers."""
    base = env.unwrapped
    if not isinstance(base, TriFingerEnv):
        raise TypeError(f"expected a TriFinger env, got {type(base).__name__}")
    return base
