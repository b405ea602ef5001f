"""The numpy tile renderer: masks, exact colours, centred padding, segmentation."""

from __future__ import annotations

import numpy as np
import pytest

from sparseshift.envs.grid.render import (
    MIN_TILE,
    SHAPE_ID,
    SHAPES,
    TileRenderer,
    check_distinct,
    shape_masks,
    to_uint8,
)
from sparseshift.envs.infra.errors import ConfigError


def _reference(r: TileRenderer, sid: np.ndarray, col: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Slow per-cell painter to compare the vectorised one against."""
    out = np.empty((r.image_size, r.image_size, 3), np.uint8)
    out[...] = bg
    for y in range(r.height):
        for x in range(r.width):
            rows, cols = r.cell_box(x, y)
            out[rows, cols][r.masks[sid[y, x]]] = col[y, x]
    return out


@pytest.mark.parametrize("tile", [MIN_TILE, 8, 9, 10, 16, 32])
def test_masks_distinct_and_nonempty(tile: int) -> None:
    masks = shape_masks(tile)
    assert masks.shape == (len(SHAPES), tile, tile) and masks.dtype == bool
    assert not masks[SHAPE_ID["empty"]].any() and masks[SHAPE_ID["wall"]].all()
    check_distinct(masks, SHAPES[1:])
    assert not masks.flags.writeable


def test_small_tiles_rejected() -> None:
    with pytest.raises(ConfigError, match=r"look identical|empty"):
        check_distinct(shape_masks(MIN_TILE - 1), SHAPES[1:])
    with pytest.raises(ConfigError, match="px per cell"):
        TileRenderer(16, 16, 64)  # 4 px tiles
    with pytest.raises(ConfigError, match="multiple of 8"):
        TileRenderer(8, 8, 60)


def test_agent_triangles_are_rotations() -> None:
    m = shape_masks(8)
    right = m[SHAPE_ID["agent_right"]]
    assert np.array_equal(m[SHAPE_ID["agent_down"]], np.rot90(right, -1))
    assert np.array_equal(m[SHAPE_ID["agent_up"]], np.rot90(right, 1))
    # pointing right: more pixels in the left half than the right half
    assert right[:, :4].sum() > right[:, 4:].sum()


@pytest.mark.parametrize(("w", "h", "size"), [(8, 8, 64), (6, 6, 64), (7, 5, 64), (8, 8, 128)])
def test_paint_matches_reference_and_pads_centrally(w: int, h: int, size: int) -> None:
    rng = np.random.default_rng(w * h)
    r = TileRenderer(w, h, size)
    sid = rng.integers(0, len(SHAPES), (h, w))
    col = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    bg = np.array([3, 5, 7], np.uint8)
    frame = r.paint(sid, col, bg)
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    assert frame.flags.c_contiguous
    assert np.array_equal(frame, _reference(r, sid, col, bg))
    t = size // max(w, h)
    assert r.tile == t
    # the margin is background and split evenly (at most one pixel more on the far side)
    assert r.x0 == (size - w * t) // 2 and r.y0 == (size - h * t) // 2
    assert (frame[:, : r.x0] == bg).all() and (frame[: r.y0] == bg).all()
    assert (frame[:, r.x0 + w * t :] == bg).all() and (frame[r.y0 + h * t :] == bg).all()


def test_exact_colours_no_blending() -> None:
    r = TileRenderer(8, 8, 64)
    sid = np.full((8, 8), SHAPE_ID["circle"])
    col = np.zeros((8, 8, 3), np.uint8)
    col[...] = (200, 10, 99)
    frame = r.paint(sid, col, np.array([1, 2, 3], np.uint8))
    colours = {tuple(c) for c in frame.reshape(-1, 3).tolist()}
    assert colours == {(200, 10, 99), (1, 2, 3)}


def test_segmentation_labels_follow_masks() -> None:
    r = TileRenderer(6, 6, 64)
    sid = np.zeros((6, 6), int)
    labels = np.zeros((6, 6), np.int32)
    sid[2, 3], labels[2, 3] = SHAPE_ID["key"], 5
    sid[0, 0], labels[0, 0] = SHAPE_ID["wall"], 2
    seg = r.segment(sid, labels)
    assert seg.dtype == np.int32 and seg.shape == (64, 64)
    rows, cols = r.cell_box(3, 2)
    assert np.array_equal(seg[rows, cols] == 5, r.masks[SHAPE_ID["key"]])
    assert (seg == 5).sum() == r.masks[SHAPE_ID["key"]].sum()
    assert (seg == 2).sum() == r.tile**2
    assert set(np.unique(seg).tolist()) == {0, 2, 5}


def test_overlay_draws_one_cell() -> None:
    r = TileRenderer(8, 8, 64)
    frame = np.zeros((64, 64, 3), np.uint8)
    r.overlay(frame, 2, 5, SHAPE_ID["agent_up"], np.array([9, 9, 9], np.uint8))
    rows, cols = r.cell_box(2, 5)
    assert (frame[rows, cols] == 9).all(axis=-1).sum() == r.masks[SHAPE_ID["agent_up"]].sum()
    assert (frame > 0).any(axis=-1).sum() == r.masks[SHAPE_ID["agent_up"]].sum()


def test_to_uint8_rounds() -> None:
    assert to_uint8(np.array([0.0, 1.0, 0.5])).tolist() == [0, 255, 128]
    assert to_uint8(np.array([0.15, 0.75, 0.2])).tolist() == [38, 191, 51]
