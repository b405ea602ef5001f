"""TriFinger ObjectReach: touch the cube with the one finger that moves.

The object-reaching task of Traeuble, Dittadi et al. (ICLR 2022, *The Role of Pretrained
Representations for the OOD Generalization of RL Agents*), on the images of the TriFinger dataset
of Dittadi et al. (ICLR 2021, *On the Transfer of Disentangled Representations in Realistic
Settings*): one finger (``finger0``, 3 joints) moves, the other two are parked, and the scene has
the dataset's 7 factors of variation: the cube colour (one colour group; the table and finger
colours stay fixed), the 3 joint angles of the moving finger, and the cube's x, y and yaw.

Definitions (see ``docs/trifinger.md``):

* Factor ranges: joints ``finger0.upper`` [-0.33, 1.0], ``finger0.middle`` [0.0, 1.4],
  ``finger0.lower`` [-2.5, -0.9] (:data:`JOINT_LOW`, :data:`JOINT_HIGH`); cube x, y in
  [-0.104, 0.104] m; cube yaw in [0, pi/2] (sampled in [0, pi/2) as the dataset's yaw grid; read
  back modulo the cube's pi/2 symmetry); cube colour from the env's colour splits.
* Parked fingers: ``finger120`` and ``finger240`` held at :data:`PARKED_FINGER_Q` (folded up, tips
  20.6 cm above the table), out of the moving finger's reach for every joint configuration in the
  factor ranges (checked by collision tests over 20,000 random configurations).
* Episodes start near the default pose (joints uniform within :data:`START_SPREAD` of
  ``[0, 0.9, -1.7]``, redrawn until the fingertip centre is at least :data:`START_MIN_TIP_HEIGHT`
  above the table, i.e. above the cube); the start is drawn before, and independently of, the cube,
  whose pose and colour follow the factor distribution.
* Actions: ``Box(-1, 1, (3,))`` delta joint-target increments of the moving finger (0.1 rad per
  step at most), targets clipped to the joint factor ranges.
* Reward: ``-d``, where ``d`` is the distance (m) from the moving fingertip's centre to the closest
  point of the cube (the solid box at its simulated pose; 0 inside). Success: ``d <
  SUCCESS_RADIUS`` = 2 cm, i.e. the tip sphere (radius 9.5 mm) within 1.05 cm of touching the cube.
  Every cube pose in the factor ranges can be touched within the joint ranges
  (:func:`touching_joints`; verified on a grid, ``docs/trifinger.md``).
* Observations: ``state`` = joint positions 3, joint velocities 3, fingertip position 3, cube
  position 3, cube quaternion 4, tip-to-cube offset 3 (``10 * (closest cube point - tip)``);
  ``pixels_proprio`` = pixels + joint positions 3, velocities 3, fingertip position 3 (forward
  kinematics): nothing that reveals the cube, whose pose reaches an agent only through the image.
"""

from __future__ import annotations

from typing import ClassVar

import mujoco
import numpy as np

from sparseshift.envs.trifinger import model as M
from sparseshift.envs.trifinger.env import (
    MAX_SAMPLE_TRIES,
    POS_HIGH,
    POS_LOW,
    VEL_BOUND,
    TriFingerEnv,
    build_factor_spec,
)

#: The moving finger's joints (indices into ``M.JOINT_NAMES``: finger0 upper, middle, lower).
MOVING_JOINTS: tuple[int, ...] = (0, 1, 2)
#: Joint factor ranges of the moving finger. The dataset's half-widths (0.65, 0.5, 0.8) around the
#: default pose [0, 0.9, -1.7], clipped to the URDF limits, give [-0.33, 0.65], [0.4, 1.4],
#: [-2.5, -0.9]; from there a fingertip cannot touch cubes at x < -0.06 or y < -0.07, so the upper
#: joint takes its full URDF range and the middle joint extends down to its limit 0.
JOINT_LOW = np.array([-0.33, 0.0, -2.5])
JOINT_HIGH = np.array([1.0, 1.4, -0.9])
#: Cube yaw factor range, as the dataset's (10 values in [0, pi/2)).
YAW_RANGE = (0.0, float(np.pi / 2))
#: Joint positions (upper, middle, lower) of the two parked fingers: middle link raised towards
#: horizontal, lower link folded back up, so they stay out of the arena and of finger0's reach.
PARKED_FINGER_Q = np.array([0.0, 1.5, -2.6])
#: Episodes start with the moving finger's joints uniform within +-this of the default pose.
START_SPREAD = np.array([0.15, 0.15, 0.2])
#: ... redrawn until the fingertip centre is this high (m; cube top 6.5 cm), so the start never
#: touches the cube and does not depend on where it is.
START_MIN_TIP_HEIGHT = 0.09
#: Success: fingertip centre within this distance (m) of the cube (tip radius 9.5 mm).
SUCCESS_RADIUS = 0.02
#: The oracle's tip-to-cube offset is scaled by this (1 unit = 10 cm), as Reach's offsets.
OFFSET_SCALE = 10.0


def box_closest_point(
    point: np.ndarray, centre: np.ndarray, rot: np.ndarray, half: float
) -> np.ndarray:
    """Closest point to ``point`` of a solid cube (centre, 3x3 rotation, half-width)."""
    local = rot.T @ (np.asarray(point, dtype=np.float64) - centre)
    return centre + rot @ np.clip(local, -half, half)


class TriFingerObjectReachEnv(TriFingerEnv):
    """Touch the cube with the fingertip of the one moving finger (Traeuble, Dittadi et al. 2022).

    The images and factors are those of the Dittadi et al. (2021) TriFinger dataset: finger0 moves,
    finger120 and finger240 are parked at :data:`PARKED_FINGER_Q`, and the factors are the cube
    colour, finger0's three joints and the cube's x, y and yaw (module docstring for the ranges).
    Reward ``-d`` (fingertip centre to the closest point of the cube, metres); success ``d <
    SUCCESS_RADIUS``. Episodes of 50 steps (2 s), ``delta`` actions of shape (3,).
    """

    DEFAULT_MAX_EPISODE_STEPS: ClassVar[int] = 50
    DEFAULT_ACTION_MODE: ClassVar[str] = "delta"
    ACTUATED_JOINTS: ClassVar[tuple[int, ...]] = MOVING_JOINTS
    PARKED_Q: ClassVar[np.ndarray] = np.concatenate([M.DEFAULT_Q[:3], PARKED_FINGER_Q,
                                                     PARKED_FINGER_Q])
    COLOUR_GROUPS: ClassVar[tuple[tuple[str, str], ...]] = (("cube_colour", "cube"),)
    FACTOR_SPEC = build_factor_spec(MOVING_JOINTS, JOINT_LOW, JOINT_HIGH, YAW_RANGE,
                                    (("cube_colour", "cube"),))
    #: What the policy must read from the image: the cube's position (the joints, tip position and
    #: velocities are proprioception). The yaw moves the cube's closest point by at most
    #: (sqrt(2) - 1) x 3.25 cm = 1.3 cm, less than ``SUCCESS_RADIUS``, so it is left out.
    task_factors: ClassVar[tuple[str, ...]] = ("cube.x", "cube.y")

    _tip_grid: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ geometry
    @property
    def tip_position(self) -> np.ndarray:
        """World position of the moving fingertip's centre."""
        return self.data.site_xpos[self.index.tip_sites[0]]

    def closest_cube_point(self) -> np.ndarray:
        """The point of the cube (solid box at its current pose) closest to the fingertip."""
        b = self.index.cube_body
        rot = self.data.xmat[b].reshape(3, 3)
        return box_closest_point(self.tip_position, self.data.xpos[b], rot, M.CUBE_HALF_WIDTH)

    def cube_distance(self) -> float:
        """Distance (m) from the fingertip's centre to the closest point of the cube (0 inside)."""
        return float(np.linalg.norm(self.closest_cube_point() - self.tip_position))

    # ------------------------------------------------------------------ observations
    def _proprio_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        act = self._act
        vel = VEL_BOUND * np.ones(len(act))
        return (np.concatenate([M.JOINT_LOW[act] - 0.1, -vel, POS_LOW]),
                np.concatenate([M.JOINT_HIGH[act] + 0.1, vel, POS_HIGH]))

    def _proprio(self) -> np.ndarray:
        """Joint positions and velocities of the moving finger and its fingertip position."""
        d = self.data
        return np.concatenate([d.qpos[self._aq], d.qvel[self._av], self.tip_position])

    def _oracle_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        span = OFFSET_SCALE * (POS_HIGH - POS_LOW)
        return -span, span

    def _oracle_features(self) -> np.ndarray:
        """``OFFSET_SCALE * (closest cube point - fingertip)``."""
        return OFFSET_SCALE * (self.closest_cube_point() - self.tip_position)

    # ------------------------------------------------------------------ episodes
    def _tip_height_ok(self, vec: np.ndarray) -> bool:
        d = self._scratch
        self._put_physical(d, vec)
        mujoco.mj_kinematics(self.model, d)
        return bool(d.site_xpos[self.index.tip_sites[0], 2] >= START_MIN_TIP_HEIGHT)

    def _sample_start(self, rng: np.random.Generator, vec: np.ndarray,
                      free: np.ndarray) -> np.ndarray:
        """Joints near the default pose first (tip above the cube; the draws never look at the
        cube), then colours and cube pose from the factor distribution."""
        vec = vec.copy()
        nj = self._nj
        joints = free[:nj]
        if joints.any():
            start = vec.copy()
            centre = M.DEFAULT_Q[self._act]
            for _ in range(MAX_SAMPLE_TRIES):
                q = np.clip(centre + rng.uniform(-START_SPREAD, START_SPREAD),
                            self._joint_low, self._joint_high)
                start[:nj] = np.where(joints, q, vec[:nj])
                if self._tip_height_ok(start):
                    break
            vec = start
        rest = free.copy()
        rest[:nj] = False
        return self._sample(rng, vec, rest)

    def _reward(self) -> tuple[float, bool]:
        d = self.cube_distance()
        return -d, d < SUCCESS_RADIUS


def touching_joints(
    env: TriFingerObjectReachEnv,
    cube: tuple[float, float, float],
    radius: float = 0.015,
    grid: int = 30,
) -> np.ndarray | None:
    """Joints of the moving finger within its factor ranges that touch a cube at ``(x, y, yaw)``.

    Grid search (``grid`` values per joint): among configurations whose fingertip centre is within
    ``radius`` of the cube and not inside it, the closest one with no interpenetration anywhere
    (finger vs cube, table, wall and the parked fingers). None if there is none. Used to check that
    every cube pose of the factor range is reachable.
    """
    if env._tip_grid is None:
        axes = [np.linspace(lo, hi, grid) for lo, hi in zip(env._joint_low, env._joint_high,
                                                             strict=True)]
        qs = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        d = env._scratch
        vec = env._nominal.copy()
        tips = np.empty_like(qs)
        for k, q in enumerate(qs):
            vec[:3] = q
            env._put_physical(d, vec)
            mujoco.mj_kinematics(env.model, d)
            tips[k] = d.site_xpos[env.index.tip_sites[0]]
        env._tip_grid = (qs, tips)
    qs, tips = env._tip_grid
    x, y, yaw = cube
    centre = np.array([x, y, M.CUBE_HALF_WIDTH])
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    local = (tips - centre) @ rot  # rows: rot.T @ (tip - centre)
    dist = np.linalg.norm(local - np.clip(local, -M.CUBE_HALF_WIDTH, M.CUBE_HALF_WIDTH), axis=1)
    ok = (dist >= M.TIP_RADIUS - 1e-3) & (dist <= radius)
    vec = env._nominal.copy()
    vec[3:6] = (x, y, yaw)
    for k in np.flatnonzero(ok)[np.argsort(dist[ok])]:
        vec[:3] = qs[k]
        if env._penetration_free(vec):
            return qs[k].copy()
    return None


__all__ = ["TriFingerObjectReachEnv", "box_closest_point", "touching_joints"]
