"""Features extractors: for policies on frozen-encoder features, and a frozen encoder inside a
policy (:class:`FrozenEncoderExtractor`, for users' own SB3 policies).

``train-agent`` needs one only for set-valued latents: slots ``[K, D]`` (Slot Attention,
Locatello et al. 2020) have no canonical order, so the policy must be invariant to permuting them.
:class:`DeepSetsExtractor` implements the sum-decomposition of Zaheer et al. (NeurIPS 2017, *Deep
Sets*): ``rho(pool_k phi(s_k))`` with a shared per-slot MLP ``phi`` and sum or mean pooling, plus
a separate MLP branch for the proprio/goal part of the observation. The encoder never runs there
(it runs once per env step in :class:`sparseshift.agents.wrapper.EncodedVecEnv`); it only sees
the flat features ``[slots.flatten(), proprio]``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from typing import Any, Literal

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sparseshift.envs.infra.errors import ConfigError, choice_error
from sparseshift.representations.base import Capability, Learner
from sparseshift.representations.plugins import Plugins

Pooling = Literal["sum", "mean"]
POOLINGS: tuple[str, ...] = ("sum", "mean")


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear + ReLU layers through ``sizes`` (ReLU after every layer)."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class DeepSetsExtractor(BaseFeaturesExtractor):
    """Permutation-invariant features of ``[K * D slot values, P proprio values]`` (Zaheer 2017).

    Output: ``rho(pool_k phi(slot_k))`` concatenated with ``psi(proprio)`` (when ``P > 0``).
    """

    def __init__(self, observation_space: spaces.Box, n_slots: int, slot_dim: int,
                 hidden: int = 128, set_features: int = 128, proprio_features: int = 64,
                 pooling: str = "mean") -> None:
        if pooling not in POOLINGS:
            raise choice_error("pooling", pooling, POOLINGS)
        if len(observation_space.shape or ()) != 1:
            raise ConfigError(f"DeepSetsExtractor needs a flat Box, got {observation_space}")
        total = int(observation_space.shape[0])
        proprio = total - n_slots * slot_dim
        if n_slots < 1 or slot_dim < 1 or proprio < 0:
            raise ConfigError(
                f"observation size {total} does not hold {n_slots} slots of size {slot_dim}"
            )
        features = set_features + (proprio_features if proprio else 0)
        super().__init__(observation_space, features_dim=features)
        self.n_slots, self.slot_dim, self.proprio_dim = n_slots, slot_dim, proprio
        self.pooling = pooling
        self.phi = mlp([slot_dim, hidden, hidden])
        self.rho = mlp([hidden, set_features])
        self.psi = mlp([proprio, proprio_features]) if proprio else None

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        k, d = self.n_slots, self.slot_dim
        slots = observations[:, : k * d].reshape(-1, k, d)
        h = self.phi(slots)
        pooled = h.sum(dim=1) if self.pooling == "sum" else h.mean(dim=1)
        out = self.rho(pooled)
        if self.psi is None:
            return out
        return torch.cat([out, self.psi(observations[:, k * d:])], dim=1)


class FrozenEncoderExtractor(BaseFeaturesExtractor):
    """A frozen sparseshift encoder inside your own SB3 policy (public API).

    ``features = [encoder latents (flattened), every other observation key (flattened)]``, for
    ``Dict`` observations with a ``pixels`` image (``obs_mode="pixels_proprio"``) or for a plain
    image ``Box``. SB3 hands the extractor images as float ``[B, 3, H, W]`` in [0, 1] (it moves
    channels first and divides by 255), which :meth:`Learner.encode` accepts as they are.

    ``encoder``: a representation run directory or an ``export-encoder`` folder (a path keeps
    ``policy_kwargs`` small when SB3 saves them; ``plugins`` allows a module such a folder
    names), a :class:`~sparseshift.representations.base.Learner`, or any ``torch.nn.Module``
    mapping images to ``[B, D]`` latents (your own encoder: its ``encoder_spec`` attribute, else
    float ``[B, 3, H, W]`` in [0, 1] at the observation's image size;
    :func:`~sparseshift.representations.external.as_encoder`). Its weights are frozen
    (``requires_grad_(False)``), SB3's re-initialisation of extractors (orthogonal init) does not
    reach them, it stays in eval mode when SB3 switches the policy to training, and it runs under
    ``torch.no_grad``. Stateful encoders (the Neural Wave Machine) need the
    VecEnv wrapper (:class:`sparseshift.agents.wrapper.EncodedVecEnv`), which keeps one state per
    env. This placement re-encodes every minibatch of every gradient epoch; ``docs/agents.md``
    gives its measured cost against the wrapper, which ``train-agent`` uses::

        PPO("MultiInputPolicy", env, policy_kwargs={
            "features_extractor_class": FrozenEncoderExtractor,
            "features_extractor_kwargs": {"encoder": "runs/gvae"}})
    """

    def __init__(self, observation_space: spaces.Space[Any],
                 encoder: str | os.PathLike[str] | nn.Module, pixels_key: str = "pixels",
                 plugins: Plugins | None = None) -> None:
        image = (observation_space.spaces.get(pixels_key)
                 if isinstance(observation_space, spaces.Dict) else observation_space)
        shape = tuple(getattr(image, "shape", None) or (64, 64, 3))
        size = int(shape[1]) if len(shape) == 3 else 64
        learner = _frozen_learner(encoder, size, plugins)
        if learner.supports(Capability.STATEFUL):
            raise ConfigError(f"learner {learner.name!r} is stateful: a features extractor sees "
                              "no episode boundaries; train with EncodedVecEnv (train-agent)")
        if isinstance(observation_space, spaces.Dict):
            if pixels_key not in observation_space.spaces:
                raise ConfigError(f"FrozenEncoderExtractor needs a {pixels_key!r} image in the "
                                  f"observation; got keys {list(observation_space.spaces)}")
            image = observation_space.spaces[pixels_key]
            extra = [k for k in observation_space.spaces if k != pixels_key]
        else:
            image, extra = observation_space, []
        size = int(learner.config.image_size)
        shape = tuple(image.shape or ())
        if shape not in ((3, size, size), (size, size, 3)):
            raise ConfigError(f"FrozenEncoderExtractor: the encoder takes {size}x{size} RGB "
                              f"images, the observation holds {shape}")
        extra_dims = [math.prod(observation_space.spaces[k].shape or ())
                      for k in extra] if isinstance(observation_space, spaces.Dict) else []
        latent = math.prod(learner.latent_shape)
        super().__init__(observation_space, features_dim=int(latent + sum(extra_dims)))
        self.encoder = learner
        self.pixels_key = pixels_key if isinstance(observation_space, spaces.Dict) else None
        self.extra_keys = extra

    def apply(self, fn: Callable[[nn.Module], None]) -> FrozenEncoderExtractor:
        """``fn`` on this module and its children except the encoder: SB3 re-initialises a
        policy's features extractor (``apply(init_weights)``, orthogonal init for PPO/A2C),
        which would overwrite the pretrained weights."""
        for module in self.children():
            if module is not self.encoder:
                module.apply(fn)
        fn(self)
        return self

    def train(self, mode: bool = True) -> FrozenEncoderExtractor:
        super().train(mode)
        self.encoder.eval()  # frozen: never in training mode
        return self

    def forward(self, observations: Any) -> torch.Tensor:
        pixels = observations if self.pixels_key is None else observations[self.pixels_key]
        if pixels.is_floating_point() and pixels.shape[-1] == 3 and pixels.shape[-3] != 3:
            pixels = pixels.permute(0, 3, 1, 2)  # a channels-last image SB3 did not transpose
        elif pixels.dtype == torch.uint8 and pixels.shape[-3] == 3 and pixels.shape[-1] != 3:
            pixels = pixels.permute(0, 2, 3, 1)  # raw uint8 channels first (not normalised)
        with torch.no_grad():
            z = self.encoder.encode(pixels).flatten(1).float()
        parts = [z, *(observations[k].flatten(1).float() for k in self.extra_keys)]
        return torch.cat(parts, dim=1) if len(parts) > 1 else z


def _frozen_learner(encoder: str | os.PathLike[str] | nn.Module, image_size: int,
                    plugins: Plugins | None) -> Learner:
    from sparseshift.representations.external import as_encoder, open_encoder

    if isinstance(encoder, nn.Module):
        learner = as_encoder(encoder, image_size)
    else:
        learner = open_encoder(encoder, plugins or Plugins(), image_size=image_size)
    learner.eval()
    learner.requires_grad_(False)
    return learner
