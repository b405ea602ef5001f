"""``sparseshift bench agents``: PPO steps/s on frozen-encoder latents vs ground-truth state.

For each env (TriFingerReach, ColourGrid), interleaved in one run (medians of repeats):

* ``PPO state``: obs_mode ``state`` (the oracle's input; no rendering) - the reference;
* ``PPO VAE latents (VecEnv wrapper)``: pixels + proprio, the default VAE encoder (random weights)
  encoding all envs once per step in :class:`sparseshift.agents.wrapper.EncodedVecEnv` - what
  ``train-agent``
  does; goal >= 0.75x the state reference;
* ``PPO null encoder (VecEnv wrapper)``: the same pixel env and wrapper with an encoder that costs
  nothing - separates the env's rendering cost from the encoder's;
* ``PPO VAE in features extractor``: the contrast the agents layer avoids (SB3 re-encodes every
  minibatch of every epoch; 4x slower for PPO in ``shared/reference/speeds.md``).

All rows use SB3's PPO defaults with 4 envs x 128 steps (Raffin et al. 2021) and 1 torch thread.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sparseshift.experiments.bench.timing import format_row, interleaved

DESCRIPTION = "PPO steps/s on frozen-encoder latents (VecEnv wrapper) vs ground-truth state"
ENVS: dict[str, str] = {"trifinger": "sparseshift/TriFingerReach-v0",
                        "grid": "sparseshift/ColourGrid-v0"}
N_ENVS, N_STEPS = 4, 128
GOAL = 0.75


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=1024,
                   help="PPO env steps per measurement (rounded up to 512; default 1024)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    p.add_argument("--only", choices=tuple(ENVS), default=None, help="benchmark one env only")
    p.add_argument("--no-extractor", action="store_true",
                   help="skip the slow encoder-in-features-extractor contrast row")


def _venv(env_id: str, obs_mode: str) -> Any:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sparseshift.envs.registry import make

    return DummyVecEnv([lambda: make(env_id, obs_mode=obs_mode) for _ in range(N_ENVS)])


def _ppo(policy: str, env: Any, **policy_kwargs: Any) -> Callable[[int], None]:
    from stable_baselines3 import PPO

    model = PPO(policy, env, n_steps=N_STEPS, seed=0, device="cpu", verbose=0,
                policy_kwargs=policy_kwargs or None)

    def run(n: int) -> None:
        model.learn(total_timesteps=n, reset_num_timesteps=False)

    return run


def _null_learner() -> Any:
    """A learner with the VAE's latent size whose encoding costs (almost) nothing."""
    import torch

    from sparseshift.representations.base import Learner, LearnerConfig

    class NullLearner(Learner):
        @property
        def latent_shape(self) -> tuple[int, ...]:
            return (10,)

        def loss(self, batch: Any, generator: Any = None) -> dict[str, torch.Tensor]:
            raise NotImplementedError

        def encode(self, frames: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(frames), 10)

    return NullLearner(LearnerConfig(image_size=64))


def _extractor_class() -> type:
    """SB3 features extractor running the frozen VAE encoder on every forward (the contrast)."""
    import numpy as np
    import torch
    from gymnasium import spaces
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    from sparseshift.agents.encoders import random_learner

    class VAEInExtractor(BaseFeaturesExtractor):
        def __init__(self, observation_space: spaces.Dict) -> None:
            proprio = int(np.prod(observation_space.spaces["proprio"].shape or ()))
            super().__init__(observation_space, features_dim=10 + proprio)
            vae: Any = random_learner(64, 0).requires_grad_(False)
            self.conv: torch.nn.Module = vae.encoder

        def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
            with torch.no_grad():  # SB3 already made the pixels float CHW in [0, 1]
                mu = self.conv(obs["pixels"]).chunk(2, dim=1)[0]
            return torch.cat([mu, obs["proprio"]], dim=1)

    return VAEInExtractor


def run(args: argparse.Namespace) -> int:
    import torch

    from sparseshift.agents.encoders import random_learner
    from sparseshift.agents.wrapper import EncodedVecEnv
    from sparseshift.envs.errors import ConfigError

    if args.steps <= 0 or args.repeats <= 0:
        raise ConfigError("--steps and --repeats must be positive")
    torch.set_num_threads(1)
    n, reps = args.steps, args.repeats
    print(f"sparseshift bench agents: PPO ({N_ENVS} envs x {N_STEPS} steps, SB3 defaults, 1 torch "
          f"thread), {n} steps per measurement, median of {reps} interleaved repeats")
    for family, env_id in ENVS.items():
        if args.only not in (None, family):
            continue
        print(f"\n{env_id}, 64x64 pixels:")
        ref, ours, null = "PPO state", "PPO VAE latents (VecEnv wrapper)", \
            "PPO null encoder (VecEnv wrapper)"
        ext = "PPO VAE in features extractor"
        fns = {
            ref: _ppo("MlpPolicy", _venv(env_id, "state")),
            ours: _ppo("MlpPolicy", EncodedVecEnv(_venv(env_id, "pixels_proprio"),
                                                   random_learner(64, 0))),
            null: _ppo("MlpPolicy", EncodedVecEnv(_venv(env_id, "pixels_proprio"),
                                                   _null_learner())),
        }
        if not args.no_extractor:
            fns[ext] = _ppo("MultiInputPolicy", _venv(env_id, "pixels_proprio"),
                            features_extractor_class=_extractor_class())
        rates = interleaved(fns, "steps/s", n, reps)
        print(format_row(rates[ref]))
        print(format_row(rates[ours], rates[ref], GOAL))
        print(format_row(rates[null], rates[ref]))
        print(format_row(replace(rates[ours], name="  (VAE latents vs the null encoder)"),
                         rates[null]))
        if ext in rates:
            print(format_row(rates[ext], rates[ours]))
    print("\nReference (shared/reference/speeds.md, dummy env): PPO on a 10-D vector 2.5-2.9k "
          "steps/s; frozen VAE in the features extractor 290 vs in a VecEnv wrapper 1,270.")
    return 0
