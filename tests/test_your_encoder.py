"""Your own encoder, first class (issue 20): a plain torch module through Python and the CLI, the
worked example of docs/your_encoder.md, files that name code refused on every load path, the
standardised view every frozen encoder gets, and the sensors baseline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from gymnasium import spaces
from safetensors.torch import save_file
from torch import nn

from sparseshift.agents.config import AgentConfig
from sparseshift.agents.evaluate import evaluate
from sparseshift.agents.extractors import FrozenEncoderExtractor
from sparseshift.agents.standardize import LatentStats, stats_of
from sparseshift.agents.train import train_agent
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import main
from sparseshift.representations.external import (
    EncoderSpec,
    ModuleEncoder,
    as_encoder,
    open_encoder,
)
from sparseshift.representations.plugins import Plugins

ROOT = Path(__file__).resolve().parents[1]
ENV = "sparseshift/TriFingerObjectReach-v0"
GRID = "sparseshift/ColourGrid-v0"
SHIFTS = "in,ood1,ood2,real"
TINY_HP = {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 1}


def small_cnn(latent: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 16 * 16, latent))


def tiny(encoder: str, env: str = ENV, **kw: Any) -> AgentConfig:
    return AgentConfig(env_id=env, encoder=encoder, steps=128, eval_every=0, checkpoint_every=0,
                       tensorboard=False, hyperparams=TINY_HP, **kw)


# -- the contract -------------------------------------------------------------------------------


def test_module_encoder_converts_frames_to_the_declared_input() -> None:
    seen: list[torch.Tensor] = []

    class Probe(nn.Module):
        encoder_spec = EncoderSpec(image_size=8, layout="float_hwc", value_range="signed")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x)
            return x.reshape(len(x), -1)[:, :5]

    enc = as_encoder(Probe())
    assert isinstance(enc, ModuleEncoder) and enc.latent_shape == (5,)  # measured
    frames = torch.zeros(2, 8, 8, 3, dtype=torch.uint8)
    frames[0, 0, 0] = torch.tensor([255, 0, 51])
    z = enc.encode(frames)
    x = seen[-1]
    assert x.shape == (2, 8, 8, 3) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0, 0], torch.tensor([1.0, -1.0, 51 / 255 * 2 - 1]))
    assert torch.allclose(z[0, :3], torch.tensor([1.0, -1.0, 51 / 255 * 2 - 1]))
    # the same image as float CHW in [0, 1] gives the same latents
    assert torch.allclose(enc.encode(frames.permute(0, 3, 1, 2).float() / 255), z)
    with pytest.raises(ConfigError, match="trained on 8x8"):
        enc.encode(torch.zeros(1, 16, 16, 3, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="does not train"):
        enc.loss({"x": frames})


def test_imagenet_range_and_declared_latent_size_checked() -> None:
    class Mean(nn.Module):
        encoder_spec: ClassVar[dict[str, Any]] = {"value_range": "imagenet", "latent_dim": 3,
                                                  "image_size": 8}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    enc = as_encoder(Mean())
    white = torch.full((1, 8, 8, 3), 255, dtype=torch.uint8)
    want = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(enc.encode(white)[0], want, atol=1e-5)

    class Wrong(nn.Module):
        encoder_spec: ClassVar[dict[str, Any]] = {"latent_dim": 4, "image_size": 8}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    with pytest.raises(ConfigError, match="size 3, its spec declares 4"):
        as_encoder(Wrong()).encode(white)


# -- Python and the CLI, all shifts --------------------------------------------------------------


def test_python_agent_on_a_plain_torch_encoder_all_shifts(tmp_path: Path) -> None:
    module = small_cnn()
    out = train_agent(tiny("mine"), tmp_path / "a", encoder=module)
    agent = json.loads((out / "agent.json").read_text())
    assert agent["encoder"]["kind"] == "module"
    res = evaluate(out, SHIFTS, episodes=2, encoder=module)
    assert list(res["shifts"]) == SHIFTS.split(",")
    assert set(res["paired"]) == {"ood1", "ood2", "real"}
    with pytest.raises(ConfigError, match="passed from Python"):
        evaluate(out, "in", episodes=2)
    changed = small_cnn()
    with torch.no_grad():
        changed[3].bias.add_(1.0)
    with pytest.raises(ConfigError, match="changed since the agent was trained"):
        evaluate(out, "in", episodes=2, encoder=changed)


MODULE = '''
import torch
from torch import nn


def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(2048, 8))
'''


def test_cli_agent_on_module_factory_with_weights_all_shifts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cli_enc_mod.py").write_text(MODULE)
    save_file(small_cnn().state_dict(), str(tmp_path / "w.safetensors"))
    base = ["train-agent", "--env", ENV, "--encoder", "cli_enc_mod:factory",
            "--encoder-weights", "w.safetensors", "--steps", "128", "--eval-every", "0",
            "--checkpoint-every", "0", "--no-tensorboard", "--hp", "n_envs=2", "--hp",
            "n_steps=64", "--hp", "n_epochs=1", "--out", "agent"]
    assert main(base) == 0
    agent = json.loads((tmp_path / "agent" / "agent.json").read_text())
    assert agent["encoder"]["kind"] == "factory"
    assert agent["encoder"]["factory"] == "cli_enc_mod:factory"
    assert agent["encoder"]["path"] == "../w.safetensors"  # relative to the agent folder
    capsys.readouterr()
    # the agent folder names the factory: evaluating it needs the user's --plugin
    assert main(["evaluate", "agent", "--shifts", SHIFTS, "--episodes", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--plugin cli_enc_mod" in err[0]
    assert main(["evaluate", "agent", "--shifts", SHIFTS, "--episodes", "2", "--quiet",
                 "--plugin", "cli_enc_mod"]) == 0
    table = capsys.readouterr().out
    for shift in SHIFTS.split(","):
        assert re.search(rf"^{shift}\s", table, re.M)
    # changed weights: refused by fingerprint
    torch.manual_seed(1)
    other = small_cnn()
    with torch.no_grad():
        other[3].bias.add_(1.0)
    save_file(other.state_dict(), str(tmp_path / "w.safetensors"))
    assert main(["evaluate", "agent", "--shifts", "in", "--episodes", "3", "--quiet",
                 "--plugin", "cli_enc_mod"]) == 2
    assert "changed since the agent was trained" in capsys.readouterr().err


def test_docs_worked_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "your_encoder.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "docs/your_encoder.md", "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out
    assert all(re.search(rf"^{s}\s", printed, re.M) for s in SHIFTS.split(","))
    assert (tmp_path / "runs" / "agent_small_cnn" / "eval.json").is_file()


# -- files never name code -----------------------------------------------------------------------

EVIL = '''
from pathlib import Path
Path("EVIL_RAN").write_text("x")


def factory():
    raise SystemExit("evil factory ran")


class X:
    pass
'''


def _hostile_folders(tmp_path: Path) -> dict[str, Path]:
    """A run folder, an exported encoder folder and an agent folder, each naming evil_mod."""
    (tmp_path / "evil_mod.py").write_text(EVIL)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "format": "sparseshift-representation", "format_version": 2,
        "learner": "evil_mod:X", "model": {}}))
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "encoder.json").write_text(json.dumps({
        "format": "sparseshift-encoder", "format_version": 1,
        "spec": EncoderSpec(factory="evil_mod:factory").to_json(),
        "weights": "weights.safetensors", "weights_digest": "0" * 64}))
    return {"run": run, "exported": exported}


def test_a_file_that_names_a_module_is_refused_on_every_load_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    folders = _hostile_folders(tmp_path)
    # a real agent whose recorded factory is then pointed at the evil module
    (tmp_path / "ok_mod.py").write_text(MODULE)
    assert main(["train-agent", "--env", ENV, "--encoder", "ok_mod:factory", "--steps", "128",
                 "--eval-every", "0", "--checkpoint-every", "0", "--no-tensorboard", "--hp",
                 "n_envs=2", "--hp", "n_steps=64", "--hp", "n_epochs=1", "--out", "agent"]) == 0
    path = tmp_path / "agent" / "agent.json"
    agent = json.loads(path.read_text())
    agent["encoder"]["factory"] = "evil_mod:factory"
    path.write_text(json.dumps(agent))
    capsys.readouterr()
    commands = [
        ["train-agent", "--env", ENV, "--encoder", "run", "--steps", "128", "--out", "a1"],
        ["train-agent", "--env", ENV, "--encoder", "exported", "--steps", "128", "--out", "a2"],
        ["evaluate", "agent", "--shifts", "in", "--episodes", "2", "--quiet"],
        ["eval-rep", "run", "--data", "missing.h5", "--out", "m.json"],
        ["eval-rep", "exported", "--data", "missing.h5", "--out", "m.json"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "evil_mod" in err[0] and "--plugin evil_mod" in err[0], \
            (argv, err)
    for path_like in folders.values():
        with pytest.raises(ConfigError, match="--plugin evil_mod"):
            open_encoder(path_like)
    space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    with pytest.raises(ConfigError, match="--plugin evil_mod"):
        FrozenEncoderExtractor(space, str(folders["run"]))
    assert not (tmp_path / "EVIL_RAN").exists()
    # allowed by the user: now (and only now) the module is imported
    with pytest.raises(ConfigError):
        open_encoder(folders["run"], Plugins.of("evil_mod"))
    assert (tmp_path / "EVIL_RAN").exists()


# -- the standardised view and the baselines ------------------------------------------------------


def test_stats_standardise_each_dimension_and_pool_slots() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal([3.0, -1.0, 0.0], [1e-3, 10.0, 0.0], size=(500, 3))
    s = stats_of(z, seed=0)
    assert np.allclose(s.mean, z.mean(0), atol=1e-6)
    assert np.allclose(s.std[:2], z.std(0)[:2], rtol=1e-5) and s.std[2] == 1.0  # constant dim
    out = s.apply(z.astype(np.float32))
    assert np.allclose(out[:, :2].mean(0), 0, atol=1e-4) and np.allclose(out[:, :2].std(0), 1,
                                                                         atol=1e-3)
    slots = rng.normal(0, 2, size=(100, 4, 5))
    ss = stats_of(slots, seed=0)
    assert ss.mean.shape == (5,) and np.allclose(ss.std, slots.reshape(-1, 5).std(0), rtol=1e-5)
    back = LatentStats.from_json(json.loads(json.dumps(s.to_json())), 3)
    assert np.array_equal(back.mean, s.mean) and np.array_equal(back.std, s.std)
    with pytest.raises(ConfigError, match="latent of size 4"):
        LatentStats.from_json(s.to_json(), 4)


def test_random_encoder_reaches_the_policy_standardised(tmp_path: Path) -> None:
    """The untrained encoder's latents barely move (std ~1e-3); standardised, the policy sees
    unit-scale features like any other encoder's."""
    from sparseshift.agents.encoders import load_encoder
    from sparseshift.agents.encoding import FrozenEncoder
    from sparseshift.agents.envs import make_env

    cfg = tiny("random", seed=3)
    out = train_agent(cfg, tmp_path / "r")
    agent = json.loads((out / "agent.json").read_text())
    rec = agent["observation"]["standardize"]
    assert rec["frames"] == 64 * 16 and rec["seed"] == 3
    assert agent["encoder"]["init_seed"] == 3
    stats = LatentStats.from_json(rec, len(rec["mean"]))
    assert float(np.median(stats.std)) < 0.05  # raw latents barely move
    enc = load_encoder("random", 64, 3)
    assert enc.learner is not None
    env = make_env(cfg)
    fe = FrozenEncoder(enc.learner, env.observation_space, stats)
    rng = np.random.default_rng(5)
    obs = [env.reset(seed=int(s))[0] for s in rng.integers(0, 2**31, 64)]
    env.close()
    feats, _ = fe.features(fe.stack(obs))
    lat = feats[:, : fe.latent_size]
    assert 0.3 < float(np.median(lat.std(0))) < 3.0  # unit scale, fresh frames
    assert abs(float(np.median(lat.mean(0)))) < 1.0


def test_sensors_baseline_sees_no_image(tmp_path: Path) -> None:
    out = train_agent(tiny("sensors"), tmp_path / "s")
    agent = json.loads((out / "agent.json").read_text())
    assert agent["env"]["kwargs"]["obs_mode"] == "proprio"
    assert "pixels" not in agent["observation"]["space"]
    res = evaluate(out, "in,real", episodes=3)
    # without an image, the rendering shift cannot change anything: identical episodes
    assert res["shifts"]["in"]["returns"] == res["shifts"]["real"]["returns"]
    grid = train_agent(tiny("sensors", env=GRID), tmp_path / "g")
    assert json.loads((grid / "agent.json").read_text())["env"]["kwargs"]["obs_mode"] == \
        "proprio"


def test_encoder_weights_flag_rules() -> None:
    with pytest.raises(ConfigError, match="does not apply to the random baseline"):
        tiny("random", encoder_weights="w.safetensors")


def test_eval_rep_on_your_encoder_cli_and_python(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from sparseshift.representations.config import EvalConfig
    from sparseshift.representations.evaluate import evaluate as evaluate_rep

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rep_enc_mod.py").write_text(MODULE)
    assert main(["collect", "--env", GRID, "--kind", "pairs", "--n", "200", "--out",
                 "g.h5"]) == 0
    assert main(["eval-rep", "rep_enc_mod:factory", "--data", "g.h5", "--out", "m.json",
                 "--num-train", "150", "--num-test", "100", "--quiet"]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["learner"] == "external" and report["protocol"]["latent_dims"] == 8
    assert "proxy_mlp_in" in report["summary"]
    assert set(report["skipped"]) >= {"reconstruction", "traversal"}
    # the same encoder from Python gives the same codes-only metrics
    cfg = EvalConfig(num_train=150, num_test=100)
    direct = evaluate_rep(small_cnn(), tmp_path / "g.h5", cfg)
    assert direct["summary"]["mig"] == pytest.approx(report["summary"]["mig"])


def test_pixels_agent_evaluates(tmp_path: Path) -> None:
    """SB3 stores the end-to-end agent's image space channel-first; the spaces check of evaluate
    accepts it (a pixels agent evaluated in the scorecard exposed this)."""
    out = train_agent(tiny("pixels"), tmp_path / "p")
    res = evaluate(out, "in,real", episodes=2)
    assert set(res["shifts"]) == {"in", "real"}
