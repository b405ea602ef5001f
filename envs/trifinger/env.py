"""The TriFinger base env: MuJoCo TriFingerPro with a cube, declared factors and colour splits.

Robot: Wuthrich et al. 2020, *TriFinger: An Open-Source Robot for Learning Dexterity*. Factors
(9 joint angles, cube position and yaw, cube/stage/finger colours) follow the TriFinger dataset of
Dittadi et al. (ICLR 2021), *On the Transfer of Disentangled Representations in Realistic Settings*.

Control: actions in [-1, 1]^n set joint-position targets of the n actuated joints within their
factor ranges (the joint limits unless a task narrows them), tracked by PD servos (kp, kd and torque
limit of the real robot) for ``SUBSTEPS`` physics steps of 2 ms (25 Hz).
``action_mode="absolute"`` maps the action linearly onto the joint range; ``"delta"`` moves the
previous target by at most ``DELTA_SCALE`` rad per step (the target starts at the joint positions of
the reset state). Tasks (:mod:`sparseshift.envs.trifinger.tasks`) add goals, rewards and their
default mode.

Layout (class attributes, so tasks parameterise the env instead of copying it): ``ACTUATED_JOINTS``
(the joints actions drive and factors describe; all nine by default), ``PARKED_Q`` (where the other
joints are held), ``COLOUR_GROUPS`` (the colour factors; other materials keep the scene's colours)
and ``FACTOR_SPEC`` (built by :func:`build_factor_spec`: actuated joints, cube x/y/yaw, colours).
The one-finger ObjectReach task (Traeuble, Dittadi et al. 2022) uses this to reproduce the factors
of the Dittadi et al. 2021 dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from sparseshift.envs.core.base import FactorEnv, checked_init
from sparseshift.envs.core.factors import Factor, FactorSpec, colour_factors
from sparseshift.envs.infra.errors import (
    ConfigError,
    check_choice_arg,
    check_episode_steps,
    check_flag_arg,
    check_image_size,
    naming,
)
from sparseshift.envs.shifts.mujoco_scene import MujocoScene
from sparseshift.envs.trifinger import model as M
from sparseshift.envs.trifinger.render import FrameRenderer, configure_model, get_preset

#: Cube centre factor range (m). The TriFinger dataset of Dittadi et al. 2021 uses +-0.11, which
#: puts a cube corner 6.7 mm into the real TriFingerPro's boundary wall (0.194 m at the bottom);
#: +-0.104 keeps the 65 mm cube inside it at any yaw (`sparseshift fidelity`, docs/trifinger.md).
CUBE_XY_RANGE = (-0.104, 0.104)
#: Cube yaw factor range; the cube looks the same every pi/2.
CUBE_YAW_RANGE = (-np.pi / 4, np.pi / 4)
#: Colour factor groups and the scheme object each one colours.
COLOUR_GROUPS: tuple[tuple[str, str], ...] = (
    ("cube_colour", "cube"),
    ("stage_colour", "stage"),
    ("fingers_colour", "fingers"),
)
#: Segmentation value -> whether it is a background surface (``M.SURFACE_OBJECTS``).
_IS_SURFACE = np.isin(np.arange(len(M.OBJECT_NAMES)),
                      [M.OBJECT_NAMES.index(o) for o in M.SURFACE_OBJECTS])
_IS_SURFACE.flags.writeable = False
N_PHYSICAL = 12  # 9 joints + cube x, y, yaw (three-finger layout)
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


def build_factor_spec(
    joints: Sequence[int] = tuple(range(9)),
    joint_low: Sequence[float] | np.ndarray | None = None,
    joint_high: Sequence[float] | np.ndarray | None = None,
    yaw_range: tuple[float, float] = CUBE_YAW_RANGE,
    colour_groups: Sequence[tuple[str, str]] = COLOUR_GROUPS,
) -> FactorSpec:
    """TriFinger factors: the given joints (indices into ``JOINT_NAMES``; ranges default to the
    joint limits), cube x/y/yaw, then the colour groups. Defaults: all 21 factors of the
    three-finger envs.

    ``yaw_range`` must span pi/2 (the cube's symmetry): the reported yaw is wrapped into it.
    """
    idx = list(joints)
    low = M.JOINT_LOW[idx] if joint_low is None else np.asarray(joint_low, dtype=np.float64)
    high = M.JOINT_HIGH[idx] if joint_high is None else np.asarray(joint_high, dtype=np.float64)
    if low.shape != (len(idx),) or high.shape != (len(idx),):
        raise ConfigError(f"joint ranges need {len(idx)} values each")
    if np.any(low < M.JOINT_LOW[idx] - 1e-9) or np.any(high > M.JOINT_HIGH[idx] + 1e-9):
        raise ConfigError("joint factor ranges must lie within the joint limits")
    if not np.isclose(yaw_range[1] - yaw_range[0], np.pi / 2):
        raise ConfigError(f"the cube yaw range must span pi/2, got {yaw_range}")
    joint_factors = tuple(
        Factor(M.JOINT_NAMES[j], "continuous", float(lo), float(hi))
        for j, lo, hi in zip(idx, low, high, strict=True)
    )
    cube = (
        Factor("cube.x", "continuous", *CUBE_XY_RANGE),
        Factor("cube.y", "continuous", *CUBE_XY_RANGE),
        Factor("cube.yaw", "continuous", float(yaw_range[0]), float(yaw_range[1])),
    )
    colours = tuple(f for g, _ in colour_groups for f in colour_factors(g))
    return FactorSpec(joint_factors + cube + colours)


FACTOR_SPEC = build_factor_spec()


class TriFingerEnv(FactorEnv[Any, np.ndarray]):
    """TriFingerPro with a cube. Subclasses define the goal, reward and success.

    Keyword arguments (all validated before anything is built: one
    :class:`~sparseshift.envs.infra.errors.ConfigError` line naming the kwarg and the valid choices;
    unknown kwargs list the valid ones):

    * ``obs_mode``: ``pixels`` (uint8 HxWx3), ``state`` (float32 vector: actuated joint positions,
      their velocities, the fingertip positions of the fingers with actuated joints, cube position
      3, cube quaternion 4, goal features, oracle features; 9/9/9 for the three-finger tasks) or
      ``pixels_proprio`` (dict: ``pixels`` and ``proprio`` = joint positions + goal features
      unless a task overrides :meth:`_proprio`). Goal features are the task's goal, plus for Reach
      the tip-to-goal offsets; oracle features (state only) are what a task gives the
      ground-truth agent beyond that (ObjectReach: the tip-to-cube offset). ``proprio``: that
      proprio vector alone, without rendering (the agents' ``sensors`` baseline).
    * ``action_mode``: ``absolute`` or ``delta`` (see the module docstring); None (the default)
      takes the task's ``DEFAULT_ACTION_MODE`` (Reach ``delta``, Push ``absolute``).
    * ``image_size``: positive multiple of 8 up to
      :data:`~sparseshift.envs.infra.errors.MAX_IMAGE_SIZE` = 512 (64 default, 128 supported).
    * ``camera``: ``camera60`` (default), ``camera180``, ``camera300`` (the TriFinger platform
      cameras) or ``overview`` (an oblique view from further away).
    * ``render_preset``: ``fast`` (default; no shadows or multisampling) or ``pretty``.
    * ``colours``: colour splits sampled at reset (``in``, ``in+ood1``, ``all``, ...).
    * ``colour_scheme`` / ``colour_seed``: the scheme (``trifinger8`` or ``trifinger-cw``) and its
      split-assignment seed.
    * ``shift``: None, or a shift of the registry (:mod:`sparseshift.envs.shifts`) at a severity:
      ``"real"`` (= ``"real:3"``, the sim-to-real composition), ``"lighting:1"`` ..
      ``"lighting:5"``, ``"noise@2.5"``, ... or an
      :class:`~sparseshift.envs.shifts.registry.EnvShift`. TriFinger offers every scene feature
      (frame, lights, camera, surfaces); lens distortion uses the calibrated lens of the real
      camera it looks through (:data:`~sparseshift.envs.trifinger.model.CAMERA_LENSES`).
    * ``max_episode_steps``: episode length (truncation, at most
      :data:`~sparseshift.envs.infra.errors.MAX_EPISODE_STEPS`) when constructed directly; None (the
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
    #: Joints (indices into ``M.JOINT_NAMES``) that actions drive; they are the joint factors.
    ACTUATED_JOINTS: ClassVar[tuple[int, ...]] = tuple(range(9))
    #: Positions of the joints that are not actuated (entries of actuated joints are unused).
    PARKED_Q: ClassVar[np.ndarray] = M.DEFAULT_Q
    #: Colour factor groups and the scheme object (= material) each colours.
    COLOUR_GROUPS: ClassVar[tuple[tuple[str, str], ...]] = COLOUR_GROUPS
    #: The factors: actuated joints, cube x/y/yaw, colours (:func:`build_factor_spec`).
    FACTOR_SPEC: ClassVar[FactorSpec] = FACTOR_SPEC
    object_names = M.OBJECT_NAMES
    SHIFT_FEATURES: ClassVar[frozenset[str]] = frozenset(
        {"frame", "lights", "camera", "surfaces"})

    @checked_init
    def __init__(
        self,
        obs_mode: str = "pixels",
        image_size: int = 64,
        camera: str = "camera60",
        render_preset: str = "fast",
        colours: str | Sequence[str] = "in",
        colour_scheme: str = "trifinger8",
        colour_seed: int = 0,
        shift: object = None,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        goal_markers: bool = False,
        action_mode: str | None = None,
    ) -> None:
        # Every kwarg is checked before anything is built (the model, buffers and spaces).
        self.configure(obs_mode, render_mode, colours, colour_scheme, colour_seed,
                       [obj for _, obj in self.COLOUR_GROUPS])
        action_mode = check_choice_arg("action_mode", action_mode, (None, *ACTION_MODES))
        self.action_mode = self.DEFAULT_ACTION_MODE if action_mode is None else action_mode
        self.camera = check_choice_arg("camera", camera, M.CAMERAS)
        self.max_episode_steps = (None if max_episode_steps is None
                                  else check_episode_steps(max_episode_steps))
        with naming("image_size"):
            self.image_size = check_image_size(image_size)
        with naming("render_preset"):
            self.render_preset = get_preset(render_preset)
        self.configure_shift(shift)
        self.goal_markers = check_flag_arg("goal_markers", goal_markers)
        spec = self.factor_spec = self.FACTOR_SPEC
        self._act = np.array(self.ACTUATED_JOINTS, dtype=np.intp)
        nj = self._nj = len(self._act)
        self._n_phys = nj + 3
        yaw = spec.factors[nj + 2]
        expected = build_factor_spec(
            self.ACTUATED_JOINTS, [f.low for f in spec.factors[:nj]],
            [f.high for f in spec.factors[:nj]], (yaw.low, yaw.high), self.COLOUR_GROUPS,
        ).names
        if spec.names != expected:
            raise RuntimeError(f"{type(self).__name__}.FACTOR_SPEC does not match its layout")
        #: Fingers with an actuated joint (their tips are in the state observation).
        self._fingers = np.array(sorted({int(j) // 3 for j in self._act}), dtype=np.intp)

        self.model = M.load_model()
        configure_model(self.model, self.render_preset, self.image_size)
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # for FK / collision checks while sampling
        self.index = M.ModelIndex.build(self.model)
        self._renderer: FrameRenderer | None = None
        self._marker_renderer: FrameRenderer | None = None
        self.attach_scene(lambda: MujocoScene(
            self.model, self.index.cameras[self.camera], self.image_size,
            M.CAMERA_LENSES[self.camera], self._surface_mask))
        ix = self.index
        self._colour_slots = tuple(
            (np.array(spec.group_indices(g)), ix.materials[obj], obj)
            for g, obj in self.COLOUR_GROUPS
        )
        # float64 bounds from the factors (FactorSpec.low/high are float32-rounded).
        self._phys_low = np.array([f.low for f in spec.factors[: self._n_phys]])
        self._phys_high = np.array([f.high for f in spec.factors[: self._n_phys]])
        self._yaw_low = float(self._phys_low[nj + 2])
        # Joint targets stay within the joint factor ranges (the limits for the 3-finger tasks).
        self._joint_low = self._phys_low[:nj].copy()
        self._joint_high = self._phys_high[:nj].copy()
        self._ctrl_scale = 0.5 * (self._joint_high - self._joint_low)
        self._ctrl_offset = self._joint_low + self._ctrl_scale
        self._action = np.zeros(nj, dtype=np.float64)
        self._q_full = np.array(self.PARKED_Q, dtype=np.float64).copy()  # scratch: all 9 joints
        self._target = self._q_full[self._act].copy()
        self._factor_buf = np.zeros(len(spec), dtype=np.float64)
        self._colour_values = np.zeros(len(spec) - self._n_phys, dtype=np.float64)
        jq, jv = self.index.joint_qpos, self.index.joint_qvel
        if not (np.all(np.diff(jq) == 1) and np.all(np.diff(jv) == 1)):
            raise RuntimeError("TriFinger joints must be contiguous in qpos/qvel")
        self._jq = slice(int(jq[0]), int(jq[0]) + 9)
        self._jv = slice(int(jv[0]), int(jv[0]) + 9)
        # qpos/qvel addresses of the actuated joints (a slice when they are all nine).
        self._aq: slice | np.ndarray = self._jq if nj == 9 else jq[self._act]
        self._av: slice | np.ndarray = self._jv if nj == 9 else jv[self._act]
        self.goal = np.zeros(self.GOAL_DIM, dtype=np.float64)
        self._steps = 0

        plo, phi = self._proprio_bounds()
        self._proprio_low = plo.astype(np.float32)
        self._proprio_high = phi.astype(np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(nj,), dtype=np.float32)
        self.observation_space = self._make_obs_space()
        self._state_low = self._state_space().low
        self._state_high = self._state_space().high
        # A valid state before the first reset (default pose, first IN colours).
        nominal = np.zeros(len(spec))
        nominal[:nj] = M.DEFAULT_Q[self._act]
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

    def _oracle_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of :meth:`_oracle_features`."""
        return np.zeros(0), np.zeros(0)

    def _oracle_features(self) -> np.ndarray:
        """Task features only the ``state`` observation (the ground-truth oracle) carries."""
        return np.zeros(0)

    def _proprio_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of :meth:`_proprio`."""
        glo, ghi = self._goal_bounds()
        act = self._act
        return (np.concatenate([M.JOINT_LOW[act] - 0.1, glo]),
                np.concatenate([M.JOINT_HIGH[act] + 0.1, ghi]))

    def _proprio(self) -> np.ndarray:
        """The ``proprio`` entry of ``pixels_proprio``: actuated joint positions + goal features."""
        return np.concatenate([self.data.qpos[self._aq], self._goal_features()])

    def _state_space(self) -> spaces.Box:
        glo, ghi = self._goal_bounds()
        olo, ohi = self._oracle_bounds()
        act, nf = self._act, len(self._fingers)
        vel = VEL_BOUND * np.ones(len(act))
        low = np.concatenate(
            [M.JOINT_LOW[act] - 0.1, -vel, np.tile(POS_LOW, nf), POS_LOW, -np.ones(4), glo, olo]
        )
        high = np.concatenate(
            [M.JOINT_HIGH[act] + 0.1, vel, np.tile(POS_HIGH, nf), POS_HIGH, np.ones(4), ghi, ohi]
        )
        return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)

    def _make_obs_space(self) -> spaces.Space[Any]:
        pixels = spaces.Box(0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8)
        if self.obs_mode == "pixels":
            return pixels
        if self.obs_mode == "state":
            return self._state_space()
        if self.obs_mode == "proprio":
            return spaces.Box(self._proprio_low, self._proprio_high, dtype=np.float32)
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
        nj = self._nj
        # np.minimum/np.maximum: np.clip has a much larger per-call overhead on tiny arrays.
        np.maximum(
            np.minimum(self.data.qpos[self._aq], self._joint_high, out=out[:nj]),
            self._joint_low,
            out=out[:nj],
        )
        a = self.index.cube_qpos
        np.maximum(
            np.minimum(self.data.qpos[a : a + 2], CUBE_XY_RANGE[1], out=out[nj : nj + 2]),
            CUBE_XY_RANGE[0],
            out=out[nj : nj + 2],
        )
        # Yaw modulo the cube's pi/2 symmetry, wrapped into the declared range.
        out[nj + 2] = M.cube_yaw(self.data.qpos[a + 3 : a + 7], self._yaw_low)
        out[nj + 3 :] = self._colour_values
        return out.astype(np.float32)

    def set_factors(self, values: Mapping[str, Any] | np.ndarray) -> None:
        vec, _ = self.factor_spec.update(self.get_factors(), values)
        self._apply_factors(vec)

    def _full_joints(self, vec: np.ndarray) -> np.ndarray:
        """All nine joint positions of a factor vector (parked joints at ``PARKED_Q``)."""
        q = self._q_full
        q[self._act] = vec[: self._nj]
        return q

    def _apply_factors(self, vec: np.ndarray) -> None:
        """Write a validated factor vector into the simulation (zero velocities) and recolour."""
        vec = np.asarray(vec, dtype=np.float64)
        self._put_physical(self.data, vec)
        self.data.qvel[:] = 0.0
        self.data.qacc_warmstart[:] = 0.0
        self.data.ctrl[:] = self._full_joints(vec)
        self._target[:] = vec[: self._nj]  # delta actions continue from the joints that were set
        for idx, mat, _ in self._colour_slots:
            self.model.mat_rgba[mat, :3] = vec[idx]
        # Colours only change here; get_factors reads this cache (what the materials hold).
        mats = [m for _, m, _ in self._colour_slots]
        self._colour_values[:] = self.model.mat_rgba[mats, :3].ravel()
        mujoco.mj_forward(self.model, self.data)

    def _put_physical(self, data: mujoco.MjData, vec: np.ndarray) -> None:
        ix, nj = self.index, self._nj
        data.qpos[ix.joint_qpos] = self._full_joints(vec)
        a = ix.cube_qpos
        data.qpos[a : a + 3] = (vec[nj], vec[nj + 1], M.CUBE_HALF_WIDTH)
        data.qpos[a + 3 : a + 7] = M.yaw_to_quat(float(vec[nj + 2]))

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
        """Sample factors: joints uniform within their factor ranges, cube x/y/yaw uniform in their
        ranges, colours from the env's scheme restricted to its splits.

        Physical factors are rejection-sampled (up to ``MAX_SAMPLE_TRIES`` draws) until no finger
        touches the cube, the table, the wall or another finger, so stepping afterwards is calm.
        """
        spec = self.factor_spec
        if base is None:
            vec = self._nominal.copy()
            mask = np.ones(len(spec), dtype=bool)
            if groups is not None:
                vec = self.get_factors().astype(np.float64)
                mask = spec.group_mask(groups)
        else:
            vec = spec.check_vector(base).astype(np.float64)
            mask = (
                spec.group_mask(groups) if groups is not None else np.ones(len(spec), dtype=bool)
            )
        return self._sample(rng, vec, mask).astype(np.float32)

    def _sample(self, rng: np.random.Generator, vec: np.ndarray, mask: np.ndarray) -> np.ndarray:
        vec = vec.copy()
        for idx, _, obj in self._colour_slots:
            sel = mask[idx]
            if sel.any():
                rgb = self.colour_scheme[obj].sample(rng, self.colours)
                vec[idx[sel]] = rgb[sel]
        phys = np.flatnonzero(mask[: self._n_phys])
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
        if self.shift_runtime is not None:
            return self.shift_runtime.apply(frame)
        return frame.copy()

    def segmentation(self) -> np.ndarray:
        return self._frame_renderer().segmentation(self.data)

    def _surface_mask(self) -> np.ndarray:
        """The background surfaces (:data:`~sparseshift.envs.trifinger.model.SURFACE_OBJECTS`)
        of the current frame, for the ``texture`` shift."""
        return _IS_SURFACE[self.segmentation()]

    def annotation_image(self) -> np.ndarray:
        """The observation frame with the goal markers drawn (a second renderer unless the env
        draws them already), the shift applied."""
        if self.goal_markers:
            renderer = self._frame_renderer()
        else:
            if self._marker_renderer is None:
                self._marker_renderer = FrameRenderer(
                    self.model, self.index, self.image_size, self.camera, goal_markers=True)
            renderer = self._marker_renderer
        frame = renderer.render(self.data)
        return self.apply_shift(frame) if self.shift_runtime is not None else frame.copy()

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.render_frame()
        return None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._marker_renderer is not None:
            self._marker_renderer.close()
            self._marker_renderer = None
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
        if given is None:
            vec, set_mask = self._nominal, np.zeros(len(self.factor_spec), dtype=bool)
        else:  # checked before the simulation is touched: a refused reset changes nothing
            vec, set_mask = self.factor_spec.update(self._nominal, given)
        mujoco.mj_resetData(self.model, self.data)
        vec = self._sample_start(rng, vec, ~set_mask)
        self.goal = self._sample_goal(rng, vec)
        self._place_goal_markers()
        self.new_shift_episode(rng)  # no draw without a shift: the RNG stream is unchanged
        self._apply_factors(vec)
        self._steps = 0
        _, success = self._reward()
        return self._obs(), {"factors": self.get_factors(), "is_success": success}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self._nj,):
            raise ValueError(
                f"{type(self).__name__} actions have shape ({self._nj},), got {a.shape}"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"TriFinger action contains NaN or inf: {a.tolist()}")
        np.maximum(np.minimum(a, 1.0, out=self._action), -1.0, out=self._action)
        if self.action_mode == "delta":
            self._target += DELTA_SCALE * self._action
            np.clip(self._target, self._joint_low, self._joint_high, out=self._target)
            self.data.ctrl[self._act] = self._target
        else:
            self.data.ctrl[self._act] = self._ctrl_offset + self._action * self._ctrl_scale
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
        proprio = self._proprio()
        if self.obs_mode == "proprio":
            return np.clip(proprio, self._proprio_low, self._proprio_high).astype(np.float32)
        return {
            "pixels": self.render_frame(),
            "proprio": np.clip(proprio, self._proprio_low, self._proprio_high).astype(np.float32),
        }

    def _state_obs(self) -> np.ndarray:
        d = self.data
        tips = self.tip_positions if len(self._fingers) == 3 else self.tip_positions[self._fingers]
        v = np.concatenate(
            [
                d.qpos[self._aq],
                d.qvel[self._av],
                tips.ravel(),
                self.cube_position,
                self.cube_quaternion,
                self._goal_features(),
                self._oracle_features(),
            ]
        )
        return np.clip(v, self._state_low, self._state_high).astype(np.float32)


def unwrap(env: gym.Env[Any, Any]) -> TriFingerEnv:
    """The :class:`TriFingerEnv` under any gymnasium wrappers."""
    base = env.unwrapped
    if not isinstance(base, TriFingerEnv):
        raise TypeError(f"expected a TriFinger env, got {type(base).__name__}")
    return base
