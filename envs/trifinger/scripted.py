"""A scripted controller for TriFingerPush: one fingertip pushes the cube towards the goal.

The pushing finger is the one whose tip is nearest the point behind the cube (opposite the goal).
It lifts, travels above the cube to that point, descends, then drives through the cube centre
towards the goal; if the cube slides off the pushing line it re-approaches. The other two fingers
wait in a raised pose. Fingertip targets become joint targets by damped least squares on the MuJoCo
site Jacobian (Wampler 1986; Buss 2004, *Introduction to Inverse Kinematics with Jacobian
Transpose, Pseudoinverse and Damped Least Squares methods*). The policy reads the simulator state
(privileged); ``obs`` is accepted for interface compatibility only.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from sparseshift.envs.trifinger import model as M
from sparseshift.envs.trifinger.env import TriFingerEnv, unwrap

#: Joint pose of the fingers that are not pushing: tips about 0.17 m above the table.
WAIT_POSE = np.array([0.0, 1.2, -2.4])
TRAVEL_HEIGHT = 0.10  # tip-centre height while moving above the cube
PUSH_HEIGHT = 0.025  # tip-centre height while pushing (below the cube's centre 0.0325)
STANDOFF = M.CUBE_HALF_WIDTH + M.TIP_RADIUS + 0.015  # tip distance behind the cube centre
OVERSHOOT = 0.05  # how far past the cube centre the push target may lie
REACH_RADIUS = 0.165  # standoff points farther from the centre than this are avoided
DAMPING = 0.02  # DLS damping (m)
MAX_TASK_STEP = 0.05  # metres of task-space error used per IK iteration
IK_ITERATIONS = 4


class ScriptedPusher:
    """Scripted pushing policy for ``TriFingerPushEnv``: ``act(obs)`` gives actions in [-1, 1]^9."""

    def __init__(self, env: gym.Env[Any, Any], rng: np.random.Generator | None = None) -> None:
        self.env: TriFingerEnv = unwrap(env)
        if self.env.GOAL_DIM != 2:
            raise TypeError("ScriptedPusher needs a TriFingerPush env (2-D cube goal)")
        self.rng = rng if rng is not None else np.random.default_rng()
        self._data = mujoco.MjData(self.env.model)
        self._jac = np.zeros((3, self.env.model.nv))
        self.reset()

    def reset(self) -> None:
        """Forget the episode's phase and pushing finger (call after ``env.reset``)."""
        self._finger: int | None = None
        self._pushing = False
        # Small random standoff jitter so repeated runs are not identical across seeds.
        self._standoff = STANDOFF + float(self.rng.uniform(0.0, 0.005))

    def act(self, obs: Any = None) -> np.ndarray:
        env = self.env
        cube = env.cube_position.copy()
        goal = np.asarray(env.goal, dtype=np.float64)
        q = env.joint_positions.copy()
        target = q.copy()
        for k in range(3):
            target[3 * k : 3 * k + 3] = WAIT_POSE
        offset = goal - cube[:2]
        dist = float(np.linalg.norm(offset))
        if dist < 0.005:
            if self._finger is not None:
                k = self._finger
                target[3 * k : 3 * k + 3] = q[3 * k : 3 * k + 3]
            return M.target_to_action(target)
        u = self._push_direction(cube[:2], offset / dist)
        behind = cube[:2] - u * self._standoff
        tips = env.tip_positions
        if self._finger is None:
            self._finger = self._choose_finger(q, behind)
        k = self._finger
        tip = tips[k]
        if self._pushing:
            rel = cube[:2] - tip[:2]
            along = float(rel @ u)
            lateral = float(abs(rel[0] * u[1] - rel[1] * u[0]))
            if along < 0.0 or lateral > 0.02 or np.linalg.norm(rel) > 0.09:
                self._pushing = False
                self._finger = self._choose_finger(q, behind)
                k = self._finger
                tip = tips[k]
        if self._pushing:
            # Drive the tip to where it touches the cube once the cube is at the goal (at most
            # OVERSHOOT past the cube centre), so the push slows down as the cube arrives.
            stop = goal - u * (M.CUBE_HALF_WIDTH + M.TIP_RADIUS - 0.005)
            ahead = min(float((stop - tip[:2]) @ u), OVERSHOOT + self._standoff)
            goal_tip = np.append(tip[:2] + u * max(ahead, 0.0), PUSH_HEIGHT)
        else:
            off_line = float(np.linalg.norm(tip[:2] - behind))
            if off_line > 0.02:
                height = TRAVEL_HEIGHT if tip[2] > TRAVEL_HEIGHT - 0.03 else tip[2] + 0.04
                xy = behind if tip[2] > TRAVEL_HEIGHT - 0.03 else tip[:2]
                goal_tip = np.append(xy, height)
            else:
                goal_tip = np.append(behind, PUSH_HEIGHT)
                if tip[2] < PUSH_HEIGHT + 0.015:
                    self._pushing = True
        target[3 * k : 3 * k + 3] = self._ik(k, q, goal_tip)[0]
        return M.target_to_action(target)

    def _choose_finger(self, q: np.ndarray, behind: np.ndarray) -> int:
        """The finger whose IK gets its tip closest to the pushing position behind the cube."""
        point = np.append(behind, PUSH_HEIGHT)
        errors = [self._ik(k, q, point, iterations=12)[1] for k in range(3)]
        return int(np.argmin(errors))

    @staticmethod
    def _push_direction(cube_xy: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The direction closest to ``u`` whose standoff point behind the cube is reachable.

        Near the wall the point behind the cube can lie outside the fingers' workspace; then the
        cube is pushed at an angle (turning up to 90 deg), which also brings it inwards.
        """
        for deg in (0, 15, -15, 30, -30, 45, -45, 60, -60, 75, -75, 90, -90):
            a = np.deg2rad(deg)
            c, s = np.cos(a), np.sin(a)
            v = np.array([c * u[0] - s * u[1], s * u[0] + c * u[1]])
            if np.linalg.norm(cube_xy - v * STANDOFF) <= REACH_RADIUS:
                return v
        return u

    def _ik(
        self, k: int, q: np.ndarray, goal_tip: np.ndarray, iterations: int = IK_ITERATIONS
    ) -> tuple[np.ndarray, float]:
        """Joint angles of finger ``k`` that bring its tip towards ``goal_tip`` (DLS iterations),
        and the remaining tip error of the last iteration."""
        env, d = self.env, self._data
        ix = env.index
        sl = slice(3 * k, 3 * k + 3)
        d.qpos[:] = env.data.qpos
        qk = q[sl].copy()
        site = int(ix.tip_sites[k])
        dofs = ix.finger_dofs[k]
        n = np.inf
        for _ in range(iterations):
            d.qpos[ix.joint_qpos[sl]] = qk
            mujoco.mj_kinematics(env.model, d)
            mujoco.mj_comPos(env.model, d)
            err = goal_tip - d.site_xpos[site]
            n = float(np.linalg.norm(err))
            if n > MAX_TASK_STEP:
                err *= MAX_TASK_STEP / n
            mujoco.mj_jacSite(env.model, d, self._jac, None, site)
            jac = self._jac[:, dofs]
            dq = jac.T @ np.linalg.solve(jac @ jac.T + DAMPING**2 * np.eye(3), err)
            qk = np.clip(qk + dq, M.JOINT_LOW[sl], M.JOINT_HIGH[sl])
        return qk, n
