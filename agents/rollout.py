"""Evaluation episodes with explicit per-episode seeds, run in lock-step over parallel envs.

Each episode resets with its own seed, so an evaluation is reproducible and the same episode seeds
(same layouts, goals and sampled colours' RNG draws) are used under every shift: shifts are
compared on paired episodes. Observations of all running envs are encoded in one batch by the same
:class:`sparseshift.agents.encoding.FrozenEncoder` used in training. Sampled (stochastic) actions
are drawn
with the torch RNG seeded for the evaluation and restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sparseshift.agents.encoding import FrozenEncoder, reset_state

Policy = Callable[[Any], np.ndarray]


@dataclass
class Episode:
    """Outcome of one evaluation episode (``frames`` only when recorded)."""

    seed: int
    ret: float = 0.0
    length: int = 0
    success: bool = False
    frames: list[np.ndarray] = field(default_factory=list)


def _stack(observations: Sequence[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


def _frame(env: gym.Env[Any, Any]) -> np.ndarray:
    u: Any = env.unwrapped
    return np.asarray(u.render_frame(), dtype=np.uint8).copy()


def run_episodes(envs: Sequence[gym.Env[Any, Any]], policy: Policy, seeds: Sequence[int],
                 encoder: FrozenEncoder | None = None, record: int = 0,
                 torch_seed: int = 0) -> list[Episode]:
    """Run one episode per seed, ``len(envs)`` at a time; record frames of the first ``record``.

    ``policy`` maps a batch of (encoded) observations to a batch of actions. It runs with the
    global torch RNG seeded from ``torch_seed`` inside :func:`torch.random.fork_rng` (sampled
    actions are reproducible; the caller's RNG state is restored afterwards).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        return _run(envs, policy, seeds, encoder, record)


def _run(envs: Sequence[gym.Env[Any, Any]], policy: Policy, seeds: Sequence[int],
         encoder: FrozenEncoder | None, record: int) -> list[Episode]:
    episodes = [Episode(int(s)) for s in seeds]
    queue = list(range(len(episodes)))[::-1]
    slots: list[int | None] = [None] * len(envs)
    obs: list[Any] = [None] * len(envs)
    initial = encoder.initial_state(len(envs)) if encoder is not None else None
    state = initial

    def start(i: int) -> bool:
        if not queue:
            slots[i] = None
            return False
        k = queue.pop()
        slots[i] = k
        obs[i], _ = envs[i].reset(seed=episodes[k].seed)
        if k < record:
            episodes[k].frames.append(_frame(envs[i]))
        return True

    fresh = [start(i) for i in range(len(envs))]
    while True:
        active = [i for i in range(len(envs)) if slots[i] is not None]
        if not active:
            break
        if encoder is not None and encoder.stateful:
            mask = torch.as_tensor(fresh)
            state = reset_state(state, initial, mask)
            batch = _stack([obs[i] if slots[i] is not None else obs[active[0]]
                            for i in range(len(envs))])
            feats, state = encoder.features(batch, state)
            feats = feats[active]
        elif encoder is not None:
            feats, _ = encoder.features(_stack([obs[i] for i in active]))
        else:
            feats = _stack([obs[i] for i in active])
        actions = policy(feats)
        fresh = [False] * len(envs)
        for row, i in enumerate(active):
            k = slots[i]
            assert k is not None
            obs[i], reward, term, trunc, info = envs[i].step(actions[row])
            ep = episodes[k]
            ep.ret += float(reward)
            ep.length += 1
            if k < record:
                ep.frames.append(_frame(envs[i]))
            if term or trunc:
                ep.success = bool(info.get("is_success", False))
                fresh[i] = start(i)
    return episodes
