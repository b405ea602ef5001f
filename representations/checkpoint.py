"""Checkpoints: safetensors weights + optimizer state, a JSON run file, atomic writes, no pickle.

A run directory holds

* ``run.json``: format version, learner name, the resolved learner and training configs, the
  dataset's fingerprint and description, package versions;
* ``checkpoint.safetensors``: tensors ``model.<param>`` and ``optim.<index>.<key>`` (the Adam state
  of parameter ``index``), with metadata ``format_version``, ``learner``, ``step`` and ``optim``
  (the optimizer's non-tensor state as JSON), ``weights_only`` for exports, and two digests:
  ``digest`` over the tensors and ``metadata_digest`` over every other metadata entry and the
  tensor digest (:func:`metadata_digest`). Both are checked before anything is built from the
  file, so a checkpoint whose step, optimizer state, learner name or any other entry was changed
  after it was written is refused. Checkpoint format 3 has both; format 2 files (written before
  metadata digests) are still read, trusting their tensor digest only; format 1 (no digest at
  all) is read as it was.

Both are written to a temporary file in the same folder and moved into place with
:func:`os.replace`, so a crash never leaves a half-written checkpoint. Loading uses
:func:`safetensors.torch.load_file` only (never pickle). The training RNG streams are derived from
``(seed, step)`` (see :mod:`sparseshift.representations.train`), so the step is the whole RNG state.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparseshift.envs.infra.errors import ConfigError, safe_repr
from sparseshift.envs.infra.io import (
    MapOf,
    atomic_output,
    check_schema,
    output_dir,
    output_lock,
    parse_json,
    read_json,
    write_json_atomic,
)
from sparseshift.envs.infra.io import atomic_write_bytes as atomic_write_bytes  # re-export
from sparseshift.envs.infra.io import package_versions as package_versions  # re-export
from sparseshift.representations.base import Learner
from sparseshift.representations.registry import learner_class, make_learner

if TYPE_CHECKING:
    from sparseshift.representations.plugins import Plugins

FORMAT = "sparseshift-representation"
#: Format of ``run.json`` (2: runs whose checkpoints carry content digests).
FORMAT_VERSION = 2
#: Format of ``checkpoint.safetensors``: 3 covers all its metadata by ``metadata_digest``; 2
#: covers the tensors only (still read); 1 has no digest (still read).
CHECKPOINT_FORMAT_VERSION = 3
#: Metadata entries of a safetensors file written here that are not its own subject.
DIGEST_KEYS = ("digest", "metadata_digest")
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.safetensors"


# Shared with every stage; re-exported here for the learners' modules.
write_json = write_json_atomic


class CorruptFileError(ConfigError):
    """A weights file is unreadable or its tensors do not match the digest it records."""


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over tensors in name order: each name, dtype, shape and raw bytes.

    The same weights give the same digest whatever file they came from (unlike the hash of a
    safetensors file, whose metadata order varies between runs).
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        c = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{c.dtype}:{tuple(c.shape)};".encode())
        if c.numel():
            h.update(c.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def metadata_digest(tensor_digest_hex: str, metadata: Mapping[str, str]) -> str:
    """SHA-256 over the canonical JSON of a file's metadata (all entries but
    :data:`DIGEST_KEYS`) and its tensor digest: what ``metadata_digest`` records, so that no
    metadata entry can change unnoticed."""
    body = {k: v for k, v in metadata.items() if k not in DIGEST_KEYS}
    payload = json.dumps({"metadata": body, "tensors": tensor_digest_hex}, sort_keys=True,
                         separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def non_finite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or inf."""
    return sorted(k for k, v in tensors.items()
                  if v.is_floating_point() and not bool(torch.isfinite(v).all()))


def write_tensors(path: Path, tensors: Mapping[str, torch.Tensor],
                  metadata: Mapping[str, str]) -> str:
    """Write ``tensors`` to ``path`` (safetensors, atomically) with ``metadata``, their
    ``digest`` and the ``metadata_digest`` covering every metadata entry; returns the tensor
    digest. Temporary files are removed on any failure (disk full included), so nothing
    half-written is left."""
    digest = tensor_digest(tensors)
    meta = {k: v for k, v in metadata.items() if k not in DIGEST_KEYS}
    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={**meta, "digest": digest,
                            "metadata_digest": metadata_digest(digest, meta)})
    return digest


def read_tensors(path: Path, expect_digest: str | None = None,
                 require_digest: bool = True, require_metadata_digest: bool = False
                 ) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file whose content matches its recorded digest (and
    ``expect_digest`` if given) and whose metadata matches its ``metadata_digest`` (when it
    records one; ``require_metadata_digest``: it must); :class:`CorruptFileError` otherwise.
    ``require_digest=False`` accepts files written before digests existed."""
    return read_tensors_and_metadata(path, expect_digest, require_digest,
                                     require_metadata_digest)[0]


def read_tensors_and_metadata(path: Path, expect_digest: str | None = None,
                              require_digest: bool = True,
                              require_metadata_digest: bool = False
                              ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """:func:`read_tensors` and the file's metadata (verified by the same digests)."""
    tensors, meta = _load(path)
    return _verified(path, tensors, meta, expect_digest, require_digest,
                     require_metadata_digest), meta


def _verified(path: Path, tensors: dict[str, torch.Tensor], meta: Mapping[str, str],
              expect_digest: Any = None, require_digest: bool = True,
              require_metadata_digest: bool = False) -> dict[str, torch.Tensor]:
    digest = tensor_digest(tensors)
    recorded = meta.get("digest")
    if recorded is None and require_digest:
        raise CorruptFileError(f"{path} records no content digest")
    if recorded is not None and recorded != digest:
        raise CorruptFileError(f"{path} is damaged: its tensors do not match the digest it "
                               f"records ({digest[:12]} != {str(recorded)[:12]})")
    recorded_meta = meta.get("metadata_digest")
    if recorded_meta is None and require_metadata_digest:
        raise CorruptFileError(f"{path} records no metadata digest")
    if recorded_meta is not None and recorded_meta != metadata_digest(digest, meta):
        raise CorruptFileError(f"{path} is damaged: its metadata changed after it was written "
                               "(it does not match the metadata digest it records)")
    if expect_digest is not None and digest != expect_digest:
        raise CorruptFileError(f"{path} changed since it was recorded (digest {digest[:12]} != "
                               f"{str(expect_digest)[:12]})")
    return tensors


def _load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CorruptFileError(f"no weights file at {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptFileError(f"{path} is not a readable safetensors file: {first}") from None
    return tensors, dict(meta)


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


#: The optimizer metadata of a checkpoint (``optim``, JSON): per-parameter plain state keyed by
#: parameter index, and the parameter groups.
OPTIM_SCHEMA = {"state": MapOf(dict), "param_groups": [{"params": [int]}]}
_OPTIM_NAME = re.compile(r"optim\.(\d{1,9})\.(.+)")
_INDEX = re.compile(r"\d{1,9}")


def unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
                        where: str = "checkpoint") -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer` (``meta`` checked against :data:`OPTIM_SCHEMA`,
    parameter indices and tensor names checked: one-line ConfigErrors naming ``where``)."""
    check_schema(meta, OPTIM_SCHEMA, f"{where} (metadata optim)")
    state: dict[int, dict[str, Any]] = {}
    for i, p in meta["state"].items():
        if not _INDEX.fullmatch(i):
            raise ConfigError(f"{where}: optimizer state of parameter {safe_repr(i)}; parameters "
                              "are numbered 0, 1, ...")
        state[int(i)] = dict(p)
    for name, value in tensors.items():
        if name.startswith("optim."):
            m = _OPTIM_NAME.fullmatch(name)
            if m is None:
                raise ConfigError(f"{where}: tensor {safe_repr(name)} is not optim.INDEX.KEY")
            state.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return {"state": state, "param_groups": meta["param_groups"]}


@dataclass(frozen=True)
class Checkpoint:
    step: int
    learner: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    weights_only: bool = False


def save_checkpoint(directory: Path, learner: Learner, optimizer: torch.optim.Optimizer,
                    step: int) -> Path:
    """Write ``checkpoint.safetensors`` atomically; returns its path. Refuses (ConfigError)
    weights that are not finite: a checkpoint on disk is always one to resume from."""
    model = {f"model.{k}": v.detach().contiguous() for k, v in learner.state_dict().items()}
    bad = non_finite(model)
    if bad:
        raise ConfigError(f"not saving step {step}: non-finite weights in "
                          f"{', '.join(b[len('model.'):] for b in bad[:3])}")
    optim_tensors, optim_meta = flatten_optimizer(optimizer.state_dict())
    meta = {
        "format": FORMAT,
        "format_version": str(CHECKPOINT_FORMAT_VERSION),
        "learner": learner.name,
        "step": str(step),
        "optim": json.dumps(optim_meta),
    }
    path = directory / CHECKPOINT_FILE
    write_tensors(path, {**model, **optim_tensors}, meta)
    return path


#: An export's ``run.json`` is its run's with this key added (the step the weights are from).
EXPORTED_FROM = "exported_from_step"


def _export_refusal(run_dir: Path, run: Mapping[str, Any], out: Path) -> str | None:
    """Why export-rep may not write ``out``, or None. It writes only a new or empty folder (its
    lock's own files aside) or one holding an earlier export of the same run (which it redoes,
    leaving other files there alone) or what a killed export left (the weights-only checkpoint
    alone: it is written first); never a training run, another run's export or anything else."""
    from sparseshift.envs.infra.io import JOURNAL_FILE, LOCK_FILE, MARKERS

    if not out.exists():
        return None
    if not out.is_dir():
        return f"--out {out} is a file; give a folder"
    if out.resolve() == run_dir.resolve():
        return f"--out {out} is the run itself; export-rep writes a new folder"
    names = sorted(p.name for p in out.iterdir() if p.name not in (LOCK_FILE, JOURNAL_FILE))
    if not names:
        return None
    rule = "export-rep writes only a new or empty folder, or one it exported this run to"
    try:
        theirs = read_run(out) if RUN_FILE in names else None
        ckpt = read_checkpoint(out) if CHECKPOINT_FILE in names else None
    except ConfigError:
        theirs = ckpt = None
    if (theirs is not None and EXPORTED_FROM not in theirs) or (
            ckpt is not None and not ckpt.weights_only):
        return f"--out {out} is a training run; {rule}"
    if theirs is not None and ckpt is not None:
        if _without_step(theirs) == _without_step(run):
            return None  # an earlier export of this run: redone
        return f"--out {out} holds the export of another run; {rule}"
    if ckpt is not None and names == [CHECKPOINT_FILE]:
        return None  # a killed export (the checkpoint is written first): redone
    kinds = [f"{MARKERS[n]} ({n})" for n in names if n in MARKERS]
    held = kinds[0] if kinds else ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
    return f"--out {out} is not empty ({held}) and was not written by export-rep; {rule}"


def _without_step(run: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != EXPORTED_FROM}


def export_weights(run_dir: Path, out_dir: Path) -> Path:
    """Copy a run as a frozen encoder: ``run.json`` and a checkpoint without the optimizer state
    (a third of the size; marked ``weights_only``, so it loads as an encoder and cannot be
    resumed).

    ``out_dir`` must be new or empty, or hold an earlier export of the same run (which is
    redone); a training run (the run itself included) or any other folder is refused
    (:class:`ConfigError`), untouched. The checkpoint is written first and ``run.json`` last,
    so ``run.json`` is never left without its checkpoint; if writing fails, a folder created
    here is removed again."""
    from sparseshift.envs.infra.io import JOURNAL_FILE, LOCK_FILE, remove_own_file

    run = read_run(run_dir)
    ckpt = read_checkpoint(run_dir)
    why = _export_refusal(run_dir, run, out_dir)
    if why:
        raise ConfigError(why)
    created = not out_dir.exists()
    out = output_dir(out_dir, RUN_FILE)
    written: list[Path] = []
    try:
        with output_lock(out):
            why = _export_refusal(run_dir, run, out)  # as it is now that it is locked
            if why:
                raise ConfigError(why)
            model = {f"model.{k}": v for k, v in ckpt.model.items()}
            written.append(out / CHECKPOINT_FILE)
            write_tensors(out / CHECKPOINT_FILE, model, {
                "format": FORMAT, "format_version": str(CHECKPOINT_FORMAT_VERSION),
                "learner": ckpt.learner,
                "step": str(ckpt.step), "optim": json.dumps({"state": {}, "param_groups": []}),
                "weights_only": "true"})
            written.append(out / RUN_FILE)
            write_json(out / RUN_FILE, {**run, EXPORTED_FROM: ckpt.step})
    except BaseException:
        if created:  # nothing behind: what this export wrote, then the folder it made
            for path in (*written, out / JOURNAL_FILE, out / LOCK_FILE):
                remove_own_file(path)
            try:
                out.rmdir()
            except OSError:
                pass
        raise
    return out


def check_format(what: str, version: Any, current: int = FORMAT_VERSION) -> int:
    """The format version ``version`` (an integer, or its digits) of ``what``; one line when
    it is not one or is newer than ``current``."""
    if isinstance(version, bool) or not isinstance(version, int | str) or (
            isinstance(version, str) and not _INDEX.fullmatch(version.strip())):
        raise ConfigError(f"{what} has no valid format version ({safe_repr(version)})")
    v = int(version)
    if v > current:
        raise ConfigError(
            f"{what} has format version {v}, newer than this sparseshift reads ({current}); "
            "upgrade sparseshift"
        )
    return v


#: Largest step a checkpoint may record.
MAX_STEP = 10**15


def read_checkpoint(directory: Path, expect_learner: str | None = None) -> Checkpoint:
    """Read and validate ``checkpoint.safetensors``: ConfigError for foreign or newer files,
    and (:class:`CorruptFileError`) for one whose tensors or metadata do not match their
    digests (format 3: every metadata entry is covered; format 2: the tensors only; see the
    module docstring). Everything is checked before the checkpoint is returned; nothing is
    built from it here."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        raise ConfigError(f"no checkpoint in {directory} (expected {CHECKPOINT_FILE})")
    tensors, meta = _load(path)
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a sparseshift representation checkpoint")
    version = check_format(str(path), meta.get("format_version"), CHECKPOINT_FORMAT_VERSION)
    learner = meta.get("learner", "")
    if expect_learner is not None and learner != expect_learner:
        raise ConfigError(
            f"checkpoint {path} is from learner {safe_repr(learner)}, not {expect_learner!r}"
        )
    # Version 1 checkpoints predate content digests, version 2 metadata digests.
    tensors = _verified(path, tensors, meta, require_digest=version >= 2,
                        require_metadata_digest=version >= 3)
    step_text = meta.get("step", "0")
    if not _STEP.fullmatch(step_text) or int(step_text) > MAX_STEP:
        raise ConfigError(f"{path}: metadata step must be a whole number of steps, got "
                          f"{safe_repr(step_text)}")
    weights_only = meta.get("weights_only", "false")
    if weights_only not in ("true", "false"):
        raise ConfigError(f"{path}: metadata weights_only must be true or false, got "
                          f"{safe_repr(weights_only)}")
    for name in tensors:
        if not name.startswith(("model.", "optim.")):
            raise ConfigError(f"{path}: tensor {safe_repr(name)} is neither model.* nor optim.*")
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optim_meta = parse_json(meta.get("optim", '{"state": {}, "param_groups": []}'),
                            f"{path} (metadata optim)", "checkpoint metadata")
    optim = unflatten_optimizer(tensors, optim_meta, str(path))
    return Checkpoint(int(step_text), learner, model, optim, weights_only == "true")


_STEP = re.compile(r"\d{1,16}")

#: What the readers of ``run.json`` use (other entries are kept as they are).
RUN_SCHEMA = {
    "format": str, "format_version": (int, str), "learner": str, "model": dict,
    "identity?": dict, "train?": dict, "config?": dict, "versions?": dict,
    "dataset?": {"env_id?": (str, None), "fingerprint?": (str, None)},
}


def read_run(directory: Path) -> dict[str, Any]:
    """Read and validate ``run.json`` (one-line ConfigError for a missing, damaged, foreign or
    newer file, or one without its learner and model config)."""
    path = directory / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"{directory} is not a representation run directory (no {RUN_FILE})")
    run = read_json(path, "run file")
    if run.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a sparseshift representation run file")
    check_format(str(path), run.get("format_version"))
    if not isinstance(run.get("learner"), str) or not isinstance(run.get("model"), dict):
        raise ConfigError(f"{path} lacks the learner name or its model config")
    check_schema(run, RUN_SCHEMA, str(path))
    if EXPORTED_FROM in run:
        check_schema(run[EXPORTED_FROM], int, str(path), EXPORTED_FROM)
    return run


def encoder_fingerprint(directory: str | os.PathLike[str]) -> str:
    """Content fingerprint of a trained encoder: SHA-256 of the canonical JSON of its learner
    name and config and the digest of its model tensors. Identical runs give identical
    fingerprints; any change to the weights or the config changes it."""
    d = Path(directory)
    run = read_run(d)
    ckpt = read_checkpoint(d)
    payload = json.dumps({"learner": run.get("learner"), "model": run.get("model"),
                          "weights": tensor_digest(ckpt.model)}, sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def load_learner(directory: str | os.PathLike[str], expect_learner: str | None = None,
                 device: str | torch.device = "cpu", plugins: Plugins | None = None) -> Learner:
    """The trained learner of a run directory, in eval mode, on ``device`` (default the CPU;
    ``auto`` picks an accelerator when there is one).

    ``expect_learner`` (optional) must match the run's learner name. A checkpoint from another
    learner, a newer format or a missing file is a :class:`ConfigError`. A run whose learner is
    ``module:Class`` loads only when ``plugins`` allows that module (or it is an installed entry
    point): the file never decides what code runs.
    """
    d = Path(directory)
    run = read_run(d)
    name = str(run.get("learner", ""))
    if expect_learner is not None and name != expect_learner:
        raise ConfigError(f"run {d} is from learner {name!r}, not {expect_learner!r}")
    # The checkpoint records the class's name (for a "module:Class" learner it may differ from
    # the name the run was started with).
    where = str(d / RUN_FILE)
    ckpt = read_checkpoint(d, expect_learner=learner_class(name, plugins, where).name)
    learner = make_learner(name, run["model"], plugins, where)
    try:
        learner.load_state_dict(ckpt.model)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"checkpoint {d} does not match its config: {first}") from None
    from sparseshift.representations.runtime import resolve_device

    learner.to(resolve_device(device))
    learner.eval()
    return learner
