"""ColourGrid: reach the object of the target shape; colours are free factors of variation.

An open ``size x size`` arena (no walls) holds the agent (drawn as a hollow square, ``frame``) and
``n_objects`` objects. Exactly one object has ``target_shape``; the distractors have other shapes
from :data:`OBJECT_SHAPES`. The task is defined by shape only, so shifting colours (Dittadi et al.,
ICLR 2021, *On the Transfer of Disentangled Representations in Realistic Settings*; the IN / OOD1 /
OOD2 split protocol of :mod:`sparseshift.envs.colours`) never changes what the agent must do.

Actions (``Discrete(4)``, the MiniGrid direction order): 0 right (+x), 1 down (+y), 2 left (-x),
3 up (-y). Moving off the grid leaves the agent in place. Objects are never entered: moving into the
target's cell *touches* it, which ends the episode with reward ``+1`` and ``info["is_success"] =
True``; moving into a distractor leaves the agent in place and costs ``distractor_penalty``. Every
other step costs ``step_penalty``. Episodes truncate after ``max_episode_steps`` steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from sparseshift.envs.base import FactorEnv
from sparseshift.envs.config import check_int
from sparseshift.envs.errors import ConfigError, choice_error
from sparseshift.envs.factors import Factor, FactorSpec, colour_factors
from sparseshift.envs.grid.render import SHAPE_ID, TileRenderer, check_distinct, to_uint8

#: Shapes objects can have (factor value ``object{i}.shape`` indexes this tuple).
OBJECT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
AGENT_SHAPE = "frame"
#: Action -> (dx, dy): right, down, left, up.
MOVES: tuple[tuple[int, int], ...] = ((1, 0), (0, 1), (-1, 0), (0, -1))
_MAX_TRIES = 10_000


def check_action(action: object, n: int) -> int:
    """A valid ``Discrete(n)`` action as int, else :class:`ConfigError` (state left unchanged)."""
    arr = np.asarray(action)
    if arr.shape not in ((), (1,)) or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"action must be an integer in [0, {n - 1}], got {action!r}")
    a = int(arr.reshape(()))
    if not 0 <= a < n:
        raise ConfigError(f"action must be an integer in [0, {n - 1}], got {a}")
    return a


def _quantise(vec: np.ndarray) -> np.ndarray:
    """float64 copy holding exactly the float32 values reported in ``info["factors"]``.

    Rendering reads these, so a factor vector read back and set again renders identically.
    """
    return np.asarray(vec, dtype=np.float32).astype(np.float64)


class ColourGridEnv(FactorEnv[Any, np.int64]):
    """Reach the object with ``target_shape`` in an open grid; see the module docstring.

    Factors (spec order): ``agent.x``, ``agent.y`` (group ``agent_pos``); per object ``i``:
    ``object{i}.x``, ``object{i}.y`` (group ``object{i}_pos``), ``object{i}.shape`` (index into
    :data:`OBJECT_SHAPES`), ``object{i}_colour.r/.g/.b``; then ``agent_colour.*`` and
    ``background_colour.*``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gym.Env API)

    def __init__(
        self,
        size: int = 8,
        n_objects: int = 3,
        target_shape: str = "circle",
        image_size: int = 64,
        obs_mode: str = "pixels",
        colours: str | Sequence[str] = "in",
        colour_scheme: str = "grid8",
        colour_seed: int = 0,
        max_episode_steps: int | None = None,
        step_penalty: float = 0.01,
        distractor_penalty: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        self.size = check_int("size", size, 2, 32)
        self.n_objects = check_int("n_objects", n_objects, 1, self.size * self.size - 1)
        if target_shape not in OBJECT_SHAPES:
            raise choice_error("target_shape", target_shape, OBJECT_SHAPES)
        self.target_shape = target_shape
        self.target_id = OBJECT_SHAPES.index(target_shape)
        self.configure(obs_mode, render_mode, colours, colour_scheme, colour_seed,
                       ("object", "agent", "background"))
        # None: no limit of its own; gymnasium.make adds TimeLimit(DEFAULT_MAX_EPISODE_STEPS).
        self.max_episode_steps = (
            None if max_episode_steps is None
            else check_int("max_episode_steps", max_episode_steps, 1)
        )
        for name, val in (
            ("step_penalty", step_penalty),
            ("distractor_penalty", distractor_penalty),
        ):
            if isinstance(val, bool) or not isinstance(val, int | float) or not np.isfinite(val):
                raise ConfigError(f"{name} must be a finite number, got {val!r}")
        self.step_penalty = float(step_penalty)
        self.distractor_penalty = float(distractor_penalty)
        self.renderer = TileRenderer(self.size, self.size, image_size)
        check_distinct(self.renderer.masks, (*OBJECT_SHAPES, AGENT_SHAPE))
        self.image_size = self.renderer.image_size
        self.object_names = ("background", "agent", *(f"object{i}" for i in range(self.n_objects)))
        self.factor_spec = self._build_spec()
        self._build_index()
        self._shape_ids = np.array([SHAPE_ID[s] for s in OBJECT_SHAPES], dtype=np.intp)
        self.action_space = spaces.Discrete(4)
        self.observation_space = self._build_obs_space()
        self._factors = _quantise(self._sample_full(np.random.default_rng(0)))
        self._steps = 0

    # ------------------------------------------------------------------ spec and spaces
    def _build_spec(self) -> FactorSpec:
        cells = tuple(float(v) for v in range(self.size))
        hi = float(self.size - 1)
        shapes = tuple(float(v) for v in range(len(OBJECT_SHAPES)))
        fs: list[Factor] = [
            Factor("agent.x", "discrete", 0.0, hi, cells, group="agent_pos"),
            Factor("agent.y", "discrete", 0.0, hi, cells, group="agent_pos"),
        ]
        for i in range(self.n_objects):
            fs += [
                Factor(f"object{i}.x", "discrete", 0.0, hi, cells, group=f"object{i}_pos"),
                Factor(f"object{i}.y", "discrete", 0.0, hi, cells, group=f"object{i}_pos"),
                Factor(f"object{i}.shape", "discrete", 0.0, float(len(shapes) - 1), shapes),
                *colour_factors(f"object{i}_colour"),
            ]
        fs += [*colour_factors("agent_colour"), *colour_factors("background_colour")]
        return FactorSpec(tuple(fs))

    def _build_index(self) -> None:
        spec = self.factor_spec
        n = self.n_objects
        # positions [n+1, 2] (agent first), shapes [n], colours [n+2, 3] (objects, agent, bg)
        self._pos_idx = np.array(
            [[spec.index("agent.x"), spec.index("agent.y")]]
            + [[spec.index(f"object{i}.x"), spec.index(f"object{i}.y")] for i in range(n)]
        )
        self._shape_idx = np.array([spec.index(f"object{i}.shape") for i in range(n)])
        groups = [f"object{i}_colour" for i in range(n)] + ["agent_colour", "background_colour"]
        self._col_idx = np.array([spec.group_indices(g) for g in groups])

    def _build_obs_space(self) -> spaces.Space[Any]:
        s = self.image_size
        pixels = spaces.Box(0, 255, (s, s, 3), dtype=np.uint8)
        if self.obs_mode == "pixels":
            return pixels
        if self.obs_mode == "state":
            n = 2 + self.n_objects * (2 + len(OBJECT_SHAPES) + 3) + 6
            return spaces.Box(-1.0, 1.0, (n,), dtype=np.float32)
        proprio = spaces.Box(0.0, 1.0, (2 + len(OBJECT_SHAPES),), dtype=np.float32)
        return spaces.Dict({"pixels": pixels, "proprio": proprio})

    # ------------------------------------------------------------------ factors
    def _violation(self, vec: np.ndarray, fixed: np.ndarray | None = None) -> str | None:
        """Why ``vec`` is not a valid state (None if valid).

        With ``fixed`` (a mask of user-set factors) only the constraints among fixed factors are
        checked: two entities whose coordinates are all fixed on one cell, more than one fixed
        target, or every shape fixed without a target.
        """
        pos = vec[self._pos_idx].astype(np.int64)
        shapes = vec[self._shape_idx].astype(np.int64)
        names = ("agent", *(f"object{i}" for i in range(self.n_objects)))
        pfix = np.ones(len(names), bool) if fixed is None else fixed[self._pos_idx].all(axis=1)
        sfix = np.ones(len(shapes), bool) if fixed is None else fixed[self._shape_idx]
        cells: dict[tuple[int, int], str] = {}
        for name, (x, y), f in zip(names, pos.tolist(), pfix, strict=True):
            if not f:
                continue
            if (x, y) in cells:
                return f"{cells[(x, y)]} and {name} are both on cell ({x}, {y})"
            cells[(x, y)] = name
        n_target = int(np.sum((shapes == self.target_id) & sfix))
        if n_target > 1:
            return (
                f"{n_target} objects have the target shape {self.target_shape!r}; exactly one must"
            )
        if n_target == 0 and sfix.all():
            return f"no object has the target shape {self.target_shape!r}; exactly one must"
        return None

    def _sample_full(self, rng: np.random.Generator) -> np.ndarray:
        vec = np.zeros(len(self.factor_spec), dtype=np.float64)
        n = self.n_objects
        cells = rng.choice(self.size * self.size, size=n + 1, replace=False)
        vec[self._pos_idx[:, 0]] = cells % self.size
        vec[self._pos_idx[:, 1]] = cells // self.size
        others = [k for k in range(len(OBJECT_SHAPES)) if k != self.target_id]
        shapes = np.asarray(others)[rng.integers(len(others), size=n)]
        shapes[int(rng.integers(n))] = self.target_id
        vec[self._shape_idx] = shapes
        sets = ["object"] * n + ["agent", "background"]
        for idx, obj in zip(self._col_idx, sets, strict=True):
            vec[idx] = self.colour_scheme[obj].sample(rng, self.colours)
        return vec

    def _resample(self, rng: np.random.Generator, base: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Rejection-sample the factors under ``mask``, keeping the others from ``base``."""
        base = np.asarray(base, dtype=np.float64)
        why = self._violation(base, fixed=~mask)
        if why is not None:
            raise ConfigError(f"invalid grid state: {why}")
        for _ in range(_MAX_TRIES):
            cand = np.where(mask, self._sample_full(rng), base)
            if self._violation(cand) is None:
                return cand
        raise ConfigError("could not sample a valid grid state with the given fixed factors")

    def sample_factors(
        self,
        rng: np.random.Generator,
        base: np.ndarray | None = None,
        groups: Sequence[str] | None = None,
    ) -> np.ndarray:
        if base is None or groups is None:
            if base is None and groups is not None:
                raise ConfigError("sample_factors: groups needs a base vector")
            return self._sample_full(rng).astype(np.float32)
        base_vec = self.factor_spec.check_vector(base)
        mask = self.factor_spec.group_mask(groups)
        return self._resample(rng, base_vec, mask).astype(np.float32)

    def get_factors(self) -> np.ndarray:
        return self._factors.astype(np.float32)

    def set_factors(self, values: Mapping[str, Any] | np.ndarray) -> None:
        vec, _ = self.factor_spec.update(self._factors, values)
        why = self._violation(vec)
        if why is not None:
            raise ConfigError(f"invalid grid state: {why}")
        self._factors = _quantise(vec)

    # ------------------------------------------------------------------ rendering
    def _cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-cell shape ids, uint8 colours, labels, and the background colour."""
        f = self._factors
        pos = f[self._pos_idx].astype(np.intp)
        rgb = to_uint8(f[self._col_idx])  # objects..., agent, background
        shape_ids = np.zeros((self.size, self.size), dtype=np.intp)
        colours = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        labels = np.zeros((self.size, self.size), dtype=np.int32)
        xs, ys = pos[:, 0], pos[:, 1]
        shape_ids[ys[1:], xs[1:]] = self._shape_ids[f[self._shape_idx].astype(np.intp)]
        shape_ids[ys[0], xs[0]] = SHAPE_ID[AGENT_SHAPE]
        colours[ys[1:], xs[1:]] = rgb[: self.n_objects]
        colours[ys[0], xs[0]] = rgb[self.n_objects]
        labels[ys, xs] = np.arange(1, self.n_objects + 2)  # 1 = agent, 2.. = objects
        return shape_ids, colours, labels, rgb[-1]

    def render_frame(self) -> np.ndarray:
        shape_ids, colours, _, background = self._cells()
        return self.renderer.paint(shape_ids, colours, background)

    def segmentation(self) -> np.ndarray:
        shape_ids, _, labels, _ = self._cells()
        return self.renderer.segment(shape_ids, labels)

    def render(self) -> np.ndarray | None:
        return self.render_frame() if self.render_mode == "rgb_array" else None

    # ------------------------------------------------------------------ observations
    def _state(self) -> np.ndarray:
        """The oracle's view: agent position, then every object egocentrically (position relative
        to the agent, shape one-hot, colour), the target-shaped object first, then the agent and
        background colours. Ordering the target first spares the policy a learned lookup of
        "where is the object with the target shape" (without it, PPO on 3 objects stays at
        random-walk success for 200k steps)."""
        f = self._factors
        pos = f[self._pos_idx] / max(self.size - 1, 1)
        shapes = f[self._shape_idx].astype(np.intp)
        order = np.argsort(shapes != self.target_id, kind="stable")  # target first
        onehot = np.eye(len(OBJECT_SHAPES))[shapes[order]]
        cols = f[self._col_idx]
        rel = pos[1:][order] - pos[0]
        objs = np.concatenate([rel, onehot, cols[: self.n_objects][order]], axis=1).ravel()
        return np.concatenate([pos[0], objs, cols[self.n_objects :].ravel()]).astype(np.float32)

    def _obs(self) -> Any:
        if self.obs_mode == "state":
            return self._state()
        pixels = self.render_frame()
        if self.obs_mode == "pixels":
            return pixels
        agent = self._factors[self._pos_idx[0]] / max(self.size - 1, 1)
        target = np.eye(len(OBJECT_SHAPES))[self.target_id]
        return {"pixels": pixels, "proprio": np.concatenate([agent, target]).astype(np.float32)}

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        given = self.reset_factors(options)
        if given is not None:
            base, fixed = self.factor_spec.update(
                self._sample_full(self.np_random), given
            )
            self._factors = _quantise(self._resample(self.np_random, base, ~fixed))
        else:
            self._factors = _quantise(self._sample_full(self.np_random))
        self._steps = 0
        return self._obs(), {"factors": self.get_factors(), "is_success": False}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = check_action(action, 4)
        f = self._factors
        pos = f[self._pos_idx].astype(np.int64)
        dx, dy = MOVES[a]
        nx, ny = int(pos[0, 0]) + dx, int(pos[0, 1]) + dy
        reward, success = -self.step_penalty, False
        if 0 <= nx < self.size and 0 <= ny < self.size:
            hit = np.flatnonzero((pos[1:, 0] == nx) & (pos[1:, 1] == ny))
            if hit.size == 0:
                f[self._pos_idx[0]] = (nx, ny)
            elif int(f[self._shape_idx[hit[0]]]) == self.target_id:
                reward, success = 1.0, True
            else:
                reward -= self.distractor_penalty
        self._steps += 1
        truncated = (
            not success
            and self.max_episode_steps is not None
            and self._steps >= self.max_episode_steps
        )
        info = {"factors": self.get_factors(), "is_success": success}
        return self._obs(), float(reward), success, truncated, info
