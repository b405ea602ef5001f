"""The pipelined collector: PPO whose rollouts overlap env stepping with encoding and acting.

Stable-Baselines3's ``collect_rollouts`` (Raffin et al. 2021) is synchronous: the main process
waits while the envs step, and the envs wait while the main process encodes the frames and runs
the policy. :class:`PipelinedPPO` splits the envs into groups (two by default; a grouped
:class:`~sparseshift.agents.vecenv.WorkerVecEnv` steps them in worker processes) and, while the
workers step one group, encodes the other group's frames and samples its actions: the
double-buffered sampling of Sample Factory (Petrenko et al. 2020, *Sample Factory: Egocentric 3D
Control from Pixels at 100000 FPS with Asynchronous Reinforcement Learning*, ICML). The policy is
never stale: every action comes from the current parameters, the update still runs between
rollouts, and the rollout buffer, the value bootstrap of truncated episodes (SB3 issue #633), the
callbacks and the counters are SB3's, step for step.

The random numbers are SB3's too: Gaussian actions take their rows of one noise draw for all envs
per step (as ``Normal.rsample`` draws it), categorical ones are drawn row by row anyway. What
differs from the synchronous collector is only the batch size the encoder and the policy see (a
group, not all envs), which can change the last bits of a sum: results equal ``collector =
"sync"`` up to float rounding (on TriFingerReach, 2,048 steps, the weights were bit for bit the
same; on the tests' toy envs they differ by about 1e-7), so the collector is part of an agent's
config. For a fixed seed they are identical for any number of env workers, because the groups
(contiguous halves of the envs) do not depend on the workers. With one group the collector is
SB3's.

The pipeline drains at the end of every rollout, so between rollouts (where the update, the
periodic evaluation and the resume state happen) no step is in flight.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from sparseshift.agents.vecenv import StepResult, concat_steps

#: The collectors of on-policy agents (``AgentConfig.collector``).
COLLECTORS: tuple[str, ...] = ("sync", "pipelined")
#: Env groups of the pipelined collector.
GROUPS = 2


@runtime_checkable
class GroupedVecEnv(Protocol):
    """A VecEnv whose env groups can be stepped one at a time."""

    groups: list[list[int]]

    def step_group_async(self, group: int, actions: np.ndarray) -> None: ...

    def step_group_wait(self, group: int) -> VecEnvStepReturn: ...


def _rows(x: Any, rows: list[int]) -> Any:
    """Rows ``rows`` (contiguous) of a batch (array, tensor, dict of arrays, or None)."""
    if x is None:
        return None
    sl = slice(rows[0], rows[-1] + 1)
    if isinstance(x, dict):
        return {k: v[sl] for k, v in x.items()}
    return x[sl]


class PipelinedPPO(PPO):
    """PPO with the pipelined collector (see the module docstring). With an env that is not
    grouped (:class:`GroupedVecEnv`), or one group, it collects exactly as PPO does."""

    def _noise(self, n_envs: int) -> th.Tensor | None:
        """The standard normal noise of one step's Gaussian actions for all envs, drawn as SB3's
        ``Normal.rsample`` draws it for the whole batch (None for other action distributions,
        whose sampling already draws row by row)."""
        if not self._gaussian:
            return None
        shape = (n_envs, *self.action_space.shape)  # type: ignore[misc]
        return th.empty(shape, dtype=th.float32, device=self.device).normal_()

    @property
    def _gaussian(self) -> bool:
        return (isinstance(self.policy, ActorCriticPolicy)
                and type(self.policy.action_dist) is DiagGaussianDistribution)

    def _act(self, obs: Any, noise: th.Tensor | None
             ) -> tuple[np.ndarray, np.ndarray, th.Tensor, th.Tensor]:
        """(actions, clipped actions, values, log-probs) of a batch, as SB3's collector computes
        them; Gaussian actions use the rows ``noise`` of the step's noise."""
        obs_t = obs_as_tensor(obs, self.device)
        with th.no_grad():
            if noise is None:
                actions_t, values, log_probs = self.policy(obs_t)
            else:  # ActorCriticPolicy.forward with rsample's noise given
                policy: ActorCriticPolicy = self.policy
                features = policy.extract_features(obs_t)
                if policy.share_features_extractor:
                    latent_pi, latent_vf = policy.mlp_extractor(features)
                else:
                    pi_features, vf_features = features
                    latent_pi = policy.mlp_extractor.forward_actor(pi_features)
                    latent_vf = policy.mlp_extractor.forward_critic(vf_features)
                values = policy.value_net(latent_vf)
                dist = policy._get_action_dist_from_latent(latent_pi)
                normal = dist.distribution
                assert isinstance(normal, th.distributions.Normal)
                actions_t = normal.loc + noise * normal.scale
                log_probs = dist.log_prob(actions_t)
                actions_t = actions_t.reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        actions = actions_t.cpu().numpy()
        clipped = actions
        if isinstance(self.action_space, spaces.Box):
            if self.policy.squash_output:
                clipped = self.policy.unscale_action(clipped)
            else:
                clipped = np.clip(actions, self.action_space.low, self.action_space.high)
        return actions, clipped, values, log_probs

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback,
                         rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
        # the outermost env must step groups itself: a wrapper that only forwards attributes
        # (SB3's VecEnvWrapper.__getattr__) would skip its own step_wait
        grouped_cls = callable(getattr(type(env), "step_group_wait", None))
        groups = env.groups if grouped_cls and isinstance(env, GroupedVecEnv) else []
        if len(groups) < 2 or self.use_sde:
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        assert self._last_obs is not None, "No previous observation was provided"
        grouped: GroupedVecEnv = env  # type: ignore[assignment]
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        callback.on_rollout_start()

        # In flight: per group, (actions, values, log-probs) of the step the workers are doing.
        flight: list[tuple[np.ndarray, th.Tensor, th.Tensor]] = []
        noise = self._noise(env.num_envs)
        for rows in groups:
            actions, clipped, values, log_probs = self._act(_rows(self._last_obs, rows),
                                                            _rows(noise, rows))
            grouped.step_group_async(len(flight), clipped)
            flight.append((actions, values, log_probs))
        new_obs: Any = None
        dones = np.zeros(env.num_envs, dtype=bool)
        while n_steps < n_rollout_steps:
            last = n_steps + 1 == n_rollout_steps
            parts: list[StepResult] = []
            done_flight = list(flight)
            noise = None if last else self._noise(env.num_envs)
            for g, rows in enumerate(groups):
                g_obs, g_rewards, g_dones, g_infos = grouped.step_group_wait(g)
                g_rewards = self._bootstrap(g_rewards, g_dones, g_infos)
                parts.append((g_obs, g_rewards, g_dones, g_infos))
                if not last:  # act for this group while the workers step the others
                    actions, clipped, values, log_probs = self._act(g_obs, _rows(noise, rows))
                    grouped.step_group_async(g, clipped)
                    flight[g] = (actions, values, log_probs)
            new_obs, rewards, dones, infos = concat_steps(parts)
            actions = np.concatenate([f[0] for f in done_flight])
            values = th.cat([f[1] for f in done_flight])
            log_probs = th.cat([f[2] for f in done_flight])

            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                if not last:  # drain the steps in flight: nothing may stay in the pipes
                    for g in range(len(groups)):
                        grouped.step_group_wait(g)
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            rollout_buffer.add(self._last_obs, actions, rewards,  # type: ignore[arg-type]
                               self._last_episode_starts, values, log_probs)  # type: ignore[arg-type]
            self._last_obs = new_obs
            self._last_episode_starts = dones

        with th.no_grad():
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _bootstrap(self, rewards: np.ndarray, dones: np.ndarray,
                   infos: list[dict[str, Any]]) -> np.ndarray:
        """SB3's value bootstrap of episodes cut by the time limit (its issue #633)."""
        for idx, done in enumerate(dones):
            if (done and infos[idx].get("terminal_observation") is not None
                    and infos[idx].get("TimeLimit.truncated", False)):
                terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                with th.no_grad():
                    terminal_value = self.policy.predict_values(terminal_obs)[0]
                rewards[idx] += self.gamma * terminal_value
        return rewards
