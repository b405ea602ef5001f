"""Exact resume of interrupted agent training and continuation of finished agents, pickle-free.

``train-agent`` writes its whole training state to one file, :data:`STATE_FILE`
(``training_state.safetensors`` in the agent folder), at the first rollout boundary after every
``checkpoint_every`` env steps and once more when training ends. The file is written to a
temporary sibling, flushed and renamed over the previous one (:func:`~sparseshift.envs.infra.io.
atomic_output`), so a process killed at any moment, in the middle of a write included, leaves
either the previous complete state or the new one, never a half-written file under that name
(its temporary file is removed by the next run that takes the folder's lock). Its tensors and its
JSON metadata are covered by digests (:func:`~sparseshift.representations.checkpoint.
write_tensors`); a file whose digests do not match is refused with one line, never read.

What the state holds (tensors in safetensors, everything else as JSON in the file's metadata,
read back through :func:`~sparseshift.envs.infra.io.parse_json` and
:func:`~sparseshift.envs.infra.io.check_schema`; nothing is unpickled):

* every network and optimizer of the SB3 algorithm (the names its ``_get_torch_save_params``
  lists: PPO's policy and Adam state; SAC's policy with target critics, actor/critic/entropy
  optimizers and ``log_ent_coef``), SAC's replay buffer (the filled part);
* SB3's counters (``num_timesteps``, ``_n_updates``, ``_episode_num``, the progress of the
  schedules), its last observation (in the memory layout SB3 handed the policy: a transposed
  image view is restored as one, because torch's convolution rounds differently on a contiguous
  copy) and episode starts, its episode-info and success buffers;
* the global RNGs SB3 draws from (Python's ``random``, NumPy's legacy global generator, torch's
  CPU generator and, where initialised, the CUDA generators) and the action space's generator;
* each training env's state, as a *replay record* (:class:`ReplayRecorder`): how its current
  episode began (the reset seed, or the exact state of the env's ``np_random`` generator before
  the reset, and the reset options) and the actions taken since. A fresh env is brought to the
  same state by replaying them; the digest of the last observation checks that it was (an env
  that does not replay exactly is refused with one line). This is exact for every deterministic
  env, whatever it keeps inside (MuJoCo's integrator state, shift nuisances and their per-frame
  generators, TimeLimit and Monitor counters), without env-specific code to keep in sync;
* the frozen encoder's per-env state (stateful learners only), the SB3 logger's pending values
  and how many rows ``logs/progress.csv`` had, and the training callbacks' counters (periodic
  evaluation history, next checkpoint and evaluation steps).

Resuming (:func:`restore`) rebuilds the model and envs exactly as a fresh run does, checks every
record against them (names, shapes, dtypes, finite values; one line for anything that does not
fit, never a traceback), loads it and calls ``learn(..., reset_num_timesteps=False)``: the final
weights are bit-identical to those of an uninterrupted run with the same config and worker count.
The state saved when training ends (before the final evaluation, which draws on no training
generator) is the state a longer run has at that step, so ``--continue N`` trains exactly as a
run from scratch for the agent's steps + N would.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger, make_output_format

from sparseshift.agents.policy_io import algo_name
from sparseshift.envs.infra.errors import ConfigError, safe_repr
from sparseshift.envs.infra.io import (
    MapOf,
    atomic_write_text,
    check_schema,
    parse_json,
    read_capped,
)
from sparseshift.representations.checkpoint import (
    CorruptFileError,
    flatten_optimizer,
    non_finite,
    read_tensors_and_metadata,
    unflatten_optimizer,
    write_tensors,
)

STATE_FILE = "training_state.safetensors"
#: Largest ``logs/progress.csv`` a resumed run keeps (a larger one starts afresh).
MAX_LOG_BYTES = 256 << 20
FORMAT = "sparseshift-agent-state"
FORMAT_VERSION = 1

#: Array dtypes a state may record (observations, actions, buffers, generator keys).
DTYPES: tuple[str, ...] = ("bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16",
                           "int32", "int64", "float16", "float32", "float64")
#: NumPy bit generators an env's ``np_random`` may use (built by name from this list only).
BIT_GENERATORS: Mapping[str, Callable[[], np.random.BitGenerator]] = {
    "PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM, "MT19937": np.random.MT19937,
    "Philox": np.random.Philox, "SFC64": np.random.SFC64,
}


# ---------------------------------------------------------------------------- JSON packing


def pack(value: Any) -> Any:
    """``value`` as strict JSON that :func:`unpack` inverts exactly: numpy arrays and scalars,
    integers beyond 2**53 (generator states) and non-finite floats are tagged objects; tuples
    become lists."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.ndarray):
        if str(value.dtype) not in DTYPES:
            raise TypeError(f"cannot record an array of {value.dtype}")
        return {"__array__": str(value.dtype), "shape": list(value.shape),
                "values": pack(value.ravel().tolist())}
    if isinstance(value, np.generic):
        return pack(value.item())
    if isinstance(value, int):
        return value if abs(value) < 2**53 else {"__int__": hex(value)}
    if isinstance(value, float):
        return value if np.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, list | tuple):
        return [pack(v) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k.startswith("__"):
                raise TypeError(f"cannot record the key {safe_repr(k)}")
            out[k] = pack(v)
        return out
    raise TypeError(f"cannot record a {type(value).__name__}")


_HEX = re.compile(r"-?0x[0-9a-f]{1,40}")


def unpack(value: Any, where: str) -> Any:
    """Inverse of :func:`pack` (tagged objects checked: one-line :class:`ConfigError`)."""
    if isinstance(value, list):
        return [unpack(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        dtype, shape, values = value.get("__array__"), value.get("shape"), value.get("values")
        if dtype not in DTYPES or not isinstance(shape, list) or not isinstance(values, list) \
                or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ConfigError(f"{where}: an array record is malformed")
        try:
            return np.asarray(unpack(values, where), dtype=dtype).reshape(shape)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: an array record does not fit its shape") from None
    if "__int__" in value:
        text = value["__int__"]
        if not isinstance(text, str) or not _HEX.fullmatch(text):
            raise ConfigError(f"{where}: a large integer record is malformed")
        return int(text, 16)
    if "__float__" in value:
        text = value["__float__"]
        if text not in ("nan", "inf", "-inf"):
            raise ConfigError(f"{where}: a float record is malformed")
        return float(text)
    return {k: unpack(v, where) for k, v in value.items()}


def obs_digest(obs: Any) -> str:
    """SHA-256 of an observation (arrays, dicts and tuples of them): dtype, shape and bytes."""
    h = hashlib.sha256()

    def add(x: Any) -> None:
        if isinstance(x, Mapping):
            for k in sorted(x):
                h.update(f"<{k}>".encode())
                add(x[k])
        elif isinstance(x, tuple | list):
            h.update(b"(")
            for v in x:
                add(v)
            h.update(b")")
        else:
            a = np.ascontiguousarray(x)
            h.update(f"{a.dtype}{a.shape};".encode())
            h.update(a.tobytes())

    add(obs)
    return h.hexdigest()


# ---------------------------------------------------------------------------- env replay


def _generator(state: Mapping[str, Any], where: str) -> np.random.Generator:
    name = state.get("bit_generator")
    if not isinstance(name, str) or name not in BIT_GENERATORS:
        raise ConfigError(f"{where}: unknown bit generator {safe_repr(name)}; known: "
                          f"{', '.join(BIT_GENERATORS)}")
    gen = np.random.Generator(BIT_GENERATORS[name]())
    try:
        gen.bit_generator.state = dict(state)
    except (TypeError, ValueError, KeyError, OverflowError):
        raise ConfigError(f"{where}: the state of a {name} generator is malformed") from None
    return gen


class ReplayRecorder(gym.Wrapper[Any, Any, Any, Any]):
    """The outermost wrapper of every training env: remembers how the current episode began and
    the actions since, so that a fresh env reaches exactly the same state by replaying them
    (:meth:`sparseshift_replay_state`, :meth:`sparseshift_replay`). Costs one copy of each
    action; everything else passes through unchanged."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self._seed: int | None = None
        self._rng: dict[str, Any] | None = None
        self._options: Any = None
        self._actions: list[np.ndarray] = []
        self._last_obs: Any = None
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        gen = getattr(self.unwrapped, "_np_random", None)
        self._rng = (None if seed is not None or gen is None
                     else dict(gen.bit_generator.state))
        self._seed, self._options, self._actions = seed, options, []
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs, self._started = obs, True
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        self._actions.append(np.array(action, copy=True))
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    def sparseshift_replay_state(self) -> dict[str, Any]:
        """The replay record of the current episode: JSON (``seed``, ``rng``, ``options``,
        ``obs_digest``) and the actions as one array (``actions``, ``[n, *action_shape]``).
        Never raises (it may run in a worker process): a problem is the record's ``error``."""
        if not self._started:
            return {"error": "an env was never reset; there is no state to record"}
        try:
            if self._actions:
                actions = np.stack(self._actions)
            else:
                space = self.action_space
                actions = np.zeros((0, *(space.shape or ())), dtype=space.dtype or np.float32)
            if str(actions.dtype) not in DTYPES:
                raise TypeError(f"actions of {actions.dtype}")
            record = {"seed": self._seed, "rng": pack(self._rng),
                      "options": pack(self._options)}
        except (TypeError, ValueError) as exc:
            return {"error": f"cannot record the env's state: {exc}"}
        return {**record, "obs_digest": obs_digest(self._last_obs), "actions": actions}

    def sparseshift_replay(self, record: Mapping[str, Any], actions: np.ndarray,
                           where: str = "training state") -> dict[str, str]:
        """Bring this (fresh) env to the recorded state: reset it as the episode was reset and
        step the recorded actions. Returns ``{"digest": ...}`` of the last observation, or
        ``{"error": ...}`` (one line) for a record the env cannot replay; never raises (it may
        run in a worker process)."""
        try:
            seed, options = record.get("seed"), unpack(record.get("options"), where)
            if seed is None:
                rng = unpack(record.get("rng"), where)
                if not isinstance(rng, dict):
                    raise ConfigError(f"{where}: an env record has neither a seed nor a "
                                      "generator state")
                self.unwrapped.np_random = _generator(rng, where)
            elif not isinstance(seed, int) or not 0 <= seed < 2**63:
                raise ConfigError(f"{where}: an env record's seed is out of range: "
                                  f"{safe_repr(seed)}")
            self.reset(seed=seed, options=options)
            for action in actions:
                self.step(action)
        except ConfigError as exc:
            return {"error": str(exc)}
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return {"error": f"{where}: an env could not replay its record "
                             f"({type(exc).__name__}: {safe_repr(first)})"}
        return {"digest": obs_digest(self._last_obs)}


# ---------------------------------------------------------------------------- global RNGs


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The global RNGs SB3 draws from: (JSON, tensors)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return {"python": pack(random.getstate()),
            # SB3 draws from NumPy's legacy global generator (its buffers' sampling)
            "numpy": pack(np.random.get_state(legacy=False))}, tensors  # noqa: NPY002


def set_rng_state(meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
                  where: str) -> None:
    py = unpack(meta.get("python"), where)
    try:
        random.setstate((py[0], tuple(py[1]), py[2]))
        np.random.set_state(unpack(meta.get("numpy"), where))  # noqa: NPY002
        torch.set_rng_state(tensors["rng.torch"])
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError):
        raise ConfigError(f"{where}: the recorded random generator states are malformed"
                          ) from None
    cuda = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in tensors.items()
                  if re.fullmatch(r"rng\.cuda\.\d{1,4}", k))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([v for _, v in cuda])


# ---------------------------------------------------------------------------- tensors trees


def flatten_tree(tree: Any, prefix: str, out: dict[str, torch.Tensor]) -> Any:
    """Tensors of a tensor / nested tuple, list or dict (None kept) into ``out`` under
    ``prefix``; returns the JSON structure :func:`unflatten_tree` rebuilds it from."""
    if tree is None:
        return None
    if isinstance(tree, torch.Tensor):
        t = tree.detach().cpu()
        axes = None
        if not t.is_contiguous() and t.dim() > 1:  # kept as the same kind of view (_layout)
            strides = [int(s) for s in t.stride()]
            order = sorted(range(t.dim()), key=lambda i: -strides[i])
            if t.permute(order).is_contiguous():
                axes, t = order, t.permute(order)
        out[prefix] = t.contiguous().clone()
        return {"tensor": prefix, "axes": axes}
    if isinstance(tree, Mapping):
        return {"dict": {str(k): flatten_tree(v, f"{prefix}.{k}", out)
                         for k, v in tree.items()}}
    if isinstance(tree, tuple | list):
        return {"tuple" if isinstance(tree, tuple) else "list":
                [flatten_tree(v, f"{prefix}.{i}", out) for i, v in enumerate(tree)]}
    raise TypeError(f"cannot record a {type(tree).__name__} in a state tree")


def unflatten_tree(spec: Any, tensors: Mapping[str, torch.Tensor], where: str,
                   device: torch.device | str = "cpu") -> Any:
    """Inverse of :func:`flatten_tree` (tensors moved to ``device``; a malformed record is one
    :class:`ConfigError` line)."""
    if spec is None:
        return None
    if isinstance(spec, dict) and "tensor" in spec and set(spec) <= {"tensor", "axes"}:
        name, axes = spec["tensor"], spec.get("axes")
        if isinstance(name, str) and name in tensors:
            t = tensors[name]
            if axes is None:
                return t.to(device)
            if isinstance(axes, list) and sorted(axes) == list(range(t.dim())):
                return t.permute([axes.index(i) for i in range(t.dim())]).to(device)
    elif isinstance(spec, dict) and len(spec) == 1:
        (kind, body), = spec.items()
        if kind == "dict" and isinstance(body, dict):
            return {k: unflatten_tree(v, tensors, where, device) for k, v in body.items()}
        if kind in ("tuple", "list") and isinstance(body, list):
            items = [unflatten_tree(v, tensors, where, device) for v in body]
            return tuple(items) if kind == "tuple" else items
    raise ConfigError(f"{where}: the encoder state record is malformed")


def _np_to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).copy())


def _layout(a: np.ndarray) -> list[int] | None:
    """The axes that make ``a`` C-contiguous when it is a transposed view of a contiguous array
    (SB3's ``VecTransposeImage`` hands the policy such views), else None. Restored with the same
    strides, because torch may pick another kernel, with other rounding, for another layout."""
    if a.flags.c_contiguous or a.ndim < 2:
        return None
    order = [int(i) for i in np.argsort([-s for s in a.strides], kind="stable")]
    return order if np.transpose(a, order).flags.c_contiguous else None


def _array_to_tensor(a: np.ndarray, key: str, out: dict[str, torch.Tensor]) -> Any:
    axes = _layout(a)
    out[key] = _np_to_tensor(np.transpose(a, axes) if axes is not None else a)
    return axes


def _array_from_tensor(t: torch.Tensor, axes: Any, where: str) -> np.ndarray:
    a = t.numpy().copy()
    if axes is None:
        return a
    if not isinstance(axes, list) or sorted(axes) != list(range(a.ndim)):
        raise ConfigError(f"{where}: an observation layout record is malformed")
    return np.transpose(a, np.argsort(axes))


def _obs_to_tensors(obs: Any, prefix: str, out: dict[str, torch.Tensor]) -> Any:
    if isinstance(obs, Mapping):
        keys = list(obs)
        return {"dict": keys, "axes": {k: _array_to_tensor(np.asarray(obs[k]), f"{prefix}.{k}",
                                                           out) for k in keys}}
    return {"array": True, "axes": _array_to_tensor(np.asarray(obs), prefix, out)}


def _obs_from_tensors(spec: Any, prefix: str, tensors: Mapping[str, torch.Tensor],
                      where: str) -> Any:
    try:
        if isinstance(spec, dict) and "dict" in spec:
            axes = spec.get("axes") or {}
            return {str(k): _array_from_tensor(tensors[f"{prefix}.{k}"], axes.get(k), where)
                    for k in spec["dict"]}
        return _array_from_tensor(tensors[prefix], spec.get("axes"), where)
    except (KeyError, TypeError, AttributeError):
        raise ConfigError(f"{where}: the recorded {prefix} is missing") from None


# ---------------------------------------------------------------------------- SB3 parts


def _getattr_path(obj: Any, name: str) -> Any:
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


BUFFER_FIELDS: tuple[str, ...] = ("observations", "next_observations", "actions", "rewards",
                                  "dones", "timeouts")


def _buffer_state(buffer: Any, out: dict[str, torch.Tensor]) -> dict[str, Any]:
    n = buffer.buffer_size if buffer.full else buffer.pos
    fields: dict[str, Any] = {}
    for name in BUFFER_FIELDS:
        value = getattr(buffer, name, None)
        if value is None:
            continue
        if isinstance(value, Mapping):
            for k, arr in value.items():
                out[f"buffer.{name}.{k}"] = torch.from_numpy(np.ascontiguousarray(arr[:n]))
            fields[name] = {"dict": sorted(value)}
        else:
            out[f"buffer.{name}"] = torch.from_numpy(np.ascontiguousarray(value[:n]))
            fields[name] = {"array": True}
    return {"pos": int(buffer.pos), "full": bool(buffer.full), "n": int(n), "fields": fields}


def _set_buffer_state(buffer: Any, meta: Mapping[str, Any],
                      tensors: Mapping[str, torch.Tensor], where: str) -> None:
    check_schema(meta, {"pos": int, "full": bool, "n": int, "fields": dict}, where,
                 "replay_buffer")
    n = meta["n"]
    if not 0 <= meta["pos"] < max(buffer.buffer_size, 1) or \
            n != (buffer.buffer_size if meta["full"] else meta["pos"]):
        raise ConfigError(f"{where}: the replay buffer record does not fit a buffer of "
                          f"{buffer.buffer_size}")

    def put(target: np.ndarray, key: str) -> None:
        t = tensors.get(key)
        if t is None or tuple(t.shape) != (n, *target.shape[1:]) or \
                str(t.numpy().dtype) != str(target.dtype):
            raise ConfigError(f"{where}: {key} does not fit the replay buffer")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ConfigError(f"{where}: {key} holds NaN or infinite values")
        target[:n] = t.numpy()

    present = {name for name in BUFFER_FIELDS if getattr(buffer, name, None) is not None}
    if set(meta["fields"]) != present:
        raise ConfigError(f"{where}: the replay buffer record holds "
                          f"{safe_repr(sorted(meta['fields']))}, the buffer {sorted(present)}")
    for name in meta["fields"]:
        value = getattr(buffer, name)
        if isinstance(value, Mapping):
            for k in value:
                put(value[k], f"buffer.{name}.{k}")
        else:
            put(value, f"buffer.{name}")
    buffer.pos, buffer.full = meta["pos"], meta["full"]


def _space_rng(space: Any) -> Any:
    gen = getattr(space, "_np_random", None)
    return None if gen is None else pack(dict(gen.bit_generator.state))


# ---------------------------------------------------------------------------- logger


class RowCountingCSV(CSVOutputFormat):
    """SB3's CSV log that counts its data rows (a checkpoint records the count) and can go on
    with a file whose first rows are kept (:func:`training_logger`)."""

    def __init__(self, filename: str, keep: int | None = None) -> None:
        path = Path(filename)
        self.rows = 0
        kept: list[str] = []
        if keep is not None and keep >= 0 and path.is_file():
            try:
                text = read_capped(path, "training log", max_bytes=MAX_LOG_BYTES).decode("utf-8")
            except (ConfigError, UnicodeDecodeError):
                text = ""
            lines = text.splitlines()
            if lines and len(lines) - 1 >= keep:
                kept = lines[: keep + 1]
        if kept:
            atomic_write_text(path, "".join(line + "\n" for line in kept))
            self.file = open(path, "r+")  # kept open, as SB3's own writer keeps its file
            self.file.seek(0, 2)
            self.keys = kept[0].split(",") if kept[0] else []
            self.rows = len(kept) - 1
        else:
            super().__init__(str(path))
        self.separator, self.quotechar = ",", '"'

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]],
              step: int = 0) -> None:
        super().write(key_values, key_excluded, step)
        self.rows += 1


def training_logger(folder: Path, tensorboard: bool, resume_step: int | None = None,
                    csv_rows: int | None = None) -> Logger:
    """SB3's logger of ``train-agent``: ``progress.csv`` (and TensorBoard events). Resuming at
    ``resume_step``, the CSV keeps its first ``csv_rows`` rows (those written before the state
    was saved) and TensorBoard hides the events the interrupted run wrote after that step
    (``purge_step``)."""
    folder.mkdir(parents=True, exist_ok=True)
    formats: list[KVWriter] = [RowCountingCSV(str(folder / "progress.csv"),
                                              csv_rows if resume_step is not None else None)]
    if tensorboard:
        if resume_step is None:
            formats.append(make_output_format("tensorboard", str(folder)))
        else:
            from stable_baselines3.common.logger import TensorBoardOutputFormat
            from torch.utils.tensorboard import SummaryWriter

            tb = TensorBoardOutputFormat.__new__(TensorBoardOutputFormat)
            tb.writer = SummaryWriter(log_dir=str(folder), purge_step=resume_step + 1)
            tb._is_closed = False
            formats.append(tb)
    return Logger(folder=str(folder), output_formats=formats)


def _logger_state(logger: Logger) -> dict[str, Any]:
    rows = next((f.rows for f in logger.output_formats if isinstance(f, RowCountingCSV)), None)
    values = {k: v for k, v in logger.name_to_value.items()
              if isinstance(v, int | float | np.integer | np.floating)
              and not isinstance(v, bool | np.bool_)}
    return {"csv_rows": rows, "values": pack({k: values[k] for k in values}),
            "counts": {k: int(v) for k, v in logger.name_to_count.items() if k in values},
            "excluded": {k: list(v) for k, v in logger.name_to_excluded.items() if k in values}}


def _set_logger_state(logger: Logger, meta: Mapping[str, Any], where: str) -> None:
    values = unpack(meta["values"], where)
    for k, v in values.items():
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise ConfigError(f"{where}: the logger value {safe_repr(k)} is not a number")
        logger.name_to_value[k] = v
        logger.name_to_count[k] = max(int(meta["counts"].get(k, 1)), 1)
        excluded = meta["excluded"].get(k)
        if excluded is not None:
            logger.name_to_excluded[k] = tuple(excluded)


# ---------------------------------------------------------------------------- save / load


@dataclass
class TrainingState:
    """A saved training state: the JSON part (``meta``) and its tensors."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def steps(self) -> int:
        return int(self.meta["steps"])

    @property
    def extra(self) -> dict[str, Any]:
        """What the caller recorded alongside (callback counters, elapsed time)."""
        value: dict[str, Any] = self.meta["extra"]
        return value


#: What the JSON part of a state holds (checked before anything is used).
STATE_SCHEMA: Mapping[str, Any] = {
    "format": str, "format_version": int, "steps": int, "algo": str, "identity": dict,
    "counters": {"num_timesteps": int, "n_updates": int, "episode_num": int,
                 "progress_remaining": float},
    "ep_info_buffer": list, "ep_success_buffer": list, "rng": dict, "optimizers": dict,
    "variables": [str], "modules": [str], "last_obs": dict, "envs": [dict],
    "encoder_state?": (dict, None), "replay_buffer?": (dict, None),
    "logger": {"csv_rows": (int, None), "values": dict, "counts": MapOf(int),
               "excluded": MapOf([str])},
    "extra": dict, "action_space_rng?": (dict, None),
}
_ENV_SCHEMA: Mapping[str, Any] = {"seed?": (int, None), "obs_digest": str}


def capture(model: Any, venv: Any, identity: Mapping[str, Any], extra: Mapping[str, Any]
            ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The training state of ``model`` (SB3) and its training ``venv`` right now (at a rollout
    boundary): (JSON metadata, tensors)."""
    tensors: dict[str, torch.Tensor] = {}
    names, variables = model._get_torch_save_params()
    optimizers: dict[str, Any] = {}
    modules: list[str] = []
    for name in names:
        obj = _getattr_path(model, name)
        if isinstance(obj, torch.optim.Optimizer):
            flat, meta = flatten_optimizer(obj.state_dict())
            tensors.update({f"{name}/{k}": v.detach().cpu().clone() for k, v in flat.items()})
            optimizers[name] = pack(meta)
        else:
            modules.append(name)
            tensors.update({f"{name}/{k}": v.detach().cpu().clone()
                            for k, v in obj.state_dict().items()})
    for name in variables:
        tensors[f"var/{name}"] = _getattr_path(model, name).detach().cpu().clone()
    last_obs = _obs_to_tensors(model._last_obs, "last_obs", tensors)
    tensors["episode_starts"] = _np_to_tensor(np.asarray(model._last_episode_starts))
    envs = []
    for i, record in enumerate(venv.env_method("sparseshift_replay_state")):
        if "error" in record:
            raise ConfigError(str(record["error"]))
        tensors[f"env.{i}.actions"] = _np_to_tensor(record.pop("actions"))
        envs.append(record)
    encoder_state = None
    if getattr(getattr(venv, "encoder", None), "stateful", False):
        encoder_state = flatten_tree(venv.encoder_state, "encoder_state", tensors)
    buffer = getattr(model, "replay_buffer", None)
    rng, rng_tensors = rng_state()
    tensors.update(rng_tensors)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "steps": int(model.num_timesteps),
        "algo": algo_name(model), "identity": dict(identity),
        "counters": {"num_timesteps": int(model.num_timesteps),
                     "n_updates": int(getattr(model, "_n_updates", 0)),
                     "episode_num": int(model._episode_num),
                     "progress_remaining": float(model._current_progress_remaining)},
        "ep_info_buffer": pack(list(model.ep_info_buffer or [])),
        "ep_success_buffer": pack(list(model.ep_success_buffer or [])),
        "rng": rng, "action_space_rng": _space_rng(model.action_space),
        "optimizers": optimizers, "variables": list(variables), "modules": modules,
        "last_obs": last_obs, "envs": envs, "encoder_state": encoder_state,
        "replay_buffer": _buffer_state(buffer, tensors) if buffer is not None else None,
        "logger": _logger_state(model.logger), "extra": dict(extra),
    }
    return meta, tensors


def save_state(path: Path, model: Any, venv: Any, identity: Mapping[str, Any],
               extra: Mapping[str, Any]) -> None:
    """Write the training state to ``path`` atomically (see the module docstring)."""
    meta, tensors = capture(model, venv, identity, extra)
    write_tensors(path, tensors, {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                                  "state": json.dumps(meta, allow_nan=False)})


def read_state(path: Path) -> TrainingState | None:
    """The training state saved at ``path``; None when there is none. A file that is damaged
    (digests), unreadable or not a state of this format is a one-line :class:`ConfigError`
    saying how to go on."""
    if not path.exists():
        return None
    hint = (f"; delete {path} to train this agent again from the start (or train into a new "
            "--out)")
    try:
        tensors, meta = read_tensors_and_metadata(path, require_metadata_digest=True)
    except CorruptFileError as exc:
        raise ConfigError(f"the saved training state is unusable: {exc}{hint}") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != str(FORMAT_VERSION):
        raise ConfigError(f"{path} is not a training state of format {FORMAT} "
                          f"{FORMAT_VERSION}{hint}")
    where = str(path)
    state = parse_json(meta.get("state", ""), where, "checkpoint metadata")
    if not isinstance(state, dict):
        raise ConfigError(f"{where}: the training state is not a JSON object{hint}")
    check_schema(state, STATE_SCHEMA, where, "state")
    for i, env in enumerate(state["envs"]):
        check_schema(env, _ENV_SCHEMA, where, f"state.envs[{i}]")
    return TrainingState(path, state, tensors)


def restore(model: Any, venv: Any, state: TrainingState) -> None:
    """Load ``state`` into a freshly built ``model`` and its training ``venv`` (built exactly as
    for the interrupted run): networks, optimizers, counters, the envs (replayed and checked),
    the encoder state, the replay buffer, the logger's pending values and, last, the RNGs.
    Everything is checked against what the fresh model and envs hold (names, shapes, dtypes,
    finite values) before it is used: anything that does not fit is a one-line
    :class:`ConfigError`."""
    meta, tensors, where = state.meta, state.tensors, str(state.path)
    algo = algo_name(model)
    if meta["algo"] != algo:
        raise ConfigError(f"{where}: a state of {safe_repr(meta['algo'])}, not {algo}")
    bad = non_finite(tensors)
    if bad:
        raise ConfigError(f"{where}: NaN or infinite values in {', '.join(bad[:3])}")
    try:
        _load_networks(model, meta, tensors, where)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{where}: the saved networks do not fit the model "
                          f"({safe_repr(first)})") from None
    c = meta["counters"]
    if c["num_timesteps"] != meta["steps"] or min(c["num_timesteps"], c["n_updates"],
                                                  c["episode_num"]) < 0:
        raise ConfigError(f"{where}: its step counters are inconsistent")
    model.num_timesteps = c["num_timesteps"]
    model._n_updates = c["n_updates"]
    model._episode_num = c["episode_num"]
    model._current_progress_remaining = c["progress_remaining"]
    window = model._stats_window_size
    infos = unpack(meta["ep_info_buffer"], where)
    check_schema(infos, [{"r": float, "l": int, "t": float}], where, "state.ep_info_buffer")
    successes = unpack(meta["ep_success_buffer"], where)
    check_schema(successes, [bool], where, "state.ep_success_buffer")
    model.ep_info_buffer = deque(infos, maxlen=window)
    model.ep_success_buffer = deque(successes, maxlen=window)
    n_envs = venv.num_envs
    model._last_obs = _obs_from_tensors(meta["last_obs"], "last_obs", tensors, where)
    _check_obs(model._last_obs, model.observation_space, n_envs, where)
    starts = tensors.get("episode_starts")
    if starts is None or tuple(starts.shape) != (n_envs,) or starts.dtype != torch.bool:
        raise ConfigError(f"{where}: episode_starts must be {n_envs} booleans")
    model._last_episode_starts = starts.numpy().copy()
    if len(meta["envs"]) != n_envs:
        raise ConfigError(f"{where}: a state of {len(meta['envs'])} envs, not {n_envs}")
    for i, record in enumerate(meta["envs"]):
        actions = tensors.get(f"env.{i}.actions")
        if actions is None or actions.dim() < 1:
            raise ConfigError(f"{where}: the actions of env {i} are missing")
        result = venv.env_method("sparseshift_replay", record, actions.numpy(), where,
                                 indices=[i])[0]
        if "error" in result:
            raise ConfigError(str(result["error"]))
        if result["digest"] != record["obs_digest"]:
            raise ConfigError(f"{where}: env {i} did not replay to its saved state (its last "
                              "observation differs): the env is not deterministic, or its "
                              "code or library versions changed; train again from the start")
    encoder = getattr(venv, "encoder", None)
    if (meta.get("encoder_state") is not None) != bool(getattr(encoder, "stateful", False)):
        raise ConfigError(f"{where}: the encoder state record does not fit the encoder")
    if meta.get("encoder_state") is not None:
        current = venv.encoder_state
        restored = unflatten_tree(meta["encoder_state"], tensors, where, _tree_device(current))
        if _tree_shape(restored) != _tree_shape(current):
            raise ConfigError(f"{where}: the encoder state does not fit the encoder")
        venv._state = restored
    buffer = getattr(model, "replay_buffer", None)
    if (buffer is None) != (meta.get("replay_buffer") is None):
        raise ConfigError(f"{where}: the replay buffer record does not fit the model")
    if buffer is not None:
        _set_buffer_state(buffer, meta["replay_buffer"], tensors, where)
    _set_logger_state(model.logger, meta["logger"], where)
    space_rng = meta.get("action_space_rng")
    if space_rng is not None:
        model.action_space._np_random = _generator(unpack(space_rng, where), where)
    set_rng_state(meta["rng"], tensors, where)


#: What Adam keeps per parameter (``max_exp_avg_sq`` with amsgrad).
ADAM_STATE: frozenset[str] = frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"})


def _load_networks(model: Any, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
                   where: str) -> None:
    """The networks, optimizers and variables of ``model`` from the state (checked)."""
    names, variables = model._get_torch_save_params()
    recorded = set(meta["modules"]) | set(meta["optimizers"])
    if recorded != set(names) or sorted(meta["variables"]) != sorted(variables):
        raise ConfigError(f"{where}: its networks ({', '.join(sorted(recorded))}) do not fit "
                          f"the {type(model).__name__} model ({', '.join(names)})")
    for name in names:
        obj = _getattr_path(model, name)
        part = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(f"{name}/")}
        if isinstance(obj, torch.optim.Optimizer):
            if name not in meta["optimizers"]:
                raise ConfigError(f"{where}: {name} is recorded as a network, not an optimizer")
            obj.load_state_dict(_checked_optimizer(obj, part, meta["optimizers"][name],
                                                   f"{where} ({name})"))
            continue
        if name not in meta["modules"]:
            raise ConfigError(f"{where}: {name} is recorded as an optimizer, not a network")
        own = obj.state_dict()
        if set(part) != set(own) or any(tuple(part[k].shape) != tuple(own[k].shape)
                                        or part[k].dtype != own[k].dtype for k in own):
            raise ConfigError(f"{where}: the saved {name} does not fit the model (its tensors' "
                              "names, shapes or dtypes differ)")
        obj.load_state_dict(part, strict=True)
    for name in variables:
        var = _getattr_path(model, name)
        t = tensors.get(f"var/{name}")
        if t is None or t.shape != var.shape or t.dtype != var.dtype:
            raise ConfigError(f"{where}: the saved {name} does not fit the model")
        var.data.copy_(t)


def _checked_optimizer(opt: torch.optim.Optimizer, part: Mapping[str, torch.Tensor],
                       packed: Any, where: str) -> dict[str, Any]:
    """The state dict to load into ``opt``: the recorded per-parameter state (checked against
    the parameters' shapes and dtypes) with ``opt``'s own parameter groups (the hyperparameters
    are part of the agent's identity; SB3 sets the learning rate before every update)."""
    saved = unflatten_optimizer(part, unpack(packed, where), where)
    own = opt.state_dict()
    if [g["params"] for g in saved["param_groups"]] != [g["params"] for g in own["param_groups"]]:
        raise ConfigError(f"{where}: the optimizer's parameter groups do not fit the model")
    params = [p for g in opt.param_groups for p in g["params"]]
    for index, entries in saved["state"].items():
        if not 0 <= index < len(params):
            raise ConfigError(f"{where}: optimizer state of a parameter {index} the model lacks")
        p = params[index]
        if not set(entries) <= ADAM_STATE or "step" not in entries:
            raise ConfigError(f"{where}: the optimizer state of parameter {index} holds "
                              f"{safe_repr(sorted(entries))}; Adam's is {sorted(ADAM_STATE)}")
        for key, value in entries.items():
            ok = isinstance(value, torch.Tensor) and (
                value.dim() == 0 and value.is_floating_point() if key == "step"
                else value.shape == p.shape and value.dtype == p.dtype)
            if not ok:
                raise ConfigError(f"{where}: the optimizer's {key} of parameter {index} does "
                                  "not fit it")
    return {"state": saved["state"], "param_groups": own["param_groups"]}


def _check_obs(obs: Any, space: Any, n_envs: int, where: str) -> None:
    """The saved last observation must be a batch of ``n_envs`` of ``space`` (shape, dtype)."""
    spaces = getattr(space, "spaces", None)
    pairs = ([(k, obs.get(k) if isinstance(obs, dict) else None, s) for k, s in spaces.items()]
             if spaces is not None else [("", obs, space)])
    if spaces is not None and (not isinstance(obs, dict) or set(obs) != set(spaces)):
        raise ConfigError(f"{where}: the saved observation does not fit the observation space")
    for key, value, sub in pairs:
        if not isinstance(value, np.ndarray) or value.shape != (n_envs, *sub.shape) or \
                value.dtype != sub.dtype:
            raise ConfigError(f"{where}: the saved observation {key} does not fit the "
                              f"observation space ({n_envs} x {sub.shape} of {sub.dtype})")


def _tree_shape(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return (tuple(tree.shape), str(tree.dtype))
    if isinstance(tree, Mapping):
        return {k: _tree_shape(v) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return (type(tree).__name__, [_tree_shape(v) for v in tree])
    return None


def _tree_device(tree: Any) -> torch.device | str:
    if isinstance(tree, torch.Tensor):
        return tree.device
    if isinstance(tree, Mapping):
        tree = list(tree.values())
    if isinstance(tree, tuple | list):
        for v in tree:
            d = _tree_device(v)
            if d != "cpu":
                return d
    return "cpu"
