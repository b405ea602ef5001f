"""Reading a MiniGrid state into cell arrays for
:class:`~sparseshift.envs.grid.render.TileRenderer`.

MiniGrid (Chevalier-Boisvert et al. 2023, *Minigrid & Miniworld*) keeps its layout in
``env.grid.grid``, a row-major list of world objects (``None`` for empty cells), plus
``agent_pos``, ``agent_dir`` and ``carrying``. :func:`scan` turns that into integer arrays once per
step; colours are applied later by table lookup, so MiniGrid's colour names, its global ``COLORS``
table and its tile cache are never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sparseshift.envs.grid.render import SHAPE_ID

#: Object types we draw, in segmentation-label order (labels start at 2: 0 background, 1 agent).
TYPES: tuple[str, ...] = ("wall", "floor", "door", "key", "ball", "box", "goal", "lava")
TYPE_ID: dict[str, int] = {t: i for i, t in enumerate(TYPES)}
#: MiniGrid door states (``minigrid.core.constants.STATE_TO_IDX``).
DOOR_OPEN, DOOR_CLOSED, DOOR_LOCKED = 0, 1, 2
#: Shape of each type; doors by state (open, closed, locked). Floor is not drawn (background).
_TYPE_SHAPE: dict[str, int] = {
    "wall": SHAPE_ID["wall"],
    "floor": SHAPE_ID["empty"],
    "key": SHAPE_ID["key"],
    "ball": SHAPE_ID["circle"],
    "box": SHAPE_ID["box"],
    "goal": SHAPE_ID["goal"],
    "lava": SHAPE_ID["lava"],
}
_DOOR_SHAPE = (SHAPE_ID["door_open"], SHAPE_ID["door_closed"], SHAPE_ID["door_locked"])
#: Cell codes: (type id, shape id, door state); doors get their own code per state.
_EMPTY = -1


@dataclass
class Scan:
    """One MiniGrid state as arrays (cells are ``[row, col]`` = ``[y, x]``)."""

    type_ids: np.ndarray  # int [h, w], -1 for empty cells
    shape_ids: np.ndarray  # int [h, w]
    door_state: np.ndarray  # int [h, w], 0 where there is no door
    positions: dict[str, tuple[int, int]]  # first (x, y) of each type in row-major order
    agent: tuple[int, int]
    agent_dir: int
    carrying: str | None


def cell_code(obj: Any) -> tuple[int, int, int]:
    """``(type id, shape id, door state)`` of one MiniGrid world object (or None)."""
    if obj is None:
        return _EMPTY, SHAPE_ID["empty"], 0
    kind = str(obj.type)
    if kind == "door":
        state = DOOR_OPEN if obj.is_open else (DOOR_LOCKED if obj.is_locked else DOOR_CLOSED)
        return TYPE_ID["door"], _DOOR_SHAPE[state], state
    if kind not in TYPE_ID:
        raise NotImplementedError(f"MiniGrid object type {kind!r} has no sparseshift rendering")
    return TYPE_ID[kind], _TYPE_SHAPE[kind], 0


def scan(env: Any) -> Scan:
    """Arrays of the current state of a MiniGrid env (``env.unwrapped``)."""
    grid = env.grid
    w, h = int(grid.width), int(grid.height)
    codes = np.array([cell_code(obj) for obj in grid.grid], dtype=np.int64).reshape(h, w, 3)
    type_ids = codes[..., 0]
    positions: dict[str, tuple[int, int]] = {}
    for t in np.unique(type_ids):
        if t >= 0:
            flat = int(np.flatnonzero(type_ids == t)[0])
            positions[TYPES[int(t)]] = (flat % w, flat // w)
    ax, ay = (int(v) for v in env.agent_pos)
    carrying = None if env.carrying is None else str(env.carrying.type)
    return Scan(
        type_ids, codes[..., 1], codes[..., 2], positions, (ax, ay), int(env.agent_dir), carrying
    )


def agent_cells(env: Any) -> list[tuple[int, int]]:
    """Cells the agent may be put on: free cells (empty or floor) it can walk to from where it is.

    Flood fill from the agent through cells MiniGrid lets it enter (empty, floor, open doors),
    so a new pose stays in the agent's current room (in DoorKey: the key side of a locked door).
    """
    grid = env.grid
    w, h = int(grid.width), int(grid.height)

    def passable(x: int, y: int) -> bool:
        obj = grid.grid[y * w + x]
        return obj is None or obj.type == "floor" or (obj.type == "door" and bool(obj.is_open))

    start = (int(env.agent_pos[0]), int(env.agent_pos[1]))
    seen = {start}
    stack = [start]
    while stack:
        x, y = stack.pop()
        for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if 0 <= nx < w and 0 <= ny < h and (nx, ny) not in seen and passable(nx, ny):
                seen.add((nx, ny))
                stack.append((nx, ny))
    free = [
        (x, y)
        for (x, y) in seen
        if grid.grid[y * w + x] is None or grid.grid[y * w + x].type == "floor"
    ]
    return sorted(free)


def agent_cell_ok(env: Any, x: int, y: int) -> bool:
    """Whether the agent may stand on cell ``(x, y)``: inside the grid and empty, floor or an open
    door (the cells MiniGrid lets it walk onto, except goal and lava, which end the episode)."""
    grid = env.grid
    w, h = int(grid.width), int(grid.height)
    if not (0 <= x < w and 0 <= y < h):
        return False
    obj = grid.grid[y * w + x]
    return obj is None or obj.type == "floor" or (obj.type == "door" and bool(obj.is_open))
