"""Trust at the edges: hostile agent files run no code, NaN is never kept as good, studies move,
fingerprints reproduce, pools die with their parent, corruption is caught, and every bad input is
one line with exit status 2 (a table of probes, so they stay fixed)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from sparseshift.agents.config import AgentConfig
from sparseshift.agents.train import train_agent
from sparseshift.envs.data import open_dataset
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import main
from sparseshift.representations.base import Batch, Capability, Learner, LearnerConfig
from sparseshift.representations.checkpoint import (
    CHECKPOINT_FILE,
    encoder_fingerprint,
    read_tensors,
)
from sparseshift.representations.config import TrainConfig
from sparseshift.representations.train import TrainingError, train
from tests.test_data_helpers import GRID, make

TINY_HP = {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparseshift.experiments", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pairs dataset, a trained encoder, an agent on it and a state agent."""
    root = tmp_path_factory.mktemp("trust")
    data = make(root / "pairs.h5", "pairs", n=256)
    rep = root / "rep"
    train(TrainConfig(learner="ada_gvae", steps=6, batch=8, progress=False, tensorboard=False),
          data, rep)
    agent = train_agent(AgentConfig(GRID, str(rep), steps=64, hyperparams=TINY_HP, eval_every=0,
                                    checkpoint_every=0, tensorboard=False), root / "agent")
    state = train_agent(AgentConfig(GRID, "state", steps=64, hyperparams=TINY_HP, eval_every=0,
                                    checkpoint_every=0, tensorboard=False), root / "state")
    return {"root": root, "data": data, "rep": rep, "agent": agent, "state": state}


# ---------------------------------------------------------------- 1. no code from agent files


class _Plant:
    """Unpickling this writes a marker file (what a hostile agent.zip would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def hostile_zip(src: Path, dst: Path, marker: Path) -> Path:
    """``src`` (an SB3 zip) with a pickle in its ``data`` JSON's ``ep_info_buffer``."""
    with zipfile.ZipFile(src) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    data = json.loads(entries["data"])
    payload = base64.b64encode(pickle.dumps(_Plant(str(marker)))).decode()
    data["ep_info_buffer"] = {":type:": "<class 'collections.deque'>", ":serialized:": payload}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for name, blob in entries.items():
            z.writestr(name, blob)
    return dst


def test_hostile_agent_zip_runs_no_code_on_any_loading_path(world: dict[str, Path],
                                                            tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    # The control: Stable-Baselines3's own load does run the planted code.
    zip_path = hostile_zip(world["state"] / "agent.sb3.zip", tmp_path / "evil.zip", marker)
    subprocess.run([sys.executable, "-c", "import sys; from stable_baselines3 import PPO; "
                    "PPO.load(sys.argv[1], device='cpu')", str(zip_path)], capture_output=True,
                   timeout=300, cwd=Path(__file__).parent)
    assert marker.exists(), "the hostile zip must really run code under SB3's load"
    marker.unlink()

    # A shared agent folder whose SB3 export was replaced: evaluate loads only safetensors+JSON.
    shared = tmp_path / "shared"
    shutil.copytree(world["state"], shared)
    shutil.copy(zip_path, shared / "agent.sb3.zip")
    shutil.copy(zip_path, shared / "agent.zip")
    assert cli("evaluate", str(shared), "--episodes", "2").returncode == 0
    # An old-format agent folder (format 1 kept agent.zip): refused, not loaded.
    old = tmp_path / "old"
    shutil.copytree(shared, old)
    meta = json.loads((old / "agent.json").read_text())
    (old / "agent.json").write_text(json.dumps({**meta, "format_version": 1}))
    proc = cli("evaluate", str(old), "--episodes", "2")
    assert proc.returncode == 2 and "never unpickled" in proc.stderr
    # collect --policy with the zip: refused; with the folder: the safetensors policy.
    for policy in (zip_path, shared / "agent.sb3.zip"):
        proc = cli("collect", "--env", GRID, "--kind", "video", "--n", "16", "--obs-mode",
                   "state", "--policy", str(policy), "--out", str(tmp_path / "v.h5"))
        assert proc.returncode == 2 and "zip files are not loaded" in proc.stderr
    proc = cli("collect", "--env", GRID, "--kind", "video", "--n", "16", "--obs-mode", "state",
               "--policy", str(shared), "--out", str(tmp_path / "w.h5"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()


# ---------------------------------------------------------------- 2. NaN never kept as good


class ExplodingConfig(LearnerConfig):
    pass


class Exploding(Learner):
    """A learner whose loss stays finite while one weight becomes NaN at step 3 (through the
    ``module:Class`` extension point)."""

    name = "exploding"
    config_cls = ExplodingConfig
    capabilities = frozenset({Capability.VECTOR_CODE})

    def __init__(self, config: LearnerConfig) -> None:
        super().__init__(config)
        self.w = torch.nn.Parameter(torch.ones(2))
        self.dead = torch.nn.Parameter(torch.ones(2))
        self.calls = 0

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (2,)

    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.calls == 3:
            with torch.no_grad():
                self.dead.fill_(float("nan"))
        return {"loss": (self.w ** 2).sum()}

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.w.expand(len(frames), 2)


def test_nan_loss_names_the_real_last_checkpoint_or_none(world: dict[str, Path],
                                                         tmp_path: Path) -> None:
    proc = cli("train-rep", "--learner", "ada_gvae", "--data", str(world["data"]), "--steps",
               "80", "--lr", "20", "--lr-schedule", "1000:1000000:1", "--ckpt-every", "10",
               "--out", str(tmp_path / "r"), "--quiet", "--no-tensorboard")
    assert proc.returncode == 1
    assert "No checkpoint was written" in proc.stderr or "last good checkpoint (step" in \
        proc.stderr
    if (tmp_path / "r" / CHECKPOINT_FILE).exists():
        tensors = read_tensors(tmp_path / "r" / CHECKPOINT_FILE)
        assert all(bool(torch.isfinite(t).all()) for t in tensors.values()
                   if t.is_floating_point())


def test_non_finite_weights_stop_before_a_checkpoint(world: dict[str, Path],
                                                     tmp_path: Path) -> None:
    cfg = TrainConfig(learner=f"{__name__}:Exploding", steps=6, batch=4, ckpt_every=2,
                      progress=False, tensorboard=False)
    with pytest.raises(TrainingError, match=r"non-finite by step 4.*last good checkpoint "
                                            r"\(step 2\)"):
        train(cfg, world["data"], tmp_path / "x")
    kept = read_tensors(tmp_path / "x" / CHECKPOINT_FILE)
    assert bool(torch.isfinite(kept["model.dead"]).all())


# ---------------------------------------------------------------- 3/4. moves and fingerprints


def test_identical_runs_have_identical_fingerprints(world: dict[str, Path],
                                                    tmp_path: Path) -> None:
    again = tmp_path / "rep"
    train(TrainConfig(learner="ada_gvae", steps=6, batch=8, progress=False, tensorboard=False),
          world["data"], again)
    assert encoder_fingerprint(again) == encoder_fingerprint(world["rep"])
    # An agent trained on the first run accepts the identical second one in its place...
    moved = tmp_path / "pair"
    shutil.copytree(world["agent"], moved / "agent")
    shutil.copytree(again, moved / "rep")
    assert cli("evaluate", str(moved / "agent"), "--episodes", "2").returncode == 0
    # ...and refuses changed weights.
    train(TrainConfig(learner="ada_gvae", steps=6, batch=8, seed=3, progress=False,
                      tensorboard=False), world["data"], tmp_path / "other")
    shutil.rmtree(moved / "rep")
    shutil.copytree(tmp_path / "other", moved / "rep")
    proc = cli("evaluate", str(moved / "agent"), "--episodes", "2")
    assert proc.returncode == 2 and "changed since the agent was trained" in proc.stderr


STUDY = f"""
name = "tiny"
[metrics]
num_train = 64
num_test = 32
dci_estimators = 2
[[envs]]
env_id = "{GRID}"
baselines = ["state"]
[envs.data]
kind = "pairs"
n = 128
[[envs.learners]]
label = "gvae"
[envs.learners.train]
learner = "ada_gvae"
steps = 3
batch = 8
[envs.agent]
steps = 64
eval_every = 0
[envs.agent.hyperparams]
n_envs = 2
n_steps = 32
batch_size = 32
n_epochs = 1
[envs.evaluation]
episodes = 2
shifts = ["in"]
"""


def test_a_study_runs_from_any_folder_and_survives_a_move(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(STUDY)
    out = tmp_path / "S2"
    proc = cli("study", "--config", str(cfg), "--out", str(out), "--jobs", "1", cwd=Path("/"))
    assert proc.returncode == 0, proc.stderr
    rows = (out / "tiny" / "results.jsonl").read_text()
    assert str(tmp_path) not in json.dumps(
        [json.loads(p.read_text()) for p in (out / "tiny" / "artifacts").glob("*/*/DONE.json")])
    moved = tmp_path / "elsewhere"
    shutil.move(out, moved)
    proc = cli("study", "--config", str(cfg), "--out", str(moved), "--jobs", "1")
    assert proc.returncode == 0 and "running" not in proc.stderr, proc.stderr
    assert (moved / "tiny" / "results.jsonl").read_text() == rows


# ---------------------------------------------------------------- 5. orphans


def test_killing_a_parallel_study_leaves_no_workers(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(STUDY.replace("steps = 64", "steps = 4096"))
    proc = subprocess.Popen([sys.executable, "-m", "sparseshift.experiments", "study",
                             "--config", str(cfg), "--out", str(tmp_path / "o"), "--jobs", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def workers() -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    deadline = time.time() + 120
    kids: list[int] = []
    while time.time() < deadline and len(kids) < 2:
        time.sleep(0.5)
        kids = [k for k in workers()
                if b"multiprocessing.spawn" in Path(f"/proc/{k}/cmdline").read_bytes()]
    assert len(kids) >= 2, "the pool did not start"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{k}").exists() for k in kids):
        time.sleep(0.2)
    alive = [k for k in kids if Path(f"/proc/{k}").exists()
             and b"Z" not in Path(f"/proc/{k}/stat").read_bytes().split(b")")[1][:3]]
    assert not alive, f"orphaned workers {alive}"


# ---------------------------------------------------------------- 6. corruption


def test_flipped_checkpoint_bytes_are_refused(world: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "rep"
    shutil.copytree(world["rep"], bad)
    blob = bytearray((bad / CHECKPOINT_FILE).read_bytes())
    blob[-5000] ^= 0xFF
    (bad / CHECKPOINT_FILE).write_bytes(bytes(blob))
    proc = cli("eval-rep", str(bad), "--data", str(world["data"]), "--out",
               str(tmp_path / "m.json"), "--num-train", "64", "--num-test", "32")
    assert proc.returncode == 2 and "is damaged" in proc.stderr
    proc = cli("train-rep", "--learner", "ada_gvae", "--data", str(world["data"]), "--steps",
               "8", "--batch", "8", "--out", str(bad), "--quiet", "--no-tensorboard")
    assert proc.returncode == 2 and "is damaged" in proc.stderr


def test_edited_dataset_attributes_fail_verification(world: dict[str, Path],
                                                     tmp_path: Path) -> None:
    for key, value in (("env_id", "sparseshift/TriFingerPush-v0"),
                       ("factor_spec", "[]"), ("colours", "all")):
        path = tmp_path / f"{key}.h5"
        shutil.copy(world["data"], path)
        with h5py.File(path, "r+") as f:
            f.attrs[key] = value
        proc = cli("inspect", str(path), "--verify")
        assert proc.returncode == 2 and "do not match the fingerprint" in proc.stderr, key


def test_format_1_datasets_still_load(world: dict[str, Path], tmp_path: Path) -> None:
    """A file written before attributes were fingerprinted (format 1) still loads and verifies."""
    from sparseshift.envs.data.layout import fingerprint

    path = tmp_path / "v1.h5"
    shutil.copy(world["data"], path)
    ds = open_dataset(path)
    sums, shapes, kind = dict(ds._sums), dict(ds.shapes), ds.kind
    ds.close()
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        f.attrs["fingerprint"] = fingerprint(kind, sums, shapes, version=1)
    assert len(open_dataset(path, verify=True)) == 256


# ---------------------------------------------------------------- 7. one line, exit 2


def _no_model(world: dict[str, Path], tmp: Path) -> Path:
    rep = tmp / "rep_nomodel"
    shutil.copytree(world["rep"], rep)
    run = json.loads((rep / "run.json").read_text())
    run.pop("model")
    (rep / "run.json").write_text(json.dumps(run))
    return rep


def _agent_variant(world: dict[str, Path], tmp: Path, how: str) -> Path:
    agent = tmp / f"agent_{how}"
    shutil.copytree(world["state"], agent)
    policy = agent / "policy.safetensors"
    if how == "truncated":
        policy.write_bytes(policy.read_bytes()[:1000])
    elif how == "flipped":
        blob = bytearray(policy.read_bytes())
        blob[-100] ^= 0xFF
        policy.write_bytes(bytes(blob))
    elif how in ("no_config", "edited"):
        meta = json.loads((agent / "agent.json").read_text())
        if how == "no_config":
            meta.pop("config")
        else:
            meta["policy"]["observation_space"]["shape"] = [3]
        (agent / "agent.json").write_text(json.dumps(meta))
    return agent


def _corrupt_done(world: dict[str, Path], tmp: Path) -> Path:
    agent = tmp / "agent_done"
    shutil.copytree(world["state"], agent)
    (agent / "DONE.json").write_text("{broken")
    return agent


GRID_AGENT = ("train-agent", "--env", GRID, "--encoder", "state", "--steps", "64")
PROBES: list[tuple[str, Any, str]] = [
    ("run.json without model (eval-rep)",
     lambda w, t: ("eval-rep", str(_no_model(w, t)), "--data", str(w["data"]), "--out",
                   str(t / "m.json")), "lacks the learner name or its model config"),
    ("run.json without model (train-agent)",
     lambda w, t: ("train-agent", "--env", GRID, "--encoder", str(_no_model(w, t)), "--steps",
                   "64", "--out", str(t / "a")), "lacks the learner name"),
    ("--hp n_envs=abc", lambda w, t: (*GRID_AGENT, "--out", str(t / "a"), "--hp", "n_envs=abc"),
     "expects an integer"),
    ("--hp n_envs=0", lambda w, t: (*GRID_AGENT, "--out", str(t / "a"), "--hp", "n_envs=0"),
     "n_envs must be a positive integer"),
    ("--hp learning_rate=-1",
     lambda w, t: (*GRID_AGENT, "--out", str(t / "a"), "--hp", "learning_rate=-1"),
     "learning_rate must be a number in (0, 1]"),
    ("--hp batch_size=0", lambda w, t: (*GRID_AGENT, "--out", str(t / "a"), "--hp",
                                        "batch_size=0"), "batch_size must be a positive"),
    ("--env-kwarg foo=1", lambda w, t: (*GRID_AGENT, "--out", str(t / "a"), "--env-kwarg",
                                        "foo=1"), "unknown env kwarg(s) ['foo']"),
    ("train-rep --out FILE", lambda w, t: ("train-rep", "--data", str(w["data"]), "--out",
                                           str(w["data"])), "is a file; give a folder"),
    ("train-agent --out FILE", lambda w, t: (*GRID_AGENT, "--out", str(w["data"])),
     "is a file; give a folder"),
    ("study --out FILE", lambda w, t: ("study", "--out", str(w["data"])),
     "a file is in the way"),
    ("eval-rep --out DIR", lambda w, t: ("eval-rep", str(w["rep"]), "--data", str(w["data"]),
                                         "--out", str(t), "--num-train", "64", "--num-test",
                                         "32"), "is a folder; give a file path"),
    ("eval-rep --export-codes DIR",
     lambda w, t: ("eval-rep", str(w["rep"]), "--data", str(w["data"]), "--out",
                   str(t / "m.json"), "--export-codes", str(t), "--num-train", "64",
                   "--num-test", "32"), "is a folder; give a file path"),
    ("render --out DIR", lambda w, t: ("render", GRID, "--out", str(t)), "is a folder"),
    ("inspect --sheet DIR", lambda w, t: ("inspect", str(w["data"]), "--sheet", str(t)),
     "is a folder"),
    ("train-rep --batch 1e8", lambda w, t: ("train-rep", "--data", str(w["data"]), "--out",
                                            str(t / "r"), "--batch", "1e8"),
     "batch must be a positive integer <= 65536"),
    ("train-rep --image-size 100000",
     lambda w, t: ("train-rep", "--data", str(w["data"]), "--out", str(t / "r"),
                   "--image-size", "100000"), "asks for image size 100000"),
    ("train-agent --image-size 100000",
     lambda w, t: (*GRID_AGENT, "--out", str(t / "a"), "--image-size", "100000"),
     "image_size must be an integer in [8, 512]"),
    ("render --scale 100000", lambda w, t: ("render", GRID, "--out", str(t / "x.png"),
                                            "--scale", "100000"), "--scale must be"),
    ("render --seed -1", lambda w, t: ("render", GRID, "--out", str(t / "x.png"), "--seed",
                                       "-1"), "--seed must be an integer in"),
    ("inspect --pairs 1e8", lambda w, t: ("inspect", str(w["data"]), "--sheet",
                                          str(t / "s.png"), "--pairs", "100000000"),
     "--pairs must be"),
    ("collect --seed 10**24", lambda w, t: ("collect", "--env", GRID, "--kind", "pairs", "--n",
                                            "8", "--out", str(t / "c.h5"), "--seed",
                                            str(10**24)), "seed must be an integer in"),
    ("collect --n 1e11", lambda w, t: ("collect", "--env", GRID, "--kind", "pairs", "--n",
                                       "1e11", "--out", str(t / "c.h5")),
     "n must be a positive integer <= 1000000000"),
    ("truncated policy", lambda w, t: ("evaluate", str(_agent_variant(w, t, "truncated"))),
     "not a readable safetensors file"),
    ("flipped policy bytes", lambda w, t: ("evaluate", str(_agent_variant(w, t, "flipped"))),
     "is damaged"),
    ("agent.json without config",
     lambda w, t: ("evaluate", str(_agent_variant(w, t, "no_config"))), "has no agent config"),
    ("agent.json edited", lambda w, t: ("evaluate", str(_agent_variant(w, t, "edited"))),
     "does not fit the policy"),
    ("corrupt agent DONE.json",
     lambda w, t: (*GRID_AGENT, "--hp", "n_envs=2", "--hp", "n_steps=32", "--hp",
                   "batch_size=32", "--hp", "n_epochs=1", "--eval-every", "0",
                   "--checkpoint-every", "0", "--no-tensorboard", "--out",
                   str(_corrupt_done(w, t))), "DONE.json"),
    ("train-rep into an agent folder", lambda w, t: ("train-rep", "--data", str(w["data"]),
                                                     "--out", str(w["state"])),
     "holds an agent (agent.json)"),
    ("train-agent into a run folder", lambda w, t: (*GRID_AGENT, "--out", str(w["rep"])),
     "holds a representation run (run.json)"),
    ("collect --out DIR", lambda w, t: ("collect", "--env", GRID, "--kind", "pairs", "--n", "8",
                                        "--out", str(t)), "is a folder"),
    ("--hp ent_coef=auto for ppo", lambda w, t: (*GRID_AGENT, "--out", str(t / "a"), "--hp",
                                                 "ent_coef=auto"), "is for sac"),
    ("SB3 zip as --policy", lambda w, t: ("collect", "--env", GRID, "--kind", "video", "--n",
                                          "8", "--policy", str(w["state"] / "agent.sb3.zip"),
                                          "--out", str(t / "v.h5")), "zip files are not loaded"),
]


@pytest.mark.parametrize(("name", "argv", "needle"), PROBES, ids=[p[0] for p in PROBES])
def test_bad_input_is_one_line_and_exit_2(world: dict[str, Path], tmp_path: Path, name: str,
                                          argv: Any, needle: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(list(argv(world, tmp_path)))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], (name, err)


def test_corrupt_study_marker_is_one_line(tmp_path: Path) -> None:
    from sparseshift.experiments.study.artifacts import DONE, Artifact

    art = Artifact(tmp_path, "collect", "abc")
    art.path.mkdir(parents=True)
    (art.path / DONE).write_text("{broken")
    with pytest.raises(ConfigError, match="not a readable stage marker"):
        art.result()


# ---------------------------------------------------------------- 8. smaller ones


def test_stale_temp_files_are_cleaned_and_a_second_writer_refused(world: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    from sparseshift.envs.infra.io import LOCK_FILE, Journal, temp_name

    out = tmp_path / "run"
    out.mkdir()
    # a killed writer's temp file, recorded in its journal: removed by the next run; a user's
    # file of a similar name is not ours and stays
    stale = temp_name(out / "checkpoint.safetensors")
    Journal(out).record_temp(stale)
    stale.write_bytes(b"half")
    users = out / ".checkpoint.safetensors.x1y2.tmp"
    users.write_bytes(b"mine")
    cfg = TrainConfig(learner="ada_gvae", steps=2, batch=8, progress=False, tensorboard=False)
    train(cfg, world["data"], out)
    assert not stale.exists()
    assert users.read_bytes() == b"mine"
    fd = os.open(out / LOCK_FILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(ConfigError, match="another sparseshift process is writing"):
            train(cfg.replace(steps=4), world["data"], out)
    finally:
        os.close(fd)


def test_evaluating_an_agent_off_its_training_colours_says_so(world: dict[str, Path],
                                                              tmp_path: Path) -> None:
    from sparseshift.agents.evaluate import evaluate, format_table

    agent = train_agent(AgentConfig(GRID, "state", steps=64, colours="ood2", hyperparams=TINY_HP,
                                    eval_every=0, checkpoint_every=0, tensorboard=False),
                        tmp_path / "ood2")
    result = evaluate(agent, "in", episodes=2)
    assert result["train_colours"] == "ood2"
    assert "trained on the ood2 colours" in format_table(result)
    assert np.isfinite(result["shifts"]["in"]["return"]["mean"])
