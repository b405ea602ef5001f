"""Image grids of reconstructions and latent traversals (Higgins et al. 2017: decode while sweeping
one latent over [-2, 2] with the others fixed at an encoded example)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sparseshift.envs.errors import ConfigError
from sparseshift.envs.io import save_png as save_png  # re-export
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


