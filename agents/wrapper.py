"""The VecEnv wrapper that feeds frozen-encoder features to Stable-Baselines3 agents.

SB3 (Raffin et al. 2021, *Stable-Baselines3: Reliable Reinforcement Learning Implementations*, JMLR)
would run a features extractor on every minibatch of every gradient epoch; a frozen encoder there
costs 4x (PPO) to 30x (SAC) in steps/s (see ``docs/agents.md``). Instead the wrapper encodes the
pixel observations of all envs once per env step, in one batch, so the replay buffer / rollout
buffer stores small latent vectors and the policy is a plain MLP (Dittadi et al. 2021; Traeuble et
al. 2022 train their policies on frozen latents the same way).

Terminal observations (``info["terminal_observation"]``, used by SB3 for bootstrapping truncated
episodes) are encoded too. For stateless learners they join the step's batch (one forward pass for
``n_envs + n_done`` frames); for stateful learners they are encoded with the finishing episode's
state, then the state of exactly those envs is reset before the new episode's first frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from sparseshift.agents.encoding import FrozenEncoder, reset_state, select_state
from sparseshift.agents.standardize import LatentStats
from sparseshift.representations.base import Learner

TERMINAL = "terminal_observation"


class EncodedVecEnv(VecEnvWrapper):
    """Replace pixel (or pixels + proprio) observations with frozen-encoder features
    (latents standardised by ``stats``, :mod:`sparseshift.agents.standardize`)."""

    def __init__(self, venv: VecEnv, learner: Learner, stats: LatentStats | None = None) -> None:
        self.encoder = FrozenEncoder(learner, venv.observation_space, stats)
        super().__init__(venv, observation_space=self.encoder.observation_space)
        self._initial = self.encoder.initial_state(self.num_envs)
        self._state: Any = self._initial

    @property
    def encoder_state(self) -> Any:
        """The current per-env encoder state (None for stateless learners)."""
        return self._state

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        feats, self._state = self.encoder.features(obs, self._initial)
        return feats

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        done_idx = [i for i in range(self.num_envs) if dones[i] and TERMINAL in infos[i]]
        terminal = self.encoder.stack([infos[i][TERMINAL] for i in done_idx]) if done_idx else None
        term_feats: np.ndarray | None = None
        if self.encoder.stateful:
            if terminal is not None:
                index = torch.as_tensor(done_idx, dtype=torch.long)
                term_feats, _ = self.encoder.features(terminal, select_state(self._state, index))
            if np.any(dones):
                mask = torch.as_tensor(np.asarray(dones, dtype=bool))
                self._state = reset_state(self._state, self._initial, mask)
            feats, self._state = self.encoder.features(obs, self._state)
        elif terminal is None:
            feats, _ = self.encoder.features(obs)
        else:
            all_feats, _ = self.encoder.features(self.encoder.concat(obs, terminal))
            feats, term_feats = all_feats[: self.num_envs], all_feats[self.num_envs:]
        if term_feats is not None:
            for row, i in enumerate(done_idx):
                infos[i][TERMINAL] = term_feats[row]
        return feats, rewards, dones, infos
