"""The MuJoCo TriFingerPro model: file locations, reference constants and cached ids.

Geometry, joint limits, masses, gains and the default pose follow the public TriFingerPro URDF and
``trifinger_simulation`` 2.0 (Wuthrich et al. 2020, *TriFinger: An Open-Source Robot for Learning
Dexterity*, CoRL); see ``docs/trifinger.md`` for what is faithful and what is approximated.

Public constants used by benchmarks (``sparseshift bench envs``): :func:`scene_xml`,
:data:`PHYSICS_TIMESTEP`, :data:`SUBSTEPS`, :data:`CONTROL_DT`, :data:`CAMERAS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import mujoco
import numpy as np

from sparseshift.envs.shifts.lenses import TRIFINGER_LENSES, Lens

#: Physics timestep in seconds (also set in ``scene.xml``).
PHYSICS_TIMESTEP = 0.002
#: Physics steps per env step: 20 x 2 ms = 40 ms, i.e. a 25 Hz control rate.
SUBSTEPS = 20
#: Seconds per env step.
CONTROL_DT = PHYSICS_TIMESTEP * SUBSTEPS

FINGERS: tuple[str, ...] = ("finger0", "finger120", "finger240")
JOINTS_PER_FINGER: tuple[str, ...] = ("upper", "middle", "lower")
#: Joint names in actuator/action order, e.g. ``finger0.upper``; they are also factor names.
JOINT_NAMES: tuple[str, ...] = tuple(f"{f}.{j}" for f in FINGERS for j in JOINTS_PER_FINGER)
#: Joint limits (URDF; trifingerpro_limits.py ``robot_position``), per joint in JOINT_NAMES order.
JOINT_LOW = np.array([-0.33, 0.0, -2.7] * 3)
JOINT_HIGH = np.array([1.0, 1.57, 0.0] * 3)
#: Default joint positions (trifinger_simulation finger_types_data.py).
DEFAULT_Q = np.array([0.0, 0.9, -1.7] * 3)
#: Fingertip positions at DEFAULT_Q (pybullet and pinocchio FK of the reference URDF).
REFERENCE_DEFAULT_TIPS = np.array(
    [[0.086, 0.06106, 0.07907], [0.00988, -0.10501, 0.07907], [-0.09588, 0.04395, 0.07907]]
)
#: Link masses (URDF): upper, middle, lower, tip.
LINK_MASSES = {"upper_link": 0.26689, "middle_link": 0.27163, "lower_link": 0.05569, "tip": 0.0092}
#: Link centres of mass in the link frames (URDF ``inertial`` origins).
LINK_COMS = {
    "upper_link": (0.006, 0.122, 0.0),
    "middle_link": (0.03935008, -0.00012438, -0.08666705),
    "lower_link": (0.016327, -0.00001095, -0.04284052),
    "tip": (-0.00001194, 0.0, 0.0156006),
}
#: Link inertia tensors about the centre of mass (URDF): ixx, iyy, izz, ixy, ixz, iyz.
LINK_INERTIAS = {
    "upper_link": (0.00102362, 0.0000645, 0.00102225, 0.00000889, -0.00000019, 0.00000106),
    "middle_link": (0.0009406, 0.00094824, 0.00007573, -0.00000046, -0.00003479, 0.00000164),
    "lower_link": (0.00013626, 0.00013372, 0.00000667, 0.0, -0.00000662, 0.00000004),
    "tip": (0.00000155, 0.00000155, 0.00000032, 0.0, 0.0, 0.0),
}
MAX_TORQUE = 0.396
KP = np.array([15.0, 15.0, 9.0] * 3)
KD = np.array([0.5, 1.0, 0.5] * 3)
#: trifinger_simulation's safety damping (``safety_kd``), applied to every torque command; here
#: the joints' damping (added after the servo's torque clipping, see docs/trifinger.md).
SAFETY_KD = np.array([0.08, 0.08, 0.04] * 3)

CUBE_HALF_WIDTH = 0.0325
CUBE_MASS = 0.094
#: Radius used for sampling goals/objects in trifinger_simulation (move_cube ``_ARENA_RADIUS``).
ARENA_RADIUS = 0.195
#: Inner radius of our boundary wall at the table, up to :data:`BOUNDARY_KNEE_HEIGHT` (the official
#: wall is at 0.194-0.195 m there; ours is widened so the cube factor range fits, see docs).
BOUNDARY_INNER_RADIUS = 0.2025
#: Above this height (m) the wall flares out as the official one: inner radius
#: :func:`boundary_inner_radius`, up to its rim at :data:`BOUNDARY_HEIGHT`.
BOUNDARY_KNEE_HEIGHT = 0.04343
BOUNDARY_HEIGHT = 0.1749
#: Radius of the fingertip sphere (official tip_sim.stl; the tip site is its centre).
TIP_RADIUS = 0.010

CAMERAS: tuple[str, ...] = ("camera60", "camera180", "camera300", "overview")
#: Materials whose colour is controllable; cube/stage/fingers are colour factors.
MATERIALS: tuple[str, ...] = ("cube", "stage", "fingers", "boundary", "background")
#: Segmentation classes; values of ``segmentation()`` index this tuple.
OBJECT_NAMES: tuple[str, ...] = ("background", "arena", "cube", "finger0", "finger120", "finger240")
#: The background surfaces a ``texture`` shift patterns: the backdrop (``background``) and the
#: arena (the table top, the boundary wall and the few pixels of the static finger holder).
SURFACE_OBJECTS: tuple[str, ...] = ("background", "arena")
#: Lens distortion ``(k1, k2, p1, p2, k3)`` per camera: the real platform cameras' calibration
#: (trifinger_simulation's camera parameters); the overview camera, which has no real
#: counterpart, borrows camera60's. The ``distortion`` shift applies them at level 3.
CAMERA_LENSES: Mapping[str, Lens] = MappingProxyType(
    {**TRIFINGER_LENSES, "overview": TRIFINGER_LENSES["camera60"]})


def boundary_inner_radius(z: float) -> float:
    """Inner radius (m) of our boundary wall at height ``z`` (flat faces of its 36-gon)."""
    return max(BOUNDARY_INNER_RADIUS, 0.2063 + 0.5787 * (z - 0.05))


def asset_dir() -> Path:
    """Directory holding ``scene.xml`` and ``trifingerpro.xml``."""
    return Path(str(resources.files("sparseshift.assets") / "trifinger"))


def scene_xml() -> Path:
    """Path of the full scene (robot, table, arena, cube, cameras)."""
    return asset_dir() / "scene.xml"


def load_model() -> mujoco.MjModel:
    """Compile a fresh scene model (each env owns its model; nothing is shared)."""
    return mujoco.MjModel.from_xml_path(str(scene_xml()))


def _id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> int:
    i = int(mujoco.mj_name2id(model, kind, name))
    if i < 0:
        raise KeyError(f"TriFinger model has no {kind.name} named {name!r}")
    return i


@dataclass(frozen=True)
class ModelIndex:
    """Ids and addresses looked up once per model, so the step loop does no name lookups."""

    joint_qpos: np.ndarray  # [9] qpos addresses of the finger joints (JOINT_NAMES order)
    joint_qvel: np.ndarray  # [9] dof addresses
    cube_qpos: int  # address of the cube's free joint (pos 3 + quat 4)
    cube_qvel: int
    cube_body: int
    cube_geom: int
    tip_sites: np.ndarray  # [3]
    tip_bodies: np.ndarray  # [3]
    tip_geoms: np.ndarray  # [3]
    materials: dict[str, int]
    cameras: dict[str, int]
    goal_sites: np.ndarray  # [3] reach goal markers
    goal_cube_site: int
    geom_object: np.ndarray  # [ngeom] index into OBJECT_NAMES per geom
    finger_geoms: np.ndarray  # geoms that belong to any finger (incl. visual-only)
    finger_dofs: np.ndarray  # [3, 3] dof addresses per finger

    @classmethod
    def build(cls, model: mujoco.MjModel) -> ModelIndex:
        obj = mujoco.mjtObj
        joints = [_id(model, obj.mjOBJ_JOINT, n) for n in JOINT_NAMES]
        cube_joint = _id(model, obj.mjOBJ_JOINT, "cube")
        cube_body = _id(model, obj.mjOBJ_BODY, "cube")
        # Map every geom to a segmentation object through the body tree.
        geom_object = np.zeros(model.ngeom, dtype=np.int32)
        finger_roots = {_id(model, obj.mjOBJ_BODY, f): k + 3 for k, f in enumerate(FINGERS)}
        holder = _id(model, obj.mjOBJ_BODY, "upper_holder")
        background = _id(model, obj.mjOBJ_GEOM, "background")
        for g in range(model.ngeom):
            b = int(model.geom_bodyid[g])
            if g == background:
                cls_ = 0
            elif b == cube_body:
                cls_ = 2
            else:
                cls_ = 1  # table, boundary
                while b > 0:
                    if b in finger_roots:
                        cls_ = finger_roots[b]
                        break
                    if b == holder:
                        break  # the static holder counts as arena (fixed scene structure)
                    b = int(model.body_parentid[b])
            geom_object[g] = cls_
        finger_geoms = np.flatnonzero(geom_object >= 3)
        return cls(
            joint_qpos=np.array([model.jnt_qposadr[j] for j in joints]),
            joint_qvel=np.array([model.jnt_dofadr[j] for j in joints]),
            cube_qpos=int(model.jnt_qposadr[cube_joint]),
            cube_qvel=int(model.jnt_dofadr[cube_joint]),
            cube_body=cube_body,
            cube_geom=_id(model, obj.mjOBJ_GEOM, "cube"),
            tip_sites=np.array([_id(model, obj.mjOBJ_SITE, f"{f}.tip") for f in FINGERS]),
            tip_bodies=np.array([_id(model, obj.mjOBJ_BODY, f"{f}.tip") for f in FINGERS]),
            tip_geoms=np.array([_id(model, obj.mjOBJ_GEOM, f"{f}.tip") for f in FINGERS]),
            materials={m: _id(model, obj.mjOBJ_MATERIAL, m) for m in MATERIALS},
            cameras={c: _id(model, obj.mjOBJ_CAMERA, c) for c in CAMERAS},
            goal_sites=np.array([_id(model, obj.mjOBJ_SITE, f"goal{i}") for i in range(3)]),
            goal_cube_site=_id(model, obj.mjOBJ_SITE, "goal_cube"),
            geom_object=geom_object,
            finger_geoms=finger_geoms,
            finger_dofs=np.array(
                [[model.jnt_dofadr[joints[3 * k + i]] for i in range(3)] for k in range(3)]
            ),
        )


def yaw_to_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``yaw`` about world z."""
    return np.array([np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0)])


def cube_yaw(quat: np.ndarray, low: float = -math.pi / 4) -> float:
    """Yaw of a cube in [low, low + pi/2] (default [-pi/4, pi/4]), modulo its pi/2 symmetry.

    Uses whichever cube axis is most horizontal, so tilted or flipped cubes still give a yaw.
    (Plain float arithmetic: this runs every env step.)
    """
    w, x, y, z = np.asarray(quat, dtype=np.float64).tolist()
    n = w * w + x * x + y * y + z * z
    s = 2.0 / n if n > 0 else 0.0
    # Columns of the rotation matrix = the cube's x, y, z axes in world coordinates.
    axes = (
        (1.0 - s * (y * y + z * z), s * (x * y + w * z), s * (x * z - w * y)),
        (s * (x * y - w * z), 1.0 - s * (x * x + z * z), s * (y * z + w * x)),
        (s * (x * z + w * y), s * (y * z - w * x), 1.0 - s * (x * x + y * y)),
    )
    ax = min(axes, key=lambda v: abs(v[2]))
    return wrap_yaw(math.atan2(ax[1], ax[0]), low)


def wrap_yaw(yaw: float, low: float = -math.pi / 4) -> float:
    """Wrap an angle into [low, low + pi/2] (the cube looks the same every pi/2; by default
    [-pi/4, pi/4]).

    Angles already within the range (up to 1e-6, the factor tolerance) are returned unchanged, so
    a yaw set to exactly either end of the range reads back as set.
    """
    q = math.pi / 2.0
    if low - 1e-6 <= yaw <= low + q + 1e-6:
        return float(yaw)
    return (yaw - low) % q + low


def action_to_target(action: np.ndarray) -> np.ndarray:
    """Map actions in [-1, 1]^9 linearly onto absolute joint targets within the joint limits."""
    return JOINT_LOW + (np.asarray(action, dtype=np.float64) + 1.0) * 0.5 * (JOINT_HIGH - JOINT_LOW)


def target_to_action(q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`action_to_target` (float32, clipped to [-1, 1])."""
    a = 2.0 * (np.asarray(q, dtype=np.float64) - JOINT_LOW) / (JOINT_HIGH - JOINT_LOW) - 1.0
    return np.clip(a, -1.0, 1.0).astype(np.float32)
