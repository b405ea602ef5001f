"""Agents on disk without pickles: policy weights in safetensors, everything else JSON.

Stable-Baselines3's ``load`` unpickles (cloudpickle) entries of its ``.zip`` (spaces, schedules,
``policy_kwargs``, ``ep_info_buffer``), so loading a shared ``agent.zip`` can run arbitrary code.
sparseshift never loads one. An agent is saved as

* ``policy.safetensors``: the policy's ``state_dict`` (tensors only);
* ``agent.json`` ``"policy"``: the SB3 algorithm and policy name, the observation and action
  spaces as JSON (:func:`space_to_json`), the ``policy_kwargs`` with the features extractor named
  from a fixed list (:data:`EXTRACTORS`), and the SHA-256 content digest of the tensors.

:func:`load_policy` rebuilds the policy from that description and loads the weights, checking the
digest and that every tensor is finite; nothing it reads can name code to run. An SB3 ``.zip`` is
still written next to them (``agent.sb3.zip``) as an export for users who trust the file; it is
never read here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sparseshift.envs.errors import ConfigError
from sparseshift.representations.checkpoint import (
    CorruptFileError,
    read_tensors,
    tensor_digest,
    write_tensors,
)

POLICY_FILE = "policy.safetensors"
SB3_EXPORT = "agent.sb3.zip"


def _extractors() -> dict[str, type]:
    from stable_baselines3.common.torch_layers import (
        CombinedExtractor,
        FlattenExtractor,
        NatureCNN,
    )

    from sparseshift.agents.extractors import DeepSetsExtractor

    return {c.__name__: c for c in (DeepSetsExtractor, CombinedExtractor, FlattenExtractor,
                                    NatureCNN)}


#: Features extractors an agent file may name (anything else is refused).
EXTRACTORS: tuple[str, ...] = ("DeepSetsExtractor", "CombinedExtractor", "FlattenExtractor",
                               "NatureCNN")
ALGOS: tuple[str, ...] = ("ppo", "sac")


# ---------------------------------------------------------------------------- spaces as JSON


def _bound(a: np.ndarray) -> Any:
    """A Box bound as JSON: one number when uniform, else nested lists; inf as strings."""
    def num(x: float) -> Any:
        return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")

    flat = a.ravel()
    if flat.size and np.all(flat == flat[0]):
        return num(float(flat[0]))
    return np.vectorize(num, otypes=[object])(a.astype(np.float64)).tolist()


def _unbound(v: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    def num(x: Any) -> float:
        if x == "inf":
            return math.inf
        if x == "-inf":
            return -math.inf
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise ValueError(f"bad bound {x!r}")
        return float(x)

    arr = np.vectorize(num, otypes=[np.float64])(np.asarray(v, dtype=object)) \
        if isinstance(v, list) else np.full(shape, num(v))
    if arr.shape != shape:
        raise ValueError(f"bound of shape {arr.shape}, space {shape}")
    return arr.astype(dtype)


def space_to_json(space: gym.Space[Any]) -> dict[str, Any]:
    """Box, Discrete, MultiDiscrete and Dict spaces as JSON (exactly invertible)."""
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": _bound(space.low), "high": _bound(space.high)}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(v) for k, v in space.spaces.items()}}
    raise ConfigError(f"cannot describe a {type(space).__name__} space as JSON")


def space_from_json(d: Mapping[str, Any]) -> gym.Space[Any]:
    """Inverse of :func:`space_to_json` (ValueError on anything malformed)."""
    kind = d.get("type")
    if kind == "Box":
        shape = tuple(int(s) for s in d["shape"])
        dtype = np.dtype(str(d["dtype"]))
        if dtype.kind not in "fiu":
            raise ValueError(f"Box dtype {dtype}")
        return gym.spaces.Box(_unbound(d["low"], shape, dtype), _unbound(d["high"], shape, dtype),
                              shape, dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete([int(v) for v in d["nvec"]])
    if kind == "Dict":
        return gym.spaces.Dict({str(k): space_from_json(v) for k, v in d["spaces"].items()})
    raise ValueError(f"unknown space type {kind!r}")


# ---------------------------------------------------------------------------- save and load


def describe_policy(algo: str, policy_name: str, policy_kwargs: Mapping[str, Any],
                    model: Any) -> dict[str, Any]:
    """The JSON description of a trained SB3 model's policy (everything but the weights)."""
    kwargs = dict(policy_kwargs)
    cls = kwargs.pop("features_extractor_class", None)
    if cls is not None:
        kwargs["features_extractor_class"] = cls.__name__
    return {"algo": algo, "policy": policy_name, "policy_kwargs": kwargs,
            "observation_space": space_to_json(model.observation_space),
            "action_space": space_to_json(model.action_space)}


def save_policy(model: Any, path: Path) -> str:
    """Write the policy weights of an SB3 ``model`` to ``path`` (safetensors, atomically) after
    checking they are finite; return their content digest."""
    # Cloned: SB3 shares the features extractor between actor and critic, and safetensors
    # refuses tensors that share memory (on load each name fills the same parameter again).
    state = {k: v.detach().cpu().clone() for k, v in model.policy.state_dict().items()}
    bad = sorted(k for k, v in state.items() if v.is_floating_point()
                 and not bool(torch.isfinite(v).all()))
    if bad:
        raise ConfigError(f"the policy has non-finite weights ({', '.join(bad[:3])}); not saved")
    write_tensors(path, state, {"format": "sparseshift-policy"})
    return tensor_digest(state)


def build_policy(desc: Mapping[str, Any]) -> Any:
    """An untrained SB3 policy built from a JSON description (see :func:`describe_policy`)."""
    from stable_baselines3 import PPO, SAC

    algo = desc.get("algo")
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}")
    algo_cls: Any = PPO if algo == "ppo" else SAC
    name = desc.get("policy")
    if name not in algo_cls.policy_aliases:
        raise ValueError(f"unknown {algo} policy {name!r}")
    kwargs = dict(desc.get("policy_kwargs") or {})
    extractor = kwargs.get("features_extractor_class")
    if extractor is not None:
        if extractor not in EXTRACTORS:
            raise ValueError(f"features extractor {extractor!r} is not one of "
                             f"{', '.join(EXTRACTORS)}")
        kwargs["features_extractor_class"] = _extractors()[extractor]
    obs = space_from_json(desc["observation_space"])
    act = space_from_json(desc["action_space"])
    return algo_cls.policy_aliases[name](obs, act, lambda _: 0.0, **kwargs)


def load_policy(agent_dir: Path, desc: Mapping[str, Any]) -> Any:
    """The trained policy of ``agent_dir`` (eval mode, CPU), rebuilt from ``desc`` (the
    ``"policy"`` entry of ``agent.json``) and its weights file, which must match the recorded
    digest and be finite. Any problem is a one-line :class:`ConfigError`."""
    path = agent_dir / str(desc.get("file", POLICY_FILE))
    try:
        policy = build_policy(desc)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{agent_dir}/agent.json: the policy description is invalid "
                          f"({type(exc).__name__}: {exc})") from None
    try:
        state = read_tensors(path, expect_digest=desc.get("digest"))
    except CorruptFileError as exc:
        raise ConfigError(str(exc)) from None
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path} does not fit the policy in agent.json ({first})") from None
    policy.set_training_mode(False)
    return policy
