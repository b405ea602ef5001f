"""Learners: registry, configs, shapes, finite losses, and the Ada-GVAE / Ada-ML-VAE averaging."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import test_rep_support as support
import torch

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.registry import (
    BUILTIN_LEARNERS,
    learner_class,
    learner_names,
    make_learner,
)
from sparseshift.representations.vae import BetaVAE, VAEConfig, reparameterise
from sparseshift.representations.weak import adapt_posteriors, pair_kl, shared_mask

TINY = support.TINY
one_thread = support.one_thread


def frames(b: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, size, size, 3), dtype=torch.uint8, generator=g)


def test_registry_lists_builtins_and_rejects_unknown_names() -> None:
    assert {"beta_vae", "ada_gvae", "ada_mlvae"} <= set(learner_names())
    with pytest.raises(ConfigError, match="unknown learner 'nope'; valid: ada_gvae, ada_mlvae"):
        make_learner("nope")


def test_builtin_table_is_static_and_names_its_classes() -> None:
    with pytest.raises(TypeError):
        BUILTIN_LEARNERS["other"] = lambda: BetaVAE  # type: ignore[index]
    assert learner_class("beta_vae") is BetaVAE and BetaVAE.name == "beta_vae"
    # a subclass does not take over the name: the table, not import order, decides
    type("Other", (BetaVAE,), {"name": "beta_vae"})
    assert learner_class("beta_vae") is BetaVAE


def test_config_is_frozen_resolves_defaults_and_validates() -> None:
    cfg = VAEConfig()
    assert cfg.channels == (32, 32, 64, 64) and cfg.kernels == (4, 4, 2, 2)
    big = VAEConfig(image_size=128)
    assert big.channels == (32, 32, 64, 64, 64) and big.kernels == (4, 4, 4, 2, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, "beta", 2.0)  # noqa: B010
    bad: dict[str, Any]
    for bad in ({"image_size": 60}, {"image_size": 96}, {"recon": "poisson"}, {"beta": -1.0},
                {"latent_dim": 0}, {"channels": (4, 4)}):
        with pytest.raises(ConfigError):
            VAEConfig(**bad)
    with pytest.raises(ConfigError, match="unknown VAEConfig option"):
        VAEConfig.from_json({"betta": 2})
    assert VAEConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("name", ["beta_vae", "ada_gvae", "ada_mlvae"])
@pytest.mark.parametrize("recon", ["bernoulli", "gaussian"])
def test_loss_is_finite_and_backpropagates(name: str, recon: str) -> None:
    learner = make_learner(name, {**TINY, "recon": recon})
    x = frames(4)
    batch = {"x": x} if learner.batch_kind == "singles" else {"x1": x, "x2": frames(4, seed=1)}
    terms = learner.loss(batch, generator=torch.Generator().manual_seed(0))
    assert terms["loss"].ndim == 0 and torch.isfinite(terms["loss"])
    assert terms["kl_per_dim"].shape == (4,)
    terms["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in learner.parameters())


@pytest.mark.parametrize("size", [64, 128])
def test_encode_decode_shapes(size: int) -> None:
    learner = make_learner("beta_vae", {"image_size": size, "latent_dim": 6})
    assert learner.latent_shape == (6,) and not learner.stateful
    x = frames(3, size)
    with torch.no_grad():
        z = learner.encode(x)
        assert z.shape == (3, 6)
        assert learner.decode(z).shape == (3, size, size, 3)
        state = learner.initial_state(3)
        z2, state2 = learner.encode_step(x, state)
    assert torch.equal(z, z2) and state2 is None
    with pytest.raises(ConfigError, match="trained on 128x128 images"):
        make_learner("beta_vae", {"image_size": 128}).encode(frames(1, 64))


def test_loss_is_deterministic_given_the_generator() -> None:
    learner = make_learner("ada_gvae", TINY)
    batch = {"x1": frames(4), "x2": frames(4, seed=1)}
    a = learner.loss(batch, torch.Generator().manual_seed(3))
    b = learner.loss(batch, torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The noise comes from the generator only. (Compared on the samples: an untrained decoder
    # barely depends on z, so two seeds can give the same float32 loss.)
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    z3 = reparameterise(mu, logvar, torch.Generator().manual_seed(3))
    assert torch.equal(z3, reparameterise(mu, logvar, torch.Generator().manual_seed(3)))
    assert not torch.equal(z3, reparameterise(mu, logvar, torch.Generator().manual_seed(4)))


def test_pair_kl_matches_the_reference_formula() -> None:
    mu1, lv1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 0.5]])
    mu2, lv2 = torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 0.5]])
    v1, v2 = lv1.exp(), lv2.exp()
    want = v1 / v2 + (mu2 - mu1) ** 2 / v2 - 1 + lv2 - lv1
    assert torch.allclose(pair_kl(mu1, lv1, mu2, lv2), want)
    assert pair_kl(mu1, lv1, mu1, lv1).abs().max() == 0


def _hand_posteriors() -> tuple[torch.Tensor, ...]:
    # Dims 0, 2 and 4 agree nearly (small KL), dims 1 and 3 differ a lot (large KL).
    mu1 = torch.tensor([[0.0, 0.0, 1.0, -2.0, 0.5]])
    mu2 = torch.tensor([[0.1, 3.0, 1.0, 2.0, 0.4]])
    lv1 = torch.tensor([[0.0, 0.0, -1.0, 0.0, 0.2]])
    lv2 = torch.tensor([[0.2, 0.0, -1.0, 0.0, 0.0]])
    return mu1, lv1, mu2, lv2


def test_shared_mask_is_below_halfway_between_min_and_max() -> None:
    delta = torch.tensor([[0.0, 10.0, 4.9, 5.1, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    assert shared_mask(delta).tolist() == [
        [True, False, True, False, False],  # tau = 5: strictly below
        [False] * 5,  # all equal: nothing averaged
    ]


def test_ada_gvae_averages_exactly_the_dims_below_the_threshold() -> None:
    mu1, lv1, mu2, lv2 = _hand_posteriors()
    delta = pair_kl(mu1, lv1, mu2, lv2)
    tau = (delta.max() + delta.min()) / 2
    assert (delta < tau).tolist() == [[True, False, True, False, True]]
    m1, l1, m2, l2, shared = adapt_posteriors(mu1, lv1, mu2, lv2, "gvae")
    assert shared.tolist() == [[True, False, True, False, True]]
    for j in (0, 2, 4):  # averaged: arithmetic mean of mu and of the variance
        assert m1[0, j] == m2[0, j] == pytest.approx(float(mu1[0, j] + mu2[0, j]) / 2)
        want_var = (lv1[0, j].exp() + lv2[0, j].exp()) / 2
        assert l1[0, j].exp() == pytest.approx(float(want_var))
        assert l2[0, j] == l1[0, j]
    for j in (1, 3):  # private dims untouched
        assert (m1[0, j], m2[0, j], l1[0, j], l2[0, j]) == (mu1[0, j], mu2[0, j], lv1[0, j],
                                                            lv2[0, j])


def test_ada_mlvae_uses_the_product_of_experts_on_shared_dims() -> None:
    mu1, lv1, mu2, lv2 = _hand_posteriors()
    m1, l1, m2, _, shared = adapt_posteriors(mu1, lv1, mu2, lv2, "mlvae")
    assert shared.tolist() == [[True, False, True, False, True]]
    for j in (0, 4):
        v1, v2 = float(lv1[0, j].exp()), float(lv2[0, j].exp())
        want_mu = (float(mu1[0, j]) / v1 + float(mu2[0, j]) / v2) / (1 / v1 + 1 / v2)
        assert m1[0, j] == m2[0, j] == pytest.approx(want_mu)
        assert float(l1[0, j].exp()) == pytest.approx(2 * v1 * v2 / (v1 + v2))
    # equal posteriors are left unchanged by the product of experts
    assert m1[0, 2] == mu1[0, 2] and l1[0, 2] == pytest.approx(float(lv1[0, 2]))
    assert m1[0, 1] == mu1[0, 1] and m2[0, 3] == mu2[0, 3]


def test_ada_gvae_loss_uses_the_adapted_posteriors(monkeypatch: pytest.MonkeyPatch) -> None:
    learner: Any = make_learner("ada_gvae", TINY)
    seen: dict[str, torch.Tensor] = {}
    original: Any = learner.elbo_terms

    def spy(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
            g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        seen["mu"], seen["logvar"] = mu, logvar
        return original(x, mu, logvar, g)

    monkeypatch.setattr(learner, "elbo_terms", spy)
    x1, x2 = frames(3), frames(3, seed=1)
    terms = learner.loss({"x1": x1, "x2": x2})
    mu, logvar = learner.posterior(torch.cat([x1, x2]))
    want = adapt_posteriors(mu[:3], logvar[:3], mu[3:], logvar[3:], "gvae")
    assert torch.allclose(seen["mu"], torch.cat([want[0], want[2]]))
    assert torch.allclose(seen["logvar"], torch.cat([want[1], want[3]]))
    assert float(terms["shared_dims"]) == float(want[4].float().sum(1).mean())
