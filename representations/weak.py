"""Weakly supervised VAEs from pairs: Ada-GVAE and Ada-ML-VAE.

Locatello et al. 2020, *Weakly-Supervised Disentanglement Without Compromises*: the two images of
a pair differ in a few (unknown) factors. Both are encoded to diagonal Gaussians; per latent dim

    delta_j = KL(q(z_j|x1) || q(z_j|x2)) = var1/var2 + (mu2 - mu1)^2/var2 - 1 + logvar2 - logvar1

(disentanglement_lib omits the 0.5 factor, which does not move the threshold). Dims with
``delta_j < tau``, ``tau = (max_j delta_j + min_j delta_j) / 2`` (two equal bins between min and
max, per pair) are inferred to be *shared* and both posteriors are replaced on them by an average:

* Ada-GVAE (Group VAE averaging, Hosoya 2019): arithmetic mean of the means and of the variances;
* Ada-ML-VAE (Bouchacourt et al. 2018, *Multi-Level Variational Autoencoder*): product of
  experts, i.e. the precision-weighted mean ``(mu1 var2 + mu2 var1) / (var1 + var2)`` with variance
  ``2 var1 var2 / (var1 + var2)`` (the PoE variance times 2, as in disentanglement_lib, so two
  equal posteriors stay unchanged).

If all ``delta_j`` of a pair are equal no dim is below the threshold and nothing is averaged. The
shared/private decision is not differentiated through (it is a hard mask). The loss is the sum of
both images' beta-ELBOs with the adapted posteriors, averaged over pairs. Both learners take
intervention pairs or temporal pairs (frames t and t+k of a rollout) alike.
"""

from __future__ import annotations

import torch

from sparseshift.representations.base import Batch
from sparseshift.representations.vae import ConvVAE


def pair_kl(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor,
            logvar2: torch.Tensor) -> torch.Tensor:
    """disentanglement_lib's per-dim ``KL(q1 || q2)`` without the 0.5 factor, ``[B, D]``."""
    var1, var2 = logvar1.exp(), logvar2.exp()
    return var1 / var2 + (mu2 - mu1).square() / var2 - 1.0 + logvar2 - logvar1


def shared_mask(delta: torch.Tensor) -> torch.Tensor:
    """Boolean ``[B, D]``: dims whose ``delta`` lies below halfway between its row's min and max."""
    tau = 0.5 * (delta.amax(dim=1, keepdim=True) + delta.amin(dim=1, keepdim=True))
    return delta < tau


def average_gvae(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor,
                 logvar2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-VAE average: arithmetic mean of means and of variances (returns mu, logvar)."""
    var = 0.5 * (logvar1.exp() + logvar2.exp())
    return 0.5 * (mu1 + mu2), var.log()


def average_mlvae(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor,
                  logvar2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ML-VAE product of experts (precision-weighted mean, variance 2 v1 v2 / (v1 + v2))."""
    var1, var2 = logvar1.exp(), logvar2.exp()
    mu = (mu1 * var2 + mu2 * var1) / (var1 + var2)
    var = 2.0 * var1 * var2 / (var1 + var2)
    return mu, var.log()


def adapt_posteriors(
    mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor,
    mode: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace both posteriors by their average on the inferred shared dims.

    Returns ``(mu1', logvar1', mu2', logvar2', shared)``; ``mode`` is ``"gvae"`` or ``"mlvae"``.
    """
    with torch.no_grad():
        shared = shared_mask(pair_kl(mu1, logvar1, mu2, logvar2))
    avg = average_gvae if mode == "gvae" else average_mlvae
    mu_a, logvar_a = avg(mu1, logvar1, mu2, logvar2)
    return (
        torch.where(shared, mu_a, mu1),
        torch.where(shared, logvar_a, logvar1),
        torch.where(shared, mu_a, mu2),
        torch.where(shared, logvar_a, logvar2),
        shared,
    )


class AdaptiveGroupVAE(ConvVAE):
    """Common loss of the adaptive weak VAEs; subclasses pick the averaging."""

    batch_kind = "pairs"
    mode = "gvae"

    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        x1, x2 = batch["x1"], batch["x2"]
        # One encoder pass over both images (faster than two; identical maths).
        mu, logvar = self.posterior(torch.cat([x1, x2]))
        n = x1.shape[0]
        mu1, logvar1, mu2, logvar2, shared = adapt_posteriors(
            mu[:n], logvar[:n], mu[n:], logvar[n:], self.mode
        )
        recon, kl = self.elbo_terms(
            torch.cat([x1, x2]), torch.cat([mu1, mu2]), torch.cat([logvar1, logvar2]), generator
        )
        recon_pair = recon[:n] + recon[n:]
        kl_pair = kl[:n] + kl[n:]
        recon_mean = recon_pair.mean()
        kl_total = kl_pair.sum(1).mean()
        return {
            "loss": recon_mean + self.kl_weight() * kl_total,
            "recon": recon_mean,
            "kl": kl_total,
            "elbo": -(recon_mean + kl_total),
            "shared_dims": shared.float().sum(1).mean(),
            "kl_per_dim": (0.5 * kl_pair.mean(0)).detach(),
        }


class AdaGVAE(AdaptiveGroupVAE):
    """Ada-GVAE (Locatello et al. 2020): adaptive shared dims, Group-VAE (arithmetic) averaging."""

    name = "ada_gvae"
    mode = "gvae"


class AdaMLVAE(AdaptiveGroupVAE):
    """Ada-ML-VAE (Locatello et al. 2020; averaging of Bouchacourt et al. 2018's ML-VAE)."""

    name = "ada_mlvae"
    mode = "mlvae"
