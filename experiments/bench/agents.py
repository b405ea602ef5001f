"""``sparseshift bench agents``: PPO steps/s on frozen-encoder latents, against the raw
render+physics loop, over env workers, and against ground-truth state.

``--workers`` mode (default for TriFinger, the issue's measurement): on TriFingerObjectReach and
TriFingerReach with 64 px pixels, interleaved in one run (medians of repeats):

* ``raw render+physics loop``: the same 8 envs stepped with random actions and rendered, no agent
  (the physical bound on one core);
* ``PPO sync, envs in this process``: ``train-agent``'s own setup (the trifinger PPO defaults,
  the default VAE encoder with random weights in the VecEnv wrapper, envs in this process, SB3's
  synchronous collector); goal >= 0.85x the raw loop;
* ``PPO pipelined, 1 env worker``: ``--collector pipelined`` (:mod:`sparseshift.agents.pipeline`):
  one worker process steps half of the envs while this process encodes and acts for the other
  half; goal >= 0.85x the raw loop;
* ``PPO sync, N env workers`` and ``PPO pipelined, N env workers``: the envs stepped in ``N``
  worker processes (:class:`sparseshift.agents.vecenv.WorkerVecEnv`); goal >= 1.7x the sync
  one-process row for N = 2 (the pipelined N / 1 worker ratio is printed too).

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

``--profile``: where an env step of the workers setup goes on TriFingerObjectReach, with 1 and
``--workers`` env workers (physics, rendering, readback, frame copy, VecEnv bookkeeping or
inter-process transfer, encoding, policy inference, policy update), wall and CPU time per env
step; see the comment above :class:`Clock`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sparseshift.experiments.bench.timing import format_row, interleaved

DESCRIPTION = ("PPO steps/s on frozen-encoder latents vs the raw render+physics loop, sync vs "
               "pipelined collector, 1 vs N env workers (--vs-state: vs ground-truth state)")
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
    p.add_argument("--profile", action="store_true",
                   help="where the time of an env step goes (physics, rendering, readback, "
                        "frame copy, encoding, policy inference and update, inter-process "
                        "transfer) on TriFingerObjectReach with 1 and --workers env workers")


def quiet_logger() -> Any:
    """An SB3 logger that writes nothing (SB3's default logger makes a folder in /tmp)."""
    from stable_baselines3.common.logger import Logger

    return Logger(None, [])


def _venv(env_id: str, obs_mode: str) -> Any:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sparseshift.envs.registry import make

    return DummyVecEnv([lambda: make(env_id, obs_mode=obs_mode) for _ in range(N_ENVS)])


def _ppo(policy: str, env: Any, **policy_kwargs: Any) -> Callable[[int], None]:
    from stable_baselines3 import PPO

    model = PPO(policy, env, n_steps=N_STEPS, seed=0, device="cpu", verbose=0,
                policy_kwargs=policy_kwargs or None)
    model.set_logger(quiet_logger())

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


def _agent(env_id: str, workers: int, device: str, closers: list[Callable[[], None]],
           collector: Literal["sync", "pipelined"] = "sync") -> Callable[[int], None]:
    """PPO on frozen latents exactly as ``train-agent`` builds it, envs in ``workers``
    processes (``sync``: 1 is this process) with the ``collector``."""
    from sparseshift.agents.config import AgentConfig
    from sparseshift.agents.encoders import random_learner
    from sparseshift.agents.envs import make_vec_env
    from sparseshift.agents.train import build_model
    from sparseshift.representations.runtime import resolve_device

    cfg = AgentConfig(env_id, "random", env_workers=workers, device=device, tensorboard=False,
                      collector=collector)
    hp = cfg.resolved_hyperparams()
    learner = random_learner(64, 0).to(resolve_device(device))
    env = make_vec_env(cfg, int(hp["n_envs"]), learner)
    model = build_model(cfg, hp, env, None)
    model.set_logger(quiet_logger())
    closers.append(env.close)

    def run(n: int) -> None:
        model.learn(total_timesteps=n, reset_num_timesteps=False)

    return run


def run_workers(args: argparse.Namespace) -> int:
    from sparseshift.agents.config import AgentConfig

    n, reps, w = args.steps, args.repeats, args.workers
    n_envs = int(AgentConfig(WORKER_ENVS[0], "random").resolved_hyperparams()["n_envs"])
    print(f"sparseshift bench agents: PPO on frozen VAE latents ({n_envs} envs, trifinger "
          f"defaults, encoder on {args.device}) vs the raw render+physics loop, the synchronous "
          f"and the pipelined collector, 1 vs {w} env workers; {n} steps per measurement, median "
          f"of {reps} interleaved repeats")
    for env_id in WORKER_ENVS:
        print(f"\n{env_id}, 64x64 pixels:")
        raw = "raw render+physics loop"
        one, many = "PPO sync, envs in this process", f"PPO sync, {w} env workers"
        p_one, p_many = "PPO pipelined, 1 env worker", f"PPO pipelined, {w} env workers"
        closers: list[Callable[[], None]] = []
        try:
            rates = interleaved({raw: _raw_loop(env_id, n_envs, closers),
                                 one: _agent(env_id, 1, args.device, closers),
                                 many: _agent(env_id, w, args.device, closers),
                                 p_one: _agent(env_id, 1, args.device, closers, "pipelined"),
                                 p_many: _agent(env_id, w, args.device, closers, "pipelined")},
                                "steps/s", n, reps)
        finally:
            for close in closers:
                close()
        print(format_row(rates[raw]))
        print(format_row(rates[one], rates[raw], RAW_GOAL))
        print(format_row(rates[p_one], rates[raw], RAW_GOAL))
        print(format_row(rates[many], rates[one], WORKERS_GOAL if w == 2 else None))
        print(format_row(rates[p_many], rates[one], WORKERS_GOAL if w == 2 else None))
        print(f"{'':<44} ({p_many} / {p_one}: "
              f"{rates[p_many].median / rates[p_one].median:.2f}x)")
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    if args.steps <= 0 or args.repeats <= 0:
        from sparseshift.envs.infra.errors import ConfigError

        raise ConfigError("--steps and --repeats must be positive")
    if args.profile:
        return run_profile(args)
    if not args.vs_state:
        return run_workers(args)
    return run_vs_state(args)


def run_vs_state(args: argparse.Namespace) -> int:
    import torch

    from sparseshift.agents.encoders import random_learner
    from sparseshift.agents.wrapper import EncodedVecEnv
    from sparseshift.envs.infra.errors import ConfigError

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


# ---------------------------------------------------------------------------------- --profile
#
# Where the time of one env step of PPO on frozen latents goes, measured by timers around the
# objects this benchmark builds (nothing global is patched):
#
# * in every env (in the worker processes too): a gymnasium wrapper times ``step`` and ``reset``,
#   and a stand-in for the env's ``mujoco.Renderer`` times ``update_scene``, the GL draw
#   (``mjr_render`` + ``mjr_finish``, so the software rasteriser has finished) and the readback
#   (``mjr_readPixels`` + the vertical flip) apart. What ``env.step`` spends before its first
#   ``update_scene`` is the physics (``mj_step`` and the few lines of action, reward and factor
#   bookkeeping around it, and the env wrappers' work before it); what it spends after the
#   readback is the frame copy (the shift when one is set), the observation dict and the
#   wrappers' work after it (Monitor's episode statistics);
# * a timing VecEnv wrapper under :class:`~sparseshift.agents.wrapper.EncodedVecEnv` (the envs,
#   with the worker pipes) and one over it (the envs + the encoder): the difference is encoding;
# * a PPO subclass times ``collect_rollouts`` (minus the envs: policy inference and the rollout
#   buffer) and ``train`` (the policy update); ``learn`` minus both is "other".
#
# Every timer records wall time and the CPU time of its process (``time.process_time``, all
# threads): on a loaded machine a wall time well above the CPU time is time spent waiting for a
# core. With N workers the env rows are those of the busiest worker (the critical path) and
# "transfer" is what the main process waited on the pipes beyond it.

PROFILE_ENV = WORKER_ENVS[0]
#: Timers of the env side, in table order (summed per worker process).
ENV_PARTS: tuple[str, ...] = ("physics", "reset", "update_scene", "gl_draw", "readback",
                              "frame")
RENDER_PARTS: tuple[str, ...] = ("update_scene", "gl_draw", "readback")
CPU = ".cpu"  # suffix of a timer's CPU seconds

Stamp = tuple[float, float]


def stamp() -> Stamp:
    """``(wall, process CPU)`` seconds now."""
    import time

    return time.perf_counter(), time.process_time()


class Clock:
    """Named durations: ``times[name]`` wall seconds and ``times[name + CPU]`` CPU seconds,
    summed; ``mark`` is when the first ``update_scene`` of the current env call began."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.mark: Stamp | None = None

    def add(self, name: str, start: Stamp, end: Stamp | None = None) -> Stamp:
        """Add the time from ``start`` to ``end`` (default: now) to ``name``; returns ``end``."""
        end = stamp() if end is None else end
        for key, i in ((name, 0), (name + CPU, 1)):
            self.times[key] = self.times.get(key, 0.0) + end[i] - start[i]
        return end

    def get(self, name: str) -> Stamp:
        return self.times.get(name, 0.0), self.times.get(name + CPU, 0.0)

    def render_total(self) -> Stamp:
        parts = [self.get(k) for k in RENDER_PARTS]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)


class TimedRenderer:
    """Stands in for a ``mujoco.Renderer``: ``update_scene``, the GL draw and the readback of RGB
    renders into a given buffer are timed apart (the same calls as ``mujoco.Renderer.render``,
    plus ``mjr_finish`` between draw and readback); any other render (segmentation, depth, a
    missing private attribute in another MuJoCo version) is timed whole as the GL draw."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self._inner, self._clock = inner, clock
        names = ("_rect", "_scene", "_mjr_context", "_gl_context")
        self._parts = tuple(getattr(inner, n) for n in names) if all(
            hasattr(inner, n) for n in names) else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def update_scene(self, *args: Any, **kwargs: Any) -> None:
        t0 = stamp()
        if self._clock.mark is None:
            self._clock.mark = t0
        self._inner.update_scene(*args, **kwargs)
        self._clock.add("update_scene", t0)

    def render(self, *, out: Any = None) -> Any:
        import mujoco
        import numpy as np

        r = self._inner
        plain = (self._parts is not None and out is not None and out.dtype == np.uint8
                 and out.flags.c_contiguous and out.shape == (r.height, r.width, 3)
                 and not getattr(r, "_segmentation_rendering", True)
                 and not getattr(r, "_depth_rendering", True))
        t0 = stamp()
        if not plain:
            result = r.render(out=out)
            self._clock.add("gl_draw", t0)
            return result
        assert self._parts is not None
        rect, scene, context, gl = self._parts
        if gl is not None:
            gl.make_current()
        mujoco.mjr_render(rect, scene, context)
        mujoco.mjr_finish()
        t1 = self._clock.add("gl_draw", t0)
        mujoco.mjr_readPixels(out, None, rect, context)
        if gl is not None:  # EGL / OSMesa images come upside down (as in mujoco.Renderer)
            out[:] = np.flipud(out)
        self._clock.add("readback", t1)
        return out


def _profiled_env_class() -> type:
    """The gymnasium wrapper that times an env's ``step`` and ``reset`` (see above)."""
    import gymnasium as gym

    class ProfiledEnv(gym.Wrapper):
        def __init__(self, env: Any, clock: Clock) -> None:
            super().__init__(env)
            self.clock = clock

        def _timed(self, before_render: str, fn: Callable[[], Any]) -> Any:
            c = self.clock
            c.mark = None
            rendered = c.render_total()
            t0 = stamp()
            out = fn()
            t1 = stamp()
            c.add("env_total", t0, t1)
            mark = t1 if c.mark is None else c.mark
            c.add(before_render, t0, mark)
            after = c.render_total()
            # the rest of the call: from the first update_scene to the end, less the render parts
            render = (after[0] - rendered[0], after[1] - rendered[1])
            c.add("frame", (mark[0] + render[0], mark[1] + render[1]), t1)
            return out

        def step(self, action: Any) -> Any:
            return self._timed("physics", lambda: self.env.step(action))

        def reset(self, **kwargs: Any) -> Any:
            return self._timed("reset", lambda: self.env.reset(**kwargs))

        def profile_times(self) -> dict[str, float]:
            """This env's summed timers and the process that steps it."""
            import os

            return {**self.clock.times, "pid": float(os.getpid())}

    return ProfiledEnv


@dataclass(frozen=True)
class ProfiledEnvFactory:
    """``train-agent``'s env (:class:`~sparseshift.agents.envs.EnvFactory`, with whatever
    wrappers it has) inside the timing wrapper, its renderer timed (picklable, so worker
    processes build it)."""

    config: Any

    def __call__(self) -> Any:
        from sparseshift.agents.envs import EnvFactory

        env = EnvFactory(self.config)()
        clock = Clock()
        frames = getattr(env.unwrapped, "_frame_renderer", None)
        if frames is not None:  # TriFinger: time its renderer's parts
            holder = frames()
            holder._renderer = TimedRenderer(holder._renderer, clock)
        return _profiled_env_class()(env, clock)


def _timed_vec_env(venv: Any, clock: Clock, name: str) -> Any:
    """``venv`` with its ``reset``, ``step_async`` and ``step_wait`` timed into ``clock[name]``."""
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class TimedVecEnv(VecEnvWrapper):
        def reset(self) -> Any:
            t0 = stamp()
            out = self.venv.reset()
            clock.add(name, t0)
            return out

        def step_async(self, actions: Any) -> None:
            t0 = stamp()
            self.venv.step_async(actions)
            clock.add(name, t0)

        def step_wait(self) -> Any:
            t0 = stamp()
            out = self.venv.step_wait()
            clock.add(name, t0)
            return out

    return TimedVecEnv(venv)


class ProfiledAgent:
    """PPO on frozen latents built as ``train-agent`` builds it (:func:`_agent`), with the timers.
    ``run(n)`` trains ``n`` more env steps; :meth:`snapshot` returns every timer so far."""

    def __init__(self, env_id: str, workers: int, device: str) -> None:
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

        from sparseshift.agents.config import AgentConfig
        from sparseshift.agents.encoders import random_learner
        from sparseshift.agents.train import PPO_KEYS, policy_setup
        from sparseshift.agents.wrapper import EncodedVecEnv
        from sparseshift.representations.runtime import resolve_device

        clock = self.clock = Clock()
        cfg = AgentConfig(env_id, "random", env_workers=workers, device=device, tensorboard=False)
        hp = cfg.resolved_hyperparams()
        fns = [ProfiledEnvFactory(cfg) for _ in range(int(hp["n_envs"]))]
        if workers > 1:
            from sparseshift.agents.vecenv import WorkerVecEnv

            inner: VecEnv = WorkerVecEnv(fns, workers)
        else:
            inner = DummyVecEnv(fns)  # type: ignore[arg-type]
        self.inner = inner
        learner = random_learner(64, 0).to(resolve_device(device))
        encoded = EncodedVecEnv(_timed_vec_env(inner, clock, "envs"), learner, None)
        env = _timed_vec_env(encoded, clock, "encoded")

        class TimedPPO(PPO):
            def collect_rollouts(self, *args: Any, **kwargs: Any) -> bool:
                t0 = stamp()
                try:
                    return super().collect_rollouts(*args, **kwargs)
                finally:
                    clock.add("collect", t0)

            def train(self) -> None:
                t0 = stamp()
                super().train()
                clock.add("train", t0)

        policy, policy_kwargs = policy_setup(cfg, hp, None)
        self.model = TimedPPO(policy, env, seed=cfg.seed, device=resolve_device(cfg.policy_device),
                              verbose=0, policy_kwargs=policy_kwargs,
                              **{k: hp[k] for k in PPO_KEYS})
        self.model.set_logger(quiet_logger())

    def run(self, n: int) -> None:
        t0 = stamp()
        self.model.learn(total_timesteps=n, reset_num_timesteps=False)
        self.clock.add("learn", t0)

    def snapshot(self) -> dict[str, Any]:
        """Main-process timers, env steps so far and each worker process's summed env timers."""
        workers: dict[float, dict[str, float]] = {}
        for times in self.inner.env_method("profile_times"):
            pid = times.pop("pid")
            acc = workers.setdefault(pid, {})
            for k, v in times.items():
                acc[k] = acc.get(k, 0.0) + v
        return {"main": dict(self.clock.times), "steps": float(self.model.num_timesteps),
                "workers": workers}

    def close(self) -> None:
        self.model.env.close()  # type: ignore[union-attr]


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


@dataclass(frozen=True)
class Profile:
    """Wall and CPU seconds per component over ``steps`` env steps; the wall times sum to
    ``total`` (the wall time of ``learn``). ``busy`` is the workers' summed env time over the
    wall time."""

    rows: tuple[tuple[str, float], ...]
    cpu: tuple[float, ...]
    total: float
    steps: float
    workers: int
    busy: float


def profile_rows(before: dict[str, Any], after: dict[str, Any], workers: int) -> Profile:
    """The component table between two :meth:`ProfiledAgent.snapshot` s."""
    main = _delta(after["main"], before["main"])
    per_worker = [_delta(w, before["workers"].get(pid, {}))
                  for pid, w in after["workers"].items()]
    critical = max(per_worker, key=lambda w: w.get("env_total", 0.0))

    def both(times: dict[str, float], name: str) -> Stamp:
        return times.get(name, 0.0), times.get(name + CPU, 0.0)

    def minus(a: Stamp, b: Stamp) -> Stamp:
        return a[0] - b[0], a[1] - b[1]

    envs, encoded = both(main, "envs"), both(main, "encoded")
    collect, train, learn = both(main, "collect"), both(main, "train"), both(main, "learn")
    env_total = both(critical, "env_total")
    if workers == 1:
        transfer = ("VecEnv bookkeeping (DummyVecEnv obs copies)",
                    minus(envs, env_total))
    else:  # the main process's CPU here is its side of the pipes (pickling, copies)
        transfer = ("inter-process transfer + wait (pipes, pickling, worker VecEnv, imbalance)",
                    (envs[0] - env_total[0], envs[1]))
    labels = {"physics": "physics (mj_step + action/reward/factors + wrappers)",
              "reset": "env reset (factor sampling, no render)",
              "update_scene": "rendering: update_scene",
              "gl_draw": "rendering: GL draw (mjr_render + finish, llvmpipe)",
              "readback": "frame readback (glReadPixels + flip)",
              "frame": "frame copy / shift + obs dict + Monitor"}
    parts = [(labels[k], both(critical, k)) for k in ENV_PARTS]
    parts += [
        transfer,
        ("encoding (frozen encoder forward + features)", minus(encoded, envs)),
        ("policy inference + rollout buffer", minus(collect, encoded)),
        ("policy update (PPO train())", train),
        ("other (learn(): setup, logger, callbacks)", minus(minus(learn, collect), train)),
    ]
    busy = sum(w.get("env_total", 0.0) for w in per_worker)
    return Profile(tuple((name, t[0]) for name, t in parts), tuple(t[1] for _, t in parts),
                   learn[0], after["steps"] - before["steps"], workers,
                   busy / learn[0] if learn[0] > 0 else 0.0)


def format_profile(title: str, rows: Sequence[tuple[str, float]], total: float, count: float,
                   unit: str, cpu: Sequence[float] | None = None) -> str:
    """A table: component, ms per ``unit``, share of ``total`` (the rows sum to it) and, given
    ``cpu`` (seconds per row), the CPU ms per ``unit``."""
    width = max(44, *(len(name) for name, _ in rows))
    head = f"  {'component':<{width}} {f'ms/{unit}':>10} {'share':>7}"
    lines = [title, head + (f" {f'cpu ms/{unit}':>13}" if cpu is not None else "")]
    for i, (name, seconds) in enumerate(rows):
        share = 100 * seconds / total if total > 0 else 0.0
        line = f"  {name:<{width}} {1e3 * seconds / count:>10.3f} {share:>6.1f}%"
        if cpu is not None:
            line += f" {1e3 * cpu[i] / count:>13.3f}"
        lines.append(line)
    total_line = f"  {'total (wall)':<{width}} {1e3 * total / count:>10.3f} {100.0:>6.1f}%"
    if cpu is not None:
        total_line += f" {1e3 * sum(cpu) / count:>13.3f}"
    lines.append(total_line)
    return "\n".join(lines)


def run_profile(args: argparse.Namespace) -> int:
    import statistics
    import time

    from sparseshift.agents.config import AgentConfig

    hp = AgentConfig(PROFILE_ENV, "random").resolved_hyperparams()
    unit = int(hp["n_envs"]) * int(hp["n_steps"])
    n, reps, w = -(-args.steps // unit) * unit, args.repeats, args.workers
    configs = {f"{k} env worker{'s' if k > 1 else ''}": k for k in dict.fromkeys((1, w))}
    print(f"sparseshift bench agents --profile: where an env step of PPO on frozen VAE latents "
          f"goes ({PROFILE_ENV}, 64x64 pixels, train-agent's trifinger defaults, encoder on "
          f"{args.device}); {n} steps per measurement (whole rollouts of {unit}), {reps} "
          "interleaved repeats after a warm-up, each profiled run next to the same run without "
          "timers")
    agents: dict[str, ProfiledAgent] = {}
    plain: dict[str, Callable[[int], None]] = {}
    closers: list[Callable[[], None]] = []
    try:
        for name, k in configs.items():
            agents[name] = ProfiledAgent(PROFILE_ENV, k, args.device)
            closers.append(agents[name].close)
            plain[name] = _agent(PROFILE_ENV, k, args.device, closers)
        for name in configs:
            agents[name].run(max(1, n // 10))
            plain[name](max(1, n // 10))
        before = {name: a.snapshot() for name, a in agents.items()}
        rates: dict[str, list[float]] = {f"{name}{s}": [] for name in configs
                                         for s in ("", " (no timers)")}
        for _ in range(reps):
            for name in configs:
                for label, fn in ((name, agents[name].run), (f"{name} (no timers)", plain[name])):
                    t0 = time.perf_counter()
                    fn(n)
                    rates[label].append(n / (time.perf_counter() - t0))
        for name, k in configs.items():
            prof = profile_rows(before[name], agents[name].snapshot(), k)
            timed, untimed = (statistics.median(rates[name]),
                              statistics.median(rates[f"{name} (no timers)"]))
            print()
            print(format_profile(
                f"PPO latents, {name}: {timed:.1f} steps/s with timers, {untimed:.1f} without "
                f"({timed / untimed:.2f}x; medians)", prof.rows, prof.total, prof.steps,
                "step", prof.cpu))
            if k > 1:
                print(f"  env rows: the busiest of {k} workers (the critical path; cpu: its "
                      f"process); transfer cpu: the main process's side. The workers' env time "
                      f"summed is {100 * prof.busy:.0f}% of the wall time (max {100 * k}%)")
    finally:
        for close in closers:
            close()
    print("\nms/step: wall time per env step (one of n_envs transitions), summed over the "
          "repeats; cpu ms/step: CPU time of the process doing it (all its threads): wall well "
          "above cpu is time spent waiting for a core. 'other' is learn() outside "
          "collect_rollouts and train() (SB3 setup, logger dump, callbacks).")
    return 0
