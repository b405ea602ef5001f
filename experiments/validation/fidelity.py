"""Side-by-side fidelity check of our MuJoCo TriFingerPro against the official simulator.

:func:`run_check` (``sparseshift fidelity``) draws seeded inputs, runs them through our model (the
scene every TriFinger env compiles, :func:`~sparseshift.envs.trifinger.model.load_model`) and
through ``trifinger_simulation`` 2.0 (PyBullet;
:mod:`~sparseshift.experiments.validation.fidelity_official`, next to this module, runs in a
subprocess with the interpreter that has it, so its pins never meet ours) and compares:

* **kinematics**: fingertip positions (tip link frames) for random joint configurations within the
  limits; criterion: largest error < 0.1 mm.
* **dynamics, torque**: joint trajectories under identical smooth torque sequences (1 s from
  several start poses; a constant torque holding the start pose against gravity, computed with
  our model, plus a cubic spline through random knots every 0.1 s, clipped to the torque limit)
  sent through ``SimFinger`` (1 ms steps, its safety damping and clipping) and through our model
  with its servos switched to torque mode (2 ms steps; the safety damping is the joints' damping);
  criterion: RMS joint error <= 0.02 rad over all trajectories (the worst one is reported too).
* **dynamics, PD**: the same for piecewise-constant position targets (a new one every 0.25 s,
  within 0.35 rad of the start) through the official PD controller and our position servos (the
  env's control path); criterion: RMS <= 0.02 rad over all trajectories. Inputs are drawn so that
  our simulated robot stays :data:`CLEARANCE` away from any contact (the comparison is of
  free-space dynamics); contacts during both runs are counted and reported.
* **appearance**: the robot's segmentation mask (holder, links, motors, tips) from the three
  simple ``TriFingerCameras`` poses (PyBullet's own view matrices) at 128 px, for random
  contact-free configurations; IoU with PyBullet's mask. Each mask is rendered at 4x4 the size and
  box-filtered to 128 px, because PyBullet's TinyRenderer and MuJoCo's OpenGL rasterise edges
  about half a pixel apart (the official meshes drawn by MuJoCo reach only the single-sample IoU
  reported as "renderer floor"). Criterion: every IoU >= 0.9.
* **arena**: the inner surface of the official boundary (``object_containment_sim.stl``,
  ray-cast) and of ours (``mj_ray``) at several heights, and the clearance of the 6.5 cm cube to
  each wall over the cube factor range (x, y in ``CUBE_XY_RANGE`` at any yaw); criterion: the
  range lies inside the official boundary.

The report is a table of measured figures with pass/FAIL per check (:meth:`FidelityReport.table`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# MuJoCo picks its GL backend when first imported: the trifinger package selects it first.
import sparseshift.envs.trifinger  # noqa: F401

# isort: split

import mujoco
import numpy as np

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.trifinger import model as M

#: Environment variable naming a Python interpreter that has ``trifinger_simulation``.
PYTHON_ENV_VAR = "SPARSESHIFT_FIDELITY_PYTHON"
#: The script the official interpreter runs.
OFFICIAL_SCRIPT = Path(__file__).with_name("fidelity_official.py")
#: Criteria (the issue's): fingertip error (mm), RMS joint error (rad), mask IoU.
FK_TOL_MM = 0.1
DYN_RMS_TOL = 0.02
IOU_MIN = 0.9
#: Dynamics inputs keep our simulated robot this far (m) from any contact, so that neither robot
#: touches anything (the official collision shapes are the links' convex hulls, a little fatter).
CLEARANCE = 0.02
#: Official time step (s): sequences are given per official step.
OFFICIAL_DT = 0.001
INSTALL_HINT = (
    "install the fidelity extra (pip install -e '.[fidelity]') or give an interpreter that has "
    "trifinger_simulation with --python PATH or the environment variable "
    f"{PYTHON_ENV_VAR} (e.g. python3 -m venv /tmp/fidelity-venv && "
    "/tmp/fidelity-venv/bin/pip install trifinger-simulation==2.0.0)"
)


class FidelityUnavailable(ConfigError):
    """No interpreter with ``trifinger_simulation`` was found (the CLI says how to get one)."""


@dataclass(frozen=True)
class FidelityConfig:
    """What the check samples; the defaults are the documented run."""

    seed: int = 0
    n_kinematics: int = 500  # random joint configurations for forward kinematics
    n_poses: int = 5  # start poses per dynamics mode (the first is the default pose)
    duration: float = 1.0  # seconds per trajectory
    torque_amplitude: float = 0.1  # N m, knots of the smooth random torque
    step_period: float = 0.25  # s between PD target steps
    step_size: float = 0.35  # rad, targets within this of the start pose
    n_images: int = 8  # random configurations, each seen by the three cameras
    image_size: int = 128
    supersample: int = 4

    @classmethod
    def quick(cls, seed: int = 0) -> FidelityConfig:
        return cls(seed=seed, n_kinematics=100, n_poses=3, n_images=3)


@dataclass(frozen=True)
class Row:
    """One line of the report."""

    check: str
    measured: str
    criterion: str
    status: str  # "pass", "FAIL" or "info"
    detail: str = ""


@dataclass
class FidelityReport:
    rows: list[Row]
    config: FidelityConfig
    versions: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return all(r.status != "FAIL" for r in self.rows)

    def table(self) -> str:
        """Markdown table of every row."""
        lines = ["| check | measured | criterion | result | detail |", "|---|---|---|---|---|"]
        lines += [f"| {r.check} | {r.measured} | {r.criterion} | {r.status} | {r.detail} |"
                  for r in self.rows]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "versions": self.versions, "config": asdict(self.config),
                "rows": [asdict(r) for r in self.rows]}


# ---------------------------------------------------------------------------------------------
# the official interpreter


def resolve_python(explicit: str | None = None) -> str:
    """The interpreter that runs the official side: ``explicit``, else ``$SPARSESHIFT_FIDELITY_
    PYTHON``, else this one if it can import ``trifinger_simulation`` (the ``fidelity`` extra);
    :class:`FidelityUnavailable` otherwise."""
    given = ((explicit, "--python"), (os.environ.get(PYTHON_ENV_VAR), PYTHON_ENV_VAR))
    for candidate, where in given:
        if candidate:
            path = shutil.which(candidate) or candidate
            if not Path(path).is_file():
                raise FidelityUnavailable(
                    f"{where}: no interpreter at {candidate!r}; {INSTALL_HINT}")
            return str(path)
    if importlib.util.find_spec("trifinger_simulation") is not None:
        return sys.executable
    raise FidelityUnavailable(f"trifinger_simulation is not installed here; {INSTALL_HINT}")


def run_official(python: str, request: dict[str, np.ndarray], timeout: float = 900.0
                 ) -> dict[str, np.ndarray]:
    """Run :mod:`fidelity_official` with ``python`` on ``request``; its response arrays."""
    with tempfile.TemporaryDirectory(prefix="sparseshift-fidelity-") as tmp:
        req, res = Path(tmp) / "request.npz", Path(tmp) / "response.npz"
        payload: dict[str, Any] = dict(request)
        np.savez(req, **payload)
        try:
            proc = subprocess.run(
                [python, str(OFFICIAL_SCRIPT), str(req), str(res)], capture_output=True,
                text=True, timeout=timeout, check=False,
            )
        except OSError as exc:
            raise FidelityUnavailable(f"cannot run {python}: {exc}; {INSTALL_HINT}") from exc
        if proc.returncode != 0 or not res.exists():
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])
            if "ModuleNotFoundError" in proc.stderr:
                raise FidelityUnavailable(f"{python} cannot import the official simulator "
                                          f"({tail}); {INSTALL_HINT}")
            raise RuntimeError(f"the official side failed (exit {proc.returncode}): {tail}")
        with np.load(res, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------
# our side


class _Ours:
    """Our scene with the cube made inert and invisible (the official simulator has none)."""

    def __init__(self, torque_mode: bool = False) -> None:
        m = M.load_model()
        self.index = M.ModelIndex.build(m)
        ix = self.index
        m.geom_contype[ix.cube_geom] = 0
        m.geom_conaffinity[ix.cube_geom] = 0
        m.geom_group[ix.cube_geom] = 3  # not rendered
        m.body_gravcomp[ix.cube_body] = 1.0
        #: the nine position servos (the safety-damping actuators take no control)
        self.servos = np.array([m.actuator(n).id for n in M.JOINT_NAMES])
        self.torque_mode = torque_mode
        if torque_mode:  # motors: torque = ctrl, clamped as before; the joint damping stays
            m.actuator_gainprm[self.servos] = 0.0
            m.actuator_gainprm[self.servos, 0] = 1.0
            m.actuator_biasprm[self.servos] = 0.0
            m.actuator_ctrlrange[self.servos] = (-M.MAX_TORQUE, M.MAX_TORQUE)
        self.model = m
        self.data = mujoco.MjData(m)
        holder = m.body("upper_holder").id
        robot = np.zeros(m.ngeom, dtype=bool)
        for g in range(m.ngeom):
            b = int(m.geom_bodyid[g])
            while b > 0 and b != holder:
                b = int(m.body_parentid[b])
            robot[g] = b == holder
        self.robot_geoms = robot

    def set_q(self, q: np.ndarray) -> mujoco.MjData:
        d = self.data
        mujoco.mj_resetData(self.model, d)
        d.qpos[self.index.joint_qpos] = q
        d.qpos[self.index.cube_qpos:self.index.cube_qpos + 3] = (0.0, 0.0, -0.5)
        d.ctrl[self.servos] = 0.0 if self.torque_mode else q
        mujoco.mj_forward(self.model, d)
        return d

    def robot_contacts(self, d: mujoco.MjData) -> bool:
        if d.ncon == 0:
            return False
        g = np.concatenate([d.contact.geom1[: d.ncon], d.contact.geom2[: d.ncon]])
        return bool(self.robot_geoms[g].any())

    def rollout(self, q0: np.ndarray, seq: np.ndarray) -> tuple[np.ndarray, int]:
        """Joint positions every official step (held between our steps) and the number of our
        steps that ended in robot contact; ``seq`` holds one control per official step."""
        m = self.model
        d = self.set_q(q0)
        n = max(1, round(m.opt.timestep / OFFICIAL_DT))
        out = [d.qpos[self.index.joint_qpos].copy()]
        contacts = 0
        for k in range(0, len(seq), n):
            d.ctrl[self.servos] = seq[k:k + n].mean(axis=0)
            mujoco.mj_step(m, d)
            out += [d.qpos[self.index.joint_qpos].copy()] * n
            contacts += self.robot_contacts(d)
        return np.array(out[: len(seq) + 1]), contacts

    def tips(self, q: np.ndarray) -> np.ndarray:
        d = self.data
        d.qpos[self.index.joint_qpos] = q
        mujoco.mj_kinematics(self.model, d)
        return d.site_xpos[self.index.tip_sites].copy()

    def clear(self, q: np.ndarray, margin: float, min_tip_z: float = 0.0) -> bool:
        """No robot contact within ``margin`` (m) and every tip centre above ``min_tip_z``."""
        m, d = self.model, self.data
        saved = m.geom_margin.copy()
        m.geom_margin[:] = margin
        try:
            d.qpos[self.index.joint_qpos] = q
            d.qpos[self.index.cube_qpos:self.index.cube_qpos + 3] = (0.0, 0.0, -0.5)
            mujoco.mj_kinematics(m, d)
            mujoco.mj_collision(m, d)
            if d.site_xpos[self.index.tip_sites][:, 2].min() < min_tip_z:
                return False
            for c in d.contact[: d.ncon]:
                if (self.robot_geoms[c.geom1] or self.robot_geoms[c.geom2]) and c.dist < margin:
                    return False
            return True
        finally:
            m.geom_margin[:] = saved


def _smooth_torques(rng: np.random.Generator, n: int, amplitude: float, duration: float
                    ) -> np.ndarray:
    from scipy.interpolate import CubicSpline

    knots_t = np.arange(0.0, duration + 0.2, 0.1)
    knots = rng.uniform(-amplitude, amplitude, (len(knots_t), 9))
    return np.asarray(CubicSpline(knots_t, knots)(np.arange(n) * OFFICIAL_DT))


def _clear_rollout(sim: _Ours, q0: np.ndarray, seq: np.ndarray, every: int = 10) -> bool:
    """True if our simulation of ``seq`` from ``q0`` stays :data:`CLEARANCE` clear of any
    contact, with the tips at least 4 cm above the table (checked every ``every`` official
    steps)."""
    traj, _ = sim.rollout(q0, seq)
    return all(sim.clear(q, CLEARANCE, 0.04) for q in traj[::every])


def _clear_target(sim: _Ours, rng: np.random.Generator, q: np.ndarray, size: float) -> np.ndarray:
    """A random target within ``size`` of ``q`` (and the joint limits), :data:`CLEARANCE` clear
    of contacts with the tips at least 6 cm high."""
    while True:
        t = np.clip(q + rng.uniform(-size, size, 9), M.JOINT_LOW, M.JOINT_HIGH)
        if sim.clear(t, CLEARANCE, 0.06):
            return t


def make_inputs(cfg: FidelityConfig, max_tries: int = 20) -> dict[str, np.ndarray]:
    """The seeded request: configurations, start poses, torque and target sequences. Sequences
    are redrawn until our simulation of them stays clear of contacts: the dynamics are compared
    in free space (the two contact models differ; docs/trifinger.md)."""
    rng = np.random.default_rng(cfg.seed)
    ours, motors = _Ours(), _Ours(torque_mode=True)
    req: dict[str, np.ndarray] = {}
    req["fk_q"] = np.vstack([M.DEFAULT_Q, rng.uniform(M.JOINT_LOW, M.JOINT_HIGH,
                                                        (cfg.n_kinematics - 1, 9))])
    lo, hi = np.array([-0.2, 0.3, -2.2] * 3), np.array([0.6, 1.2, -0.8] * 3)
    n = round(cfg.duration / OFFICIAL_DT)
    per = round(cfg.step_period / OFFICIAL_DT)
    starts: list[np.ndarray] = []
    tau: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for _ in range(50 * cfg.n_poses):
        if len(starts) == cfg.n_poses:
            break
        # the default pose first, then random poses clear of contacts
        q = M.DEFAULT_Q.copy() if not starts else rng.uniform(lo, hi)
        if not ours.clear(q, CLEARANCE, 0.06):
            continue
        hold = ours.set_q(q).qfrc_bias[ours.index.joint_qvel].copy()  # gravity at rest
        for _ in range(max_tries):
            seq_tau = np.clip(hold + _smooth_torques(rng, n, cfg.torque_amplitude, cfg.duration),
                              -M.MAX_TORQUE, M.MAX_TORQUE)
            if _clear_rollout(motors, q, seq_tau):
                break
        else:
            continue  # this pose drifts into contact too easily: draw another
        for _ in range(max_tries):
            steps = [_clear_target(ours, rng, q, cfg.step_size) for _ in range(math.ceil(n / per))]
            seq_pd = np.concatenate([np.repeat(t[None], per, axis=0) for t in steps])[:n]
            if _clear_rollout(ours, q, seq_pd):
                break
        else:
            continue
        starts.append(q)
        tau.append(seq_tau)
        targets.append(seq_pd)
    if len(starts) < cfg.n_poses:  # pragma: no cover (never seen)
        raise RuntimeError("could not draw contact-free dynamics inputs; lower the amplitudes")
    q0 = np.array(starts)
    req["torque_q0"] = req["pd_q0"] = q0
    req["torque_tau"] = np.array(tau)
    req["pd_target"] = np.array(targets)
    imgs = [M.DEFAULT_Q.copy()]
    while len(imgs) < cfg.n_images:
        q = rng.uniform(M.JOINT_LOW, M.JOINT_HIGH)
        if ours.clear(q, 0.0):
            imgs.append(q)
    req["img_q"] = np.array(imgs)
    req["img_sizes"] = np.array([cfg.image_size, cfg.image_size * cfg.supersample])
    return req


# ---------------------------------------------------------------------------------------------
# appearance


def _camera_from_view(model: mujoco.MjModel, cam: int, view: np.ndarray) -> None:
    """Set camera ``cam`` to PyBullet's column-major view matrix (OpenGL conventions, as
    MuJoCo's cameras: looking along -z, y up)."""
    v = np.asarray(view, dtype=np.float64).reshape(4, 4).T
    rot, t = v[:3, :3], v[:3, 3]
    model.cam_pos[cam] = -rot.T @ t
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, rot.T.flatten())
    model.cam_quat[cam] = quat


def _fovy(proj: np.ndarray) -> float:
    p = np.asarray(proj, dtype=np.float64).reshape(4, 4).T
    return math.degrees(2.0 * math.atan(1.0 / p[1, 1]))


def robot_masks(model: mujoco.MjModel, robot_geoms: np.ndarray, joint_qpos: np.ndarray,
                qs: np.ndarray, views: np.ndarray, projs: np.ndarray, size: int,
                hide_qpos: Sequence[int] = ()) -> np.ndarray:
    """bool [len(qs), len(views), size, size]: pixels whose nearest geom is in ``robot_geoms``,
    from each PyBullet camera (view and projection matrices)."""
    cam = 0
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), size)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), size)
    model.cam_bodyid[cam] = 0
    model.cam_mode[cam] = mujoco.mjtCamLight.mjCAMLIGHT_FIXED
    data = mujoco.MjData(model)
    lut = np.concatenate([[False], robot_geoms])
    out = np.zeros((len(qs), len(views), size, size), dtype=bool)
    renderer = mujoco.Renderer(model, size, size)
    try:
        renderer.enable_segmentation_rendering()
        for k, q in enumerate(qs):
            data.qpos[joint_qpos] = q
            for a in hide_qpos:
                data.qpos[a] = -0.5
            for c, (view, proj) in enumerate(zip(views, projs, strict=True)):
                _camera_from_view(model, cam, view)
                model.cam_fovy[cam] = _fovy(proj)
                mujoco.mj_forward(model, data)
                renderer.update_scene(data, cam)
                seg = renderer.render()
                is_geom = seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)
                out[k, c] = np.where(is_geom, lut[seg[..., 0] + 1], False)
    finally:
        renderer.close()
    return out


def box_filter(masks: np.ndarray, factor: int) -> np.ndarray:
    """Downsample boolean masks by ``factor`` (majority of each factor x factor block)."""
    if factor == 1:
        return masks
    *lead, h, w = masks.shape
    blocks = masks.reshape(*lead, h // factor, factor, w // factor, factor)
    return np.asarray(blocks.mean(axis=(-1, -3)) >= 0.5)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU over the last two axes."""
    inter = (a & b).sum(axis=(-1, -2))
    union = (a | b).sum(axis=(-1, -2))
    return np.asarray(np.where(union > 0, inter / np.maximum(union, 1), 1.0))


def official_mesh_model(meshes_dir: str) -> tuple[mujoco.MjModel, np.ndarray, np.ndarray]:
    """The official robot drawn with its own STL meshes by MuJoCo (the renderer floor of the
    appearance check): model, robot geoms, joint qpos addresses."""
    pi2 = math.pi / 2

    def cyl(pos: str, euler: str, length: float, r: float) -> str:
        return f'<geom type="cylinder" pos="{pos}" euler="{euler}" size="{r} {length / 2}"/>'

    def finger(k: int, yaw: float) -> str:
        return f"""<body euler="0 0 {yaw}"><body>
          <joint name="f{k}.upper" axis="0 1 0"/><geom type="mesh" mesh="prox"/>
          <geom type="mesh" mesh="motor" pos="0.01569 0.1643 0"/>
          {cyl("0.015 0.083 0", f"0 {pi2} 0", 0.015, 0.005)}
          {cyl("-0.008 0.124 0", f"{pi2} 0 0", 0.12, 0.002)}
          {cyl("-0.0085 0.050 0", f"0 {pi2} 0", 0.002, 0.014)}
          <body pos="0.01685 0.0505 0"><joint name="f{k}.middle" axis="1 0 0"/>
            <geom type="mesh" mesh="int"/><geom type="mesh" mesh="motor" pos="0.0488 0 -0.0462"/>
            {cyl("0.0488 0 -0.13", f"0 {pi2} 0", 0.015, 0.005)}
            {cyl("0.025 0 -0.09", "0 0 0", 0.12, 0.002)}
            {cyl("0.024 0 -0.16", f"0 {pi2} 0", 0.002, 0.014)}
            <body pos="0.05015 0 -0.16"><joint name="f{k}.lower" axis="1 0 0"/>
              <geom type="mesh" mesh="tiplink"/>
              <body pos="0.019 0 -0.16"><geom type="mesh" mesh="tip"/></body>
            </body></body></body></body>"""

    xml = f"""<mujoco><compiler angle="radian" meshdir="{meshes_dir}"/>
      <asset><mesh name="prox" file="pro/prox-sim.stl"/><mesh name="int" file="pro/int_sim.stl"/>
        <mesh name="tiplink" file="pro/tip_link_sim.stl"/><mesh name="tip" file="pro/tip_sim.stl"/>
        <mesh name="motor" file="pro/motor_sim.stl"/>
        <mesh name="holder" file="pro/center_axis_sim.stl"/>
        <mesh name="boundary" file="object_containment_sim.stl"/></asset>
      <default><geom contype="0" conaffinity="0"/><joint type="hinge"/></default>
      <worldbody><camera name="probe"/>
        <geom type="box" pos="0 0 -0.005" size="0.38 0.38 0.005"/>
        <geom type="mesh" mesh="boundary"/>
        <body name="upper_holder" pos="0 0 0.29"><geom type="mesh" mesh="holder"/>
          {finger(0, 0.0)}{finger(120, -2.0943951023931953)}{finger(240, -4.1887902047863905)}
        </body></worldbody></mujoco>"""
    m = mujoco.MjModel.from_xml_string(xml)
    holder = m.body("upper_holder").id
    robot = np.array([m.geom_bodyid[g] >= holder for g in range(m.ngeom)])
    qpos = np.array([m.jnt_qposadr[m.joint(f"f{f}.{j}").id] for f in (0, 120, 240)
                     for j in ("upper", "middle", "lower")])
    return m, robot, qpos


# ---------------------------------------------------------------------------------------------
# arena


def read_stl(path: str | os.PathLike[str]) -> np.ndarray:
    """Triangles [n, 3, 3] of a binary or ASCII STL file."""
    raw = Path(path).read_bytes()
    if raw[:5] == b"solid" and b"facet" in raw[:512]:
        v = [[float(x) for x in line.split()[1:4]]
             for line in raw.decode(errors="replace").splitlines()
             if line.strip().startswith("vertex")]
        return np.array(v, dtype=np.float64).reshape(-1, 3, 3)
    n = struct.unpack("<I", raw[80:84])[0]
    dt = np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    return np.frombuffer(raw[84:84 + 50 * n], dtype=dt)["v"].astype(np.float64)


def ray_distance(tris: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> float:
    """Distance along a ray to the nearest triangle (Moeller-Trumbore); inf if none."""
    v0 = tris[:, 0]
    e1, e2 = tris[:, 1] - v0, tris[:, 2] - v0
    p = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - v0
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = (q @ direction) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    return float(t[hit].min()) if hit.any() else math.inf


def wall_radius_official(tris: np.ndarray, angles: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Inner radius [heights, angles] of the official boundary mesh, ray-cast from the z axis."""
    near = tris[np.hypot(tris[..., 0], tris[..., 1]).min(axis=1) < 0.35]
    return np.array([[ray_distance(near, np.array([0.0, 0.0, z]),
                                   np.array([math.cos(a), math.sin(a), 0.0])) for a in angles]
                     for z in heights])


def wall_radius_ours(model: mujoco.MjModel, angles: np.ndarray, heights: np.ndarray
                     ) -> np.ndarray:
    """Inner radius [heights, angles] of our boundary's collision geometry (the ``wall*`` geoms,
    geom group 3), ray-cast from the z axis with the cube out of the way."""
    data = mujoco.MjData(model)
    cube = model.joint("cube").id
    data.qpos[model.jnt_qposadr[cube]:model.jnt_qposadr[cube] + 3] = (0.0, 0.0, -0.5)
    mujoco.mj_kinematics(model, data)
    groups = np.array([0, 0, 0, 1, 0, 0], dtype=np.uint8)
    gid = np.zeros(1, dtype=np.int32)
    out = np.empty((len(heights), len(angles)))
    for i, z in enumerate(heights):
        for j, a in enumerate(angles):
            r = mujoco.mj_ray(model, data, np.array([0.0, 0.0, z]),
                              np.array([math.cos(a), math.sin(a), 0.0]), groups, 1, -1, gid)
            out[i, j] = r if r >= 0 else math.inf
    return out


def cube_clearance(radius: np.ndarray, angles: np.ndarray, heights: np.ndarray,
                   xy_range: tuple[float, float], n: int = 45, n_yaw: int = 90
                   ) -> tuple[float, tuple[float, float, float]]:
    """Smallest horizontal clearance (m; negative = the cube would be inside the wall) between a
    wall of inner radius ``radius[height, angle]`` and the vertical edges of the 6.5 cm cube over
    the cube factor range (x, y in ``xy_range``, any yaw), and the worst pose (x, y, yaw)."""
    lo, hi = xy_range
    edge = np.linspace(lo, hi, n)
    xs = np.concatenate([edge, edge, np.full(n, lo), np.full(n, hi)])
    ys = np.concatenate([np.full(n, lo), np.full(n, hi), edge, edge])
    yaws = np.linspace(0.0, math.pi / 2, n_yaw, endpoint=False)
    h = M.CUBE_HALF_WIDTH
    corners = np.array([[h, h], [h, -h], [-h, h], [-h, -h]])
    c, s = np.cos(yaws), np.sin(yaws)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # [yaw, 2, 2]
    pts = np.einsum("yij,kj->yki", rot, corners)  # [yaw, corner, 2]
    px = xs[:, None, None] + pts[None, :, :, 0]
    py = ys[:, None, None] + pts[None, :, :, 1]
    r = np.hypot(px, py)
    theta = np.mod(np.arctan2(py, px), 2 * math.pi)
    step = angles[1] - angles[0]
    i0 = np.floor(np.mod(theta - angles[0], 2 * math.pi) / step).astype(int) % len(angles)
    i1 = (i0 + 1) % len(angles)
    wall = np.minimum(radius[:, i0], radius[:, i1]).min(axis=0)  # conservative, every height
    clear = wall - r
    k = np.unravel_index(np.argmin(clear), clear.shape)
    return float(clear[k]), (float(xs[k[0]]), float(ys[k[0]]), float(yaws[k[1]]))


# ---------------------------------------------------------------------------------------------
# the check


def _rms(a: np.ndarray, b: np.ndarray, every: int) -> tuple[float, float]:
    e = (a - b)[::every]
    return float(np.sqrt(np.mean(e**2))), float(np.abs(e).max())


def run_check(cfg: FidelityConfig | None = None, python: str | None = None,
              log: Callable[[str], None] = print) -> FidelityReport:
    """Run the side-by-side check (see the module docstring); ``python`` as in
    :func:`resolve_python`."""
    from sparseshift.envs.trifinger.env import CUBE_XY_RANGE

    cfg = cfg or FidelityConfig()
    exe = resolve_python(python)
    log(f"drawing inputs (seed {cfg.seed}) ...")
    req = make_inputs(cfg)
    log(f"running trifinger_simulation with {exe} ...")
    off = run_official(exe, req)
    rows: list[Row] = []
    arrays: dict[str, np.ndarray] = {}

    # kinematics
    ours = _Ours()
    tips = np.array([ours.tips(q) for q in req["fk_q"]])
    err_mm = np.linalg.norm(tips - off["fk_tips"], axis=-1) * 1000.0
    rows.append(Row(
        "kinematics: fingertip position error", f"max {err_mm.max():.2g} mm, mean "
        f"{err_mm.mean():.2g} mm", f"< {FK_TOL_MM} mm", _status(err_mm.max() < FK_TOL_MM),
        f"{len(tips)} random configurations in the joint limits, 3 tips each",
    ))

    # dynamics
    log("simulating our model ...")
    every = max(1, round(ours.model.opt.timestep / OFFICIAL_DT))
    for mode, prefix, seq_key, sim in (
        ("torque", "torque", "torque_tau", _Ours(torque_mode=True)),
        ("PD position steps", "pd", "pd_target", ours),
    ):
        rms, mx, contacts = [], [], 0
        for p, (q0, seq) in enumerate(zip(req[f"{prefix}_q0"], req[seq_key], strict=True)):
            traj, con = sim.rollout(q0, seq)
            arrays[f"{prefix}_ours_{p}"] = traj
            r_, m_ = _rms(traj, off[f"{prefix}_q"][p], every)
            rms.append(r_)
            mx.append(m_)
            contacts += con
        off_contacts = int(np.sum(off[f"{prefix}_contacts"]))
        pooled = math.sqrt(float(np.mean(np.square(rms))))
        rows.append(Row(
            f"dynamics, {mode}: RMS joint error", f"{pooled:.4f} rad (worst trajectory "
            f"{max(rms):.4f})", f"<= {DYN_RMS_TOL} rad", _status(pooled <= DYN_RMS_TOL),
            f"{len(rms)} start poses x {cfg.duration:g} s, 9 joints; largest error "
            f"{max(mx):.3f} rad; steps in contact: ours {contacts}, official {off_contacts}",
        ))

    # appearance
    log("rendering segmentation masks ...")
    size, ss = cfg.image_size, cfg.supersample
    views, projs = off["cam_view"], off["cam_proj"]
    hide = [ours.index.cube_qpos + 2]
    big = robot_masks(ours.model, ours.robot_geoms, ours.index.joint_qpos, req["img_q"], views,
                      projs, size * ss, hide)
    small = robot_masks(ours.model, ours.robot_geoms, ours.index.joint_qpos, req["img_q"],
                        views, projs, size, hide)
    off_big = off[f"img_seg_{size * ss}"] > 0
    off_small = off[f"img_seg_{size}"] > 0
    ious = iou(box_filter(big, ss), box_filter(off_big, ss))
    raw = iou(small, off_small)
    arrays.update(masks_ours=box_filter(big, ss), masks_official=box_filter(off_big, ss))
    rows.append(Row(
        f"appearance: robot mask IoU at {size} px", f"min {ious.min():.3f}, mean "
        f"{ious.mean():.3f}", f">= {IOU_MIN} each", _status(ious.min() >= IOU_MIN),
        f"{len(req['img_q'])} configurations x 3 cameras, masks box-filtered from {size * ss} px; "
        f"single-sample {size} px: min {raw.min():.3f}, mean {raw.mean():.3f}",
    ))
    ref, ref_robot, ref_q = official_mesh_model(str(off["meshes_dir"]))
    ref_big = robot_masks(ref, ref_robot, ref_q, req["img_q"], views, projs, size * ss)
    ref_small = robot_masks(ref, ref_robot, ref_q, req["img_q"], views, projs, size)
    floor = iou(box_filter(ref_big, ss), box_filter(off_big, ss))
    floor_raw = iou(ref_small, off_small)
    rows.append(Row(
        "appearance: renderer floor (official meshes drawn by MuJoCo)", f"min {floor.min():.3f}, "
        f"mean {floor.mean():.3f}", "-", "info",
        f"single-sample {size} px: min {floor_raw.min():.3f}, mean {floor_raw.mean():.3f}",
    ))

    # arena
    log("measuring the arena ...")
    # 0.5 deg apart, offset so that no ray runs exactly along a seam between wall segments
    angles = np.linspace(0.0, 2 * math.pi, 720, endpoint=False) + 0.001
    heights = np.array([0.001, 0.011, 0.021, 0.031, 0.041, 0.051, 0.064])
    tris = read_stl(str(off["boundary_stl"]))
    r_off = wall_radius_official(tris, angles, heights)
    r_ours = wall_radius_ours(ours.model, angles, heights)
    c_off, pose_off = cube_clearance(r_off, angles, heights, CUBE_XY_RANGE)
    c_ours, _ = cube_clearance(r_ours, angles, heights, CUBE_XY_RANGE)
    rng_txt = f"x, y in [{CUBE_XY_RANGE[0]:g}, {CUBE_XY_RANGE[1]:g}] m, any yaw"
    rows.append(Row(
        "arena: cube factor range inside the official boundary", f"clearance {c_off * 1000:+.1f}"
        " mm", ">= 0", _status(c_off >= 0.0),
        f"{rng_txt}; worst at x={pose_off[0]:g}, y={pose_off[1]:g}, yaw={pose_off[2]:.2f}",
    ))
    rows.append(Row(
        "arena: cube factor range inside our boundary", f"clearance {c_ours * 1000:+.1f} mm",
        ">= 0", _status(c_ours >= 0.0), rng_txt,
    ))
    prof_z = np.array([0.01, 0.03, 0.05, 0.06, 0.10, 0.17])
    p_off = wall_radius_official(tris, angles[::10], prof_z)
    p_ours = wall_radius_ours(ours.model, angles[::10], prof_z)
    for z, a, b in zip(prof_z, p_ours, p_off, strict=True):
        rows.append(Row(
            f"arena: boundary inner radius at {z * 100:g} cm",
            f"ours {a.min():.4f}-{a.max():.4f} m", "-", "info",
            f"official {b.min():.4f}-{b.max():.4f} m",
        ))
    arrays.update(wall_radius_official=r_off, wall_radius_ours=r_ours, wall_angles=angles,
                  wall_heights=heights)
    return FidelityReport(rows, cfg, str(off["versions"]), arrays)


def _status(ok: bool | np.bool_) -> str:
    return "pass" if bool(ok) else "FAIL"


def mask_tiles(report: FidelityReport, limit: int = 4) -> list[list[np.ndarray]]:
    """uint8 ``HxWx3`` overlays, per configuration (up to ``limit``) one per camera: red =
    official only, green = ours only, yellow = both."""
    a, b = report.arrays["masks_official"], report.arrays["masks_ours"]
    return [[(np.stack([a[k, c], b[k, c], np.zeros_like(a[k, c])], -1) * 255).astype(np.uint8)
             for c in range(a.shape[1])] for k in range(min(limit, len(a)))]


def mask_sheet(report: FidelityReport, limit: int = 4) -> np.ndarray:
    """The overlays of :func:`mask_tiles` in one unlabelled uint8 image (rows: configurations,
    columns: cameras); ``sparseshift fidelity`` writes a labelled sheet instead."""
    return np.concatenate([np.concatenate(row, axis=1) for row in mask_tiles(report, limit)],
                          axis=0)


def write_outputs(report: FidelityReport, out: str | os.PathLike[str],
                  masks_png: np.ndarray | None = None) -> list[Path]:
    """``fidelity.md``, ``fidelity.json``, ``masks.png`` (``masks_png``, else
    :func:`mask_sheet`) and ``fidelity.npz`` in ``out``."""
    from sparseshift.envs.infra.io import atomic_output, atomic_write_text, save_png

    d = Path(out)
    md = atomic_write_text(d / "fidelity.md", "# TriFinger fidelity vs trifinger_simulation\n\n"
                           f"{report.versions}\n\n{report.table()}\n")
    js = atomic_write_text(d / "fidelity.json", json.dumps(report.to_json(), indent=2) + "\n")
    png = save_png(d / "masks.png", mask_sheet(report) if masks_png is None else masks_png)
    with atomic_output(d / "fidelity.npz", suffix=".tmp.npz") as tmp:
        arrays: dict[str, Any] = dict(report.arrays)
        np.savez_compressed(tmp, **arrays)
    return [md, js, png, d / "fidelity.npz"]


__all__ = [
    "FidelityConfig", "FidelityReport", "FidelityUnavailable", "Row", "resolve_python",
    "run_check", "write_outputs",
]
