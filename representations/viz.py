"""Image grids of reconstructions and latent traversals (Higgins et al. 2017: decode while sweeping
one latent over [-2, 2] with the others fixed at an encoded example).

The raw grids (:func:`reconstruction_grid`, :func:`traversal_grid`) go to TensorBoard; the PNG
files (:func:`save_traversal_png`) are labelled matplotlib figures: a row per latent index with
its mean KL, a column per value, titles and axis labels. :func:`grid_axes` and
:func:`figure_png` are shared with the slot and wave figures.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import save_png as save_png  # re-export
from sparseshift.representations.base import Capability, Learner, frames_to_tensor

TRAVERSAL_VALUES: tuple[float, ...] = tuple(np.linspace(-2.0, 2.0, 9).tolist())

#: What a reconstruction grid needs.
RECONSTRUCTION_NEEDS: tuple[Capability, ...] = (Capability.RECONSTRUCT,)
#: What a latent traversal needs: a decoder of a vector code (one row per latent dim).
TRAVERSAL_NEEDS: tuple[Capability, ...] = (Capability.VECTOR_CODE, Capability.DECODE)


def tile(images: np.ndarray, pad: int = 2) -> np.ndarray:
    """uint8 ``[rows, cols, H, W, 3]`` -> one uint8 image with white gutters."""
    rows, cols, h, w, _ = images.shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y : y + h, x : x + w] = images[r, c]
    return out


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _require(learner: Learner, needs: tuple[Capability, ...], what: str) -> None:
    reason = learner.missing(*needs)
    if reason:
        raise ConfigError(f"no {what}: {reason}")


@torch.no_grad()
def reconstruction_grid(learner: Learner, frames: np.ndarray) -> np.ndarray:
    """Two rows: the frames and their reconstructions (needs :attr:`Capability.RECONSTRUCT`)."""
    _require(learner, RECONSTRUCTION_NEEDS, "a reconstruction grid")
    x = frames_to_tensor(frames)
    recon = _to_uint8(learner.reconstruct(x))
    return tile(np.stack([np.asarray(frames), recon]))


@torch.no_grad()
def traversal_grid(learner: Learner, frame: np.ndarray,
                   values: Sequence[float] = TRAVERSAL_VALUES) -> np.ndarray:
    """One row per latent dim: decode the encoded ``frame`` with that dim set to each value.

    The first column is the input frame for reference. Needs :data:`TRAVERSAL_NEEDS` (callers
    check :meth:`Learner.missing` first; set-valued latents such as slots have no traversal).
    """
    _require(learner, TRAVERSAL_NEEDS, "a latent traversal")
    z = learner.encode(frames_to_tensor(frame[None]))[0]
    d = z.shape[0]
    zs = z.repeat(d, len(values), 1)  # [d, v, d]
    for i in range(d):
        zs[i, :, i] = torch.tensor(values, dtype=z.dtype)
    imgs = _to_uint8(learner.decode(zs.reshape(d * len(values), d)))
    imgs = imgs.reshape(d, len(values), *imgs.shape[1:])
    first = np.repeat(np.asarray(frame)[None, None], d, axis=0)
    return tile(np.concatenate([first, imgs], axis=1))


# -- labelled figures (PNG files people read without the code) ---------------------------------

#: Latents whose mean KL (nats) is below this are marked unused in traversal labels.
UNUSED_KL = 0.01


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return buf.getvalue()


def new_figure(width_px: float, height_px: float, dpi: int = 100) -> Any:
    """A matplotlib ``Figure`` of ``width_px x height_px`` pixels, without pyplot (no display,
    no global state: safe in worker processes and threads)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)


def grid_axes(ax: Any, images: np.ndarray, pad: int = 2, row_labels: Sequence[str] = (),
              col_labels: Sequence[str] = (), col_label_colours: Sequence[Any] | None = None,
              top: bool = True) -> None:
    """Show ``images`` ``[rows, cols, H, W, 3]`` tiled in ``ax`` with a tick label per row (left)
    and per column (top or bottom), no frame."""
    rows, cols, h, w, _ = images.shape
    ax.imshow(tile(images, pad), interpolation="nearest")
    ax.set_xticks([pad + c * (w + pad) + w / 2 - 0.5 for c in range(cols)])
    ax.set_yticks([pad + r * (h + pad) + h / 2 - 0.5 for r in range(rows)])
    ax.set_xticklabels(list(col_labels) if col_labels else [""] * cols, fontsize=8)
    ax.set_yticklabels(list(row_labels) if row_labels else [""] * rows, fontsize=8)
    if top:
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if col_label_colours is not None:  # a swatch behind the label, text readable on it
        for label, colour in zip(ax.get_xticklabels(), col_label_colours, strict=False):
            if colour is not None:
                r, g, b = colour[:3]
                light = 0.299 * r + 0.587 * g + 0.114 * b > 0.5
                label.set_color("black" if light else "white")
                label.set_bbox({"facecolor": colour, "edgecolor": "none", "pad": 1.5})


@torch.no_grad()
def latent_kl(learner: Learner, frames: np.ndarray, batch: int = 256) -> np.ndarray | None:
    """Mean ``KL(q(z_i | x) || N(0, 1))`` per latent (nats) over ``frames``; None when the
    learner has no Gaussian ``posterior(frames) -> (mu, logvar)`` (the VAEs have one)."""
    posterior = getattr(learner, "posterior", None)
    if not callable(posterior) or len(frames) == 0:
        return None
    total: torch.Tensor | None = None
    for i in range(0, len(frames), batch):
        mu, logvar = posterior(frames_to_tensor(np.asarray(frames[i : i + batch])))
        kl = (0.5 * (mu.square() + logvar.exp() - logvar - 1.0)).double().sum(0)
        total = kl if total is None else total + kl
    assert total is not None
    return (total / len(frames)).cpu().numpy()


def traversal_labels(kl: np.ndarray | None, dims: int) -> list[str]:
    """Row labels of a traversal: ``z3  KL 1.24`` (``unused`` when the KL is below
    :data:`UNUSED_KL`: the dimension carries no information)."""
    if kl is None:
        return [f"z{i}" for i in range(dims)]
    return [f"z{i}  KL {k:.2f}" + ("  unused" if k < UNUSED_KL else "") for i, k in enumerate(kl)]


def traversal_figure(learner: Learner, frames: np.ndarray,
                     values: Sequence[float] = TRAVERSAL_VALUES, title: str | None = None
                     ) -> bytes:
    """PNG of the latent traversal of ``frames[0]`` (:func:`traversal_grid`), labelled: one row
    per latent index with its mean KL over ``frames`` (:func:`latent_kl`), one column per value
    the latent is set to (the first column is the input frame), a title and axis labels."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    grid = traversal_grid(learner, frames[0], values)
    h, w = frames.shape[1:3]
    pad = 2
    rows = (grid.shape[0] - pad) // (h + pad)
    cols = (grid.shape[1] - pad) // (w + pad)
    images = np.stack([np.stack([grid[pad + r * (h + pad): pad + r * (h + pad) + h,
                                      pad + c * (w + pad): pad + c * (w + pad) + w]
                                 for c in range(cols)]) for r in range(rows)])
    kl = latent_kl(learner, frames)
    labels = traversal_labels(kl, rows)
    cell = max(64, int(1.5 * w))
    fig = new_figure(cols * (cell + 4) + 190, rows * (cell + 4) + 130)
    ax = fig.add_axes((150 / fig.bbox.width, 40 / fig.bbox.height,
                       1 - 170 / fig.bbox.width, 1 - 115 / fig.bbox.height))
    grid_axes(ax, images, pad, labels, ["input", *(f"{v:+.1f}" for v in values)])
    ax.set_xlabel("value the latent is set to (others: the input's posterior mean)", fontsize=9)
    ax.set_ylabel("latent (mean KL in nats over the evaluated frames)" if kl is not None
                  else "latent", fontsize=9)
    fig.suptitle(title or f"{learner.name}: latent traversal (Higgins et al. 2017)",
                 fontsize=11, y=1 - 8 / fig.bbox.height, va="top")
    return figure_png(fig)


def save_traversal_png(path: str | os.PathLike[str], learner: Learner, frames: np.ndarray,
                       values: Sequence[float] = TRAVERSAL_VALUES) -> Path:
    """Write :func:`traversal_figure` of ``frames`` atomically; returns the path."""
    from sparseshift.envs.infra.io import atomic_write_bytes

    return atomic_write_bytes(Path(path), traversal_figure(learner, frames, values))


@functools.lru_cache(maxsize=16)
def text_font(size: int) -> Any:
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels (PIL's default font if missing)."""
    from matplotlib import get_data_path
    from PIL import ImageFont

    try:
        return ImageFont.truetype(os.path.join(get_data_path(), "fonts", "ttf",
                                               "DejaVuSans.ttf"), size)
    except OSError:
        return ImageFont.load_default(size)


def caption_strip(width: int, captions: Sequence[tuple[int, str]], height: int = 16,
                  size: int = 11) -> np.ndarray:
    """A white uint8 strip ``[height, width, 3]`` with each ``(x, text)`` written in DejaVu Sans,
    for labelling image rows such as animation and video frames; ``size`` shrinks (to 7 px at
    least) until every caption fits before the next one or the right edge."""
    from PIL import Image, ImageDraw

    xs = [x for x, _ in captions] + [width]
    while size > 7 and any(text_font(size).getlength(t) > xs[i + 1] - x - 2
                           for i, (x, t) in enumerate(captions)):
        size -= 1
    font = text_font(size)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for x, text in captions:
        draw.text((x, max(0, (height - size) // 2 - 1)), text, fill="black", font=font)
    return np.asarray(img).copy()
