"""Tiny learners and envs shared by the agents tests (holds no tests itself)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from sparseshift.representations.base import (
    Batch,
    Capability,
    Learner,
    LearnerConfig,
    to_float_chw,
)

SIZE = 16
PROPRIO = 3


@dataclass(frozen=True)
class TinyConfig(LearnerConfig):
    image_size: int = SIZE


class TinyLearner(Learner):
    """Stateless: a small conv net (so batching could matter) -> ``(4,)`` latents."""

    config_cls = TinyConfig
    name = "tiny"

    def __init__(self, config: LearnerConfig | None = None, dim: int = 4) -> None:
        super().__init__(config or TinyConfig())
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 4, stride=4)
        self.fc = nn.Linear(8 * (SIZE // 4) ** 2, dim)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.dim = dim

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        self.check_frames(frames)
        return self.fc(torch.relu(self.conv(to_float_chw(frames))).flatten(1))


class StatefulLearner(TinyLearner):
    """Latents are a running sum of per-frame codes; state = (sum, step count). Declares nothing
    but ``stateful = True``: its capabilities are derived (vector code, stateful)."""

    stateful = True

    def initial_state(self, batch: int) -> Any:
        return (torch.zeros(batch, self.dim), torch.zeros(batch))

    def encode_step(self, frames: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        total, count = state
        total = total + self.encode(frames)
        return total, (total, count + 1)


class SetLearner(TinyLearner):
    """Set-valued latents ``(K=3, D=4)``."""

    capabilities = frozenset({Capability.SET_LATENTS})

    def __init__(self, config: LearnerConfig | None = None) -> None:
        super().__init__(config, dim=12)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (3, 4)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return super().encode(frames).reshape(-1, 3, 4)


def fake_frame(env_index: int, t: int) -> np.ndarray:
    """The deterministic frame env ``env_index`` shows at episode step ``t``."""
    rng = np.random.default_rng(1000 * env_index + t)
    return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


class FakeEnv(gym.Env[Any, Any]):
    """Dict(pixels, proprio) observations; episodes of ``length`` steps (terminated)."""

    def __init__(self, index: int, length: int, proprio: bool = True) -> None:
        self.index, self.length, self.with_proprio = index, length, proprio
        pix = spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.observation_space: spaces.Space[Any] = (
            spaces.Dict({"pixels": pix, "proprio": spaces.Box(-1, 1, (PROPRIO,), np.float32)})
            if proprio else pix
        )
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def obs(self) -> Any:
        frame = fake_frame(self.index, self.t)
        if not self.with_proprio:
            return frame
        return {"pixels": frame,
                "proprio": np.full(PROPRIO, self.t / 10 + self.index, dtype=np.float32)}

    def render_frame(self) -> np.ndarray:
        return fake_frame(self.index, self.t)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self.obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        done = self.t >= self.length
        return self.obs(), 1.0, done, False, {"is_success": done}
