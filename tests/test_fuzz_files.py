"""Every JSON/TOML file the platform reads goes through one gate (issue 21, items 1 and 3).

Two parts:

* ``PROBES``: a table of hostile or broken files, one per known way to break a reader (the
  issue's examples in this area and more), each labelled with its class (``memory``: a memory or
  time bomb; ``traceback``: a crash instead of one line; ``minor``: accepted although it should
  not be). Each must give one line on stderr and exit status 2 from the CLI (or a
  :class:`ConfigError` from the Python API, or, for a damaged cache, a normal run), within a
  memory budget (:data:`BUDGET`, measured by tracemalloc, with the address space capped so a
  bomb fails fast instead of filling the machine) and a time bound.
* Hypothesis fuzzing of each reader and each command that takes such a file: generated
  malformed inputs (random JSON values at each field, deep nesting, huge integers, non-UTF-8
  bytes, truncations, NaN) under the same rules. The default run is short; ``-m slow`` runs
  many more examples.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sparseshift.agents.config import AgentConfig
from sparseshift.agents.train import train_agent
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import main
from sparseshift.representations.checkpoint import CHECKPOINT_FILE
from sparseshift.representations.config import TrainConfig
from sparseshift.representations.train import train
from tests.test_data_helpers import GRID, make

TINY_HP = {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1}
#: Most any reader may allocate (tracemalloc peak) on a hostile file.
BUDGET = 200 << 20
#: Address space allowed above what the process uses, so a bomb fails fast.
AS_MARGIN = 4 << 30
#: Seconds a probe may take.
SECONDS = 60.0
EVAL_ARGS = ("--shifts", "in", "--episodes", "2", "--quiet")
STATE_ARGS = ("--env", GRID, "--encoder", "state", "--steps", "64", "--hp", "n_envs=2", "--hp",
              "n_steps=32", "--hp", "batch_size=32", "--hp", "n_epochs=1", "--eval-every", "0",
              "--checkpoint-every", "0", "--no-tensorboard")
ENC_MODULE = "fuzzfiles_enc_mod"
ENC_SOURCE = '''
import torch
from torch import nn


def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(2048, 8))
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pairs dataset, a trained run, a state agent and an agent on the run (each with a
    cached evaluation), an exported encoder and a finished study stage."""
    from sparseshift.experiments.study.artifacts import Artifact
    from sparseshift.representations.external import export_encoder, open_encoder
    from sparseshift.representations.plugins import Plugins

    root = tmp_path_factory.mktemp("fuzzfiles")
    data = make(root / "pairs.h5", "pairs", n=256)
    rep = root / "rep"
    train(TrainConfig(learner="ada_gvae", steps=6, batch=8, progress=False, tensorboard=False),
          data, rep)
    state = train_agent(AgentConfig(GRID, "state", steps=64, hyperparams=TINY_HP, eval_every=0,
                                    checkpoint_every=0, tensorboard=False), root / "state")
    agent = train_agent(AgentConfig(GRID, str(rep), steps=64, hyperparams=TINY_HP, eval_every=0,
                                    checkpoint_every=0, tensorboard=False), root / "agent")
    for a in (state, agent):
        assert main(["evaluate", str(a), *EVAL_ARGS]) == 0
    (root / f"{ENC_MODULE}.py").write_text(ENC_SOURCE)
    sys.path.insert(0, str(root))
    enc = export_encoder(open_encoder(f"{ENC_MODULE}:factory", Plugins(), image_size=64),
                         root / "enc")
    art = Artifact(root / "study", "collect", "0123456789ab")
    art.prepare({})
    (art.path / "data.h5").write_bytes(b"")
    art.finish({"files": {"data": "data.h5"}, "n": 8, "artifact": "collect/0123456789ab"})
    yield {"root": root, "data": data, "rep": rep, "state": state, "agent": agent, "enc": enc,
           "study": root / "study"}
    sys.path.remove(str(root))


# ---------------------------------------------------------------- helpers


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def bounded(budget: int = BUDGET, seconds: float = SECONDS) -> Iterator[None]:
    """Run the block with the address space capped (a bomb fails fast) and check its
    tracemalloc peak and time afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm = _vm_size()
    if vm:
        cap = vm + AS_MARGIN
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY
                                                else min(cap, hard), hard))
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    took = time.perf_counter() - t0
    assert peak < budget, f"allocated {peak >> 20} MiB (budget {budget >> 20} MiB)"
    assert took < seconds, f"took {took:.0f} s"


def clone(world: dict[str, Path], name: str, tmp: Path) -> Path:
    out = tmp / name
    if not out.exists():
        shutil.copytree(world[name], out, symlinks=True)
    return out


def edit(path: Path, fn: Callable[[Any], Any]) -> None:
    data = json.loads(path.read_text())
    new = fn(data)
    path.write_text(json.dumps(data if new is None else new))


def deep(n: int, inner: str = "1") -> str:
    return "[" * n + inner + "]" * n


HUGE = "9" * 5000


def sparse_file(path: Path, size: int = 210 << 20) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def remeta(run: Path, **changes: str | None) -> None:
    """Rewrite the checkpoint of ``run`` with its metadata changed (tensors as they were)."""
    path = run / CHECKPOINT_FILE
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
    tensors = load_file(str(path))
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    save_file(tensors, str(path), metadata=meta)


def set_in(keys: tuple[Any, ...], value: Any) -> Callable[[Any], None]:
    def fn(data: Any) -> None:
        for k in keys[:-1]:
            data = data[k]
        data[keys[-1]] = value
    return fn


# ---------------------------------------------------------------- probes

# A probe builds its files under ``tmp`` and returns what to run: ("cli", argv) for one line and
# exit 2, ("cli-ok", argv) for a normal run (a damaged cache is recomputed), or ("api", fn) for
# a ConfigError.
Probe = tuple[str, str, Callable[[dict[str, Path], Path], tuple[str, Any]]]


def _agent_json(name: str, fn: Callable[[Any], Any], *args: str, raw: bytes | None = None,
                cmd: str = "evaluate") -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        a = clone(w, name, t)
        if raw is not None:
            (a / "agent.json").write_bytes(raw)
        else:
            edit(a / "agent.json", fn)
        if cmd == "evaluate":
            return "cli", ("evaluate", str(a), *EVAL_ARGS, *args)
        return "cli", ("train-agent", *STATE_ARGS, "--out", str(a))
    return build


def _policy(*keys: Any, value: Any) -> Callable[[Any], None]:
    return set_in(("policy", *keys), value)


def _eval_cache(fn: Callable[[Any], Any] | None = None, raw: bytes | None = None
                ) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        a = clone(w, "state", t)
        if raw is not None:
            (a / "eval.json").write_bytes(raw)
        else:
            assert fn is not None
            edit(a / "eval.json", fn)
        return "cli-ok", ("evaluate", str(a), *EVAL_ARGS)
    return build


def _with_params(value: dict[str, Any]) -> Callable[[Any], Any]:
    return lambda old: {"params": old["params"], **value}


def _run_json(text: str | bytes, cmd: str = "eval-rep"
              ) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        r = clone(w, "rep", t)
        (r / "run.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        return "cli", _rep_cmd(cmd, w, r, t)
    return build


def _rep_cmd(cmd: str, w: dict[str, Path], r: Path, t: Path) -> tuple[str, ...]:
    if cmd == "eval-rep":
        return ("eval-rep", str(r), "--data", str(w["data"]), "--out", str(t / "m.json"),
                "--num-train", "64", "--num-test", "32")
    if cmd == "export-rep":
        return ("export-rep", str(r), "--out", str(t / "export"))
    return ("train-agent", "--env", GRID, "--encoder", str(r), "--steps", "64", "--out",
            str(t / "a"))


def _run_edit(fn: Callable[[Any], Any], cmd: str = "eval-rep"
              ) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        r = clone(w, "rep", t)
        edit(r / "run.json", fn)
        return "cli", _rep_cmd(cmd, w, r, t)
    return build


def _edited_checkpoint(edit_fn: Callable[..., None], cmd: str, changes: dict[str, str | None]
                       ) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    """A probe: a cloned run whose checkpoint metadata ``edit_fn`` changed, read by ``cmd``."""
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        r = clone(w, "rep", t)
        edit_fn(r, **changes)
        if cmd == "api":
            from sparseshift.representations.checkpoint import read_checkpoint
            return "api", lambda: read_checkpoint(r)
        return "cli", _rep_cmd(cmd, w, r, t)
    return build


def _ckpt(cmd: str = "export-rep", **changes: str | None
          ) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    return _edited_checkpoint(remeta, cmd, changes)


def _config(suffix: str, text: str | bytes, cmd: str = "train-agent"
            ) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        f = t / f"config{suffix}"
        f.write_bytes(text if isinstance(text, bytes) else text.encode())
        if cmd == "train-agent":
            return "cli", ("train-agent", "--config", str(f), "--out", str(t / "a"))
        if cmd == "train-rep":
            return "cli", ("train-rep", "--config", str(f), "--data", str(w["data"]), "--out",
                           str(t / "r"))
        return "cli", ("study", "--config", str(f), "--out", str(t / "s"))
    return build


def _enc_json(text: str | bytes) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        e = clone(w, "enc", t)
        (e / "encoder.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        return "cli", ("train-agent", "--env", GRID, "--encoder", str(e), "--steps", "64",
                       "--plugin", ENC_MODULE, "--out", str(t / "a"))
    return build


def _stage(result: Any = None, raw: bytes | None = None
           ) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    """A finished study stage whose DONE.json holds ``result``; the probe reads it and resolves
    its files as the next stage would."""
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        from sparseshift.experiments.study.artifacts import DONE, Artifact
        from sparseshift.experiments.study.graph import resolve_inputs

        root = clone(w, "study", t)
        art = Artifact(root, "collect", "0123456789ab")
        if raw is not None:
            (art.path / DONE).write_bytes(raw)
        else:
            edit(art.path / DONE, set_in(("result",), result))
        return "api", lambda: resolve_inputs(root, {"collect:": art.result()})
    return build


def _format_stamp(raw: bytes) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        from sparseshift.experiments.study.runner import FORMAT_FILE, check_artifact_format

        (t / "arts").mkdir()
        (t / "arts" / FORMAT_FILE).write_bytes(raw)
        return "api", lambda: check_artifact_format(t / "arts")
    return build


def _api(fn: Callable[[], Any]) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    return lambda w, t: ("api", fn)


def _policy_file(how: str) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    """agent.json's policy.file pointing outside the agent folder (to an identical copy)."""
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        a = clone(w, "state", t)
        outside = t / "outside.safetensors"
        shutil.copy(a / "policy.safetensors", outside)
        if how == "absolute":
            target = str(outside)
        elif how == "dotdot":
            target = "../outside.safetensors"
        else:
            (a / "link.safetensors").symlink_to(outside)
            target = "link.safetensors"
        edit(a / "agent.json", _policy("file", value=target))
        return "cli", ("evaluate", str(a), *EVAL_ARGS)
    return build


def _obs_high(data: Any) -> None:
    space = data["policy"]["observation_space"]
    space["high"] = 12345.0 if space.get("type") == "Box" else space.get("high")
    if space.get("type") != "Box":  # a Dict space: the first Box in it
        for sub in space["spaces"].values():
            if sub.get("type") == "Box":
                sub["high"] = 12345.0
                break


def _enc_weights_link(w: dict[str, Path], t: Path) -> tuple[str, Any]:
    e = clone(w, "enc", t)
    outside = t / "outside.safetensors"
    shutil.move(str(e / "weights.safetensors"), outside)
    (e / "weights.safetensors").symlink_to(outside)
    return "cli", ("train-agent", "--env", GRID, "--encoder", str(e), "--steps", "64",
                   "--plugin", ENC_MODULE, "--out", str(t / "a"))


def _forged_optim_name(w: dict[str, Path], t: Path) -> tuple[str, Any]:
    """A checkpoint (digest intact) with a tensor named ``optim.x.y``."""
    from sparseshift.representations.checkpoint import read_checkpoint, write_tensors

    r = clone(w, "rep", t)
    path = r / CHECKPOINT_FILE
    with safe_open(str(path), framework="pt") as fh:
        meta = {k: v for k, v in (fh.metadata() or {}).items()
                if k not in ("digest", "metadata_digest")}
    tensors = load_file(str(path))
    tensors["optim.x.y"] = next(iter(tensors.values())).clone()
    write_tensors(path, tensors, meta)
    return "api", lambda: read_checkpoint(r)


def forge(run: Path, **changes: str | None) -> None:
    """Rewrite the checkpoint of ``run`` with its metadata changed and its digests recomputed
    (what a deliberate edit could do): the reader must still give one line, not a traceback."""
    from sparseshift.representations.checkpoint import write_tensors

    path = run / CHECKPOINT_FILE
    with safe_open(str(path), framework="pt") as fh:
        meta = {k: v for k, v in (fh.metadata() or {}).items()
                if k not in ("digest", "metadata_digest")}
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    write_tensors(path, load_file(str(path)), meta)


def _forged(cmd: str = "export-rep", **changes: str | None
            ) -> Callable[[dict[str, Path], Path], tuple[str, Any]]:
    return _edited_checkpoint(forge, cmd, changes)


def _net_arch_hp(w: dict[str, Path], t: Path) -> tuple[str, Any]:
    return "cli", ("train-agent", *STATE_ARGS, "--hp", "net_arch=65536,65536,65536", "--out",
                   str(t / "a"))


def _big_agent_json(w: dict[str, Path], t: Path) -> tuple[str, Any]:
    a = clone(w, "state", t)
    sparse_file(a / "agent.json")
    return "cli", ("evaluate", str(a), *EVAL_ARGS)


def _big_run_json(w: dict[str, Path], t: Path) -> tuple[str, Any]:
    r = clone(w, "rep", t)
    sparse_file(r / "run.json")
    return "cli", _rep_cmd("export-rep", w, r, t)


def _big_config(w: dict[str, Path], t: Path) -> tuple[str, Any]:
    return "cli", ("train-agent", "--config", str(sparse_file(t / "c.json")), "--out",
                   str(t / "a"))


def _big_eval(w: dict[str, Path], t: Path) -> tuple[str, Any]:
    a = clone(w, "state", t)
    sparse_file(a / "eval.json")
    return "cli-ok", ("evaluate", str(a), *EVAL_ARGS)


def _deepsets_bomb(data: Any) -> None:
    kw = data["policy"]["policy_kwargs"]
    kw["features_extractor_class"] = "DeepSetsExtractor"
    kw["features_extractor_kwargs"] = {"n_slots": 1, "slot_dim": 100000, "hidden": 65536,
                                       "set_features": 65536, "proprio_features": 64,
                                       "pooling": "mean"}


def _done_steps(w: dict[str, Path], t: Path) -> tuple[str, Any]:
    a = clone(w, "state", t)
    (a / "DONE.json").write_text(json.dumps({"result": {"steps": "x", "seconds": 1,
                                                        "steps_per_second": 1}}))
    return "cli", ("train-agent", *STATE_ARGS, "--out", str(a))


def _rep_agent_json(fn: Callable[[Any], Any]) -> Callable[[dict[str, Path], Path],
                                                             tuple[str, Any]]:
    def build(w: dict[str, Path], t: Path) -> tuple[str, Any]:
        a = clone(w, "agent", t)
        edit(a / "agent.json", fn)
        return "cli", ("evaluate", str(a), *EVAL_ARGS)
    return build


STATE_CONFIG = '{"env_id": "' + GRID + '", "encoder": "state", '
BAD_UTF8 = b'{"format": "sparseshift-agent", "x": "\xff\xfe"}'
DEEP_JSON = '{"a": ' + deep(100_000) + "}"
DEEP_TOML = "a = " + deep(100_000) + "\n"

PROBES: list[Probe] = [
    # -- memory and time bombs
    ("memory", "agent.json net_arch [65536]*3",
     _agent_json("state", _policy("policy_kwargs", "net_arch",
                                  value={"pi": [65536] * 3, "vf": [65536] * 3}))),
    ("memory", "agent.json observation space Box of 1e10",
     _agent_json("state", _policy("observation_space", value={
         "type": "Box", "shape": [100000, 100000], "dtype": "float32", "low": 0, "high": 1}))),
    ("memory", "agent.json action space Discrete(1e12)",
     _agent_json("state", _policy("action_space", value={"type": "Discrete", "n": 10**12,
                                                         "start": 0}))),
    ("memory", "agent.json action space MultiDiscrete([1e12])",
     _agent_json("state", _policy("action_space", value={"type": "MultiDiscrete",
                                                         "nvec": [10**12]}))),
    ("memory", "agent.json DeepSets extractor of 6.5e9 parameters",
     _agent_json("state", _deepsets_bomb)),
    ("memory", "train-agent --hp net_arch=65536,65536,65536", _net_arch_hp),
    ("memory", "AgentConfig(hyperparams net_arch [65536]*64)",
     _api(lambda: AgentConfig(GRID, "state", hyperparams={"net_arch": [65536] * 64}))),
    ("memory", "agent.json of 210 MB", _big_agent_json),
    ("memory", "run.json of 210 MB (export-rep)", _big_run_json),
    ("memory", "--config of 210 MB", _big_config),
    ("memory", "cached eval.json of 210 MB", _big_eval),
    ("memory", "agent.json observation space Box nested bounds of 1e6 lists",
     _agent_json("state", _policy("observation_space", value={
         "type": "Box", "shape": [38], "dtype": "float32", "low": [[0.0] * 38] * 2000,
         "high": 1}))),
    ("memory", "agent.json NatureCNN features_dim 1e9",
     _agent_json("state", lambda d: d["policy"]["policy_kwargs"].update(
         features_extractor_class="NatureCNN", features_extractor_kwargs={
             "features_dim": 10**9}))),
    ("memory", "agent.json Dict space of 10000 boxes",
     _agent_json("state", _policy("observation_space", value={"type": "Dict", "spaces": {
         f"k{i}": {"type": "Box", "shape": [1000], "dtype": "float32", "low": 0, "high": 1}
         for i in range(10000)}}))),
    # -- tracebacks
    ("traceback", "agent.json deeply nested", _agent_json("state", lambda d: None,
                                                          raw=DEEP_JSON.encode())),
    ("traceback", "agent.json 5000-digit integer",
     _agent_json("state", lambda d: None, raw=('{"format": "sparseshift-agent", "seed": '
                                               + HUGE + "}").encode())),
    ("traceback", "agent.json non-UTF-8 (train-agent --out)",
     _agent_json("state", lambda d: None, raw=BAD_UTF8, cmd="train-agent")),
    ("traceback", "agent.json non-UTF-8 (evaluate)",
     _agent_json("state", lambda d: None, raw=BAD_UTF8)),
    ("traceback", 'agent.json "encoder": "x"', _agent_json("state", set_in(("encoder",), "x"))),
    ("traceback", "agent.json config.env_id edited (another env's spaces)",
     _agent_json("state", lambda d: d["config"].update(env_id="sparseshift/TriFingerReach-v0"))),
    ("traceback", "agent.json encoder.path 5",
     _agent_json("state", set_in(("encoder",), {"kind": "checkpoint", "path": 5}))),
    ("traceback", "agent.json encoder.fingerprint 5",
     _rep_agent_json(lambda d: d["encoder"].update(fingerprint=5))),
    ("traceback", 'agent.json observation_space "x"',
     _agent_json("state", _policy("observation_space", value="x"))),
    ("traceback", 'agent.json "observation": "x"',
     _rep_agent_json(set_in(("observation",), "x"))),
    ("traceback", "agent.json policy.digest 5", _agent_json("state", _policy("digest", value=5))),
    ("traceback", 'agent.json "identity": "x" (train-agent --out)',
     _agent_json("state", set_in(("identity",), "x"), cmd="train-agent")),
    ("traceback", "agent.json policy_kwargs.optimizer_class",
     _agent_json("state", _policy("policy_kwargs", "optimizer_class", value="x"))),
    ("traceback", "agent DONE.json steps 'x' (train-agent --out)", _done_steps),
    ("traceback", "cached eval.json a list", _eval_cache(lambda d: [1, 2])),
    ("traceback", "cached eval.json shifts a list", _eval_cache(_with_params({"shifts": []}))),
    ("traceback", "cached eval.json return.mean 'x'",
     _eval_cache(lambda d: d["shifts"]["in"]["return"].update(mean="x"))),
    ("traceback", "cached eval.json non-UTF-8", _eval_cache(raw=b'{"params": "\xff"}')),
    ("traceback", "cached eval.json deeply nested", _eval_cache(raw=DEEP_JSON.encode())),
    ("traceback", "run.json deeply nested (eval-rep)", _run_json(DEEP_JSON)),
    ("traceback", "run.json 5000-digit integer (eval-rep)",
     _run_json('{"format": "sparseshift-representation", "step": ' + HUGE + "}")),
    ("traceback", 'run.json "dataset": "x" (train-agent --encoder)',
     _run_edit(set_in(("dataset",), "x"), cmd="train-agent")),
    ("traceback", "checkpoint step 'abc' (eval-rep)", _ckpt("eval-rep", step="abc")),
    ("traceback", "checkpoint step of 5000 digits (export-rep)", _ckpt(step=HUGE)),
    ("traceback", "checkpoint optim '{' (export-rep)", _ckpt(optim="{")),
    ("traceback", "checkpoint optim state a list",
     _ckpt(optim='{"state": [], "param_groups": []}')),
    ("traceback", "checkpoint optim deeply nested", _ckpt(optim=DEEP_JSON)),
    ("traceback", "checkpoint tensor optim.x.y (digest intact)", _forged_optim_name),
    ("traceback", "checkpoint step 'abc' (digests recomputed, eval-rep)",
     _forged("eval-rep", step="abc")),
    ("traceback", "checkpoint step of 5000 digits (digests recomputed)", _forged(step=HUGE)),
    ("traceback", "checkpoint optim '{' (digests recomputed)", _forged(optim="{")),
    ("traceback", "checkpoint optim state a list (digests recomputed)",
     _forged(optim='{"state": [], "param_groups": []}')),
    ("traceback", "checkpoint optim deeply nested (digests recomputed)",
     _forged(optim=DEEP_JSON)),
    ("traceback", "checkpoint optim param_groups [5] (digests recomputed)",
     _forged(optim='{"state": {}, "param_groups": [5]}')),
    ("traceback", "checkpoint optim state key 'x' (digests recomputed)",
     _forged(optim='{"state": {"x": {}}, "param_groups": []}')),
    ("traceback", "checkpoint format_version 'abc' (digests recomputed)",
     _forged(format_version="abc")),
    ("traceback", "train-agent --config deeply nested JSON", _config(".json", DEEP_JSON)),
    ("traceback", "train-agent --config deeply nested TOML", _config(".toml", DEEP_TOML)),
    ("traceback", "train-agent --config 5000-digit JSON integer",
     _config(".json", '{"steps": ' + HUGE + "}")),
    ("traceback", "train-agent --config 5000-digit TOML integer",
     _config(".toml", "steps = " + HUGE + "\n")),
    ("traceback", "train-agent --config hyperparams a list",
     _config(".json", '{"hyperparams": [1, 2]}')),
    ("traceback", 'train-agent --config hyperparams "ab"',
     _config(".json", '{"hyperparams": "ab"}')),
    ("traceback", "train-rep --config model a list",
     _config(".json", '{"model": [1]}', cmd="train-rep")),
    ("traceback", "train-rep --config learner a list",
     _config(".json", '{"learner": ["x"]}', cmd="train-rep")),
    ("traceback", "study --config deeply nested TOML", _config(".toml", DEEP_TOML, cmd="study")),
    ("traceback", "study --config 5000-digit TOML integer",
     _config(".toml", "seed = " + HUGE + "\n", cmd="study")),
    ("traceback", "study --config evaluation a list",
     _config(".json", '{"name": "x", "evaluation": []}', cmd="study")),
    ("traceback", "study --config envs[0].evaluation.shifts a number",
     _config(".json", json.dumps({"name": "x", "envs": [{"env_id": GRID, "evaluation": {
         "shifts": 5}}]}), cmd="study")),
    ("traceback", "study --config envs an object",
     _config(".toml", 'name = "x"\n[envs]\nenv_id = "a"\n', cmd="study")),
    ("traceback", "train-agent --config TOML date",
     _config(".toml", f'env_id = "{GRID}"\nencoder = "state"\nsteps = 1979-05-27\n')),
    ("traceback", "train-agent --config NaN learning rate",
     _config(".json", STATE_CONFIG + '"hyperparams": {"learning_rate": NaN}}')),
    ("traceback", "train-agent --config encoder a name of 500 characters",
     _config(".json", json.dumps({"env_id": GRID, "encoder": "x" * 500}))),
    ("traceback", "train-agent --config env_kwargs with Infinity",
     _config(".json", STATE_CONFIG + '"env_kwargs": {"size": Infinity}}')),
    ("traceback", "encoder.json deeply nested (train-agent --encoder)", _enc_json(DEEP_JSON)),
    ("traceback", "encoder.json 5000-digit integer",
     _enc_json('{"format": "sparseshift-encoder", "format_version": ' + HUGE + "}")),
    ("traceback", 'study DONE.json files "ab"', _stage({"artifact": "collect/0123456789ab",
                                                       "files": "ab"})),
    ("traceback", "study DONE.json files.data 5", _stage({"artifact": "collect/0123456789ab",
                                                         "files": {"data": 5}})),
    ("traceback", "study DONE.json deeply nested", _stage(raw=DEEP_JSON.encode())),
    ("traceback", "study FORMAT.json non-UTF-8", _format_stamp(b'{"format_version": "\xff"}')),
    ("traceback", "study FORMAT.json deeply nested", _format_stamp(DEEP_JSON.encode())),
    ("traceback", "AgentConfig(steps=10**5000)",
     _api(lambda: AgentConfig(GRID, "state", steps=10**5000))),
    ("traceback", "AgentConfig(hyperparams learning_rate=10**400)",
     _api(lambda: AgentConfig(GRID, "state", hyperparams={"learning_rate": 10**400}))),
    ("traceback", "TrainConfig(lr=10**400)", _api(lambda: TrainConfig(lr=10**400))),
    # -- minor: accepted although they should not be
    ("minor", "agent.json policy.file absolute", _policy_file("absolute")),
    ("minor", "agent.json policy.file ../", _policy_file("dotdot")),
    ("minor", "agent.json policy.file a symlink out of the folder", _policy_file("link")),
    ("minor", "agent.json observation space bounds edited", _agent_json("state", _obs_high)),
    ("minor", "checkpoint step edited after writing", _ckpt("api", step="999999")),
    ("minor", "checkpoint weights_only added after writing", _ckpt("api", weights_only="true")),
    ("minor", "checkpoint optim edited after writing",
     _ckpt("api", optim='{"state": {}, "param_groups": []}')),
    ("minor", "encoder.json weights a symlink out of the folder", _enc_weights_link),
    ("minor", "study result files ../../", _stage({"artifact": "collect/0123456789ab",
                                                   "files": {"data": "../../../outside"}})),
    ("minor", "study result artifact ../../", _stage({"artifact": "../../elsewhere",
                                                      "files": {"data": "data.h5"}})),
    ("minor", "study result files absolute", _stage({"artifact": "collect/0123456789ab",
                                                     "files": {"data": "/etc/passwd"}})),
]


def run_probe(kind: str, what: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Run a probe under :func:`bounded` and check its outcome."""
    capsys.readouterr()
    if kind == "api":
        with bounded(), pytest.raises(ConfigError) as info:
            what()
        assert "\n" not in str(info.value).strip()
        return
    with bounded():
        rc = main(list(what))
    err = capsys.readouterr().err.strip().splitlines()
    if kind == "cli-ok":
        assert rc == 0, err
    else:
        assert rc == 2 and len(err) == 1, (rc, err)


@pytest.mark.parametrize(("cls", "name", "build"), PROBES, ids=[p[1] for p in PROBES])
def test_probe(world: dict[str, Path], tmp_path: Path, cls: str, name: str,
               build: Callable[[dict[str, Path], Path], tuple[str, Any]],
               capsys: pytest.CaptureFixture[str]) -> None:
    kind, what = build(world, tmp_path)
    run_probe(kind, what, capsys)


# ---------------------------------------------------------------- older files still load


def test_format_2_checkpoints_load_on_their_tensor_digest(world: dict[str, Path],
                                                         tmp_path: Path) -> None:
    """A checkpoint written before metadata digests (format 2) loads; a format 3 one without
    its metadata digest is refused, and so is any edit of a format 3 file's metadata."""
    from sparseshift.representations.checkpoint import load_learner, read_checkpoint

    r = clone(world, "rep", tmp_path)
    step = read_checkpoint(r).step
    remeta(r, metadata_digest=None)
    with pytest.raises(ConfigError, match="records no metadata digest"):
        read_checkpoint(r)
    remeta(r, format_version="2")
    assert read_checkpoint(r).step == step
    load_learner(r)
    remeta(r, step="999")  # format 2: the metadata was never covered
    assert read_checkpoint(r).step == 999


def test_policies_without_a_spaces_digest_still_load(world: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """Agents whose policy file predates the spaces digest evaluate on their tensor digest."""
    a = clone(world, "state", tmp_path)
    path = a / "policy.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        meta = {k: v for k, v in (fh.metadata() or {}).items()
                if k not in ("metadata_digest", "spaces_digest")}
    save_file(load_file(str(path)), str(path), metadata=meta)
    assert main(["evaluate", str(a), *EVAL_ARGS]) == 0, capsys.readouterr().err


def test_the_gate_never_blocks_on_a_fifo_and_reads_at_most_its_cap(tmp_path: Path) -> None:
    from sparseshift.envs.infra.io import read_capped, read_json

    fifo = tmp_path / "agent.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_json(fifo, "agent file")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2000)
    with pytest.raises(ConfigError, match=r"more than the 1\.95 KiB"):
        read_capped(big, "file", max_bytes=1999)
    assert len(read_capped(big, "file", max_bytes=2000)) == 2000


# ---------------------------------------------------------------- Hypothesis fuzzing

class Accepted(Exception):
    """Raised by a patched stage: the input was accepted and the real work would start."""


_LEAF = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
         | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON_VALUES = st.recursive(_LEAF, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=10)
TRICKY = st.sampled_from([10**12, 2**63, -1, 0, 1.5, 1e308, "", "../x", "/etc/passwd", "a\x00b",
                          "\ud800", "x" * 500, [], {}, [65536] * 3, True, None, [[[]]], "inf",
                          {"type": "Discrete", "n": 10**12}, "ok"])
#: Raw JSON text put where a value was: deep nesting, huge integers, NaN, overflowing floats.
SPECIAL_JSON = st.one_of(
    st.integers(60, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(60, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(41, 6000).map(lambda n: "9" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 50 + ".5"]),
)
SPECIAL_TOML = st.one_of(
    st.integers(60, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(41, 6000).map(lambda n: "9" * n),
    st.sampled_from(["nan", "inf", "-inf", "1979-05-27T07:32:00Z", "07:32:00", "1e999",
                     "0x" + "f" * 60, '"""', "{a = 1, a = 2}"]),
)
SENTINEL = "\u0000FUZZ\u0000"


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return {} if delete else value
    node = doc
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value("" if x is None else x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()
                               if x is not None) + "}"
    return '""'


def to_toml(doc: dict[str, Any]) -> str:
    """A small TOML writer (inline tables; None dropped): enough to fuzz the TOML reader."""
    return "".join(f"{json.dumps(str(k))} = {_toml_value(v)}\n" for k, v in doc.items()
                   if v is not None)


@st.composite
def hostile(draw: st.DrawFn, base: Any, toml: bool = False) -> bytes:
    """A malformed version of the document ``base``: a random or tricky value at any field (a
    wrong type per field), a field removed, raw special text at a field (deep nesting, huge
    integers, NaN, TOML dates), invalid UTF-8 at a field, a truncated file, random bytes or a
    random document."""
    import copy

    how = draw(st.sampled_from(["value", "tricky", "delete", "special", "utf8", "truncate",
                                "bytes", "whole"]))
    doc = copy.deepcopy(base)
    path = draw(st.sampled_from(_paths(doc)))
    if how in ("value", "tricky"):
        doc = _set(doc, path, draw(JSON_VALUES if how == "value" else TRICKY))
    elif how == "delete":
        doc = _set(doc, path, None, delete=True)
    elif how in ("special", "utf8"):
        doc = _set(doc, path, SENTINEL)
    elif how == "whole":
        doc = draw(JSON_VALUES)
    if toml and not isinstance(doc, dict):
        doc = {"x": doc}
    try:
        text = to_toml(doc) if toml else json.dumps(doc)
    except (ValueError, RecursionError):
        text = "{"
    quoted = json.dumps(SENTINEL)
    if how == "special":
        text = text.replace(quoted, draw(SPECIAL_TOML if toml else SPECIAL_JSON))
    raw = text.encode("utf-8", "surrogatepass")
    if how == "utf8":
        raw = raw.replace(quoted.encode(), b'"\xff\xfe\xc3"')
    elif how == "truncate" and raw:
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif how == "bytes":
        raw = draw(st.binary(max_size=300))
    return raw


def run_cli(argv: list[str], ok: tuple[int, ...] = (0, 2),
            patches: tuple[str, ...] = ()) -> None:
    """``main(argv)`` within the budget: exit status in ``ok``; exit 2 with exactly one line on
    stderr; a patched stage raising :class:`Accepted` means the input was accepted."""
    import io

    err = io.StringIO()
    with contextlib.ExitStack() as stack:
        for target in patches:
            stack.enter_context(mock.patch(target, side_effect=Accepted))
        try:
            with bounded(seconds=30), contextlib.redirect_stderr(err), \
                    contextlib.redirect_stdout(io.StringIO()):
                rc = main(argv)
        except Accepted:
            return
    lines = err.getvalue().strip().splitlines()
    assert rc in ok, (rc, lines)
    if rc == 2:
        assert len(lines) == 1, lines


def run_api(fn: Callable[[], Any]) -> Any:
    """``fn()`` within the budget: a result or one :class:`ConfigError` line."""
    try:
        with bounded(seconds=30):
            return fn()
    except ConfigError as exc:
        assert "\n" not in str(exc).strip()
        return exc


def _doc(path: Path) -> Any:
    return json.loads(path.read_text())


VEC_ENV = "sparseshift.agents.train.make_vec_env"


def fuzz_agent_json_evaluate(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    a = clone(w, data.draw(st.sampled_from(["state", "agent"])), t)
    (a / "agent.json").write_bytes(data.draw(hostile(_doc(a / "agent.json"))))
    run_cli(["evaluate", str(a), *EVAL_ARGS])


def fuzz_agent_json_train_agent(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    a = clone(w, "state", t)
    (a / "agent.json").write_bytes(data.draw(hostile(_doc(a / "agent.json"))))
    run_cli(["train-agent", *STATE_ARGS, "--out", str(a)], patches=(VEC_ENV,))


def fuzz_done_json(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    a = clone(w, "state", t)
    (a / "DONE.json").write_bytes(data.draw(hostile(_doc(a / "DONE.json"))))
    run_cli(["train-agent", *STATE_ARGS, "--out", str(a)], patches=(VEC_ENV,))


def fuzz_training_state(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    """A hostile training state of an unfinished agent (its JSON changed, or a tensor dropped or
    replaced, with the digests recomputed or not): resuming runs or says one line."""
    import torch

    from sparseshift.agents.resume import STATE_FILE
    from sparseshift.representations.checkpoint import write_tensors

    a = clone(w, "state", t)
    (a / "DONE.json").unlink()
    path = a / STATE_FILE
    with safe_open(str(path), framework="pt") as fh:
        meta = {k: v for k, v in (fh.metadata() or {}).items()
                if k not in ("digest", "metadata_digest")}
    tensors = load_file(str(path))
    if data.draw(st.booleans()):
        meta["state"] = data.draw(hostile(json.loads(meta["state"]))).decode("utf-8", "replace")
    else:
        name = data.draw(st.sampled_from(sorted(tensors)))
        if data.draw(st.booleans()):
            del tensors[name]
        else:
            shape = data.draw(st.lists(st.integers(0, 3), max_size=3))
            dtype = data.draw(st.sampled_from([torch.float32, torch.uint8, torch.bool,
                                               torch.int64]))
            tensors[name] = torch.zeros(shape, dtype=dtype)
    if data.draw(st.booleans()):
        write_tensors(path, tensors, meta)  # signed: only the checks of the content are left
    else:
        save_file(tensors, str(path), metadata=meta)
    run_cli(["train-agent", *STATE_ARGS, "--out", str(a)])


def fuzz_eval_json(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    """A damaged cached evaluation is recomputed: always a normal run."""
    a = clone(w, "state", t)
    (a / "eval.json").write_bytes(data.draw(hostile(_doc(a / "eval.json"))))
    run_cli(["evaluate", str(a), *EVAL_ARGS], ok=(0,))


def fuzz_run_json(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    r = clone(w, "rep", t)
    (r / "run.json").write_bytes(data.draw(hostile(_doc(r / "run.json"))))
    cmd = data.draw(st.sampled_from(["export-rep", "eval-rep", "train-agent"]))
    run_cli(list(_rep_cmd(cmd, w, r, t)),
            patches=("sparseshift.representations.evaluate.encode_frames", VEC_ENV))


def fuzz_checkpoint_metadata(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    """Any change to a checkpoint's metadata is refused unless its digests are recomputed; with
    them recomputed, the reader still gives a checkpoint or one line."""
    from sparseshift.representations.checkpoint import load_learner, read_checkpoint

    r = clone(w, "rep", t)
    with safe_open(str(r / CHECKPOINT_FILE), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
    key = data.draw(st.sampled_from(["step", "optim", "weights_only", "learner", "format",
                                     "format_version", "extra"]))
    if key == "optim":
        value = data.draw(hostile(json.loads(meta["optim"]))).decode("utf-8", "replace")
    else:
        value = data.draw(st.text(max_size=30) | SPECIAL_JSON | st.sampled_from(
            ["0", "-1", "1" * 17, "true", "false", " 3", "3", "2", "ada_gvae"]))
    signed = data.draw(st.booleans())
    (forge if signed else remeta)(r, **{key: value})
    result = run_api(lambda: read_checkpoint(r))
    if not signed and meta.get(key) != value:
        assert isinstance(result, ConfigError), (key, value)
    run_api(lambda: load_learner(r))
    run_cli(list(_rep_cmd("export-rep", w, r, t)))


def fuzz_encoder_json(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    from sparseshift.representations.external import open_encoder
    from sparseshift.representations.plugins import Plugins

    e = clone(w, "enc", t)
    (e / "encoder.json").write_bytes(data.draw(hostile(_doc(e / "encoder.json"))))
    run_api(lambda: open_encoder(e, Plugins.of(ENC_MODULE)))
    run_cli(["train-agent", "--env", GRID, "--encoder", str(e), "--steps", "64", "--plugin",
             ENC_MODULE, "--out", str(t / "a")], patches=(VEC_ENV,))


def fuzz_study_marker(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    from sparseshift.experiments.study.artifacts import DONE, Artifact
    from sparseshift.experiments.study.graph import resolve_inputs

    root = clone(w, "study", t)
    art = Artifact(root, "collect", "0123456789ab")
    (art.path / DONE).write_bytes(data.draw(hostile(_doc(art.path / DONE))))
    result = run_api(art.result)
    if isinstance(result, dict):
        resolved = run_api(lambda: resolve_inputs(root, {"collect:": result}))
        if isinstance(resolved, dict):  # every file it names lies inside the artifact
            for f in resolved["collect:"]["files"].values():
                assert Path(f).resolve().is_relative_to(art.path.resolve())


def fuzz_format_stamp(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    from sparseshift.experiments.study.runner import FORMAT_FILE, check_artifact_format

    (t / "arts").mkdir()
    base = {"format": "sparseshift-study-artifacts", "format_version": 2}
    (t / "arts" / FORMAT_FILE).write_bytes(data.draw(hostile(base)))
    run_api(lambda: check_artifact_format(t / "arts"))


TRAIN_AGENT_CONFIG = {"env_id": GRID, "encoder": "state", "steps": 64, "eval_every": 0,
                      "checkpoint_every": 0, "tensorboard": False, "env_kwargs": {},
                      "hyperparams": {**TINY_HP, "net_arch": [64, 64]}}
TRAIN_REP_CONFIG = {"learner": "ada_gvae", "steps": 1, "batch": 8, "progress": False,
                    "tensorboard": False, "model": {"latent_dim": 4}}


def _study_config() -> dict[str, Any]:
    from sparseshift.experiments.study.presets import get_preset

    doc: dict[str, Any] = get_preset("smoke").to_json()
    return doc


def fuzz_config_file(w: dict[str, Path], t: Path, data: st.DataObject) -> None:
    cmd = data.draw(st.sampled_from(["train-agent", "train-rep", "study"]))
    toml = data.draw(st.booleans())
    base = {"train-agent": TRAIN_AGENT_CONFIG, "train-rep": TRAIN_REP_CONFIG}.get(cmd) or \
        _study_config()
    f = t / ("config.toml" if toml else "config.json")
    f.write_bytes(data.draw(hostile(base, toml=toml)))
    argv = {"train-agent": ["train-agent", "--config", str(f), "--out", str(t / "a")],
            "train-rep": ["train-rep", "--config", str(f), "--data", str(w["data"]), "--out",
                          str(t / "r")],
            "study": ["study", "--config", str(f), "--out", str(t / "s")]}[cmd]
    run_cli(argv, patches=(VEC_ENV, "sparseshift.representations.train.train",
                           "sparseshift.experiments.study.runner.run_study"))


#: Each reader's fuzz target and how many examples the default run tries (the CLI ones cost
#: about a third of a second each, the API ones much less; about a minute in all).
FUZZ: dict[str, tuple[Callable[[dict[str, Path], Path, st.DataObject], None], int]] = {
    "agent.json (evaluate)": (fuzz_agent_json_evaluate, 15),
    "agent.json (train-agent --out)": (fuzz_agent_json_train_agent, 25),
    "DONE.json (train-agent --out)": (fuzz_done_json, 20),
    "training_state.safetensors (train-agent resume)": (fuzz_training_state, 30),
    "eval.json (evaluate)": (fuzz_eval_json, 12),
    "run.json (export-rep, eval-rep, train-agent --encoder)": (fuzz_run_json, 20),
    "checkpoint metadata": (fuzz_checkpoint_metadata, 25),
    "encoder.json": (fuzz_encoder_json, 20),
    "study DONE.json": (fuzz_study_marker, 50),
    "study FORMAT.json": (fuzz_format_stamp, 50),
    "--config (train-agent, train-rep, study; JSON and TOML)": (fuzz_config_file, 40),
}
_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large]
#: The default run: the same examples every run, within Hypothesis's deadline each.
QUICK = settings(deadline=timedelta(seconds=60), database=None, derandomize=True,
                 suppress_health_check=_CHECKS)
#: ``-m slow``: many more, random.
LONG_EXAMPLES = 300


def _fuzz(world: dict[str, Path], name: str, examples: int, derandomize: bool) -> None:
    target = FUZZ[name][0]

    @settings(QUICK, max_examples=examples, derandomize=derandomize)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        with tempfile.TemporaryDirectory(dir=world["root"]) as t:
            target(world, Path(t), data)

    run()


@pytest.mark.parametrize("name", list(FUZZ))
def test_fuzz(world: dict[str, Path], name: str) -> None:
    _fuzz(world, name, FUZZ[name][1], derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FUZZ))
def test_fuzz_long(world: dict[str, Path], name: str) -> None:
    _fuzz(world, name, LONG_EXAMPLES, derandomize=False)
