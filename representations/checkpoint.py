"""Checkpoints: safetensors weights + optimizer state, a JSON run file, atomic writes, no pickle.

A run directory holds

* ``run.json``: format version, learner name, the resolved learner and training configs, the
  dataset's fingerprint and description, package versions;
* ``checkpoint.safetensors``: tensors ``model.<param>`` and ``optim.<index>.<key>`` (the Adam state
  of parameter ``index``), with metadata ``format_version``, ``learner``, ``step`` and ``optim``
  (the optimizer's non-tensor state as JSON).

Both are written to a temporary file in the same folder and moved into place with
:func:`os.replace`, so a crash never leaves a half-written checkpoint. Loading uses
:func:`safetensors.torch.load_file` only (never pickle). The training RNG streams are derived from
``(seed, step)`` (see :mod:`sparseshift.representations.train`), so the step is the whole RNG state.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparseshift.envs.errors import ConfigError
from sparseshift.envs.io import atomic_write_bytes as atomic_write_bytes  # re-export
from sparseshift.envs.io import commit_file, write_json_atomic
from sparseshift.envs.io import package_versions as package_versions  # re-export
from sparseshift.representations.base import Learner
from sparseshift.representations.registry import learner_class, make_learner

FORMAT = "sparseshift-representation"
FORMAT_VERSION = 1
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.safetensors"


# Shared with every stage; re-exported here for the learners' modules.
write_json = write_json_atomic


def flatten_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    per_param: dict[str, dict[str, Any]] = {}
    for idx, entries in state["state"].items():
        plain: dict[str, Any] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().contiguous()
            else:
                plain[key] = value
        per_param[str(idx)] = plain
    return tensors, {"state": per_param, "param_groups": state["param_groups"]}


def unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
                        ) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {int(i): dict(p) for i, p in meta["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


@dataclass(frozen=True)
class Checkpoint:
    step: int
    learner: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


def save_checkpoint(directory: Path, learner: Learner, optimizer: torch.optim.Optimizer,
                    step: int) -> Path:
    """Write ``checkpoint.safetensors`` atomically; returns its path."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in learner.state_dict().items()}
    optim_tensors, optim_meta = flatten_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "learner": learner.name,
        "step": str(step),
        "optim": json.dumps(optim_meta),
    }
    path = directory / CHECKPOINT_FILE
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{CHECKPOINT_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        commit_file(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def check_format(what: str, version: Any) -> None:
    try:
        v = int(version)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} has no valid format version ({version!r})") from None
    if v > FORMAT_VERSION:
        raise ConfigError(
            f"{what} has format version {v}, newer than this sparseshift reads ({FORMAT_VERSION}); "
            "upgrade sparseshift"
        )


def read_checkpoint(directory: Path, expect_learner: str | None = None) -> Checkpoint:
    """Read and validate ``checkpoint.safetensors`` (ConfigError for foreign or newer files)."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        raise ConfigError(f"no checkpoint in {directory} (expected {CHECKPOINT_FILE})")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{path} is not a readable safetensors checkpoint: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a sparseshift representation checkpoint")
    check_format(str(path), meta.get("format_version"))
    learner = meta.get("learner", "")
    if expect_learner is not None and learner != expect_learner:
        raise ConfigError(
            f"checkpoint {path} is from learner {learner!r}, not {expect_learner!r}"
        )
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = unflatten_optimizer(tensors, json.loads(meta.get("optim", '{"state": {}, '
                                                             '"param_groups": []}')))
    return Checkpoint(int(meta.get("step", 0)), learner, model, optim)


def read_run(directory: Path) -> dict[str, Any]:
    """Read and validate ``run.json``."""
    path = directory / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"{directory} is not a representation run directory (no {RUN_FILE})")
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(run, dict) or run.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a sparseshift representation run file")
    check_format(str(path), run.get("format_version"))
    return run


def load_learner(directory: str | os.PathLike[str], expect_learner: str | None = None
                 ) -> Learner:
    """The trained learner of a run directory, in eval mode, on the CPU.

    ``expect_learner`` (optional) must match the run's learner name. A checkpoint from another
    learner, a newer format or a missing file is a :class:`ConfigError`.
    """
    d = Path(directory)
    run = read_run(d)
    name = str(run.get("learner", ""))
    if expect_learner is not None and name != expect_learner:
        raise ConfigError(f"run {d} is from learner {name!r}, not {expect_learner!r}")
    # The checkpoint records the class's name (for a "module:Class" learner it may differ from
    # the name the run was started with).
    ckpt = read_checkpoint(d, expect_learner=learner_class(name).name)
    learner = make_learner(name, run["model"])
    try:
        learner.load_state_dict(ckpt.model)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"checkpoint {d} does not match its config: {first}") from None
    learner.eval()
    return learner
