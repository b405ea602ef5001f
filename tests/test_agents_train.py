"""Agents end to end: tiny PPO runs on ColourGrid, evaluation per shift, reruns, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sparseshift.agents.config import AgentConfig
from sparseshift.agents.evaluate import evaluate, format_table, load_model
from sparseshift.agents.train import train_agent
from sparseshift.envs.infra.errors import ConfigError

torch.set_num_threads(1)

GRID = "sparseshift/ColourGrid-v0"
TINY_PPO = {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 2}


def tiny(encoder: str, **kw: Any) -> AgentConfig:
    base: dict[str, Any] = dict(env_id=GRID, encoder=encoder, steps=256, seed=1,
                                hyperparams=TINY_PPO, eval_every=128, eval_episodes=4,
                                checkpoint_every=128)
    base.update(kw)
    return AgentConfig(**base)


def make_encoder_dir(path: Path, image_size: int = 64) -> Path:
    """An (untrained) beta-VAE saved as a representation run directory."""
    from sparseshift.representations.checkpoint import (
        FORMAT,
        FORMAT_VERSION,
        RUN_FILE,
        save_checkpoint,
    )
    from sparseshift.representations.checkpoint import write_json as write_run
    from sparseshift.representations.registry import make_learner

    torch.manual_seed(0)
    learner = make_learner("beta_vae", {"image_size": image_size, "latent_dim": 6})
    write_run(path / RUN_FILE, {"format": FORMAT, "format_version": FORMAT_VERSION,
                                "learner": "beta_vae", "model": learner.config.to_json()})
    save_checkpoint(path, learner, torch.optim.Adam(learner.parameters()), step=0)
    return path


def policy_params(out: Path) -> dict[str, torch.Tensor]:
    agent = json.loads((out / "agent.json").read_text())
    return {k: v.clone() for k, v in load_model(out, agent).state_dict().items()}


def test_state_agent_trains_evaluates_and_skips_rerun(tmp_path: Path) -> None:
    cfg = tiny("state")
    out = train_agent(cfg, tmp_path / "a")
    for name in ("agent.json", "policy.safetensors", "agent.sb3.zip", "DONE.json",
                 "evaluations.json", "logs/progress.csv", "checkpoints/policy_128.safetensors"):
        assert (out / name).exists(), name
    assert list((out / "logs").glob("events.out.tfevents.*"))
    agent = json.loads((out / "agent.json").read_text())
    assert agent["env"]["id"] == GRID and agent["env"]["kwargs"]["obs_mode"] == "state"
    assert agent["encoder"]["kind"] == "state" and agent["algo"] == "ppo"
    assert agent["hyperparams"]["n_envs"] == 2 and agent["seed"] == 1
    assert {"torch", "stable-baselines3", "gymnasium"} <= set(agent["versions"])
    history = json.loads((out / "evaluations.json").read_text())
    assert [h["step"] for h in history] == [128, 256]
    assert history[-1]["return"]["n"] == 4

    result = evaluate(out, "in,ood1,ood2", episodes=6, seed=0)
    assert set(result["shifts"]) == {"in", "ood1", "ood2"}
    for r in result["shifts"].values():
        for key in ("return", "success"):
            ci = r[key]
            assert ci["ci_low"] <= ci["mean"] <= ci["ci_high"] and ci["n"] == 6
    assert json.loads((out / "eval.json").read_text()) == result
    assert min(result["episode_seeds"]) >= 2**31  # disjoint from training seeds
    assert "ood2" in format_table(result)
    assert evaluate(out, "in,ood1,ood2", episodes=6, seed=0) == result

    stamp = (out / "policy.safetensors").stat().st_mtime_ns
    assert train_agent(cfg, out) == out
    assert (out / "policy.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match=r"different config.*steps"):
        train_agent(tiny("state", steps=512), out)


def test_random_encoder_training_is_deterministic(tmp_path: Path) -> None:
    cfg = tiny("random", eval_every=0, checkpoint_every=0, tensorboard=False)
    a = train_agent(cfg, tmp_path / "a")
    b = train_agent(cfg, tmp_path / "b")
    agent = json.loads((a / "agent.json").read_text())
    assert agent["encoder"]["kind"] == "random" and agent["encoder"]["learner"] == "beta_vae"
    assert agent["observation"]["latent_shape"] == [10]
    pa, pb = policy_params(a), policy_params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=0, atol=0)
    other = train_agent(tiny("random", eval_every=0, checkpoint_every=0, tensorboard=False,
                             seed=2), tmp_path / "c")
    assert json.loads((other / "agent.json").read_text())["encoder"]["fingerprint"] != \
        agent["encoder"]["fingerprint"]


def test_checkpoint_encoder_and_changed_weights(tmp_path: Path) -> None:
    enc = make_encoder_dir(tmp_path / "enc")
    out = train_agent(tiny(str(enc), eval_every=0, checkpoint_every=0), tmp_path / "a")
    agent = json.loads((out / "agent.json").read_text())
    assert agent["encoder"]["path"] == "../enc"  # relative: the two folders can move together
    assert agent["encoder"]["config"]["latent_dim"] == 6
    assert agent["observation"]["latent_shape"] == [6] and agent["observation"]["proprio_dim"] == 7
    result = evaluate(out, "in,ood2", episodes=4, seed=3, video=1)
    assert Path(result["shifts"]["in"]["videos"][0]).stat().st_size > 0
    from sparseshift.representations.checkpoint import save_checkpoint
    from sparseshift.representations.registry import make_learner

    torch.manual_seed(5)  # other weights in the same run directory
    other = make_learner("beta_vae", {"image_size": 64, "latent_dim": 6})
    save_checkpoint(enc, other, torch.optim.Adam(other.parameters()), step=1)
    with pytest.raises(ConfigError, match="changed since the agent was trained"):
        evaluate(out, "in", episodes=2, seed=4)


def test_encoder_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a representation run folder"):
        train_agent(tiny(str(tmp_path / "missing")), tmp_path / "a")
    enc = make_encoder_dir(tmp_path / "enc32", image_size=32)
    with pytest.raises(ConfigError, match="trained on 32x32 images"):
        train_agent(tiny(str(enc)), tmp_path / "b")
    with pytest.raises(ConfigError, match="not an agent directory"):
        evaluate(tmp_path / "nothing")


# ----------------------------------------------------------------------------- CLI
CLI = ("import sys; import sparseshift.experiments.cli as c; "
       "c.COMMANDS = tuple(dict.fromkeys((*c.COMMANDS, 'train_agent', 'evaluate'))); "
       "sys.exit(c.main(sys.argv[1:]))")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          timeout=300)


def main_in_process(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    import sparseshift.experiments.cli as c

    monkeypatch.setattr(c, "COMMANDS", tuple(dict.fromkeys((*c.COMMANDS, "train_agent",
                                                            "evaluate"))))
    return c.main(list(args))


def train_args(out: Path, *extra: str) -> list[str]:
    return ["train-agent", "--env", GRID, "--steps", "128", "--out", str(out),
            "--hp", "n_envs=2", "--hp", "n_steps=64", "--hp", "batch_size=64",
            "--eval-every", "0", "--checkpoint-every", "0", *extra]


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    enc32 = make_encoder_dir(tmp_path / "enc32", image_size=32)
    cases = [
        (train_args(tmp_path / "o", "--encoder", str(tmp_path / "nope")),
         "neither a representation run folder"),
        (train_args(tmp_path / "o", "--encoder", str(enc32)), "trained on 32x32"),
        (train_args(tmp_path / "o", "--encoder", "state", "--algo", "dqn"), "unknown algo"),
        (train_args(tmp_path / "o", "--encoder", "state", "--algo", "sac"), "continuous"),
        ([*train_args(tmp_path / "o", "--encoder", "state"), "--steps", "0"],
         "steps must be a positive integer"),
        (train_args(tmp_path / "o", "--encoder", "state", "--hp", "bogus"), "KEY=VALUE"),
        (["evaluate", str(tmp_path / "nothing")], "not an agent directory"),
    ]
    for args, needle in cases:
        assert main_in_process(monkeypatch, *args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (args, err)
    # a real agent, then bad shifts
    assert main_in_process(monkeypatch, *train_args(tmp_path / "ag", "--encoder", "state")) == 0
    assert "trained ppo" in capsys.readouterr().out
    for shifts, needle in (("in,ood9", "unknown shift 'ood9'"), ("in,real", "does not offer")):
        rc = main_in_process(monkeypatch, "evaluate", str(tmp_path / "ag"), "--shifts", shifts)
        assert rc == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0]
    rc = main_in_process(monkeypatch, "evaluate", str(tmp_path / "ag"), "--episodes", "4")
    assert rc == 0
    out = capsys.readouterr().out
    assert "ood1" in out and "95% CI" in out


def test_cli_subprocess_error_has_no_traceback(tmp_path: Path) -> None:
    proc = cli("train-agent", "--env", GRID, "--encoder", "state", "--algo", "sac", "--steps",
               "10", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("sparseshift train-agent: error:")


# ----------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_sac_trifinger_random_encoder_and_real_shift(tmp_path: Path) -> None:
    cfg = AgentConfig("sparseshift/TriFingerReach-v0", "random", algo="sac", steps=300, seed=0,
                      hyperparams={"learning_starts": 100, "buffer_size": 1000},
                      eval_every=0, checkpoint_every=0)
    out = train_agent(cfg, tmp_path / "sac")
    result = evaluate(out, "in,ood2,real", episodes=2, seed=0)
    assert set(result["shifts"]) == {"in", "ood2", "real"}


@pytest.mark.slow
def test_pixels_baseline_ppo(tmp_path: Path) -> None:
    out = train_agent(tiny("pixels", eval_every=256), tmp_path / "pix")
    result = evaluate(out, "in,ood1", episodes=4, seed=0)
    assert np.isfinite(result["shifts"]["ood1"]["return"]["mean"])
