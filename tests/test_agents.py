"""Agents layer, fast parts: frozen-encoder wrapper, DeepSets extractor, bootstrap CIs, configs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from sparseshift.agents.config import AgentConfig
from sparseshift.agents.encoding import FrozenEncoder
from sparseshift.agents.envs import parse_shifts
from sparseshift.agents.extractors import DeepSetsExtractor
from sparseshift.agents.stats import bootstrap_ci
from sparseshift.agents.wrapper import EncodedVecEnv
from sparseshift.envs.infra.errors import ConfigError
from tests.test_agents_fakes import (
    PROPRIO,
    FakeEnv,
    SetLearner,
    StatefulLearner,
    TinyConfig,
    TinyLearner,
    fake_frame,
)

torch.set_num_threads(1)

GRID = "sparseshift/ColourGrid-v0"


def venv(lengths: list[int], proprio: bool = True) -> DummyVecEnv:
    return DummyVecEnv([lambda i=i, n=n: FakeEnv(i, n, proprio) for i, n in enumerate(lengths)])


def encode_one(learner: TinyLearner, frame: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return learner.encode(torch.from_numpy(frame[None])).reshape(-1).numpy()


@pytest.mark.parametrize("proprio", [True, False])
def test_batched_encoding_equals_per_frame(proprio: bool) -> None:
    learner = TinyLearner()
    env = EncodedVecEnv(venv([5, 5, 5], proprio), learner)
    assert not learner.training
    assert all(not p.requires_grad for p in learner.parameters())
    feats = env.reset()
    assert feats.shape == (3, 4 + (PROPRIO if proprio else 0)) and feats.dtype == np.float32
    for i in range(3):
        np.testing.assert_allclose(feats[i, :4], encode_one(learner, fake_frame(i, 0)),
                                   rtol=1e-5, atol=1e-6)
        if proprio:
            np.testing.assert_allclose(feats[i, 4:], np.full(PROPRIO, i, np.float32))
    feats, *_ = env.step(np.zeros(3, dtype=np.int64))
    for i in range(3):
        np.testing.assert_allclose(feats[i, :4], encode_one(learner, fake_frame(i, 1)),
                                   rtol=1e-5, atol=1e-6)


def test_terminal_observations_are_encoded_in_one_batch() -> None:
    learner = TinyLearner()
    calls: list[int] = []
    orig = learner.encode

    def counting(frames: torch.Tensor) -> torch.Tensor:
        calls.append(len(frames))
        return orig(frames)

    learner.encode = counting  # type: ignore[method-assign]
    env = EncodedVecEnv(venv([2, 2, 3]), learner)
    env.reset()
    env.step(np.zeros(3, dtype=np.int64))
    calls.clear()
    feats, _, dones, infos = env.step(np.zeros(3, dtype=np.int64))  # envs 0 and 1 finish
    assert list(dones) == [True, True, False]
    assert calls == [5]  # 3 current + 2 terminal frames, one forward pass
    for i in (0, 1):
        term = infos[i]["terminal_observation"]
        assert term.shape == (4 + PROPRIO,) and term.dtype == np.float32
        np.testing.assert_allclose(term[:4], encode_one(learner, fake_frame(i, 2)),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(term[4:], np.full(PROPRIO, 0.2 + i, np.float32))
        # the returned observation is the first frame of the next episode
        np.testing.assert_allclose(feats[i, :4], encode_one(learner, fake_frame(i, 0)),
                                   rtol=1e-5, atol=1e-6)
    assert "terminal_observation" not in infos[2]


def test_stateful_state_resets_only_for_finished_env() -> None:
    learner = StatefulLearner()
    env = EncodedVecEnv(venv([2, 4]), learner)
    codes = {(i, t): encode_one(learner, fake_frame(i, t)) for i in range(2) for t in range(5)}
    env.reset()
    env.step(np.zeros(2, dtype=np.int64))
    feats, _, dones, infos = env.step(np.zeros(2, dtype=np.int64))  # env 0 finishes
    assert list(dones) == [True, False]
    # terminal obs encoded with the finishing episode's state: sum over t = 0, 1, 2
    np.testing.assert_allclose(infos[0]["terminal_observation"][:4],
                               codes[0, 0] + codes[0, 1] + codes[0, 2], rtol=1e-5, atol=1e-5)
    # env 0 restarted from the initial state, env 1 kept accumulating
    np.testing.assert_allclose(feats[0, :4], codes[0, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats[1, :4], codes[1, 0] + codes[1, 1] + codes[1, 2],
                               rtol=1e-5, atol=1e-5)
    _total, count = env.encoder_state
    assert count.tolist() == [1.0, 3.0]
    env.reset()
    assert env.encoder_state[1].tolist() == [1.0, 1.0]


def test_set_latents_flattened_and_extractor_is_permutation_invariant() -> None:
    learner = SetLearner()
    env = EncodedVecEnv(venv([3, 3]), learner)
    assert env.encoder.set_shape == (3, 4)
    assert env.observation_space.shape == (12 + PROPRIO,)
    obs = torch.as_tensor(env.reset())
    ext = DeepSetsExtractor(env.observation_space, n_slots=3, slot_dim=4)
    out = ext(obs)
    assert out.shape == (2, ext.features_dim)
    for perm in ([2, 0, 1], [1, 0, 2], [2, 1, 0]):
        slots = obs[:, :12].reshape(2, 3, 4)[:, perm].reshape(2, 12)
        permuted = torch.cat([slots, obs[:, 12:]], dim=1)
        torch.testing.assert_close(ext(permuted), out, rtol=1e-5, atol=1e-6)
    # but the proprio part is not a set
    changed = obs.clone()
    changed[:, 12:] += 1.0
    assert not torch.allclose(ext(changed), out)


def test_sum_pooling_and_bad_layout() -> None:
    from gymnasium import spaces

    box = spaces.Box(-np.inf, np.inf, (8,), np.float32)
    ext = DeepSetsExtractor(box, n_slots=2, slot_dim=4, pooling="sum")
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ext(x), ext(torch.cat([x[:, 4:], x[:, :4]], 1)))
    assert ext.features_dim == 128  # no proprio branch
    with pytest.raises(ConfigError, match="does not hold"):
        DeepSetsExtractor(box, n_slots=3, slot_dim=4)
    with pytest.raises(ConfigError, match="pooling"):
        DeepSetsExtractor(box, n_slots=2, slot_dim=4, pooling="max")


def test_image_size_mismatch_is_config_error() -> None:
    with pytest.raises(ConfigError, match="trained on 32x32"):
        FrozenEncoder(TinyLearner(TinyConfig(image_size=32)), FakeEnv(0, 2).observation_space)


def test_bootstrap_ci_equals_known_values_and_is_deterministic() -> None:
    """The interval is the percentile bootstrap computed independently here (same generator and
    draws), at 95% and 99%; a two-point sample has the known interval [0, 1]."""
    x = np.random.default_rng(0).normal(1.0, 2.0, 40)
    a = bootstrap_ci(x, seed=3)
    means = x[np.random.default_rng(3).integers(0, 40, (2000, 40))].mean(axis=1)
    for conf, iv in ((0.95, a), (0.99, bootstrap_ci(x, seed=3, confidence=0.99))):
        want = np.percentile(means, [50 * (1 - conf), 50 * (1 + conf)])
        assert (iv.low, iv.high) == pytest.approx(tuple(want), abs=1e-12)
    assert a.mean == pytest.approx(float(x.mean()))
    assert a == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=4) != a
    assert a.resamples == 2000 and a.confidence == 0.95 and a.n == 40
    two = bootstrap_ci([0.0, 1.0], seed=0)  # resampled means 0, 1/2, 1 w.p. 1/4, 1/2, 1/4
    assert (two.low, two.mean, two.high) == (0.0, 0.5, 1.0)
    const = bootstrap_ci([1.0, 1.0, 1.0], seed=0)
    assert const.low == const.mean == const.high == 1.0
    with pytest.raises(ConfigError):
        bootstrap_ci([], seed=0)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"algo": "dqn"}, "unknown algo 'dqn'"),
        ({"algo": "sac"}, "continuous"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"steps": -5}, "steps must be a positive integer"),
        ({"seed": -1}, "seed must be"),
        ({"colours": "ood3"}, "unknown colour split"),
        ({"hyperparams": {"nope": 1}}, "unknown ppo hyperparameter 'nope'"),
        ({"env_kwargs": {"obs_mode": "state"}}, "may not set"),
        ({"env_id": "sparseshift/Nope-v0"}, "unknown env id"),
    ],
)
def test_config_errors(kwargs: dict[str, Any], needle: str) -> None:
    base: dict[str, Any] = {"env_id": GRID, "encoder": "state"}
    base.update(kwargs)
    with pytest.raises(ConfigError, match=needle):
        AgentConfig(**base)


def test_config_json_round_trip_and_frozen_pairs() -> None:
    cfg = AgentConfig(GRID, "random", hyperparams={"n_envs": 2}, env_kwargs={"size": 6})
    assert cfg.hyperparams == {"n_envs": 2}
    assert AgentConfig.from_json(cfg.to_json()) == cfg
    assert cfg.resolved_hyperparams()["n_envs"] == 2
    assert cfg.env_kwargs_for("ood2", None) == {"size": 6, "obs_mode": "pixels_proprio",
                                                "colours": "ood2", "image_size": 64}


def test_parse_shifts() -> None:
    assert [s.label for s in parse_shifts("in, ood1,ood2", GRID)] == ["in", "ood1", "ood2"]
    tri = parse_shifts("real,in,noise:1-2", "sparseshift/TriFingerReach-v0")
    assert [s.label for s in tri] == ["real", "in", "noise:1", "noise:2"]
    assert [s.colours for s in tri] == ["in"] * 4 and tri[0].severity == 3.0
    with pytest.raises(ConfigError, match="unknown shift 'ood3'"):
        parse_shifts("in,ood3", GRID)
    with pytest.raises(ConfigError, match=r"needs scene feature.*does not offer"):
        parse_shifts("in,real", GRID)
    with pytest.raises(ConfigError, match="twice"):
        parse_shifts("in,in", GRID)


def test_rollout_seeds_episodes_and_sampling_without_touching_global_rng() -> None:
    from sparseshift.agents.rollout import run_episodes

    envs = [FakeEnv(i, 3) for i in range(2)]

    def sampled(obs: Any) -> np.ndarray:
        return torch.randint(0, 2, (len(obs["pixels"]),)).numpy()

    before = torch.random.get_rng_state()
    a = run_episodes(envs, sampled, [7, 8, 9], torch_seed=1, record=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = run_episodes(envs, sampled, [7, 8, 9], torch_seed=1)
    assert [(e.seed, e.ret, e.length, e.success) for e in a] == \
        [(e.seed, e.ret, e.length, e.success) for e in b] == [(s, 3.0, 3, True) for s in (7, 8, 9)]
    assert len(a[0].frames) == 4 and not a[1].frames  # reset frame + 3 steps, first episode only
