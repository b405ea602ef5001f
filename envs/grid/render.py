"""A vectorised numpy tile renderer for grid worlds.

Every cell of a grid holds at most one *shape* (an index into :data:`SHAPES`) drawn in one flat RGB
colour on a background colour. Shape masks are boolean ``tile x tile`` arrays computed once per tile
size by testing pixel centres against simple geometric predicates, so they are free of
anti-aliasing: every painted pixel is exactly the cell's colour, every other pixel exactly the
background. A frame is painted with a single gather (``masks[shape_ids]``) plus one ``np.where``;
there is no per-pixel or per-cell Python loop.

The shapes for MiniGrid objects follow the look of MiniGrid's own renderer (Chevalier-Boisvert et
al. 2023, *Minigrid & Miniworld: Modular & Customizable Reinforcement Learning Environments for
Goal-Oriented Tasks*): triangle agent pointing along its direction, outlined closed door, filled
locked door with a key hole, a thin strip for an open door, a key with head, shaft and teeth.

Image size: the tile is ``image_size // max(width, height)`` pixels; when the cell count does not
divide the image size, the grid is centred and the margin painted with the background colour
(lossless, no resampling).
"""

from __future__ import annotations

import numpy as np

from sparseshift.envs.infra.errors import ConfigError, check_image_size

#: Shape names; a cell's shape id is the index in this tuple. ``empty`` paints nothing.
SHAPES: tuple[str, ...] = (
    "empty",
    "wall",
    "square",
    "circle",
    "triangle",
    "diamond",
    "cross",
    "ring",
    "frame",
    "key",
    "box",
    "door_open",
    "door_closed",
    "door_locked",
    "goal",
    "lava",
    "agent_right",
    "agent_down",
    "agent_left",
    "agent_up",
)
SHAPE_ID: dict[str, int] = {name: i for i, name in enumerate(SHAPES)}
#: MiniGrid agent directions 0..3 (right, down, left, up) -> shape id.
AGENT_SHAPES: tuple[int, ...] = tuple(
    SHAPE_ID[f"agent_{d}"] for d in ("right", "down", "left", "up")
)
#: Smallest tile (pixels per cell) at which every shape has a distinct, non-empty mask.
MIN_TILE = 7


def _in_triangle(x: np.ndarray, y: np.ndarray, pts: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Pixel centres inside (or on) the triangle ``pts`` (centred coordinates)."""
    (ax, ay), (bx, by), (cx, cy) = pts
    d1 = (x - bx) * (ay - by) - (ax - bx) * (y - by)
    d2 = (x - cx) * (by - cy) - (bx - cx) * (y - cy)
    d3 = (x - ax) * (cy - ay) - (cx - ax) * (y - ay)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos)


def shape_masks(tile: int) -> np.ndarray:
    """Boolean masks ``[len(SHAPES), tile, tile]`` of every shape at ``tile`` pixels per cell.

    Coordinates are pixel centres relative to the cell centre, in cell units (x right, y down).
    Thin strokes are at least one pixel wide: their half-width is ``max(w, 0.5 / tile)``.
    """
    if tile < 1:
        raise ConfigError(f"tile size must be positive, got {tile}")
    c = (np.arange(tile) + 0.5) / tile - 0.5
    y, x = np.meshgrid(c, c, indexing="ij")
    ax, ay = np.abs(x), np.abs(y)
    r = np.hypot(x, y)
    cheb = np.maximum(ax, ay)
    px = 0.5 / tile + 1e-9  # half a pixel: strokes at least one pixel wide

    def w(v: float) -> float:
        return max(v, px)

    key = (
        ((np.hypot(x, y + 0.2) <= 0.2) & (np.hypot(x, y + 0.2) >= min(0.08, 0.2 - 2 * px)))
        | ((ax <= w(0.06)) & (y >= -0.05) & (y <= 0.44))
        | (
            (x >= 0.0)
            & (x <= 0.24)
            & ((np.abs(y - 0.22) <= w(0.04)) | (np.abs(y - 0.38) <= w(0.04)))
        )
    )
    waves = np.zeros_like(x, dtype=bool)
    for y0 in (-0.27, 0.0, 0.27):
        waves |= np.abs(y - y0 - 0.08 * np.sign(np.sin(4 * np.pi * (x + 0.5)))) <= w(0.045)
    right = _in_triangle(x, y, ((-0.44, -0.4), (0.44, 0.0), (-0.44, 0.4)))
    preds: dict[str, np.ndarray] = {
        "empty": np.zeros_like(x, dtype=bool),
        "wall": np.ones_like(x, dtype=bool),
        "square": cheb <= 0.32,
        "circle": r <= 0.37,
        "triangle": _in_triangle(x, y, ((0.0, -0.44), (0.44, 0.38), (-0.44, 0.38))),
        "diamond": ax + ay <= 0.42,
        "cross": ((ax <= w(0.13)) & (ay <= 0.42)) | ((ay <= w(0.13)) & (ax <= 0.42)),
        "ring": (r <= 0.42) & (r >= 0.2),
        "frame": (cheb <= 0.45) & (cheb >= 0.2),
        "key": key,
        "box": ((cheb <= 0.42) & (cheb >= 0.3)) | ((ay <= w(0.05)) & (cheb <= 0.42)),
        "door_open": x >= 0.3,
        "door_closed": (cheb >= 0.38) | ((np.abs(x - 0.22) <= w(0.05)) & (ay <= w(0.05))),
        "door_locked": ~((ax <= w(0.06)) & (y >= -0.15) & (y <= 0.2)),
        "goal": (cheb >= 0.3) | (cheb <= w(0.12)),
        "lava": ~waves,
        "agent_right": right,
        "agent_down": np.rot90(right, k=-1),
        "agent_left": np.rot90(right, k=2),
        "agent_up": np.rot90(right, k=1),
    }
    masks = np.stack([preds[name] for name in SHAPES]).astype(bool)
    masks.setflags(write=False)
    return masks


def check_distinct(masks: np.ndarray, names: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless the masks of ``names`` are non-empty and distinct."""
    tile = masks.shape[-1]
    ids = [SHAPE_ID[n] for n in names]
    seen: dict[bytes, str] = {}
    for n, i in zip(names, ids, strict=True):
        m = masks[i]
        if not m.any():
            raise ConfigError(
                f"shape {n!r} is empty at {tile} px per cell; use a larger image_size"
            )
        k = m.tobytes()
        if k in seen:
            raise ConfigError(
                f"shapes {seen[k]!r} and {n!r} look identical at {tile} px per cell; "
                "use a larger image_size"
            )
        seen[k] = n


class TileRenderer:
    """Paints ``height x width`` grids of shapes into ``image_size`` square uint8 frames.

    Cell arrays are indexed ``[row, col]`` (``[y, x]``). Instances are cheap and hold all their
    state (masks, index maps); nothing is shared between envs.
    """

    def __init__(self, width: int, height: int, image_size: int, min_tile: int = MIN_TILE) -> None:
        self.image_size = check_image_size(image_size)
        if width < 1 or height < 1:
            raise ConfigError(f"grid must have at least one cell, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.tile = self.image_size // max(self.width, self.height)
        if self.tile < min_tile:
            raise ConfigError(
                f"image_size {self.image_size} gives {self.tile} px per cell for a "
                f"{self.width}x{self.height} grid; need at least {min_tile} "
                f"(image_size >= {min_tile * max(self.width, self.height)})"
            )
        self.masks = shape_masks(self.tile)
        check_distinct(self.masks, SHAPES[1:])
        gw, gh = self.width * self.tile, self.height * self.tile
        self.x0 = (self.image_size - gw) // 2
        self.y0 = (self.image_size - gh) // 2
        self._rows = slice(self.y0, self.y0 + gh)
        self._cols = slice(self.x0, self.x0 + gw)
        # pixel -> flat cell index (row-major) over the whole frame; h * w in the margin
        ry = np.repeat(np.arange(self.height), self.tile)
        rx = np.repeat(np.arange(self.width), self.tile)
        index = np.full((self.image_size, self.image_size), self.height * self.width, np.intp)
        index[self._rows, self._cols] = ry[:, None] * self.width + rx[None, :]
        self._cell_index = index

    def cell_box(self, col: int, row: int) -> tuple[slice, slice]:
        """Pixel slices (rows, cols) of cell ``(col, row)`` = ``(x, y)``."""
        t = self.tile
        return (
            slice(self.y0 + row * t, self.y0 + (row + 1) * t),
            slice(self.x0 + col * t, self.x0 + (col + 1) * t),
        )

    def pixel_mask(self, shape_ids: np.ndarray) -> np.ndarray:
        """Boolean ``[S, S]`` foreground mask of the frame (False in the margin)."""
        h, w, t = self.height, self.width, self.tile
        m = self.masks[shape_ids]  # [h, w, t, t]
        full = np.zeros((self.image_size, self.image_size), dtype=bool)
        full[self._rows, self._cols] = m.transpose(0, 2, 1, 3).reshape(h * t, w * t)
        return full

    def _pixel_index(self, shape_ids: np.ndarray) -> np.ndarray:
        """int ``[S, S]``: the flat cell index where a shape is drawn, ``h * w`` elsewhere."""
        return np.where(self.pixel_mask(shape_ids), self._cell_index, self.height * self.width)

    def paint(
        self, shape_ids: np.ndarray, colours: np.ndarray, background: np.ndarray
    ) -> np.ndarray:
        """uint8 ``[S, S, 3]`` frame: cell ``[r, c]`` draws shape ``shape_ids[r, c]``.

        ``shape_ids`` is an int ``[height, width]`` array, ``colours`` uint8 ``[height, width, 3]``,
        ``background`` uint8 ``[3]`` (also used for the margin). The frame is one gather of
        palette rows (``np.take`` along axis 0, much faster than fancy indexing here).
        """
        n = self.height * self.width
        palette = np.empty((n + 1, 3), dtype=np.uint8)
        palette[:n] = colours.reshape(n, 3)
        palette[n] = background
        return palette.take(self._pixel_index(shape_ids), axis=0)

    def segment(self, shape_ids: np.ndarray, labels: np.ndarray, background: int = 0) -> np.ndarray:
        """int32 ``[S, S]``: ``labels[r, c]`` on cell ``[r, c]``'s shape pixels, else background."""
        table = np.append(labels.astype(np.int32).ravel(), np.int32(background))
        return table.take(self._pixel_index(shape_ids))

    def overlay(self, image: np.ndarray, col: int, row: int, shape_id: int, value: object) -> None:
        """Draw one shape over cell ``(col, row)`` of ``image`` in place (frame or segmentation)."""
        rows, cols = self.cell_box(col, row)
        region = image[rows, cols]
        region[self.masks[shape_id]] = value


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Colours in [0, 1] (any leading shape, last axis 3) -> uint8, rounded half to even."""
    return np.rint(np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
