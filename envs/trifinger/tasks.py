"""TriFinger tasks: Reach (three fingertips to three goal points) and Push (cube to a goal).

Both run at 25 Hz (``SUBSTEPS`` x 2 ms physics), never terminate early and truncate after
``max_episode_steps`` (Reach 75 steps = 3 s, Push 150 steps = 6 s by default). Rewards are dense,
in metres; ``info["is_success"]`` is the success flag Stable-Baselines3 logs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sparseshift.envs.trifinger import model as M
from sparseshift.envs.trifinger.env import MAX_SAMPLE_TRIES, POS_HIGH, POS_LOW, TriFingerEnv

#: Success radius for fingertips (Reach) and the cube centre (Push), metres.
SUCCESS_RADIUS = 0.02
#: Reach goals must be at least this high (tip centre): above the cube (edge 6.5 cm), so reaching
#: never has to push it away.
REACH_MIN_HEIGHT = 0.08
#: Reach goals are the fingertips of joints uniform within +-this of the default pose (per joint of
#: one finger: upper, middle, lower), clipped to the limits: a workspace of about 10-15 cm around
#: each finger's rest position where the three fingers cannot block one another.
REACH_GOAL_SPREAD = np.tile([0.4, 0.4, 0.6], 3)
#: Reach observations carry tip-to-goal offsets times this (1 unit = 10 cm), so they have the
#: magnitude of the other features: unscaled (cm-sized numbers) PPO did not learn in 60k steps.
REACH_OFFSET_SCALE = 10.0
#: Reach episodes start with joints uniform within +-this of the default pose.
REACH_START_SPREAD = np.tile([0.15, 0.15, 0.2], 3)
#: Push goals are uniform in a disc of this radius (the cube's x/y factor box fits the arena).
PUSH_GOAL_RADIUS = 0.11
#: Push goals start at least this far from the cube.
PUSH_MIN_GOAL_DISTANCE = 0.05
#: Weight of the fingertip-to-cube shaping term in the Push reward.
PUSH_TIP_WEIGHT = 0.5


def _near_default(rng: np.random.Generator, spread: np.ndarray) -> np.ndarray:
    """Joints uniform within ``+-spread`` of the default pose, clipped to the joint limits."""
    return np.clip(M.DEFAULT_Q + rng.uniform(-spread, spread), M.JOINT_LOW, M.JOINT_HIGH)


class TriFingerReachEnv(TriFingerEnv):
    """Move the three fingertips to three goal points.

    Episodes start near the default pose (joints within ``REACH_START_SPREAD``; the cube and the
    colours follow the factor distribution). Goals are the fingertip positions of a joint
    configuration uniform within ``REACH_GOAL_SPREAD`` of the default pose (rejected if a tip is
    below ``REACH_MIN_HEIGHT``, i.e. not above the cube, or anything interpenetrates), so every goal
    is reachable without the fingers blocking each other or touching the cube: commanding the goal
    configuration succeeds in every episode (tested). Reward: minus the sum of the three tip-goal
    distances. Success: every tip within ``SUCCESS_RADIUS`` of its goal. Observations (state and
    proprio) carry the goal (9 values) and the tip-to-goal offsets (9 values, in units of
    1 / ``REACH_OFFSET_SCALE`` m): the fingertips are
    forward kinematics of the joint angles, which a real robot knows, and with them PPO on ground
    truth learns the task in about 60k steps instead of not at all in 150k. So Reach is solvable
    from proprioception: for frozen encoders it measures whether colour-shifted latents *distract*
    the policy, while Push (cube pose only in the image) measures whether they localise the cube.
    Actions are ``delta`` joint-target increments by default. Joints given in the reset options
    are kept as given.
    """

    DEFAULT_MAX_EPISODE_STEPS: ClassVar[int] = 75
    DEFAULT_ACTION_MODE: ClassVar[str] = "delta"
    GOAL_DIM: ClassVar[int] = 9

    def _goal_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        span = REACH_OFFSET_SCALE * (POS_HIGH - POS_LOW)
        return (np.concatenate([np.tile(POS_LOW, 3), np.tile(-span, 3)]),
                np.concatenate([np.tile(POS_HIGH, 3), np.tile(span, 3)]))

    def _goal_features(self) -> np.ndarray:
        """The three goal points (m), then the three tip-to-goal offsets (goal - tip) times
        ``REACH_OFFSET_SCALE``."""
        offsets = REACH_OFFSET_SCALE * (self.goal - self.tip_positions.ravel())
        return np.concatenate([self.goal, offsets])

    #: Joint configuration whose fingertips define the current goal (an oracle target).
    goal_joints: np.ndarray = M.DEFAULT_Q

    def _sample_start(self, rng: np.random.Generator, vec: np.ndarray,
                      free: np.ndarray) -> np.ndarray:
        vec = self._sample(rng, vec, free)
        joints = free[:9]
        if joints.any():
            start = vec.copy()
            for _ in range(MAX_SAMPLE_TRIES):
                q = _near_default(rng, REACH_START_SPREAD)
                start[:9] = np.where(joints, q, vec[:9])
                if self._penetration_free(start):
                    break
            vec = start
        return vec

    def _sample_goal(self, rng: np.random.Generator, factors: np.ndarray) -> np.ndarray:
        vec = np.array(factors, dtype=np.float64)
        tips = np.zeros((3, 3))
        for _ in range(MAX_SAMPLE_TRIES):
            vec[:9] = _near_default(rng, REACH_GOAL_SPREAD)
            ok = self._penetration_free(vec)  # also runs kinematics on the scratch data
            tips = self._scratch.site_xpos[self.index.tip_sites].copy()
            if ok and tips[:, 2].min() >= REACH_MIN_HEIGHT:
                break
        self.goal_joints = vec[:9].copy()
        return tips.ravel()

    def _place_goal_markers(self) -> None:
        self.model.site_pos[self.index.goal_sites] = self.goal.reshape(3, 3)

    def _reward(self) -> tuple[float, bool]:
        dist = np.linalg.norm(self.tip_positions - self.goal.reshape(3, 3), axis=1)
        return -float(dist.sum()), bool(dist.max() < SUCCESS_RADIUS)


class TriFingerPushEnv(TriFingerEnv):
    """Push the cube to a goal position (x, y) on the arena.

    Goals are uniform in a disc of radius ``PUSH_GOAL_RADIUS`` around the arena centre, at least
    ``PUSH_MIN_GOAL_DISTANCE`` from the initial cube. Reward: minus (cube-goal distance in x/y +
    ``PUSH_TIP_WEIGHT`` x distance from the nearest fingertip to the cube centre). Success: cube
    centre within ``SUCCESS_RADIUS`` of the goal in x/y.
    """

    DEFAULT_MAX_EPISODE_STEPS: ClassVar[int] = 150
    GOAL_DIM: ClassVar[int] = 2
    #: The cube's position reaches the policy only through the image (the goal and the joints are
    #: proprioception). Reach declares none: it is solvable from proprioception.
    task_factors: ClassVar[tuple[str, ...]] = ("cube.x", "cube.y")

    def _goal_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return -np.full(2, PUSH_GOAL_RADIUS), np.full(2, PUSH_GOAL_RADIUS)

    def _sample_goal(self, rng: np.random.Generator, factors: np.ndarray) -> np.ndarray:
        cube = np.asarray(factors[9:11], dtype=np.float64)
        goal = np.zeros(2)
        for _ in range(MAX_SAMPLE_TRIES):
            r = PUSH_GOAL_RADIUS * np.sqrt(rng.uniform())
            a = rng.uniform(-np.pi, np.pi)
            goal = np.array([r * np.cos(a), r * np.sin(a)])
            if np.linalg.norm(goal - cube) >= PUSH_MIN_GOAL_DISTANCE:
                break
        return goal

    def _place_goal_markers(self) -> None:
        self.model.site_pos[self.index.goal_cube_site] = (self.goal[0], self.goal[1], 0.001)

    def _reward(self) -> tuple[float, bool]:
        cube = self.cube_position
        d_goal = float(np.hypot(cube[0] - self.goal[0], cube[1] - self.goal[1]))
        d_tip = float(np.linalg.norm(self.tip_positions - cube, axis=1).min())
        return -(d_goal + PUSH_TIP_WEIGHT * d_tip), d_goal < SUCCESS_RADIUS


__all__ = ["TriFingerPushEnv", "TriFingerReachEnv"]
