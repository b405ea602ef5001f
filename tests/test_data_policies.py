"""Behaviour policies: smooth random motion and replaying a trained sparseshift agent."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from sparseshift.agents.collect.policies import SmoothRandomPolicy, spaces_match
from sparseshift.envs.data import open_dataset
from sparseshift.envs.infra.errors import ConfigError
from tests.test_data_helpers import GRID, make


def test_box_actions_drift_smoothly() -> None:
    space = gym.spaces.Box(-2.0, 2.0, (3,), np.float32)
    pol = SmoothRandomPolicy(space, np.random.default_rng(0))
    a = np.array([pol.act(None) for _ in range(2000)])
    assert space.contains(a[0]) and a.min() >= -2 and a.max() <= 2
    lag1 = np.mean([np.corrcoef(a[:-1, j], a[1:, j])[0, 1] for j in range(3)])
    assert lag1 > 0.8  # motion, not white noise
    assert a.std(axis=0).min() > 0.3  # and it explores the box


def test_discrete_actions_persist() -> None:
    pol = SmoothRandomPolicy(gym.spaces.Discrete(4), np.random.default_rng(0))
    a = np.array([pol.act(None) for _ in range(4000)])
    assert set(a.tolist()) == {0, 1, 2, 3}
    assert 0.6 < np.mean(a[1:] == a[:-1]) < 0.8  # repeat w.p. 0.6 + 0.4/4


def test_image_spaces_match_both_layouts() -> None:
    hwc = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    chw = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    assert spaces_match(chw, hwc) and spaces_match(hwc, hwc)
    assert not spaces_match(gym.spaces.Box(0, 1, (4,), np.float32), hwc)


def test_agent_policy_replay(tmp_path: Path) -> None:
    """A state-baseline agent drives a video collection (loaded from safetensors + JSON); an
    encoder agent, a changed agent and an SB3 zip are refused with one line."""
    from sparseshift.agents.config import AgentConfig
    from sparseshift.agents.train import train_agent

    hp = {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1}
    agent = train_agent(AgentConfig(GRID, "state", steps=64, hyperparams=hp, eval_every=0,
                                    checkpoint_every=0, tensorboard=False), tmp_path / "agent")
    out = make(tmp_path / "v.h5", "video", n=64, policy=str(agent), obs_mode="state")
    ds = open_dataset(out)
    assert ds.attrs["collector"]["policy"]["type"] == "agent" and len(ds) == 64
    assert ds.actions.dtype == np.int64
    with pytest.raises(ConfigError, match="acts on observations"):
        make(tmp_path / "w.h5", "video", n=64, policy=str(agent), obs_mode="pixels")
    with pytest.raises(ConfigError, match="zip files are not loaded"):
        make(tmp_path / "z.h5", "video", n=64, policy=str(agent / "agent.sb3.zip"))
    rnd = train_agent(AgentConfig(GRID, "random", steps=64, hyperparams=hp, eval_every=0,
                                  checkpoint_every=0, tensorboard=False), tmp_path / "rnd")
    with pytest.raises(ConfigError, match="only agents on the env's own observation"):
        make(tmp_path / "r.h5", "video", n=64, policy=str(rnd), obs_mode="pixels_proprio")


def test_recorded_policy_labels_stay_as_they_were(tmp_path: Path) -> None:
    """A scripted policy's class and an agent's loader are recorded in the dataset's manifest (so
    in its fingerprint) under these labels; collection resolves them with plain imports."""
    import json

    from sparseshift.agents.collect.policies import describe_policy, scripted_class
    from sparseshift.envs.trifinger.scripted import ScriptedPusher

    desc = describe_policy("scripted", "sparseshift/TriFingerPush-v0")
    assert desc == {"type": "scripted",
                    "class": "sparseshift.envs.trifinger.scripted:ScriptedPusher"}
    assert scripted_class(desc["class"]) is ScriptedPusher
    with pytest.raises(ConfigError, match="scripted policy elsewhere:Pusher is not available"):
        scripted_class("elsewhere:Pusher")
    (tmp_path / "agent.json").write_text(json.dumps({"policy": {"digest": "abc"}}))
    agent = describe_policy(str(tmp_path), GRID)
    assert agent["loader"] == "sparseshift.agents.replay:load_agent_policy"
    assert agent["digest"] == "abc" and agent["type"] == "agent"
