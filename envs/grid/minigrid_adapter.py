"""MiniGrid tasks re-rendered with sparseshift colours and exposed as a :class:`FactorEnv`.

The MiniGrid env (Chevalier-Boisvert et al. 2023, *Minigrid & Miniworld*) is made internally with
``gymnasium.make(minigrid_id)`` and keeps its own dynamics, rewards, termination and truncation.
Only the observation changes: the full grid (not MiniGrid's egocentric view) is redrawn every step
from ``grid``, ``agent_pos``, ``agent_dir`` and ``carrying`` by our :class:`TileRenderer` with
colours from a sparseshift colour scheme. MiniGrid's global ``COLORS`` table and its tile cache are
never read or written, so envs with different palettes coexist in one process.

Colour mapping (one colour per object *type*, drawn independently at every reset from the
scheme's sets restricted to ``colours``, with ``self.np_random``): key, door, ball, box, goal and
lava from ``"object"``; walls from ``"wall"``; empty cells, floor and the margin from
``"background"``; the agent from ``"agent"``. The split protocol follows Dittadi et al. (ICLR 2021).

``shift`` applies a rendering shift of the registry (:mod:`sparseshift.envs.shifts`) that needs
only frames and the background surfaces (empty cells and the margin): ``noise``, ``blur``,
``colour``, ``distortion``, ``jpeg``, ``texture``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sparseshift.envs.core.base import FactorEnv, LabelledBox, checked_init
from sparseshift.envs.core.factors import Factor, FactorSpec, colour_factors
from sparseshift.envs.grid.colourgrid import check_action
from sparseshift.envs.grid.minigrid_scan import (
    TYPE_ID,
    TYPES,
    Scan,
    agent_cell_ok,
    agent_cells,
    scan,
)
from sparseshift.envs.grid.render import AGENT_SHAPES, TileRenderer, to_uint8
from sparseshift.envs.infra.errors import (
    ConfigError,
    check_choice_arg,
    check_episode_steps,
    check_image_size,
    naming,
)

#: Supported MiniGrid ids -> object types present (besides walls). Single-instance types among
#: key, door and goal get position factors; lava only a colour.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "MiniGrid-DoorKey-5x5-v0": ("key", "door", "goal"),
    "MiniGrid-DoorKey-6x6-v0": ("key", "door", "goal"),
    "MiniGrid-DoorKey-8x8-v0": ("key", "door", "goal"),
    "MiniGrid-Empty-5x5-v0": ("goal",),
    "MiniGrid-Empty-6x6-v0": ("goal",),
    "MiniGrid-Empty-8x8-v0": ("goal",),
    "MiniGrid-Empty-Random-5x5-v0": ("goal",),
    "MiniGrid-Empty-Random-6x6-v0": ("goal",),
    "MiniGrid-LavaGapS5-v0": ("goal", "lava"),
    "MiniGrid-LavaGapS6-v0": ("goal", "lava"),
    "MiniGrid-LavaGapS7-v0": ("goal", "lava"),
}
POSITIONAL: tuple[str, ...] = ("key", "door", "goal")
#: Scheme set of each coloured thing.
SCHEME_SET: dict[str, str] = {
    **{t: "object" for t in ("key", "door", "ball", "box", "goal", "lava")},
    "wall": "wall",
    "agent": "agent",
    "background": "background",
}
N_ACTIONS = 7  # MiniGrid: left, right, forward, pickup, drop, toggle, done


class MiniGridColourEnv(FactorEnv[Any, np.int64]):
    """A MiniGrid task drawn by sparseshift with colour-split palettes; see the module docstring.

    Factors: ``agent.x``, ``agent.y`` (group ``agent_pos``), ``agent.dir`` (0 right, 1 down,
    2 left, 3 up); for key/door/goal when present ``<type>.x``, ``<type>.y`` (group
    ``<type>_pos``; -1 while the key is carried), ``door.state`` (0 open, 1 closed, 2 locked),
    ``carrying`` (0/1); colour groups ``agent_colour``, ``wall_colour``, ``background_colour`` and
    ``<type>_colour`` per object type. Only the agent pose and colour groups are settable.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gym.Env API)
    #: Frames and the background (empty cells, margin); no lights or camera.
    SHIFT_FEATURES: ClassVar[frozenset[str]] = frozenset({"frame", "surfaces"})

    @checked_init
    def __init__(
        self,
        minigrid_id: str = "MiniGrid-DoorKey-8x8-v0",
        image_size: int = 64,
        obs_mode: str = "pixels",
        colours: str | Sequence[str] = "in",
        colour_scheme: str = "grid8",
        colour_seed: int = 0,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        shift: object = None,
    ) -> None:
        # Every kwarg is checked before anything is built (MiniGrid env, renderer, spaces).
        check_choice_arg("minigrid_id", minigrid_id, SUPPORTED)
        self.configure_shift(shift)
        self.configure(obs_mode, render_mode, colours, colour_scheme, colour_seed,
                       tuple(sorted(set(SCHEME_SET.values()))))
        kwargs: dict[str, Any] = {}
        if max_episode_steps is not None:
            kwargs["max_steps"] = check_episode_steps(max_episode_steps)
        with naming("image_size"):
            image_size = check_image_size(image_size)
        import minigrid  # noqa: F401  (registers the MiniGrid ids)

        self.minigrid_id = minigrid_id
        self.minigrid_env = gym.make(minigrid_id, **kwargs)
        self._mg = cast(Any, self.minigrid_env.unwrapped)
        self.max_episode_steps = int(self._mg.max_steps)
        self.width, self.height = int(self._mg.width), int(self._mg.height)
        with naming("image_size"):
            self.renderer = TileRenderer(self.width, self.height, image_size)
        self.image_size = self.renderer.image_size
        self.object_names = ("background", "agent", *TYPES)
        self.attach_scene()  # frames; surfaces: the background pixels
        types = SUPPORTED[minigrid_id]
        self.positional = tuple(t for t in POSITIONAL if t in types)
        self.coloured = ("agent", "wall", "background", *types)
        self.factor_spec = self._build_spec()
        self.action_space = spaces.Discrete(N_ACTIONS)
        self.observation_space = self._build_obs_space()
        # colour state: [len(coloured), 3] float (float32-exact) and the uint8 lookup tables
        self._rgb = np.zeros((len(self.coloured), 3), dtype=np.float64)
        self._labels = np.arange(2, 2 + len(TYPES), dtype=np.int32)
        self._mg.reset(seed=0)
        self._sample_colours(np.random.default_rng(0))
        self._scan: Scan = scan(self._mg)

    # ------------------------------------------------------------------ spec and spaces
    def _build_spec(self) -> FactorSpec:
        xs = tuple(float(v) for v in range(self.width))
        ys = tuple(float(v) for v in range(self.height))
        fs: list[Factor] = [
            Factor("agent.x", "discrete", 0.0, xs[-1], xs, group="agent_pos"),
            Factor("agent.y", "discrete", 0.0, ys[-1], ys, group="agent_pos"),
            Factor("agent.dir", "discrete", 0.0, 3.0, (0.0, 1.0, 2.0, 3.0)),
        ]
        for t in self.positional:
            fs += [
                Factor(f"{t}.x", "discrete", -1.0, xs[-1], (-1.0, *xs), group=f"{t}_pos"),
                Factor(f"{t}.y", "discrete", -1.0, ys[-1], (-1.0, *ys), group=f"{t}_pos"),
            ]
        if "door" in self.positional:
            fs.append(Factor("door.state", "discrete", 0.0, 2.0, (0.0, 1.0, 2.0)))
        fs.append(Factor("carrying", "discrete", 0.0, 1.0, (0.0, 1.0)))
        for c in self.coloured:
            fs += colour_factors(f"{c}_colour")
        return FactorSpec(tuple(fs))

    @property
    def settable_groups(self) -> tuple[str, ...]:
        return ("agent_pos", "agent.dir", *(f"{c}_colour" for c in self.coloured))

    @property
    def colour_objects(self) -> dict[str, str]:
        """``<type>_colour`` -> the scheme set it draws from (see :data:`SCHEME_SET`)."""
        return {
            g: SCHEME_SET[g.removesuffix("_colour")]
            for g in self.factor_spec.groups
            if g.endswith("_colour")
        }

    def _build_obs_space(self) -> spaces.Space[Any]:
        s = self.image_size
        pixels = spaces.Box(0, 255, (s, s, 3), dtype=np.uint8)
        if self.obs_mode == "pixels":
            return pixels
        if self.obs_mode == "state":
            return spaces.Box(0.0, 1.0, (2 * self.width * self.height + 7,), dtype=np.float32)
        proprio = spaces.Box(0.0, 1.0, (7,), dtype=np.float32)
        if self.obs_mode == "proprio":
            return proprio
        return spaces.Dict({"pixels": pixels, "proprio": proprio})

    # ------------------------------------------------------------------ factors
    def _sample_colours(self, rng: np.random.Generator) -> None:
        for i, c in enumerate(self.coloured):
            rgb = self.colour_scheme[SCHEME_SET[c]].sample(rng, self.colours)
            self._rgb[i] = np.float32(rgb)
        self._update_tables()

    def _update_tables(self) -> None:
        rgb8 = to_uint8(self._rgb)
        by_name = dict(zip(self.coloured, rgb8, strict=True))
        self._agent_rgb = by_name["agent"]
        self._bg_rgb = by_name["background"]
        # type id -> colour; index -1 (empty cells) reads the last row = background
        table = np.tile(self._bg_rgb, (len(TYPES) + 1, 1))
        for t, i in TYPE_ID.items():
            if t in by_name:
                table[i] = by_name[t]
        self._type_rgb = table

    def get_factors(self) -> np.ndarray:
        sc = self._scan
        vals: list[float] = [float(sc.agent[0]), float(sc.agent[1]), float(sc.agent_dir)]
        for t in self.positional:
            vals += [float(v) for v in sc.positions.get(t, (-1, -1))]
        if "door" in self.positional:
            door = sc.positions["door"]
            vals.append(float(sc.door_state[door[1], door[0]]))
        vals.append(float(sc.carrying is not None))
        return np.concatenate([np.asarray(vals), self._rgb.ravel()]).astype(np.float32)

    def set_factors(self, values: Mapping[str, Any] | np.ndarray) -> None:
        current = self.get_factors().astype(np.float64)
        vec, mask = self.factor_spec.update(current, values)
        settable = self.factor_spec.group_mask(self.settable_groups)
        changed = mask & ~settable & ~np.isclose(vec, current, atol=1e-6)
        if changed.any():
            names = [n for n, c in zip(self.factor_spec.names, changed, strict=True) if c]
            raise ConfigError(
                f"factors {names} are read-only for MiniGrid layouts (they come from the layout "
                f"MiniGrid generated; reset with a seed to choose one); settable groups: "
                f"{', '.join(self.settable_groups)}"
            )
        spec = self.factor_spec
        x, y = int(vec[spec.index("agent.x")]), int(vec[spec.index("agent.y")])
        if (x, y) != self._scan.agent and not agent_cell_ok(self._mg, x, y):
            raise ConfigError(
                f"invalid grid state: the agent cannot stand on cell ({x}, {y}) "
                "(not empty, floor or an open door)"
            )
        self._mg.agent_pos = (x, y)
        self._mg.agent_dir = int(vec[spec.index("agent.dir")])
        start = spec.index(f"{self.coloured[0]}_colour.r")
        self._rgb = vec[start:].reshape(-1, 3).astype(np.float32).astype(np.float64)
        self._update_tables()
        self._scan = scan(self._mg)

    def sample_factors(
        self,
        rng: np.random.Generator,
        base: np.ndarray | None = None,
        groups: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Resample settable groups (all of them by default) on top of ``base`` (default: now).

        The agent position is drawn uniformly from the free cells reachable from the agent's
        current cell in the env's current layout (the layout is not part of the sample).
        """
        spec = self.factor_spec
        vec = self.get_factors() if base is None else spec.check_vector(base)
        groups = self.settable_groups if groups is None else tuple(groups)
        bad = [g for g in groups if g not in self.settable_groups]
        if bad:
            for g in bad:
                spec.group_indices(g)  # unknown names -> ConfigError listing valid ones
            raise ConfigError(
                f"groups {bad} are read-only for MiniGrid layouts; settable groups: "
                f"{', '.join(self.settable_groups)}"
            )
        out = vec.astype(np.float64)
        for g in groups:
            idx = list(spec.group_indices(g))
            if g == "agent_pos":
                cells = agent_cells(self._mg)
                out[idx] = cells[int(rng.integers(len(cells)))]
            elif g == "agent.dir":
                out[idx] = int(rng.integers(4))
            else:
                obj = g.removesuffix("_colour")
                out[idx] = self.colour_scheme[SCHEME_SET[obj]].sample(rng, self.colours)
        return out.astype(np.float32)

    # ------------------------------------------------------------------ rendering
    def render_frame(self) -> np.ndarray:
        sc = self._scan
        frame = self.renderer.paint(sc.shape_ids, self._type_rgb[sc.type_ids], self._bg_rgb)
        ax, ay = sc.agent
        self.renderer.overlay(frame, ax, ay, AGENT_SHAPES[sc.agent_dir], self._agent_rgb)
        return self.apply_shift(frame)

    def segmentation(self) -> np.ndarray:
        sc = self._scan
        labels = np.where(sc.type_ids >= 0, sc.type_ids + 2, 0).astype(np.int32)
        seg = self.renderer.segment(sc.shape_ids, labels)
        ax, ay = sc.agent
        self.renderer.overlay(seg, ax, ay, AGENT_SHAPES[sc.agent_dir], 1)
        return seg

    def target_boxes(self) -> tuple[LabelledBox, ...]:
        """The goal cell (``"goal"``) of tasks that have one."""
        goal = self._scan.positions.get("goal")
        if goal is None or min(goal) < 0:
            return ()
        rows, cols = self.renderer.cell_box(int(goal[0]), int(goal[1]))
        return (LabelledBox(cols.start, rows.start, cols.stop, rows.stop, "goal"),)

    def render(self) -> np.ndarray | None:
        return self.render_frame() if self.render_mode == "rgb_array" else None

    # ------------------------------------------------------------------ observations
    def _proprio(self) -> np.ndarray:
        sc = self._scan
        out = np.zeros(7, dtype=np.float32)
        out[0] = sc.agent[0] / (self.width - 1)
        out[1] = sc.agent[1] / (self.height - 1)
        out[2 + sc.agent_dir] = 1.0
        out[6] = float(sc.carrying is not None)
        return out

    def _state(self) -> np.ndarray:
        sc = self._scan
        cells = np.stack([(sc.type_ids + 1) / len(TYPES), sc.door_state / 2.0], axis=-1)
        return np.concatenate([cells.ravel(), self._proprio()]).astype(np.float32)

    def _obs(self) -> Any:
        if self.obs_mode == "state":
            return self._state()
        if self.obs_mode == "proprio":
            return self._proprio()
        pixels = self.render_frame()
        if self.obs_mode == "pixels":
            return pixels
        return {"pixels": pixels, "proprio": self._proprio()}

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        given = self.reset_factors(options)
        self._mg.reset(seed=int(self.np_random.integers(2**31 - 1)))
        self._sample_colours(self.np_random)
        self.new_shift_episode(self.np_random)  # only with a shift: the layout and colours agree
        self._scan = scan(self._mg)
        if given is not None:
            self.set_factors(given)
        return self._obs(), {"factors": self.get_factors(), "is_success": False}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = check_action(action, N_ACTIONS)
        _, reward, terminated, truncated, info = self._mg.step(a)
        self._scan = scan(self._mg)
        info = {
            **info,
            "factors": self.get_factors(),
            "is_success": bool(terminated and float(reward) > 0),
        }
        return self._obs(), float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.minigrid_env.close()
        super().close()
