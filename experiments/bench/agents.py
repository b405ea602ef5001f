"""``sparseshift bench agents``: PPO steps/s on frozen-encoder latents, against the raw
render+physics loop, over env workers, and against ground-truth state.

``--workers`` mode (default for TriFinger, the issue's measurement): on TriFingerObjectReach and
TriFingerReach with 64 px pixels, interleaved in one run (medians of repeats):

* ``raw render+physics loop``: the same 8 envs stepped with random actions and rendered, no agent
  (the physical bound on one core);
* ``PPO latents, 1 env worker``: ``train-agent``'s own setup (the trifinger PPO defaults, the
  default VAE encoder with random weights in the VecEnv wrapper, envs in this process); goal
  >= 0.85x the raw loop;
* ``PPO latents, N env workers``: the same with the envs stepped in ``N`` worker processes
  (:class:`sparseshift.agents.vecenv.WorkerVecEnv`); goal >= 1.7x one worker for N = 2.

The original comparison (``--vs-state``) for TriFingerReach and ColourGrid:

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
    p.add_argument("--vs-state", action="store_true",
                   help="the older comparison against PPO on ground-truth state (and the "
                        "encoder-in-features-extractor contrast) instead of the workers one")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="env worker processes compared with one (default 2)")
    p.add_argument("--device", default="auto",
                   help="device of the frozen encoder (auto, cpu, cuda, cuda:N, mps)")
    p.add_argument("--steps", type=int, default=4096,
                   help="PPO env steps per measurement (rounded up to whole rollouts; default "
                        "4096)")
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


WORKER_ENVS: tuple[str, ...] = ("sparseshift/TriFingerObjectReach-v0",
                                 "sparseshift/TriFingerReach-v0")
WORKERS_GOAL, RAW_GOAL = 1.7, 0.85


def _raw_loop(env_id: str, n_envs: int, closers: list[Callable[[], None]]
              ) -> Callable[[int], None]:
    """8 pixel envs stepped with random actions and rendered (no agent)."""
    import numpy as np
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sparseshift.envs.registry import make

    venv = DummyVecEnv([lambda: make(env_id, obs_mode="pixels_proprio")
                        for _ in range(n_envs)])
    venv.seed(0)
    venv.reset()
    closers.append(venv.close)
    rng = np.random.default_rng(0)
    shape = (n_envs, *tuple(venv.action_space.shape or ()))

    def run(n: int) -> None:
        for _ in range(-(-n // n_envs)):
            venv.step(rng.uniform(-1, 1, shape).astype(np.float32))

    return run


def _agent(env_id: str, workers: int, device: str, closers: list[Callable[[], None]]
           ) -> Callable[[int], None]:
    """PPO on frozen latents exactly as ``train-agent`` builds it, envs in ``workers``
    processes."""
    from sparseshift.agents.config import AgentConfig
    from sparseshift.agents.encoders import random_learner
    from sparseshift.agents.envs import make_vec_env
    from sparseshift.agents.train import build_model
    from sparseshift.representations.runtime import resolve_device

    cfg = AgentConfig(env_id, "random", env_workers=workers, device=device, tensorboard=False)
    hp = cfg.resolved_hyperparams()
    learner = random_learner(64, 0).to(resolve_device(device))
    env = make_vec_env(cfg, int(hp["n_envs"]), learner)
    model = build_model(cfg, hp, env, None)
    closers.append(env.close)

    def run(n: int) -> None:
        model.learn(total_timesteps=n, reset_num_timesteps=False)

    return run


def run_workers(args: argparse.Namespace) -> int:
    from sparseshift.agents.config import AgentConfig

    n, reps, w = args.steps, args.repeats, args.workers
    n_envs = int(AgentConfig(WORKER_ENVS[0], "random").resolved_hyperparams()["n_envs"])
    print(f"sparseshift bench agents: PPO on frozen VAE latents ({n_envs} envs, trifinger "
          f"defaults, encoder on {args.device}) vs the raw render+physics loop and 1 vs {w} env "
          f"workers; {n} steps per measurement, median of {reps} interleaved repeats")
    for env_id in WORKER_ENVS:
        print(f"\n{env_id}, 64x64 pixels:")
        raw, one, many = "raw render+physics loop", "PPO latents, 1 env worker", \
            f"PPO latents, {w} env workers"
        closers: list[Callable[[], None]] = []
        try:
            rates = interleaved({raw: _raw_loop(env_id, n_envs, closers),
                                 one: _agent(env_id, 1, args.device, closers),
                                 many: _agent(env_id, w, args.device, closers)},
                                "steps/s", n, reps)
        finally:
            for close in closers:
                close()
        print(format_row(rates[raw]))
        print(format_row(rates[one], rates[raw], RAW_GOAL))
        print(format_row(rates[many], rates[one], WORKERS_GOAL if w == 2 else None))
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    if args.steps <= 0 or args.repeats <= 0:
        from sparseshift.envs.errors import ConfigError

        raise ConfigError("--steps and --repeats must be positive")
    if not args.vs_state:
        return run_workers(args)
    return run_vs_state(args)


def run_vs_state(args: argparse.Namespace) -> int:
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
