"""The shared conv encoder/decoder of disentanglement_lib and the reconstruction losses.

Architecture of Locatello et al. 2019 (*Challenging Common Assumptions in the Unsupervised Learning
of Disentangled Representations*, disentanglement_lib ``conv_encoder``/``deconv_decoder``), used by
Higgins et al. 2017 style beta-VAEs and by the weakly supervised VAEs of Locatello et al. 2020:

* encoder: stride-2 convs with "same" padding and ReLU, 32/32/64/64 filters with kernels 4,4,2,2
  at 64x64 (the code's kernels; the paper says 4x4 everywhere, which ``kernels=(4, 4, 4, 4)``
  gives), then FC 256 + ReLU, then FC 2 x latent_dim (means and log-variances);
* decoder: FC 256 + ReLU, FC to a 4x4 x C map + ReLU, then stride-2 4x4 transposed convs that
  mirror the encoder's channels, the last one producing 3 channels of logits.

Images of size ``4 * 2**n`` use ``n`` stride-2 stages: 64x64 has 4, the 128x128 variant one more
(default channels 32/32/64/64/64, kernels 4,4,4,2,2).
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.model_config import ReconLoss, conv_params, linear_params

RECON_LOSSES: tuple[str, ...] = get_args(ReconLoss)


def num_stages(image_size: int) -> int:
    """Number of stride-2 stages that take ``image_size`` down to 4x4."""
    n, s = 0, image_size
    while s > 4 and s % 2 == 0:
        s //= 2
        n += 1
    if s != 4 or n < 2:
        raise ConfigError(
            "the conv nets need an image size of 4 * 2**n (n >= 2, e.g. 64 or 128), "
            f"got {image_size}"
        )
    return n


def default_channels(image_size: int) -> tuple[int, ...]:
    """disentanglement_lib's 32/32/64/64 at 64x64, extended with 64s for larger images."""
    n = num_stages(image_size)
    return tuple([32, 32] + [64] * (n - 2))[:n]


def default_kernels(image_size: int) -> tuple[int, ...]:
    """disentanglement_lib's 4,4,2,2 at 64x64; larger images get more 4x4 stages in front."""
    n = num_stages(image_size)
    return tuple([4] * (n - 2) + [2, 2])


def resolve_arch(config: object) -> None:
    """Fill a frozen config's empty ``channels``/``kernels`` with the defaults for its
    ``image_size`` and check the result (shared by every learner on the conv encoder/decoder)."""
    size = int(getattr(config, "image_size"))  # noqa: B009
    if not getattr(config, "channels"):  # noqa: B009
        object.__setattr__(config, "channels", default_channels(size))
    if not getattr(config, "kernels"):  # noqa: B009
        object.__setattr__(config, "kernels", default_kernels(size))
    check_arch(size, getattr(config, "channels"), getattr(config, "kernels"))  # noqa: B009


def check_arch(image_size: int, channels: tuple[int, ...], kernels: tuple[int, ...]) -> None:
    n = num_stages(image_size)
    if len(channels) != n or len(kernels) != n:
        raise ConfigError(
            f"image size {image_size} needs {n} conv stages, got {len(channels)} channels and "
            f"{len(kernels)} kernels"
        )
    if any(c <= 0 for c in channels) or any(k not in (2, 4) for k in kernels):
        raise ConfigError(f"channels must be positive and kernels 2 or 4, got {channels} {kernels}")


def encoder_params(channels: tuple[int, ...], kernels: tuple[int, ...], hidden: int,
                   out_dim: int) -> tuple[int, int]:
    """(conv, fully connected) parameters of :class:`ConvEncoder`, without building it."""
    convs, c_in = 0, 3
    for c, k in zip(channels, kernels, strict=True):
        convs += conv_params(c_in, c, k)
        c_in = c
    return convs, linear_params(c_in * 16, hidden) + linear_params(hidden, out_dim)


def decoder_params(channels: tuple[int, ...], hidden: int, latent_dim: int) -> tuple[int, int]:
    """(fully connected, transposed conv) parameters of :class:`ConvDecoder`."""
    rev = tuple(reversed(channels))
    fc = linear_params(latent_dim, hidden) + linear_params(hidden, rev[0] * 16)
    deconvs, c_in = 0, rev[0]
    for c in (*rev[1:], 3):
        deconvs += conv_params(c_in, c, 4)
        c_in = c
    return fc, deconvs


class ConvEncoder(nn.Module):
    """Frames (float ``[B, 3, H, W]`` in [0, 1]) -> ``[B, out_dim]`` (e.g. 2 x latent_dim)."""

    def __init__(self, image_size: int, channels: tuple[int, ...], kernels: tuple[int, ...],
                 hidden: int, out_dim: int) -> None:
        super().__init__()
        check_arch(image_size, channels, kernels)
        layers: list[nn.Module] = []
        c_in = 3
        for c, k in zip(channels, kernels, strict=True):
            # Even kernel, stride 2, padding (k - 2) / 2: exactly halves the size ("same").
            layers += [nn.Conv2d(c_in, c, k, stride=2, padding=(k - 2) // 2), nn.ReLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(c_in * 16, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x))


class ConvDecoder(nn.Module):
    """Latents ``[B, latent_dim]`` -> logits ``[B, 3, H, W]``; mirrors :class:`ConvEncoder`."""

    def __init__(self, image_size: int, channels: tuple[int, ...], hidden: int,
                 latent_dim: int) -> None:
        super().__init__()
        check_arch(image_size, channels, (4,) * len(channels))
        rev = tuple(reversed(channels))
        self.start = rev[0]
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, rev[0] * 16), nn.ReLU()
        )
        layers: list[nn.Module] = []
        outs = (*rev[1:], 3)
        c_in = rev[0]
        for i, c in enumerate(outs):
            layers.append(nn.ConvTranspose2d(c_in, c, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(nn.ReLU())
            c_in = c
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.start, 4, 4)
        return self.deconvs(h)


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example reconstruction loss ``[B]``, summed over pixels and channels.

    ``bernoulli``: binary cross-entropy with logits (targets in [0, 1]), disentanglement_lib's
    default; ``gaussian``: squared error of ``sigmoid(logits)`` (its ``l2_loss``).
    """
    if kind == "bernoulli":
        per = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif kind == "gaussian":
        per = (torch.sigmoid(logits) - target).square()
    else:
        raise ConfigError(f"unknown reconstruction loss {kind!r}; valid: {', '.join(RECON_LOSSES)}")
    return per.flatten(1).sum(1)
