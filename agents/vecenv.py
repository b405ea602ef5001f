"""A vectorised env whose envs step in worker processes, several envs per process.

Stable-Baselines3's ``SubprocVecEnv`` gives every env its own process; on a 2-core machine eight
TriFinger envs would then be eight processes fighting over two cores. :class:`WorkerVecEnv` runs
``n_envs`` envs in ``workers`` processes (contiguous slices, each stepped by an SB3
``DummyVecEnv`` inside its worker), so the pixel rendering of a step is spread over the cores
while the frozen encoder and the policy stay in the main process, batching all envs.

Results are identical to one ``DummyVecEnv`` of the same envs for any number of workers: every env
gets the same seed and options (by index), steps with the same actions and auto-resets the same
way (``terminal_observation`` in its info), and the slices are concatenated in env order.
Workers start with ``spawn`` (GL contexts and threads do not survive ``fork``), choose the headless
GL backend on their own when MuJoCo is first imported, and die with their parent.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

EnvFn = Callable[[], gym.Env[Any, Any]]


def _worker(conn: Connection, fns: list[EnvFn], parent: int) -> None:
    from sparseshift.agents.procs import die_with_parent

    die_with_parent(parent)
    venv = DummyVecEnv(fns)
    try:
        while True:
            try:
                cmd, arg = conn.recv()
            except (EOFError, OSError):  # the parent dropped the env without close(): quit
                break
            if cmd == "step":
                venv.step_async(arg)
                conn.send(venv.step_wait())
            elif cmd == "reset":
                seeds, options = arg
                for i, s in enumerate(seeds):
                    venv._seeds[i] = s
                for i, o in enumerate(options):
                    venv._options[i] = o
                conn.send(venv.reset())
            elif cmd == "get_attr":
                name, idx = arg
                conn.send(venv.get_attr(name, idx))
            elif cmd == "set_attr":
                name, value, idx = arg
                venv.set_attr(name, value, idx)
                conn.send(None)
            elif cmd == "env_method":
                name, args, kwargs, idx = arg
                conn.send(venv.env_method(name, *args, indices=idx, **kwargs))
            elif cmd == "is_wrapped":
                cls, idx = arg
                conn.send(venv.env_is_wrapped(cls, idx))
            elif cmd == "close":
                break
    finally:
        venv.close()
        conn.close()


def _concat_obs(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


class WorkerVecEnv(VecEnv):
    """``len(env_fns)`` envs in ``workers`` processes (see the module docstring)."""

    def __init__(self, env_fns: Sequence[EnvFn], workers: int) -> None:
        n = len(env_fns)
        workers = max(1, min(int(workers), n))
        bounds = np.linspace(0, n, workers + 1).round().astype(int)
        self._slices = [list(range(bounds[w], bounds[w + 1])) for w in range(workers)]
        ctx = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs = []
        for idx in self._slices:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, [env_fns[i] for i in idx],
                                                     os.getpid()), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        probe = env_fns[0]()
        try:
            super().__init__(n, probe.observation_space, probe.action_space)
            self.render_mode = probe.render_mode
        finally:
            probe.close()
        self._actions: np.ndarray | None = None
        self.closed = False

    # ------------------------------------------------------------------ stepping
    def reset(self) -> VecEnvObs:
        for conn, idx in zip(self._conns, self._slices, strict=True):
            conn.send(("reset", ([self._seeds[i] for i in idx],
                                 [self._options[i] for i in idx])))
        obs = _concat_obs([conn.recv() for conn in self._conns])
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)
        for conn, idx in zip(self._conns, self._slices, strict=True):
            conn.send(("step", self._actions[idx[0]: idx[-1] + 1]))

    def step_wait(self) -> VecEnvStepReturn:
        parts = [conn.recv() for conn in self._conns]
        obs = _concat_obs([p[0] for p in parts])
        rewards = np.concatenate([p[1] for p in parts])
        dones = np.concatenate([p[2] for p in parts])
        infos = [info for p in parts for info in p[3]]
        return obs, rewards, dones, infos

    def close(self) -> None:
        if self.closed:
            return
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        self.closed = True

    # ------------------------------------------------------------------ per-env calls
    def _route(self, indices: VecEnvIndices) -> list[tuple[int, list[int]]]:
        """(worker, local indices) for the global ``indices``, in order."""
        wanted = self._get_indices(indices)
        out: list[tuple[int, list[int]]] = []
        for w, idx in enumerate(self._slices):
            local = [i - idx[0] for i in wanted if idx[0] <= i <= idx[-1]]
            if local:
                out.append((w, local))
        return out

    def _ask(self, cmd: str, make_arg: Callable[[list[int]], Any], indices: VecEnvIndices
             ) -> list[Any]:
        routes = self._route(indices)
        for w, local in routes:
            self._conns[w].send((cmd, make_arg(local)))
        return [x for w, _ in routes for x in self._conns[w].recv()]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._ask("get_attr", lambda local: (attr_name, local), indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        routes = self._route(indices)
        for w, local in routes:
            self._conns[w].send(("set_attr", (attr_name, value, local)))
        for w, _ in routes:
            self._conns[w].recv()

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return self._ask("env_method",
                         lambda local: (method_name, method_args, method_kwargs, local), indices)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper[Any, Any, Any, Any]],
                       indices: VecEnvIndices = None) -> list[bool]:
        return self._ask("is_wrapped", lambda local: (wrapper_class, local), indices)

    def get_images(self) -> Sequence[np.ndarray | None]:
        return self.env_method("render")
