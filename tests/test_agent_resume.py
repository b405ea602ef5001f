"""Exact resume of interrupted agent training (kill -9 included) and ``--continue``.

The claims tested here (docs/agents.md, "Resume and continue"):

* an interrupted ``train-agent`` resumes from ``training_state.safetensors`` when the same command
  runs again, and its final policy is bit-identical to an uninterrupted run's (same seed and
  worker count): killed with SIGKILL in a subprocess, and interrupted in-process for the
  ``pixels`` baseline (an image observation SB3 hands the policy as a transposed view), a
  stateful encoder (its per-env state), SAC (its replay buffer) and two env workers;
* ``--continue N`` trains a finished agent N more steps, identical to training from scratch for
  its steps + N, recorded in ``agent.json``'s ``training.segments``; an interrupted continuation
  resumes with the same N and is refused with another;
* a half-written state (killed during the write) is never read; a damaged one, and a resume with
  other arguments, are one-line refusals;
* an env replayed from its record is in exactly the state of the original (TriFinger with the
  ``real`` shift: physics, goal, colours, lights, camera and per-frame noise).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from sparseshift.agents import train as train_module
from sparseshift.agents.config import AgentConfig
from sparseshift.agents.evaluate import load_model
from sparseshift.agents.resume import (
    STATE_FILE,
    ReplayRecorder,
    flatten_tree,
    obs_digest,
    pack,
    read_state,
    unflatten_tree,
    unpack,
)
from sparseshift.agents.train import train_agent
from sparseshift.envs.infra.errors import ConfigError
from tests.test_agents_fakes import StatefulLearner, TinyConfig

torch.set_num_threads(1)

GRID = "sparseshift/ColourGrid-v0"
TINY_PPO = {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 2}


def tiny(encoder: str = "state", **kw: Any) -> AgentConfig:
    base: dict[str, Any] = dict(env_id=GRID, encoder=encoder, steps=512, seed=1,
                                hyperparams=TINY_PPO, eval_every=256, eval_episodes=2,
                                checkpoint_every=128, tensorboard=False)
    base.update(kw)
    return AgentConfig(**base)


def weights(out: Path) -> dict[str, torch.Tensor]:
    agent = json.loads((out / "agent.json").read_text())
    return dict(load_model(out, agent).state_dict())


def assert_identical(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, different


class Interrupted(Exception):
    """Stands for a crash in the middle of training."""


def interrupt_at(monkeypatch: pytest.MonkeyPatch, steps: int) -> None:
    """Make training raise once it has run ``steps`` env steps (until the patch is undone)."""
    original = train_module.HeartbeatCallback._on_step

    def on_step(self: Any) -> bool:
        if self.model.num_timesteps >= steps:
            raise Interrupted
        return bool(original(self))

    monkeypatch.setattr(train_module.HeartbeatCallback, "_on_step", on_step)


def train_interrupted(monkeypatch: pytest.MonkeyPatch, cfg: AgentConfig, out: Path, steps: int,
                      **kw: Any) -> None:
    with monkeypatch.context() as m:
        interrupt_at(m, steps)
        with pytest.raises(Interrupted):
            train_agent(cfg, out, **kw)


def segments(out: Path) -> list[dict[str, Any]]:
    return list(json.loads((out / "agent.json").read_text())["training"]["segments"])


def csv_steps(out: Path) -> list[str]:
    with open(out / "logs" / "progress.csv") as fh:
        return [row.get("time/total_timesteps", "") for row in csv.DictReader(fh)]


# ----------------------------------------------------------------------------- kill -9
CLI = ("import sys; import sparseshift.experiments.cli as c; "
       "c.COMMANDS = tuple(dict.fromkeys((*c.COMMANDS, 'train_agent'))); "
       "sys.exit(c.main(sys.argv[1:]))")


def kill_args(out: Path, *extra: str) -> list[str]:
    return ["train-agent", "--env", GRID, "--encoder", "state", "--steps", "4096",
            "--out", str(out), "--hp", "n_envs=2", "--hp", "n_steps=64", "--hp",
            "batch_size=64", "--hp", "n_epochs=2", "--eval-every", "1024", "--eval-episodes",
            "2", "--checkpoint-every", "512", *extra]


def main_in_process(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    import sparseshift.experiments.cli as c

    monkeypatch.setattr(c, "COMMANDS", tuple(dict.fromkeys((*c.COMMANDS, "train_agent"))))
    return c.main(list(args))


@pytest.fixture
def killed_run(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """``train-agent`` in a subprocess, SIGKILLed mid-training after its first saved state:
    (its folder, the step of the state it left)."""
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", CLI, *kill_args(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / STATE_FILE).exists():
            assert proc.poll() is None, "train-agent ended before it saved a state"
            assert time.monotonic() < deadline, "no training state within 240 s"
            time.sleep(0.05)
        time.sleep(0.4)  # well into the next checkpoint interval
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "DONE.json").exists(), "the run finished before it was killed"
    state = read_state(out / STATE_FILE)
    assert state is not None
    yield out, state.steps


def test_kill_9_mid_training_resumes_bit_identical(
        killed_run: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out, saved = killed_run
    assert 512 <= saved < 4096
    assert main_in_process(monkeypatch, *kill_args(out)) == 0  # the same command again
    assert "resuming at step" in capsys.readouterr().err
    ref = tmp_path / "uninterrupted"
    assert main_in_process(monkeypatch, *kill_args(ref)) == 0
    assert_identical(out, ref)
    assert (out / "evaluations.json").read_text() == (ref / "evaluations.json").read_text()
    done = json.loads((out / "DONE.json").read_text())["result"]
    assert done["steps"] == 4096
    (segment,) = segments(out)
    assert segment["kind"] == "train" and segment["steps"] == 4096
    assert [r["step"] for r in segment["resumed"]] == [saved]
    # the log keeps the rows written before the state was saved, none written after it twice
    assert csv_steps(out) == csv_steps(ref)


# ----------------------------------------------------------------------------- in-process
def test_pixels_baseline_resumes_bit_identical(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # SB3 transposes image observations into a strided view; torch's convolution rounds
    # differently on a contiguous copy, so the saved observation keeps its layout
    cfg = tiny("pixels", hyperparams={"n_envs": 2, "n_steps": 32, "batch_size": 64,
                                      "n_epochs": 1})
    ref = train_agent(cfg, tmp_path / "ref")
    train_interrupted(monkeypatch, cfg, tmp_path / "b", 300)
    assert read_state(tmp_path / "b" / STATE_FILE).steps == 256  # type: ignore[union-attr]
    assert_identical(train_agent(cfg, tmp_path / "b"), ref)


class Stateful64(StatefulLearner):
    """The fakes' stateful learner (a running sum of per-frame codes) on 64x64 frames."""

    def __init__(self) -> None:
        super().__init__(TinyConfig(image_size=64))
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 16, stride=16)
        self.fc = nn.Linear(64, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_stateful_encoder_resumes_bit_identical(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny("tests:stateful64", hyperparams={"n_envs": 2, "n_steps": 32, "batch_size": 64,
                                                "n_epochs": 1})
    ref = train_agent(cfg, tmp_path / "ref", encoder=Stateful64())
    train_interrupted(monkeypatch, cfg, tmp_path / "b", 300, encoder=Stateful64())
    state = read_state(tmp_path / "b" / STATE_FILE)
    assert state is not None and state.meta["encoder_state"] is not None
    assert_identical(train_agent(cfg, tmp_path / "b", encoder=Stateful64()), ref)


def test_continue_equals_training_from_scratch(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny("random", steps=256)
    scratch = train_agent(tiny("random", steps=640), tmp_path / "scratch")
    out = train_agent(cfg, tmp_path / "agent")
    first = weights(out)
    # interrupted while continuing: the folder still holds the finished 256-step agent
    train_interrupted(monkeypatch, cfg, out, 450, continue_steps=300)
    assert all(torch.equal(first[k], v) for k, v in weights(out).items())
    assert segments(out)[-1]["finished"] is None
    assert train_agent(cfg, out) == out  # without --continue: the finished agent, untouched
    with pytest.raises(ConfigError, match=r"continued by 300 steps.*--continue 300"):
        train_agent(cfg, out, continue_steps=100)
    train_agent(cfg, out, continue_steps=300)  # finishes the interrupted continuation
    assert_identical(out, scratch)
    assert (out / "evaluations.json").read_text() == \
        (scratch / "evaluations.json").read_text()
    done = json.loads((out / "DONE.json").read_text())["result"]
    assert done["steps"] == 640 and done["segments"] == 2
    first_seg, cont = segments(out)
    assert (first_seg["kind"], first_seg["from"], first_seg["steps"]) == ("train", 0, 256)
    assert (cont["kind"], cont["from"], cont["added"], cont["target"], cont["steps"]) == \
        ("continue", 256, 300, 556, 640)
    assert [r["step"] for r in cont["resumed"]] == [384]
    assert cont["started"] <= cont["finished"] and "torch" in cont["versions"]
    # each finished --continue adds its steps again
    train_agent(cfg, out, continue_steps=1)
    assert json.loads((out / "DONE.json").read_text())["result"]["steps"] == 768
    assert len(segments(out)) == 3


def test_killed_while_finishing_is_finished_by_the_same_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny(steps=256)
    scratch = train_agent(tiny(steps=384), tmp_path / "scratch")
    out = train_agent(cfg, tmp_path / "agent")
    # killed after DONE.json, before its segment was closed: --continue closes it and goes on
    doc = json.loads((out / "agent.json").read_text())
    doc["training"]["segments"][0]["finished"] = None
    (out / "agent.json").write_text(json.dumps(doc))
    real_write = train_module.write_json_atomic

    def crash_on_done(path: Any, value: Any) -> Any:
        if Path(path).name == "DONE.json":
            raise Interrupted
        return real_write(path, value)

    # killed while the continuation writes its last files (its policy already replaced)
    with monkeypatch.context() as m:
        m.setattr(train_module, "write_json_atomic", crash_on_done)
        with pytest.raises(Interrupted):
            train_agent(cfg, out, continue_steps=128)
    assert json.loads((out / "DONE.json").read_text())["result"]["steps"] == 256
    train_agent(cfg, out, continue_steps=128)  # the same command again finishes it
    assert_identical(out, scratch)
    assert [(g["kind"], g["steps"], g["finished"] is not None) for g in segments(out)] == \
        [("train", 256, True), ("continue", 384, True)]


def test_continue_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny(steps=256)
    with pytest.raises(ConfigError, match="holds none: train it first"):
        train_agent(cfg, tmp_path / "empty", continue_steps=10)
    train_interrupted(monkeypatch, cfg, tmp_path / "half", 200)
    with pytest.raises(ConfigError, match="unfinished training run: run the same command "
                                          "without --continue"):
        train_agent(cfg, tmp_path / "half", continue_steps=10)
    with pytest.raises(ConfigError, match="--continue must be"):
        train_agent(cfg, tmp_path / "half", continue_steps=0)
    out = train_agent(cfg, tmp_path / "done")
    (out / STATE_FILE).unlink()
    with pytest.raises(ConfigError, match="no saved training state"):
        train_agent(cfg, out, continue_steps=10)
    with pytest.raises(ConfigError, match=r"different config.*seed"):
        train_agent(tiny(steps=256, seed=2), out, continue_steps=10)


def test_half_written_state_is_ignored_damaged_or_other_config_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparseshift.envs.infra.io import create_temp, output_lock

    cfg = tiny()
    ref = train_agent(cfg, tmp_path / "ref")
    out = tmp_path / "b"
    train_interrupted(monkeypatch, cfg, out, 300)
    good = (out / STATE_FILE).read_bytes()
    # killed while writing the next state: its temporary file is never read, and removed
    with output_lock(out):
        half = create_temp(out / STATE_FILE, ".tmp")
        half.write_bytes(good[: len(good) // 2])
    with pytest.raises(ConfigError, match=r"different config \(differs in: seed\)"):
        train_agent(tiny(seed=2), out)
    damaged = bytearray(good)
    damaged[-5] ^= 0xFF
    (out / STATE_FILE).write_bytes(bytes(damaged))
    with pytest.raises(ConfigError) as info:
        train_agent(cfg, out)
    message = str(info.value)
    assert "\n" not in message and "damaged" in message and f"delete {out / STATE_FILE}" in message
    (out / STATE_FILE).write_bytes(good)
    assert_identical(train_agent(cfg, out), ref)
    assert not half.exists()
    assert [r["step"] for r in segments(out)[0]["resumed"]] == [256]


def test_cli_continue_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train-agent", "--env", GRID, "--encoder", "state", "--steps", "128", "--out",
            str(tmp_path / "a"), "--hp", "n_envs=2", "--hp", "n_steps=64", "--hp",
            "batch_size=64", "--eval-every", "0", "--checkpoint-every", "0", "--no-tensorboard"]
    for bad, needle in (("0", "--continue must be"), ("x", "--continue must be"),
                        ("10", "holds none: train it first")):
        assert main_in_process(monkeypatch, *args, "--continue", bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert main_in_process(monkeypatch, *args) == 0
    capsys.readouterr()
    assert main_in_process(monkeypatch, *args, "--continue", "100") == 0
    assert "256 steps (100 more asked)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main_in_process(monkeypatch, "train-agent", "--help")
    assert "--continue STEPS" in capsys.readouterr().out


# ----------------------------------------------------------------------------- env replay
def test_pack_round_trips_generator_states() -> None:
    gen = np.random.default_rng(7)
    gen.random(3)
    state = gen.bit_generator.state
    packed = pack(state)
    assert json.loads(json.dumps(packed)) == packed
    assert unpack(packed, "x") == state
    arr = np.arange(6, dtype=np.uint32).reshape(2, 3)
    back = unpack(pack({"a": arr, "f": float("nan"), "t": (1, 2**70)}), "x")
    assert np.array_equal(back["a"], arr) and back["a"].dtype == np.uint32
    assert np.isnan(back["f"]) and back["t"] == [1, 2**70]
    with pytest.raises(ConfigError, match="malformed"):
        unpack({"__int__": "12; import os"}, "x")


def test_state_trees_keep_values_structure_and_memory_layout() -> None:
    t = torch.arange(24.0).reshape(2, 3, 4).permute(0, 2, 1)  # a view, as encoders may keep
    tensors: dict[str, torch.Tensor] = {}
    spec = flatten_tree((t, None, {"a": [t.contiguous()]}), "enc", tensors)
    back = unflatten_tree(json.loads(json.dumps(spec)), tensors, "x")
    assert isinstance(back, tuple) and back[1] is None and isinstance(back[2]["a"], list)
    assert torch.equal(back[0], t) and back[0].stride() == t.stride()
    assert torch.equal(back[2]["a"][0], t) and back[2]["a"][0].is_contiguous()
    with pytest.raises(ConfigError, match="malformed"):
        unflatten_tree({"tensor": "enc.0", "axes": [0, 0, 1]}, tensors, "x")


def test_replayed_trifinger_env_with_real_shift_is_in_the_same_state() -> None:
    from stable_baselines3.common.monitor import Monitor

    from sparseshift.envs.registry import make

    def env() -> ReplayRecorder:
        return ReplayRecorder(Monitor(make("sparseshift/TriFingerReach-v0",
                                           obs_mode="pixels_proprio", image_size=32,
                                           shift="real:3")))

    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (12, 9)).astype(np.float32)
    a = env()
    a.reset(seed=5)
    for act in actions[:3]:
        a.step(act)
    a.reset()  # a new episode from the env's own generator (as auto-reset does)
    for act in actions[3:7]:
        a.step(act)
    record = a.sparseshift_replay_state()
    acts = record.pop("actions")
    assert record["seed"] is None and record["rng"] is not None and acts.shape == (4, 9)
    b = env()
    replayed = b.sparseshift_replay(json.loads(json.dumps(record)), acts)
    assert replayed == {"digest": record["obs_digest"]}
    for act in actions[7:]:  # and they go on identically
        oa, ra, *_ = a.step(act)
        ob, rb, *_ = b.step(act)
        assert obs_digest(oa) == obs_digest(ob) and ra == rb
    # a record the env cannot replay is an error value (it may come back from a worker)
    bad = b.sparseshift_replay({**record, "seed": -1}, acts)
    assert "out of range" in bad["error"]
    a.close()
    b.close()


# ----------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_two_env_workers_resume_bit_identical(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny(env_workers=2, hyperparams={"n_envs": 4, "n_steps": 32, "batch_size": 64,
                                           "n_epochs": 1})
    ref = train_agent(cfg, tmp_path / "ref")
    train_interrupted(monkeypatch, cfg, tmp_path / "b", 300)
    assert_identical(train_agent(cfg, tmp_path / "b"), ref)


@pytest.mark.slow
def test_sac_resume_with_a_full_replay_buffer_is_bit_identical(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = AgentConfig("sparseshift/TriFingerReach-v0", "state", algo="sac", steps=1600, seed=0,
                      hyperparams={"learning_starts": 100, "buffer_size": 1000,
                                   "batch_size": 32},
                      eval_every=800, eval_episodes=2, checkpoint_every=400, tensorboard=False)
    ref = train_agent(cfg, tmp_path / "ref")
    train_interrupted(monkeypatch, cfg, tmp_path / "b", 1300)
    state = read_state(tmp_path / "b" / STATE_FILE)
    assert state is not None and state.steps == 1200
    assert state.meta["replay_buffer"]["full"]
    assert_identical(train_agent(cfg, tmp_path / "b"), ref)
