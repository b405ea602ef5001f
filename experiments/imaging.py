"""Contact sheets shared by commands that write pictures (PNG output:
:func:`sparseshift.envs.io.save_png`)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

LABEL_H = 14


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling (keeps pixels exact so colours stay readable)."""
    if scale == 1:
        return frame
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def put_label(img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.38, colour, 1, cv2.LINE_AA)


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    scale: int = 2,
    pad: int = 2,
    label_width: int = 110,
    captions: Sequence[Sequence[str]] | None = None,
) -> np.ndarray:
    """Grid of uint8 HxWx3 frames: one labelled row per entry, optional caption under each cell."""
    if not rows or not any(len(r[1]) for r in rows):
        raise ValueError("contact sheet needs at least one frame")
    h, w = rows[0][1][0].shape[:2]
    ch, cw = h * scale, w * scale
    ncol = max(len(r[1]) for r in rows)
    cap_h = LABEL_H if captions is not None else 0
    row_h = ch + pad + cap_h
    sheet = np.full(
        (pad + len(rows) * row_h, label_width + ncol * (cw + pad) + pad, 3), 255, np.uint8
    )
    for r, (label, frames) in enumerate(rows):
        y0 = pad + r * row_h
        put_label(sheet, label, 4, y0 + ch // 2 + 4, (0, 0, 0))
        for c, frame in enumerate(frames):
            if frame.shape[:2] != (h, w):
                raise ValueError("all frames of a contact sheet must have the same size")
            x0 = label_width + c * (cw + pad)
            sheet[y0 : y0 + ch, x0 : x0 + cw] = upscale(frame, scale)
            if captions is not None and c < len(captions[r]):
                put_label(sheet, captions[r][c][: cw // 6], x0, y0 + ch + cap_h - 3, (40, 40, 40))
    return sheet
