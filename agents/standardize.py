"""One standardised view for every frozen encoder: per-dimension latent statistics.

A policy network sees a frozen encoder's latents through its first linear layer; latents whose
scale differs by three orders of magnitude (an untrained encoder's move by ~0.001 over a rollout,
a trained VAE's by ~1) do not give the policies the same chance: PPO's orthogonally initialised
MLP effectively ignores the tiny ones, and a "random features" floor then measures "no image at
all". So every frozen encoder, learned, random or the user's own, reaches the policy standardised
per dimension, ``(z - mean) / std``, the usual practice for frozen features fed to a downstream
learner (e.g. linear probes on standardised features; SB3's ``VecNormalize`` does it with
running statistics, Raffin et al. 2021). Unlike ``VecNormalize`` the statistics here are computed
**once**, before training, from IN-colour frames of the agent's training env (seeded episodes of
uniformly random actions), recorded in ``agent.json`` and never updated: evaluation under a shift
uses the training statistics, so a shift that moves the latents is seen as a shift.

Set-valued latents (slots ``[K, D]``) share one statistic per slot dimension across slots (their
order is arbitrary). A dimension that does not vary over the sample keeps scale 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sparseshift.envs.infra.errors import ConfigError

#: Frames (episodes x steps) the statistics are computed from
#: (:func:`sparseshift.agents.envs.measure_stats`).
STATS_EPISODES = 64
STATS_STEPS = 16
#: A dimension whose std is below this (relative to 1 + |mean|) counts as constant.
CONSTANT_TOL = 1e-7


@dataclass(frozen=True)
class LatentStats:
    """Per-dimension mean and std of an encoder's latents over ``frames`` IN frames."""

    mean: np.ndarray  # float32 [D] (or [D_slot] for set-valued latents)
    std: np.ndarray
    frames: int
    seed: int
    colours: str = "in"

    def apply(self, latents: np.ndarray) -> np.ndarray:
        """``(z - mean) / std`` over the last dimension of ``latents`` ([B, D] or [B, K, D])."""
        return ((latents - self.mean) / self.std).astype(np.float32, copy=False)

    def to_json(self) -> dict[str, Any]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "frames": self.frames, "seed": self.seed, "colours": self.colours}

    @classmethod
    def from_json(cls, data: Any, dim: int) -> LatentStats:
        """Checked statistics for a latent of ``dim`` values per row (one-line ConfigError)."""
        if not isinstance(data, dict):
            raise ConfigError("agent.json: observation.standardize must be an object")
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            std = np.asarray(data["std"], dtype=np.float64)
            frames, seed = int(data["frames"]), int(data["seed"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError("agent.json: observation.standardize needs mean, std (lists of "
                              "numbers), frames and seed") from None
        if mean.shape != (dim,) or std.shape != (dim,):
            raise ConfigError(f"agent.json: observation.standardize has {mean.size} means and "
                              f"{std.size} stds for a latent of size {dim}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ConfigError("agent.json: observation.standardize holds non-finite values or a "
                              "std <= 0")
        return cls(mean.astype(np.float32), std.astype(np.float32), frames, seed,
                   str(data.get("colours", "in")))


def stats_of(latents: np.ndarray, seed: int, colours: str = "in") -> LatentStats:
    """Statistics of ``latents`` ``[N, D]`` or ``[N, K, D]`` (pooled over slots)."""
    z = np.asarray(latents, dtype=np.float64)
    flat = z.reshape(-1, z.shape[-1])
    if len(flat) < 2 or not np.all(np.isfinite(flat)):
        raise ConfigError("latent statistics need at least 2 finite latent vectors")
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    constant = std <= CONSTANT_TOL * (1.0 + np.abs(mean))
    std = np.where(constant, 1.0, std)
    return LatentStats(mean.astype(np.float32), std.astype(np.float32), len(z), seed,
                       colours)
