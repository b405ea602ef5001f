"""Contact sheets shared by commands that write pictures (PNG output:
:func:`sparseshift.envs.infra.io.save_png`).

Text is never cut: row labels and captions wrap onto as many lines as they need (at commas and
spaces, or inside a word longer than a line), and the sheet grows to hold them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Font sizes (pixels) of labels and captions, and of the title.
FONT_SIZE = 11
TITLE_SIZE = 13
#: Height of one line of text (pixels).
LINE_H = 14
LABEL_H = LINE_H  # kept for callers of the old name


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling (keeps pixels exact so colours stay readable)."""
    if scale == 1:
        return frame
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


@functools.lru_cache(maxsize=8)
def font(size: int = FONT_SIZE) -> Any:
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels; PIL's default font otherwise."""
    import os

    import matplotlib
    from PIL import ImageFont

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default(size)


def text_width(text: str, size: int = FONT_SIZE) -> int:
    return int(np.ceil(font(size).getlength(text)))


def draw_texts(img: np.ndarray, texts: Sequence[tuple[int, int, str, tuple[int, int, int], int]]
               ) -> np.ndarray:
    """``img`` with each ``(x, y_top, text, colour, size)`` drawn (anti-aliased)."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    for x, y, text, colour, size in texts:
        draw.text((x, y), text, fill=colour, font=font(size))
    return np.asarray(pil).copy()


def put_label(img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int],
              size: int = FONT_SIZE) -> None:
    """Draw ``text`` with its baseline near ``y`` (in place)."""
    img[...] = draw_texts(img, [(x, y - size, text, colour, size)])


def wrap(text: str, width: int, size: int = FONT_SIZE) -> list[str]:
    """Lines of ``text`` no wider than ``width`` pixels: breaks after commas and at spaces; a
    single word wider than a line is split inside (never dropped)."""
    words = text.replace(" ", " \x00").split("\x00")
    lines: list[str] = []
    line = ""
    for word in words:
        if text_width((line + word).rstrip(), size) <= width or not line:
            line += word
        else:
            lines.append(line.rstrip())
            line = word
        while text_width(line.rstrip(), size) > width and len(line) > 1:
            cut = len(line) - 1
            while cut > 1 and text_width(line[:cut], size) > width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip():
        lines.append(line.rstrip())
    return lines or [""]


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    scale: int = 2,
    pad: int = 2,
    label_width: int = 110,
    captions: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
) -> np.ndarray:
    """Grid of uint8 HxWx3 frames: one labelled row per entry, an optional caption under each
    cell (wrapped to the cell's width, never cut) and an optional title line on top."""
    if not rows or not any(len(r[1]) for r in rows):
        raise ValueError("contact sheet needs at least one frame")
    h, w = rows[0][1][0].shape[:2]
    ch, cw = h * scale, w * scale
    ncol = max(len(r[1]) for r in rows)
    wrapped: list[list[list[str]]] = []
    for r in range(len(rows)):
        caps = captions[r] if captions is not None and r < len(captions) else []
        wrapped.append([wrap(c, cw - 2) if c else [] for c in caps])
    cap_lines = [max((len(c) for c in row), default=0) for row in wrapped]
    label_lines = [wrap(label, label_width - 8) for label, _ in rows]
    row_h = [max(ch, len(lab) * LINE_H) + pad + n * LINE_H
             for lab, n in zip(label_lines, cap_lines, strict=True)]
    title_lines = wrap(title, label_width + ncol * (cw + pad) - 8, TITLE_SIZE) if title else []
    top = pad + len(title_lines) * (LINE_H + 3)
    sheet = np.full((top + sum(row_h), label_width + ncol * (cw + pad) + pad, 3), 255, np.uint8)
    texts: list[tuple[int, int, str, tuple[int, int, int], int]] = [
        (4, pad + i * (LINE_H + 3), line, (0, 0, 0), TITLE_SIZE)
        for i, line in enumerate(title_lines)]
    y0 = top
    for r, (_, frames) in enumerate(rows):
        lab = label_lines[r]
        ly = y0 + ch // 2 - (len(lab) * LINE_H) // 2
        texts += [(4, ly + i * LINE_H, line, (0, 0, 0), FONT_SIZE) for i, line in enumerate(lab)]
        for c, frame in enumerate(frames):
            if frame.shape[:2] != (h, w):
                raise ValueError("all frames of a contact sheet must have the same size")
            x0 = label_width + c * (cw + pad)
            sheet[y0 : y0 + ch, x0 : x0 + cw] = upscale(frame, scale)
            lines = wrapped[r][c] if c < len(wrapped[r]) else []
            texts += [(x0, y0 + ch + 1 + i * LINE_H, line, (40, 40, 40), FONT_SIZE)
                      for i, line in enumerate(lines)]
        y0 += row_h[r]
    return draw_texts(sheet, texts)
