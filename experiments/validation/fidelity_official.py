"""The official side of ``sparseshift fidelity``: runs ``trifinger_simulation`` (PyBullet).

This file is executed as a script by the interpreter that has ``trifinger_simulation`` installed
(the ``fidelity`` extra, or a separate virtual environment named by ``--python`` /
``SPARSESHIFT_FIDELITY_PYTHON``), so it imports nothing from ``sparseshift`` and nothing beyond the
standard library, NumPy and ``trifinger_simulation``'s own dependencies::

    python fidelity_official.py REQUEST.npz RESPONSE.npz

The request holds the inputs the MuJoCo side generated (joint configurations, torque and target
sequences, image size); the response holds what the official simulator did with them. Every
array is float64 unless noted; joint order is the official one (finger0, finger120, finger240;
upper, middle, lower), which is also ``sparseshift``'s.

Request keys (each group optional):

* ``fk_q`` [N, 9]: joint configurations -> ``fk_tips`` [N, 3, 3] (tip link frame origins, world).
* ``torque_q0`` [P, 9], ``torque_tau`` [P, T, 9]: start poses and torque commands, one per 1 ms
  step, sent through ``SimFinger`` (its safety damping and torque clipping apply) ->
  ``torque_q`` [P, T + 1, 9] joint positions (row 0 = start) and ``torque_contacts`` [P] (steps
  after which the robot penetrated anything, itself included).
* ``pd_q0`` [P, 9], ``pd_target`` [P, T, 9]: position targets per 1 ms step through the default PD
  controller -> ``pd_q`` [P, T + 1, 9], ``pd_contacts`` [P].
* ``img_q`` [M, 9], ``img_sizes`` [S] (ints): robot segmentation masks from the three simple
  ``TriFingerCameras`` (TinyRenderer) -> ``img_seg_<size>`` [M, 3, size, size] int16 per size
  (0 = not the robot, else 1 + the index of the robot link in ``img_links``), ``img_links``
  (names), ``cam_view`` [3, 16] and ``cam_proj`` [3, 16] (PyBullet's column-major view and
  projection matrices).

Always returned: ``versions`` (package versions), ``meshes_dir`` (robot_properties_fingers'
meshes), ``boundary_stl`` (the boundary mesh the official stage loads), ``time_step``,
``max_torque``, ``safety_kd``, ``kp``, ``kd``.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


def _versions() -> str:
    names = ("trifinger-simulation", "robot-properties-fingers", "pybullet")
    out = []
    for n in names:
        try:
            out.append(f"{n}=={metadata.version(n)}")
        except metadata.PackageNotFoundError:
            out.append(f"{n}==?")
    return " ".join(out)


_SEQ = {"torque": "tau", "position": "target"}


def _joint_positions(pb: Any, finger: Any) -> np.ndarray:
    states = pb.getJointStates(
        finger.finger_id, finger.pybullet_joint_indices,
        physicsClientId=finger._pybullet_client_id,
    )
    return np.array([s[0] for s in states])


def _rollout(
    finger: Any, pb: Any, q0: np.ndarray, seq: np.ndarray, mode: str
) -> tuple[np.ndarray, int]:
    """Run one sequence of torques or position targets (one per simulation step); returns the
    joint positions and the number of steps after which the robot was in contact."""
    finger.reset_finger_positions_and_velocities(q0)
    out = np.empty((len(seq) + 1, 9))
    out[0] = _joint_positions(pb, finger)
    contacts = 0
    for t, u in enumerate(seq):
        if mode == "torque":
            action = finger.Action(torque=u)
        else:
            action = finger.Action(position=u)
        finger.append_desired_action(action)
        out[t + 1] = _joint_positions(pb, finger)
        points = pb.getContactPoints(bodyA=finger.finger_id,
                                     physicsClientId=finger._pybullet_client_id)
        contacts += any(p[8] < 0.0 for p in points)  # contactDistance: < 0 = penetrating
    return out, contacts


def main(request_path: str, response_path: str) -> int:
    import pybullet as pb
    import robot_properties_fingers
    from trifinger_simulation import SimFinger
    from trifinger_simulation.camera import TriFingerCameras

    req = dict(np.load(request_path, allow_pickle=False))
    finger = SimFinger(finger_type="trifingerpro", time_step=0.001, enable_visualization=False)
    cid = finger._pybullet_client_id
    meshes = Path(robot_properties_fingers.__file__).parent / "meshes"
    res: dict[str, Any] = {
        "versions": np.array(_versions()),
        "meshes_dir": np.array(str(meshes)),
        "boundary_stl": np.array(str(meshes / "object_containment_sim.stl")),
        "time_step": np.array(finger.time_step_s),
        "max_torque": np.array(finger.max_motor_torque),
        "safety_kd": np.asarray(finger.safety_kd, dtype=np.float64),
        "kp": np.asarray(finger.position_gains, dtype=np.float64),
        "kd": np.asarray(finger.velocity_gains, dtype=np.float64),
    }

    if "fk_q" in req:
        tips = np.empty((len(req["fk_q"]), 3, 3))
        for k, q in enumerate(req["fk_q"]):
            finger.reset_finger_positions_and_velocities(q)
            states = pb.getLinkStates(
                finger.finger_id, finger.pybullet_tip_link_indices,
                computeForwardKinematics=True, physicsClientId=cid,
            )
            tips[k] = [s[4] for s in states]  # URDF link frame origin
        res["fk_tips"] = tips

    for mode, prefix in (("torque", "torque"), ("position", "pd")):
        if f"{prefix}_q0" in req:
            runs = [
                _rollout(finger, pb, q0, seq, mode)
                for q0, seq in zip(req[f"{prefix}_q0"], req[f"{prefix}_{_SEQ[mode]}"], strict=True)
            ]
            res[f"{prefix}_q"] = np.stack([q for q, _ in runs])
            res[f"{prefix}_contacts"] = np.array([c for _, c in runs])

    if "img_q" in req:
        n_joints = pb.getNumJoints(finger.finger_id, physicsClientId=cid)
        links = [
            pb.getJointInfo(finger.finger_id, j, physicsClientId=cid)[12].decode()
            for j in range(n_joints)
        ]
        res["img_links"] = np.array(["base_link", *links])
        for size in (int(s) for s in req["img_sizes"]):
            # TriFingerCameras: the simple camera model (pose, fov 52 deg), here at size x size
            cams = TriFingerCameras(image_size=(size, size), pybullet_client_id=cid)
            res["cam_view"] = np.array([np.asarray(c._view_matrix) for c in cams.cameras])
            res["cam_proj"] = np.array([np.asarray(c._proj_matrix) for c in cams.cameras])
            seg = np.zeros((len(req["img_q"]), len(cams.cameras), size, size), dtype=np.int16)
            for k, q in enumerate(req["img_q"]):
                finger.reset_finger_positions_and_velocities(q)
                for c, cam in enumerate(cams.cameras):
                    _, _, _, _, raw = pb.getCameraImage(
                        width=size, height=size, viewMatrix=cam._view_matrix,
                        projectionMatrix=cam._proj_matrix, renderer=pb.ER_TINY_RENDERER,
                        flags=pb.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX, physicsClientId=cid,
                    )
                    raw = np.asarray(raw, dtype=np.int64).reshape(size, size)
                    robot = (raw >= 0) & ((raw & ((1 << 24) - 1)) == finger.finger_id)
                    link = (raw >> 24) - 1  # -1 = base link
                    seg[k, c] = np.where(robot, link + 2, 0)  # 1 + index into img_links
            res[f"img_seg_{size}"] = seg

    np.savez(response_path, **res)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python fidelity_official.py REQUEST.npz RESPONSE.npz", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
