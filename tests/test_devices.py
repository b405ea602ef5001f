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
from sparseshift.envs.infra.errors import ConfigError
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
    ["collect", "--env", GRID, "--kind", "video", "--n", "64", "--out", "{tmp}/c.h5",
     "--device", "cuda"],
    ["bench", "train", "--learner", "beta_vae", "--data", "x.h5", "--device", "cuda"],
])
def test_cuda_on_a_cpu_machine_exits_2(argv: list[str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_data_helpers import make

    make(tmp_path / "x.h5", "pairs", n=64)
    args = [a.replace("{tmp}", str(tmp_path)).replace("x.h5", str(tmp_path / "x.h5"))
            for a in argv]
    rc = main(args)
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if "error:" in line]
    assert rc == 2 and len(err) == 1 and "--device cuda" in err[0], err
    assert not (tmp_path / "c.h5").exists() and "bench train:" not in captured.out  # no work


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


def test_collect_device_runs_the_policy_there_and_is_not_part_of_the_data(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``collect --device`` moves a saved agent's policy (also in helper processes) and leaves
    the manifest and fingerprint alone: cpu with 2 workers = the default with 1."""
    from sparseshift.agents.collect.collect import existing_config
    from sparseshift.agents.collect.policies import _AgentPolicy, policy_device, policy_factory
    from sparseshift.agents.collect.resolve import resolve
    from sparseshift.envs.data.config import CollectConfig, make_env

    hp = {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1}
    agent = train_agent(AgentConfig(GRID, "state", steps=64, hyperparams=hp, eval_every=0,
                                    checkpoint_every=0, tensorboard=False), tmp_path / "agent")
    assert policy_device("cpu") == "cpu"
    run = resolve(CollectConfig(GRID, "video", n=64, policy=str(agent), obs_mode="state",
                                part_rows=64))
    assert "device" not in run.to_json() and run.device == "cpu"
    env = make_env(run)
    try:
        policy = policy_factory(run.policy, env, "cpu")(np.random.default_rng(0))
        assert isinstance(policy, _AgentPolicy) and policy.model.device == torch.device("cpu")
    finally:
        env.close()
    common = ["collect", "--env", GRID, "--kind", "video", "--n", "128", "--part-rows", "64",
              "--policy", str(agent), "--obs-mode", "state", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "a.h5")]) == 0
    assert main([*common, "--out", str(tmp_path / "b.h5"), "--device", "cpu",
                 "--workers", "2"]) == 0
    capsys.readouterr()
    (ma, fa), (mb, fb) = existing_config(tmp_path / "a.h5"), existing_config(tmp_path / "b.h5")
    assert ma == mb and fa == fb and "device" not in ma


def test_bench_train_on_an_accelerator_also_measures_the_cpu(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """``bench train --device D`` (D not the CPU) interleaves the loop on the CPU, the model and
    the loop on D and prints the D/CPU ratio; cpu:0 stands in for a GPU here."""
    import sparseshift.representations.runtime as runtime
    from tests.test_data_helpers import make

    real = runtime.resolve_device
    monkeypatch.setattr(runtime, "resolve_device", lambda spec="auto": torch.device("cpu", 0)
                        if spec == "fake" else real(spec))
    data = make(tmp_path / "p.h5", "pairs", n=64)
    rc = main(["bench", "train", "--learner", "beta_vae", "--data", str(data), "--batch", "2",
               "--steps", "1", "--repeats", "1", "--device", "fake"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "device cpu:0 and cpu, interleaved" in out
    for row in ("model only on cpu:0", "training loop on cpu:0", "training loop on cpu "):
        assert row in out, out
    assert "x training loop on cpu" in out  # the device/CPU ratio row
    assert "dev/cpu" in out and "beta_vae" in out.split("summary")[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_check_stops_at_once_without_cuda(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from sparseshift.experiments.bench import gpu_check

    def never(step: gpu_check.Step, log: Path) -> gpu_check.StepResult:
        raise AssertionError("no step may run without CUDA")

    assert gpu_check.main(["--out", str(tmp_path / "g")], runner=never) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0] and not (tmp_path / "g").exists()


def test_gpu_check_runs_doctor_bench_and_study_and_writes_timings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The check's plumbing with a fake CUDA device and fake steps: the three commands in order,
    timings.txt with the bench summary and the study's stage times, exit 1 if a step failed."""
    from sparseshift.experiments.bench import gpu_check

    monkeypatch.setattr(gpu_check, "cuda_device", lambda spec: "cuda:0")
    monkeypatch.setattr(gpu_check, "machine", lambda device: [f"device {device}: fake"])
    canned = {
        "doctor": "sparseshift doctor\n",
        "bench-train": "bench train: beta_vae ...\n\nsummary (images/s, medians; device cuda:0):"
                       "\nlearner loop cpu\nbeta_vae 400.0 4000.0 10.00x\n",
        "study-quick": "[1/2] started   collect   x\n[1/2] done      collect   x   3s | "
                       "elapsed 3s, left ?\n[2/2] FAILED    train-rep y 1s | elapsed 4s, left ?\n",
    }
    ran: list[tuple[str, ...]] = []

    def fake(step: gpu_check.Step, log: Path) -> gpu_check.StepResult:
        ran.append(step.argv)
        log.write_text(canned[step.name])
        return gpu_check.StepResult(step, 1 if step.name == "study-quick" else 0, 2.5,
                                    canned[step.name])

    out = tmp_path / "g"
    assert gpu_check.main(["--out", str(out)], runner=fake) == 1
    assert ran == [("doctor", "--device", "cuda:0"), ("bench", "train", "--device", "cuda:0"),
                   ("study", "--preset", "quick", "--device", "cuda:0", "--out",
                    str(out / "study"))]
    text = (out / "timings.txt").read_text()
    assert "device cuda:0: fake" in text and "beta_vae 400.0 4000.0 10.00x" in text
    assert "[1/2] done      collect   x   3s" in text and "FAILED    train-rep" in text
    assert "elapsed" not in text and "started" not in text and "total" in text
    assert "failed: study-quick" in capsys.readouterr().out
