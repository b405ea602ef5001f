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

With a grouped :class:`~sparseshift.agents.vecenv.WorkerVecEnv` underneath, one group of envs can
be stepped and encoded on its own (its rows of the encoder state), for the pipelined collector
(:mod:`sparseshift.agents.pipeline`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from sparseshift.agents.encoding import (
    FrozenEncoder,
    assign_state,
    reset_state,
    select_state,
)
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
        return self._encoded(obs, rewards, dones, infos, None)

    # ------------------------------------------------------------------ groups (pipelining)
    @property
    def groups(self) -> list[list[int]]:
        """The env groups of the wrapped :class:`~sparseshift.agents.vecenv.WorkerVecEnv` (none
        for another VecEnv)."""
        groups: list[list[int]] = getattr(self.venv, "groups", None) or []
        return groups

    def step_group_async(self, group: int, actions: np.ndarray) -> None:
        """Step one group of envs (:meth:`WorkerVecEnv.step_group_async`)."""
        self.venv.step_group_async(group, actions)  # type: ignore[attr-defined]

    def step_group_wait(self, group: int) -> VecEnvStepReturn:
        """One group's step, encoded in one batch (the group's rows of the encoder state)."""
        obs, rewards, dones, infos = self.venv.step_group_wait(group)  # type: ignore[attr-defined]
        return self._encoded(obs, rewards, dones, infos, self.groups[group])

    def _encoded(self, obs: Any, rewards: np.ndarray, dones: np.ndarray,
                 infos: list[dict[str, Any]], rows: list[int] | None) -> VecEnvStepReturn:
        """Encode a step of all envs (``rows`` None) or of the envs ``rows`` (then ``obs``,
        ``dones`` and ``infos`` hold those envs only, in that order)."""
        n = len(dones)
        done_idx = [i for i in range(n) if dones[i] and TERMINAL in infos[i]]
        terminal = self.encoder.stack([infos[i][TERMINAL] for i in done_idx]) if done_idx else None
        term_feats: np.ndarray | None = None
        if self.encoder.stateful:
            index = None if rows is None else torch.as_tensor(rows, dtype=torch.long)
            state = self._state if index is None else select_state(self._state, index)
            if terminal is not None:
                done_t = torch.as_tensor(done_idx, dtype=torch.long)
                term_feats, _ = self.encoder.features(terminal, select_state(state, done_t))
            if np.any(dones):
                mask = torch.as_tensor(np.asarray(dones, dtype=bool))
                initial = (self._initial if index is None
                           else select_state(self._initial, index))
                state = reset_state(state, initial, mask)
            feats, state = self.encoder.features(obs, state)
            self._state = state if index is None else assign_state(self._state, index, state)
        elif terminal is None:
            feats, _ = self.encoder.features(obs)
        else:
            all_feats, _ = self.encoder.features(self.encoder.concat(obs, terminal))
            feats, term_feats = all_feats[:n], all_feats[n:]
        if term_feats is not None:
            for row, i in enumerate(done_idx):
                infos[i][TERMINAL] = term_feats[row]
        return feats, rewards, dones, infos
