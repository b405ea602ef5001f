"""Features extractors for policies on frozen-encoder features.

Only set-valued latents need one: slots ``[K, D]`` (Slot Attention, Locatello et al. 2020) have no
canonical order, so the policy must be invariant to permuting them. :class:`DeepSetsExtractor`
implements the sum-decomposition of Zaheer et al. (NeurIPS 2017, *Deep Sets*):
``rho(pool_k phi(s_k))`` with a shared per-slot MLP ``phi`` and sum or mean pooling, plus a
separate MLP branch for the proprio/goal part of the observation. The encoder itself never runs
here (it runs once per env step in :class:`sparseshift.agents.wrapper.EncodedVecEnv`); this module
only sees
the flat features ``[slots.flatten(), proprio]``.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sparseshift.envs.errors import ConfigError, choice_error

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
