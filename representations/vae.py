"""beta-VAE (Higgins et al. 2017, *beta-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework*) on the disentanglement_lib conv architecture.

Loss per example: ``recon(x, dec(z)) + beta * KL(q(z|x) || N(0, I))`` with ``z ~ q(z|x)``
reparameterised; the batch loss is the mean over examples. :class:`ConvVAE` holds what the weakly
supervised VAEs in :mod:`sparseshift.representations.weak` share with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparseshift.envs.infra.config import opt
from sparseshift.representations.base import (
    Batch,
    Capability,
    Learner,
    LearnerConfig,
    to_float_chw,
)
from sparseshift.representations.model_config import (
    MAX_CHANNELS,
    MAX_LAYERS,
    MAX_WIDTH,
    ParamParts,
    ReconLoss,
)
from sparseshift.representations.nets import (
    ConvDecoder,
    ConvEncoder,
    decoder_params,
    encoder_params,
    reconstruction_loss,
    resolve_arch,
)

#: Largest latent code of a conv VAE.
MAX_LATENT_DIM = 4096


@dataclass(frozen=True)
class VAEConfig(LearnerConfig):
    """Hyperparameters of the conv VAEs (defaults: disentanglement_lib, beta = 1).

    Empty ``channels``/``kernels`` mean the disentanglement_lib defaults for ``image_size``.
    """

    latent_dim: int = opt(10, "latent dimensions", min=1, max=MAX_LATENT_DIM)
    beta: float = opt(1.0, "weight of the KL term", min=0.0)
    channels: tuple[int, ...] = opt((), "conv channels per stage (empty: the defaults)", min=1,
                                    max=MAX_CHANNELS, max_len=MAX_LAYERS)
    kernels: tuple[int, ...] = opt((), "conv kernel per stage, 2 or 4 (empty: the defaults)",
                                   min=2, max=4, max_len=MAX_LAYERS)
    hidden: int = opt(256, "units of the fully connected layer", min=1, max=MAX_WIDTH)
    recon: ReconLoss = opt("bernoulli", "reconstruction loss")
    #: KL annealing (Bowman et al. 2016, *Generating Sentences from a Continuous Space*): a
    #: remedy for posterior collapse on short budgets; 0 is disentanglement_lib's setting.
    kl_warmup: int = opt(0, "steps over which the KL weight ramps linearly from 0 to beta "
                         "(0: none)", min=0, max=10**9)

    def validate(self) -> None:
        super().validate()
        resolve_arch(self)
        self.check_params()

    def param_parts(self) -> ParamParts:
        """The conv VAE's parameters (:class:`ConvVAE`): encoder to ``2 * latent_dim``,
        decoder from ``latent_dim``."""
        enc_conv, enc_fc = encoder_params(self.channels, self.kernels, self.hidden,
                                          2 * self.latent_dim)
        dec_fc, dec_conv = decoder_params(self.channels, self.hidden, self.latent_dim)
        return {"encoder convs": (enc_conv, ("channels", "kernels")),
                "encoder fully connected layers": (enc_fc, ("hidden", "channels", "latent_dim")),
                "decoder fully connected layers": (dec_fc, ("hidden", "channels", "latent_dim")),
                "decoder transposed convs": (dec_conv, ("channels",))}


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, 1))`` per dimension (same shape as ``mu``)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
    # Drawn on the generator's device (the CPU in the training loop) and moved: the same noise
    # on every device, so a CUDA run differs from a CPU run only by floating-point order.
    where = generator.device if generator is not None else mu.device
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=where).to(mu.device)
    return mu + eps * torch.exp(0.5 * logvar)


class ConvVAE(Learner):
    """Shared parts of the conv VAEs: encoder to a diagonal Gaussian, decoder, ELBO terms.

    Latents are the posterior means, one variable per dimension; the decoder reconstructs frames
    and decodes latent traversals (Higgins et al. 2017).
    """

    config_cls = VAEConfig
    capabilities = frozenset({Capability.VECTOR_CODE, Capability.RECONSTRUCT, Capability.DECODE})
    config: VAEConfig
    # Checked 2026-12-07 on the quick preset's Ada-GVAE recipe (beta 0.1, 3,500 steps, 3 seeds):
    # cube MLP probe R^2 and DCI within seed noise of fp32 (README, "bf16"). The three VAEs share
    # these nets and this ELBO.
    bf16_checked = True

    def __init__(self, config: LearnerConfig) -> None:
        super().__init__(config)
        c = self.config
        self.encoder = ConvEncoder(c.image_size, c.channels, c.kernels, c.hidden, 2 * c.latent_dim)
        self.decoder = ConvDecoder(c.image_size, c.channels, c.hidden, c.latent_dim)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def kl_weight(self) -> float:
        """``beta``, ramped up over the first ``kl_warmup`` training steps."""
        warm = self.config.kl_warmup
        return self.config.beta * (min(1.0, (self.step + 1) / warm) if warm else 1.0)

    def posterior(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames -> (mu, logvar), each ``[B, latent_dim]``."""
        frames = self.check_frames(frames)
        mu, logvar = self.encoder(to_float_chw(frames)).chunk(2, dim=1)
        return mu, logvar

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Posterior means."""
        return self.posterior(frames)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(latents)).permute(0, 2, 3, 1)

    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        """Decoded posterior means."""
        return self.decode(self.encode(frames))

    def elbo_terms(self, frames: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example reconstruction loss ``[B]`` and per-dim KL ``[B, D]`` for a posterior."""
        z = reparameterise(mu, logvar, generator)
        recon = reconstruction_loss(self.decoder(z), to_float_chw(frames), self.config.recon)
        return recon, gaussian_kl(mu, logvar)


class BetaVAE(ConvVAE):
    """beta-VAE (Higgins et al. 2017): ELBO with the KL term weighted by ``beta``.

    Trained on single frames; ``beta = 1`` is the plain VAE (Kingma & Welling 2014).
    """

    name = "beta_vae"
    batch_kind = "singles"

    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        x = batch["x"]
        mu, logvar = self.posterior(x)
        recon, kl = self.elbo_terms(x, mu, logvar, generator)
        kl_total = kl.sum(1).mean()
        recon_mean = recon.mean()
        return {
            "loss": recon_mean + self.kl_weight() * kl_total,
            "recon": recon_mean,
            "kl": kl_total,
            "elbo": -(recon_mean + kl_total),
            "kl_per_dim": kl.mean(0).detach(),
        }
