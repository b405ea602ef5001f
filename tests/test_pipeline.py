"""The pipelined collector (agents/pipeline.py) and the grouped WorkerVecEnv under it: the same
env trajectories as a DummyVecEnv, the same encoded features, the same trained weights for any
number of env workers (bit for bit), and SB3's synchronous PPO's weights up to float rounding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sparseshift.agents.pipeline import GroupedVecEnv, PipelinedPPO
from sparseshift.agents.vecenv import WorkerVecEnv, concat_steps
from sparseshift.agents.wrapper import TERMINAL, EncodedVecEnv
from sparseshift.envs.infra.errors import ConfigError
from tests.test_agents_fakes import FakeEnv, StatefulLearner, TinyLearner


class BoxFakeEnv(FakeEnv):
    """FakeEnv with 3-d continuous actions and a reward that depends on them; even-indexed envs
    end their episodes by truncation (so PPO bootstraps them with the value function)."""

    def __init__(self, index: int, length: int) -> None:
        super().__init__(index, length)
        self.action_space = spaces.Box(-1, 1, (3,), np.float32)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, _, done, _, info = super().step(action)
        reward = float(-np.sum((np.asarray(action) - 0.3 * self.index) ** 2))
        if self.index % 2 == 0:
            return obs, reward, False, done, info
        return obs, reward, done, False, info


class EnvFn:
    """A picklable env factory (spawned workers build their envs from it)."""

    def __init__(self, index: int, box: bool = False) -> None:
        self.index, self.box = index, box

    def __call__(self) -> gym.Env[Any, Any]:
        length = 3 + self.index
        return BoxFakeEnv(self.index, length) if self.box else FakeEnv(self.index, length)


def fns(n: int, box: bool = False) -> list[EnvFn]:
    return [EnvFn(i, box) for i in range(n)]


def assert_same_step(a: Any, b: Any) -> None:
    """Equal steps; terminal observations to float precision (an encoder that sees a smaller
    batch of terminal frames may round the last bit differently)."""
    for x, y in zip(a[:3], b[:3], strict=True):
        if isinstance(x, dict):
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])
        else:
            np.testing.assert_array_equal(x, y)
    assert len(a[3]) == len(b[3])
    for ia, ib in zip(a[3], b[3], strict=True):
        assert ia.keys() == ib.keys()
        if TERMINAL in ia:
            ta, tb = ia[TERMINAL], ib[TERMINAL]
            if isinstance(ta, dict):
                for k in ta:
                    np.testing.assert_array_equal(ta[k], tb[k])
            else:
                np.testing.assert_allclose(ta, tb, rtol=1e-6, atol=1e-6)


def group_step(venv: Any, actions: np.ndarray, order: tuple[int, ...]) -> Any:
    """One step of every env, sent group by group and waited for in ``order``."""
    for g, rows in enumerate(venv.groups):
        venv.step_group_async(g, actions[rows[0]:rows[-1] + 1])
    parts = {g: venv.step_group_wait(g) for g in order}
    return concat_steps([parts[g] for g in range(len(venv.groups))])


@pytest.mark.parametrize("workers", [1, 3])  # one worker holding both groups; parts across groups
def test_grouped_worker_vecenv_steps_like_a_dummy_vecenv(workers: int) -> None:
    n = 5
    ref = DummyVecEnv(fns(n))  # type: ignore[arg-type]
    venv = WorkerVecEnv(fns(n), workers, groups=2)
    try:
        assert venv.groups == [[0, 1], [2, 3, 4]]
        ref.seed(7)
        venv.seed(7)
        assert_same_step((ref.reset(), np.zeros(n), np.zeros(n), [{}] * n),
                         (venv.reset(), np.zeros(n), np.zeros(n), [{}] * n))
        rng = np.random.default_rng(0)
        for t in range(12):
            actions = rng.integers(0, 2, n)
            expected = ref.step(actions)
            if t % 3 == 0:  # a plain step of all envs between group steps
                got = venv.step(actions)
            else:
                got = group_step(venv, actions, (0, 1) if t % 2 else (1, 0))
            assert_same_step(expected, got)
        assert venv.get_attr("index") == list(range(n))
        with pytest.raises(RuntimeError, match="in flight"):
            venv.step_group_async(0, np.zeros(2, dtype=int))
            venv.step_group_async(0, np.zeros(2, dtype=int))
        venv.step_group_wait(0)
    finally:
        venv.close()
        ref.close()


@pytest.mark.parametrize("learner_cls", [
    pytest.param(TinyLearner, marks=pytest.mark.slow), StatefulLearner])
def test_encoded_group_steps_equal_full_steps(learner_cls: type) -> None:
    n = 4
    ref = EncodedVecEnv(DummyVecEnv(fns(n)), learner_cls())  # type: ignore[arg-type]
    enc = EncodedVecEnv(WorkerVecEnv(fns(n), 2, groups=2), learner_cls())
    try:
        assert isinstance(enc, GroupedVecEnv)
        np.testing.assert_array_equal(ref.reset(), enc.reset())
        rng = np.random.default_rng(1)
        dones_seen = 0
        for t in range(10):
            actions = rng.integers(0, 2, n)
            expected = ref.step(actions)
            got = group_step(enc, actions, (1, 0) if t % 2 else (0, 1))
            assert_same_step(expected, got)
            dones_seen += int(np.sum(expected[2]))
        assert dones_seen >= 4  # episodes of 3-6 steps ended, terminal latents compared
    finally:
        enc.close()
        ref.close()


def _train(cls: type[PPO], env: VecEnv, seed: int = 3) -> torch.Tensor:
    model = cls("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=2, seed=seed,
                device="cpu", verbose=0)
    model.set_logger(Logger(None, []))
    model.learn(total_timesteps=3 * 16 * env.num_envs)
    out = torch.cat([p.detach().flatten() for p in model.policy.parameters()])
    env.close()
    return out


@pytest.mark.parametrize("box", [False, True], ids=["categorical", "gaussian"])
def test_pipelined_ppo_trains_like_sb3_ppo(box: bool) -> None:
    """Categorical actions (drawn row by row) and Gaussian ones (the step's noise drawn for all
    envs at once, as SB3 draws it); truncated episodes bootstrapped. Identical for 1 and 2 env
    workers; SB3's result up to float rounding (the encoder and the policy see half batches)."""
    torch.set_num_threads(1)
    n = 4
    ref = _train(PPO, EncodedVecEnv(DummyVecEnv(fns(n, box)), TinyLearner()))  # type: ignore[arg-type]
    got = [_train(PipelinedPPO, EncodedVecEnv(WorkerVecEnv(fns(n, box), workers, groups=2),
                                              TinyLearner()))
           for workers in ((1, 2) if box else (1,))]
    assert torch.equal(got[0], got[-1])
    torch.testing.assert_close(got[0], ref, rtol=1e-4, atol=1e-5)
    other_seed = _train(PPO, EncodedVecEnv(DummyVecEnv(fns(n, box)), TinyLearner()), seed=4)  # type: ignore[arg-type]
    assert not torch.allclose(other_seed, ref, rtol=1e-3)  # the comparison can fail


def test_pipelined_ppo_on_an_ungrouped_env_is_ppo() -> None:
    torch.set_num_threads(1)
    env = EncodedVecEnv(DummyVecEnv(fns(2)), TinyLearner())  # type: ignore[arg-type]
    assert not env.groups
    ref = _train(PPO, EncodedVecEnv(DummyVecEnv(fns(2)), TinyLearner()))  # type: ignore[arg-type]
    assert torch.equal(_train(PipelinedPPO, EncodedVecEnv(DummyVecEnv(fns(2)), TinyLearner())),  # type: ignore[arg-type]
                       ref)


def test_a_callback_that_stops_leaves_nothing_in_flight() -> None:
    from stable_baselines3.common.callbacks import BaseCallback

    class StopAt(BaseCallback):
        def _on_step(self) -> bool:
            return self.num_timesteps < 5 * self.training_env.num_envs

    env = EncodedVecEnv(WorkerVecEnv(fns(4), 1, groups=2), TinyLearner())
    try:
        model = PipelinedPPO("MlpPolicy", env, n_steps=16, batch_size=32, seed=0, device="cpu")
        model.set_logger(Logger(None, []))
        model.learn(total_timesteps=64, callback=StopAt())
        assert model.num_timesteps == 20
        assert env.venv.get_attr("index") == [0, 1, 2, 3]  # no reply left in a pipe
    finally:
        env.close()


def test_train_agent_pipelined_is_identical_over_workers_and_resumes_exactly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train-agent --collector pipelined``: the same agent with 1 and 2 env workers, and an
    interrupted run resumes to it bit for bit (the pipeline is drained at rollout boundaries,
    where the training state is written)."""
    from dataclasses import replace

    from sparseshift.agents.train import train_agent
    from tests.test_agent_resume import assert_identical, tiny, train_interrupted

    cfg = tiny(collector="pipelined", hyperparams={"n_envs": 4, "n_steps": 32,
                                                   "batch_size": 64, "n_epochs": 2})
    ref = train_agent(cfg, tmp_path / "ref")
    assert json.loads((ref / "agent.json").read_text())["config"]["collector"] == "pipelined"
    assert_identical(train_agent(replace(cfg, env_workers=2), tmp_path / "w2"), ref)
    train_interrupted(monkeypatch, cfg, tmp_path / "b", 300)
    assert_identical(train_agent(cfg, tmp_path / "b"), ref)


def test_pipelined_collector_refuses_what_it_cannot_run() -> None:
    from tests.test_agent_resume import tiny

    for bad in ({"encoder": "pixels"}, {"algo": "sac", "env_id": "sparseshift/TriFingerReach-v0",
                                        "hyperparams": {}}):
        with pytest.raises(ConfigError, match="pipelined collector is for ppo"):
            tiny(collector="pipelined", **bad)
