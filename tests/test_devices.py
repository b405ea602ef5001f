"""Devices and parallel envs, testable on a CPU-only machine: auto -> cpu, an unavailable device is
one line with exit 2, models and batches land on the chosen device, env workers change nothing
but speed, and wide codes get a fast DCI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseshift.agents.config import AgentConfig
from sparseshift.agents.evaluate import load_model
from sparseshift.agents.train import train_agent
from sparseshift.envs.errors import ConfigError
from sparseshift.experiments.cli import main
from sparseshift.representations import metrics as M
from sparseshift.representations.registry import make_learner
from sparseshift.representations.runtime import autocast, available_devices, resolve_device
from sparseshift.representations.train import _to_tensors
from tests.test_data_helpers import GRID


def test_auto_is_the_cpu_here_and_an_accelerator_when_there_is_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        assert available_devices() == ["cpu"] or "mps" in available_devices()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda:0")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"valid CUDA devices are cuda:0..cuda:1"):
        resolve_device("cuda:2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "mps", "tpu"])
def test_unavailable_devices_are_one_line(spec: str) -> None:
    if spec == "mps" and "mps" in available_devices():
        pytest.skip("MPS is available here")
    with pytest.raises(ConfigError) as err:
        resolve_device(spec)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("argv", [
    ["train-rep", "--data", "x.h5", "--out", "{tmp}/r", "--device", "cuda"],
    ["eval-rep", "{tmp}", "--data", "x.h5", "--out", "{tmp}/m.json", "--device", "cuda"],
    ["train-agent", "--env", GRID, "--encoder", "random", "--steps", "64", "--out", "{tmp}/a",
     "--device", "cuda"],
    ["study", "--preset", "smoke", "--out", "{tmp}/s", "--device", "cuda"],
])
def test_cuda_on_a_cpu_machine_exits_2(argv: list[str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_data_helpers import make

    make(tmp_path / "x.h5", "pairs", n=64)
    args = [a.replace("{tmp}", str(tmp_path)).replace("x.h5", str(tmp_path / "x.h5"))
            for a in argv]
    rc = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert rc == 2 and len(err) == 1 and "--device cuda" in err[0], err


def test_model_and_batch_land_on_the_chosen_device() -> None:
    dev = resolve_device("cpu")
    learner = make_learner("beta_vae").to(dev)
    assert learner.device == dev
    batch = _to_tensors({"x": np.zeros((2, 64, 64, 3), np.uint8)}, dev)
    assert batch["x"].device == dev and batch["x"].dtype == torch.uint8
    with autocast(dev, "bf16"):
        z = learner.encode(batch["x"])
    assert z.shape == (2, 10)
    with pytest.raises(ConfigError, match="fp16 mixed precision needs a CUDA device"):
        autocast(dev, "fp16")


def test_env_workers_give_identical_agents(tmp_path: Path) -> None:
    """The same seed and number of envs give the same policy for 1 and 2 env workers."""
    hp = {"n_envs": 4, "n_steps": 32, "batch_size": 64, "n_epochs": 1}
    weights = []
    for workers in (1, 2):
        cfg = AgentConfig("sparseshift/TriFingerObjectReach-v0", "random", steps=128,
                          hyperparams=hp, eval_every=0, checkpoint_every=0, tensorboard=False,
                          env_workers=workers)
        out = train_agent(cfg, tmp_path / f"w{workers}")
        weights.append(load_model(out, json.loads((out / "agent.json").read_text()))
                       .state_dict())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_dci_is_exact_up_to_64_dims_and_fast_above() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(600, 3))
    narrow = np.concatenate([labels + rng.normal(0, 0.1, labels.shape),
                             rng.normal(size=(600, 7))], axis=1)
    wide = np.concatenate([narrow, rng.normal(size=(600, 120))], axis=1)
    exact = M.dci(narrow[:400], labels[:400], narrow[400:], labels[400:], estimators=10)
    assert exact["dci_method"] == "gbt" and exact["dci_disentanglement"] > 0.8
    fast = M.dci(wide[:400], labels[:400], wide[400:], labels[400:])
    assert fast["dci_method"] == "l1"
    # a linear read-out of an ordinal factor: well above chance (0.2), not perfect
    assert fast["dci_disentanglement"] > 0.8 and fast["dci_informativeness_test"] > 0.5
    imp = np.asarray(fast["dci_importance"])
    assert imp.shape == (130, 3) and list(imp.argmax(axis=0)) == [0, 1, 2]
