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
from typing import TYPE_CHECKING, Any

import numpy as np

from sparseshift.envs.infra.errors import ConfigError

if TYPE_CHECKING:
    from sparseshift.agents.config import AgentConfig
    from sparseshift.representations.base import Learner

#: Frames (episodes x steps) the statistics are computed from.
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


def measure_stats(learner: Learner, config: AgentConfig, seed: int,
                  episodes: int = STATS_EPISODES, steps: int = STATS_STEPS) -> LatentStats:
    """Latent statistics of ``learner`` on the training env of ``config`` (its colours): seeded
    episodes of uniformly random actions, the first ``steps`` frames of each (stateful encoders
    carry their state through each episode). Deterministic for a given seed."""
    from sparseshift.agents.encoding import FrozenEncoder
    from sparseshift.agents.envs import make_env

    env = make_env(config)
    encoder = FrozenEncoder(learner, env.observation_space)
    rng = np.random.default_rng([seed, 0x5D])
    env.action_space.seed(int(rng.integers(2**31)))
    rows: list[np.ndarray] = []
    try:
        for _ in range(episodes):
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            batch = [obs]
            for _ in range(steps - 1):
                obs, _, term, trunc, _ = env.step(env.action_space.sample())
                batch.append(obs)
                if term or trunc:
                    break
            if encoder.stateful:
                state = encoder.initial_state(1)
                for o in batch:
                    z, state = encoder.latents(encoder.stack([o]), state)
                    rows.append(z)
            else:
                rows.append(encoder.latents(encoder.stack(batch))[0])
    finally:
        env.close()
    z = np.concatenate(rows)
    if encoder.set_shape is not None:
        z = z.reshape(len(z), *encoder.set_shape)
    return stats_of(z, seed, config.colours)
