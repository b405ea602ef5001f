"""A vectorised env whose envs step in worker processes, several envs per process, optionally in
groups that step while the main process works on the others.

Stable-Baselines3's ``SubprocVecEnv`` gives every env its own process; on a 2-core machine eight
TriFinger envs would then be eight processes fighting over two cores. :class:`WorkerVecEnv` runs
``n_envs`` envs in ``workers`` processes (contiguous slices, each stepped by SB3 ``DummyVecEnv``\\ s
inside its worker), so the pixel rendering of a step is spread over the cores while the frozen
encoder and the policy stay in the main process, batching all envs.

With ``groups`` > 1 the envs are also split into that many contiguous groups (independent of the
workers), and a group can be stepped on its own (:meth:`WorkerVecEnv.step_group_async` /
:meth:`WorkerVecEnv.step_group_wait`): the pipelined collector
(:mod:`sparseshift.agents.pipeline`) encodes and acts for one group while the workers step the
others (the double-buffered sampling of Sample Factory, Petrenko et al. 2020). A worker holds one
``DummyVecEnv`` per group it has envs of, and steps queued groups in the order they were sent.

Results are identical to one ``DummyVecEnv`` of the same envs for any number of workers and
groups: every env gets the same seed and options (by index), steps with the same actions and
auto-resets the same way (``terminal_observation`` in its info), and the parts are concatenated
in env order. Workers start with ``spawn`` (GL contexts and threads do not survive ``fork``),
choose the headless GL backend on their own when MuJoCo is first imported, and die with their
parent.
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
#: What a step of some envs returns: (obs, rewards, dones, infos).
StepResult = tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]


def _split(n: int, parts: int) -> list[list[int]]:
    """``range(n)`` in ``parts`` contiguous, near-equal, non-empty slices."""
    parts = max(1, min(int(parts), n))
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [list(range(bounds[p], bounds[p + 1])) for p in range(parts)]


class _Parts:
    """A worker's envs as one ``DummyVecEnv`` per part (local indices ``0..n-1`` in order)."""

    def __init__(self, fns: list[EnvFn], sizes: list[int]) -> None:
        self.venvs: list[DummyVecEnv] = []
        self.where: list[tuple[int, int]] = []  # local index -> (part, index in part)
        start = 0
        for p, size in enumerate(sizes):
            self.venvs.append(DummyVecEnv(fns[start:start + size]))
            self.where.extend((p, i) for i in range(size))
            start += size

    def step(self, part: int, actions: np.ndarray) -> StepResult:
        venv = self.venvs[part]
        venv.step_async(actions)
        obs, rewards, dones, infos = venv.step_wait()
        return obs, rewards, dones, infos

    def reset(self, seeds: list[int | None], options: list[dict[str, Any]]) -> list[Any]:
        for local, (seed, option) in enumerate(zip(seeds, options, strict=True)):
            p, i = self.where[local]
            self.venvs[p]._seeds[i] = seed
            self.venvs[p]._options[i] = option
        return [venv.reset() for venv in self.venvs]

    def each(self, local: list[int], method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """``DummyVecEnv.method(*args, indices=..., **kwargs)`` on the parts of the envs
        ``local``, results in order."""
        out: list[Any] = []
        for p, venv in enumerate(self.venvs):
            idx = [self.where[i][1] for i in local if self.where[i][0] == p]
            if idx:
                out.extend(getattr(venv, method)(*args, indices=idx, **kwargs) or ())
        return out

    def close(self) -> None:
        for venv in self.venvs:
            venv.close()


def _worker(conn: Connection, fns: list[EnvFn], sizes: list[int], parent: int) -> None:
    from sparseshift.agents.procs import die_with_parent

    die_with_parent(parent)
    parts = _Parts(fns, sizes)
    try:
        while True:
            try:
                cmd, arg = conn.recv()
            except (EOFError, OSError):  # the parent dropped the env without close(): quit
                break
            if cmd == "step":  # [(part, actions), ...] -> [result, ...]
                conn.send([parts.step(p, a) for p, a in arg])
            elif cmd == "reset":
                conn.send(parts.reset(*arg))
            elif cmd == "get_attr":
                name, idx = arg
                conn.send(parts.each(idx, "get_attr", name))
            elif cmd == "set_attr":
                name, value, idx = arg
                parts.each(idx, "set_attr", name, value)
                conn.send(None)
            elif cmd == "env_method":
                name, args, kwargs, idx = arg
                conn.send(parts.each(idx, "env_method", name, *args, **kwargs))
            elif cmd == "is_wrapped":
                cls, idx = arg
                conn.send(parts.each(idx, "env_is_wrapped", cls))
            elif cmd == "close":
                break
    finally:
        parts.close()
        conn.close()


def concat_obs(parts: Sequence[Any]) -> Any:
    """Concatenate batched observations (arrays or dicts of arrays) along the batch dimension."""
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def concat_steps(parts: Sequence[StepResult]) -> StepResult:
    """Concatenate step results of consecutive env slices."""
    return (concat_obs([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]), [info for p in parts for info in p[3]])


class WorkerVecEnv(VecEnv):
    """``len(env_fns)`` envs in ``workers`` processes, in ``groups`` groups (see the module
    docstring)."""

    def __init__(self, env_fns: Sequence[EnvFn], workers: int, groups: int = 1) -> None:
        n = len(env_fns)
        self._slices = _split(n, workers)
        #: The groups, as contiguous global env indices.
        self.groups: list[list[int]] = _split(n, groups)
        group_of = [g for g, idx in enumerate(self.groups) for _ in idx]
        # Each worker's parts: (group, global indices) of its slice, in order.
        self._parts: list[list[tuple[int, list[int]]]] = []
        for idx in self._slices:
            parts: list[tuple[int, list[int]]] = []
            for i in idx:
                if parts and parts[-1][0] == group_of[i]:
                    parts[-1][1].append(i)
                else:
                    parts.append((group_of[i], [i]))
            self._parts.append(parts)
        ctx = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs = []
        for idx, parts in zip(self._slices, self._parts, strict=True):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker,
                               args=(child, [env_fns[i] for i in idx],
                                     [len(p[1]) for p in parts], os.getpid()), daemon=True)
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
        #: Per group, the workers it was sent to, in order (empty: not in flight).
        self._pending: list[list[int]] = [[] for _ in self.groups]
        #: Per worker, the groups it was sent, in order (a worker answers in that order), and the
        #: answers read ahead of their group's wait.
        self._sent: list[list[int]] = [[] for _ in self._slices]
        self._early: dict[tuple[int, int], list[StepResult]] = {}
        self.closed = False

    # ------------------------------------------------------------------ stepping
    def reset(self) -> VecEnvObs:
        for conn, idx in zip(self._conns, self._slices, strict=True):
            conn.send(("reset", ([self._seeds[i] for i in idx],
                                 [self._options[i] for i in idx])))
        obs = concat_obs([o for conn in self._conns for o in conn.recv()])
        self._reset_seeds()
        self._reset_options()
        return obs

    def _send(self, wanted: Sequence[int], actions: np.ndarray) -> list[int]:
        """Send ``actions`` (rows for the envs of the groups ``wanted``, in env order) to the
        workers holding those groups; returns the workers sent to, in env order."""
        offset = {g: 0 for g in wanted}
        base = 0
        for g in sorted(wanted):
            offset[g] = base
            base += len(self.groups[g])
        sent: list[int] = []
        for w, parts in enumerate(self._parts):
            msg = []
            for p, (g, idx) in enumerate(parts):
                if g in offset:
                    start = offset[g] + idx[0] - self.groups[g][0]
                    msg.append((p, actions[start:start + len(idx)]))
            if msg:
                self._conns[w].send(("step", msg))
                sent.append(w)
        return sent

    def _answer(self, w: int, group: int) -> list[StepResult]:
        """Worker ``w``'s answer for ``group`` (reading ahead, and keeping, the answers to
        groups sent to it before)."""
        while (w, group) not in self._early:
            self._early[(w, self._sent[w].pop(0))] = self._conns[w].recv()
        return self._early.pop((w, group))

    def step_async(self, actions: np.ndarray) -> None:
        if any(self._pending):
            raise RuntimeError("step_async while a group step is in flight")
        sent = self._send(range(len(self.groups)), np.asarray(actions))
        for w in sent:
            self._sent[w].append(-1)  # -1: a step of all groups
        self._pending = [sent] + [[] for _ in self.groups[1:]]

    def step_wait(self) -> VecEnvStepReturn:
        workers, self._pending = self._pending[0], [[] for _ in self.groups]
        return concat_steps([r for w in workers for r in self._answer(w, -1)])

    def step_group_async(self, group: int, actions: np.ndarray) -> None:
        """Step the envs of ``group`` (``actions``: one row per env of the group)."""
        if self._pending[group]:
            raise RuntimeError(f"group {group} is already in flight")
        self._pending[group] = self._send([group], np.asarray(actions))
        for w in self._pending[group]:
            self._sent[w].append(group)

    def step_group_wait(self, group: int) -> StepResult:
        """The step result of ``group``'s envs. Groups may be waited for in any order; a worker
        answers its queued steps in the order they were sent."""
        workers, self._pending[group] = self._pending[group], []
        if not workers:
            raise RuntimeError(f"group {group} is not in flight")
        return concat_steps([r for w in workers for r in self._answer(w, group)])

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
        if any(self._pending):
            raise RuntimeError(f"{cmd} while a step is in flight")
        routes = self._route(indices)
        for w, local in routes:
            self._conns[w].send((cmd, make_arg(local)))
        return [x for w, _ in routes for x in self._conns[w].recv()]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._ask("get_attr", lambda local: (attr_name, local), indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._ask("set_attr", lambda local: (attr_name, value, local), indices)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return self._ask("env_method",
                         lambda local: (method_name, method_args, method_kwargs, local), indices)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper[Any, Any, Any, Any]],
                       indices: VecEnvIndices = None) -> list[bool]:
        return self._ask("is_wrapped", lambda local: (wrapper_class, local), indices)

    def get_images(self) -> Sequence[np.ndarray | None]:
        return self.env_method("render")
