"""Agents on disk without pickles: policy weights in safetensors, everything else JSON.

Stable-Baselines3's ``load`` unpickles (cloudpickle) entries of its ``.zip`` (spaces, schedules,
``policy_kwargs``, ``ep_info_buffer``), so loading a shared ``agent.zip`` can run arbitrary code.
sparseshift never loads one. An agent is saved as

* ``policy.safetensors``: the policy's ``state_dict`` (tensors only);
* ``agent.json`` ``"policy"``: the SB3 algorithm and policy name, the observation and action
  spaces as JSON (:func:`space_to_json`), the ``policy_kwargs`` with the features extractor named
  from a fixed list (:data:`EXTRACTORS`), and the SHA-256 content digest of the tensors.

:func:`load_policy` rebuilds the policy from that description and loads the weights, checking the
digest and that every tensor is finite; nothing it reads can name code to run. Before anything is
built the description is checked field by field (:func:`check_policy_description`): its spaces
and sizes are bounded (:data:`MAX_SPACE_ELEMENTS`, :data:`MAX_CATEGORIES`) and the parameters of
the policy they describe are counted (:func:`estimate_parameters`) and refused above
:data:`MAX_POLICY_PARAMETERS`; ``file`` must name a file inside the agent folder. The weights
file records, covered by its metadata digest, the digest of the spaces and algorithm it was
trained for (:func:`spaces_digest`), so an ``agent.json`` whose spaces were edited is refused
(policies written before this entry existed load on their tensor digest). An SB3 ``.zip`` is
still written next to them (``agent.sb3.zip``) as an export for users who trust the file; it is
never read here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sparseshift.envs.infra.errors import ConfigError, safe_repr
from sparseshift.envs.infra.io import DIGEST, Choice, MapOf, check_schema, inside
from sparseshift.representations.checkpoint import (
    CorruptFileError,
    read_tensors_and_metadata,
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
            raise ValueError(f"bad bound {safe_repr(x)}")
        return float(x)

    arr = np.vectorize(num, otypes=[np.float64])(np.asarray(v, dtype=object)) \
        if isinstance(v, list) else np.full(shape, num(v))
    if arr.shape != shape:
        raise ValueError(f"bound of shape {arr.shape}, space {shape}")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not (np.all(np.isfinite(arr)) and np.all(arr >= info.min) and np.all(arr <= info.max)):
            raise ValueError(f"bounds outside the range of {dtype}")
    elif np.any(np.isfinite(arr) & (np.abs(arr) > np.finfo(dtype).max)):
        raise ValueError(f"bounds outside the range of {dtype}")
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


#: Most elements of one Box space (a 1024 x 1024 x 3 image and more; the largest sparseshift
#: observation is a 512 x 512 x 3 image).
MAX_SPACE_ELEMENTS = 2**22
#: Most categories of a Discrete space, or of all the entries of a MultiDiscrete one together.
MAX_CATEGORIES = 2**20
#: Most sub-spaces of a Dict space, and deepest nesting of Dict spaces.
MAX_DICT_SPACES = 64
MAX_DICT_DEPTH = 4
#: Most parameters of a policy an agent file may describe (2**28: 1 GiB of float32): counted
#: from the spaces, the extractor and ``net_arch`` before anything is built.
MAX_POLICY_PARAMETERS = 2**28
BOX_DTYPES: tuple[str, ...] = ("float16", "float32", "float64", "uint8", "uint16", "uint32",
                               "uint64", "int8", "int16", "int32", "int64")
_BOUND = (float, Choice("inf", "-inf"), list)
_SPACE_SCHEMAS: Mapping[str, Any] = {
    "Box": {"shape": [int], "dtype": Choice(*BOX_DTYPES), "low": _BOUND, "high": _BOUND},
    "Discrete": {"n": int, "start?": int},
    "MultiDiscrete": {"nvec": [int]},
    "Dict": {"spaces": MapOf(dict)},
}


class SpaceSize:
    """What a space costs a policy: ``flat`` (values after flattening, one-hot for discrete
    spaces), ``images`` (the (channels, height, width) of image Boxes, which SB3 gives a CNN),
    ``actions`` (the outputs of an action head for it)."""

    def __init__(self, flat: int = 0, images: tuple[tuple[int, int, int], ...] = (),
                 actions: int = 0, box_values: int = 0) -> None:
        self.flat, self.images, self.actions, self.box_values = flat, images, actions, box_values


def check_space(d: Any, where: str, field: str, depth: int = 0) -> SpaceSize:
    """Check a space's JSON (:func:`space_to_json`) before anything is allocated for it: its
    type, fields and sizes (:data:`MAX_SPACE_ELEMENTS`, :data:`MAX_CATEGORIES`,
    :data:`MAX_DICT_SPACES`); one line naming ``where`` and ``field``. Returns its size."""
    check_schema(d, {"type": Choice(*_SPACE_SCHEMAS)}, where, field)
    kind = d["type"]
    check_schema(d, _SPACE_SCHEMAS[kind], where, field)
    if kind == "Box":
        shape = d["shape"]
        if not 1 <= len(shape) <= 8 or any(not 1 <= n <= MAX_SPACE_ELEMENTS for n in shape):
            raise ConfigError(f"{where}: {field}.shape must be 1 to 8 sizes in [1, "
                              f"{MAX_SPACE_ELEMENTS}], got {safe_repr(shape)}")
        n = math.prod(shape)
        if n > MAX_SPACE_ELEMENTS:
            raise ConfigError(f"{where}: {field}.shape {safe_repr(shape)} has {n:,} elements; a "
                              f"space has at most {MAX_SPACE_ELEMENTS:,}")
        images: tuple[tuple[int, int, int], ...] = ()
        if d["dtype"] == "uint8" and len(shape) == 3:
            c, h, w = (shape[0], shape[1], shape[2]) if shape[0] in (1, 3, 4) else (
                shape[2], shape[0], shape[1])
            images = ((c, h, w),)
        return SpaceSize(flat=n, images=images, actions=n, box_values=n)
    if kind == "Discrete":
        n = d["n"]
        if not 1 <= n <= MAX_CATEGORIES:
            raise ConfigError(f"{where}: {field}.n must be in [1, {MAX_CATEGORIES}], got "
                              f"{safe_repr(n)}")
        if abs(d.get("start", 0)) > 2**62:
            raise ConfigError(f"{where}: {field}.start is out of range: "
                              f"{safe_repr(d.get('start'))}")
        return SpaceSize(flat=n, actions=n)
    if kind == "MultiDiscrete":
        nvec = d["nvec"]
        if not nvec or any(not 1 <= n <= MAX_CATEGORIES for n in nvec) or \
                sum(nvec) > MAX_CATEGORIES:
            raise ConfigError(f"{where}: {field}.nvec must be sizes in [1, {MAX_CATEGORIES}] "
                              f"summing to at most {MAX_CATEGORIES}, got {safe_repr(nvec)}")
        return SpaceSize(flat=sum(nvec), actions=sum(nvec))
    spaces = d["spaces"]
    if not spaces or len(spaces) > MAX_DICT_SPACES or depth >= MAX_DICT_DEPTH:
        raise ConfigError(f"{where}: {field} must hold 1 to {MAX_DICT_SPACES} spaces, nested at "
                          f"most {MAX_DICT_DEPTH} deep")
    total = SpaceSize()
    for key, sub in spaces.items():
        size = check_space(sub, where, f"{field}.spaces.{key}", depth + 1)
        total = SpaceSize(total.flat + size.flat, total.images + size.images,
                          total.actions + size.actions, total.box_values + size.box_values)
    if total.box_values > MAX_SPACE_ELEMENTS:
        raise ConfigError(f"{where}: {field} has {total.box_values:,} elements; a space has at "
                          f"most {MAX_SPACE_ELEMENTS:,}")
    return total


def space_from_json(d: Mapping[str, Any], where: str = "space", field: str = "space"
                    ) -> gym.Space[Any]:
    """Inverse of :func:`space_to_json`, after :func:`check_space` (a :class:`ConfigError`, a
    ValueError, on anything malformed or too large)."""
    check_space(d, where, field)
    try:
        return _space_from_json(d)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{where}: {field} is not a valid space ({safe_repr(str(exc))})"
                          ) from None


def _space_from_json(d: Mapping[str, Any]) -> gym.Space[Any]:
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
        return gym.spaces.Dict({str(k): _space_from_json(v) for k, v in d["spaces"].items()})
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


def spaces_digest(algo: str, observation_space: Mapping[str, Any],
                  action_space: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a policy's algorithm and spaces (as
    :func:`space_to_json` writes them): recorded in the weights file, compared with
    ``agent.json``'s description on load."""
    payload = json.dumps({"algo": algo, "observation_space": observation_space,
                          "action_space": action_space}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def algo_name(model: Any) -> str:
    """``"ppo"`` or ``"sac"``: the SB3 algorithm of ``model``, also for our subclasses of it
    (:class:`~sparseshift.agents.pipeline.PipelinedPPO` is PPO, the same weights and state)."""
    for cls in type(model).__mro__:
        if cls.__module__.startswith("stable_baselines3."):
            return cls.__name__.lower()
    return type(model).__name__.lower()


def save_policy(model: Any, path: Path) -> str:
    """Write the policy weights of an SB3 ``model`` to ``path`` (safetensors, atomically) after
    checking they are finite, with the :func:`spaces_digest` of its algorithm and spaces in the
    (digest-covered) metadata; return their content digest."""
    # Cloned: SB3 shares the features extractor between actor and critic, and safetensors
    # refuses tensors that share memory (on load each name fills the same parameter again).
    state = {k: v.detach().cpu().clone() for k, v in model.policy.state_dict().items()}
    bad = sorted(k for k, v in state.items() if v.is_floating_point()
                 and not bool(torch.isfinite(v).all()))
    if bad:
        raise ConfigError(f"the policy has non-finite weights ({', '.join(bad[:3])}); not saved")
    spaces = spaces_digest(algo_name(model), space_to_json(model.observation_space),
                           space_to_json(model.action_space))
    write_tensors(path, state, {"format": "sparseshift-policy", "spaces_digest": spaces})
    return tensor_digest(state)


#: ``policy_kwargs`` an agent file may hold (what :func:`describe_policy` writes), with their
#: types; anything else is refused before the policy is built.
_WIDTHS = [int]
POLICY_KWARGS_SCHEMA: Mapping[str, Any] = {
    "net_arch?": (_WIDTHS, {"pi?": _WIDTHS, "vf?": _WIDTHS, "qf?": _WIDTHS}),
    "log_std_init?": float,
    "features_extractor_class?": Choice(*EXTRACTORS),
    "features_extractor_kwargs?": dict,
    "share_features_extractor?": bool,
}
#: Keyword arguments of each extractor an agent file may set, with their types.
EXTRACTOR_KWARGS: Mapping[str, Mapping[str, Any]] = {
    "DeepSetsExtractor": {"n_slots": int, "slot_dim": int, "hidden": int, "set_features": int,
                          "proprio_features": int, "pooling": Choice("mean", "sum", "max")},
    "NatureCNN": {"features_dim": int, "normalized_image": bool},
    "CombinedExtractor": {"cnn_output_dim": int, "normalized_image": bool},
    "FlattenExtractor": {},
}
#: Largest width of an extractor's layers (the DeepSets sizes, a CNN's output).
MAX_EXTRACTOR_WIDTH = 4096
#: SB3's defaults: NatureCNN's features, CombinedExtractor's CNN output per image.
_NATURE_FEATURES = 512
_COMBINED_FEATURES = 256
POLICY_SCHEMA: Mapping[str, Any] = {
    "algo": Choice(*ALGOS), "policy": str, "policy_kwargs?": (dict, None),
    "observation_space": dict, "action_space": dict, "file?": str, "digest": DIGEST,
}


def _cnn_parameters(c: int, h: int, w: int, out: int) -> int:
    """Parameters of SB3's NatureCNN on a ``c x h x w`` image with ``out`` features."""
    def conv(n: int, k: int, s: int) -> int:
        return max((n - k) // s + 1, 1)
    hh, ww = conv(conv(conv(h, 8, 4), 4, 2), 3, 1), conv(conv(conv(w, 8, 4), 4, 2), 3, 1)
    convs = (c * 64 + 1) * 32 + (32 * 16 + 1) * 64 + (64 * 9 + 1) * 64
    return convs + (64 * hh * ww + 1) * out


def _mlp(inputs: int, widths: list[int], outputs: int) -> int:
    sizes = [inputs, *widths, outputs] if outputs else [inputs, *widths]
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))


def estimate_parameters(desc: Mapping[str, Any], where: str = "agent.json") -> int:
    """The number of parameters of the policy a checked description builds (SB3's layouts:
    the features extractor, the policy and value MLPs of PPO or the actor and its critics,
    with targets, of SAC), computed from the JSON alone, without building anything."""
    obs = check_space(desc["observation_space"], where, "policy.observation_space")
    act = check_space(desc["action_space"], where, "policy.action_space")
    kwargs = desc.get("policy_kwargs") or {}
    ext = kwargs.get("features_extractor_class")
    ekw = kwargs.get("features_extractor_kwargs") or {}
    if ext is None:
        ext = "CombinedExtractor" if desc.get("policy") == "MultiInputPolicy" else (
            "NatureCNN" if desc.get("policy") == "CnnPolicy" else "FlattenExtractor")
    if ext == "DeepSetsExtractor":
        hidden, sets = int(ekw.get("hidden", 128)), int(ekw.get("set_features", 128))
        prop = int(ekw.get("proprio_features", 64))
        features = sets + prop
        extractor = (_mlp(int(ekw.get("slot_dim", 1)), [hidden], hidden) + _mlp(hidden, [], sets)
                     + _mlp(obs.flat, [], prop))
    elif ext == "NatureCNN":
        features = int(ekw.get("features_dim", _NATURE_FEATURES))
        c, h, w = obs.images[0] if obs.images else (1, 1, 1)
        extractor = _cnn_parameters(c, h, w, features)
    elif ext == "CombinedExtractor":
        out = int(ekw.get("cnn_output_dim", _COMBINED_FEATURES))
        image_values = sum(c * h * w for c, h, w in obs.images)
        features = obs.flat - image_values + out * len(obs.images)
        extractor = sum(_cnn_parameters(c, h, w, out) for c, h, w in obs.images)
    else:
        features, extractor = obs.flat, 0
    arch = kwargs.get("net_arch", [64, 64])
    pi = arch.get("pi", []) if isinstance(arch, dict) else arch
    vf = (arch.get("vf" if desc.get("algo") == "ppo" else "qf", [])
          if isinstance(arch, dict) else arch)
    if desc.get("algo") == "sac":
        actor = extractor + _mlp(features, pi, 2 * act.actions)
        critics = 2 * (extractor + 2 * _mlp(features + act.actions, vf, 1))  # and targets
        return actor + critics
    return extractor + _mlp(features, pi, act.actions) + _mlp(features, vf, 1) + act.actions


def check_policy_description(desc: Any, where: str) -> None:
    """Check a policy description (``agent.json``'s ``"policy"``) before anything is built
    from it: its fields and their types, the spaces and their sizes, the policy kwargs and the
    extractor's, and the parameter count against :data:`MAX_POLICY_PARAMETERS`; one line
    naming ``where`` and the field."""
    check_schema(desc, POLICY_SCHEMA, where, "policy")
    kwargs = desc.get("policy_kwargs") or {}
    unknown = sorted(set(kwargs) - {k.rstrip("?") for k in POLICY_KWARGS_SCHEMA})
    if unknown:
        raise ConfigError(f"{where}: policy.policy_kwargs may not set {safe_repr(unknown)}; "
                          f"valid: {', '.join(k.rstrip('?') for k in POLICY_KWARGS_SCHEMA)}")
    check_schema(kwargs, POLICY_KWARGS_SCHEMA, where, "policy.policy_kwargs")
    from sparseshift.agents.config import NET_ARCH_MAX_LAYERS, check_net_arch

    arch = kwargs.get("net_arch")
    for key, widths in (arch.items() if isinstance(arch, dict) else [("", arch)]):
        if widths is not None and (widths or key == ""):
            field = "policy.policy_kwargs.net_arch" + (f".{key}" if key else "")
            if len(widths) > NET_ARCH_MAX_LAYERS or not widths:
                raise ConfigError(f"{where}: {field} must have 1 to {NET_ARCH_MAX_LAYERS} layers")
            try:
                check_net_arch(field, widths)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    ext = kwargs.get("features_extractor_class")
    ekw = kwargs.get("features_extractor_kwargs")
    if ekw is not None:
        allowed = EXTRACTOR_KWARGS.get(ext or "", {})
        extra = sorted(set(ekw) - set(allowed))
        if extra:
            raise ConfigError(f"{where}: policy.policy_kwargs.features_extractor_kwargs may not "
                              f"set {safe_repr(extra)} for {ext or 'the default extractor'}")
        check_schema(ekw, {f"{k}?": v for k, v in allowed.items()}, where,
                     "policy.policy_kwargs.features_extractor_kwargs")
        for k, v in ekw.items():
            if isinstance(v, int) and not isinstance(v, bool) and not \
                    1 <= v <= MAX_EXTRACTOR_WIDTH * (64 if k in ("n_slots", "slot_dim") else 1):
                raise ConfigError(f"{where}: policy.policy_kwargs.features_extractor_kwargs.{k} "
                                  f"is out of range: {safe_repr(v)}")
    n = estimate_parameters(desc, where)
    if n > MAX_POLICY_PARAMETERS:
        raise ConfigError(f"{where}: the policy it describes has about {n:,} parameters "
                          f"({n * 4 / 2**30:.1f} GiB); at most {MAX_POLICY_PARAMETERS:,} "
                          "(check policy.policy_kwargs.net_arch and the spaces)")


def build_policy(desc: Mapping[str, Any], where: str = "agent.json") -> Any:
    """An untrained SB3 policy built from a JSON description (see :func:`describe_policy`),
    checked first (:func:`check_policy_description`)."""
    from stable_baselines3 import PPO, SAC

    check_policy_description(desc, where)
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
    obs = space_from_json(desc["observation_space"], where, "policy.observation_space")
    act = space_from_json(desc["action_space"], where, "policy.action_space")
    return algo_cls.policy_aliases[name](obs, act, lambda _: 0.0, **kwargs)


def load_policy(agent_dir: str | os.PathLike[str], desc: Mapping[str, Any]) -> Any:
    """The trained policy of ``agent_dir`` (eval mode, CPU), rebuilt from ``desc`` (the
    ``"policy"`` entry of ``agent.json``) and its weights file, which must match the recorded
    digest and be finite. Any problem is a one-line :class:`ConfigError`."""
    agent_dir = Path(agent_dir)
    where = f"{agent_dir}/agent.json"
    check_policy_description(desc, where)
    path = inside(agent_dir, desc.get("file", POLICY_FILE), where, "policy.file")
    try:  # the weights and their digests first: nothing is built from a changed file
        state, meta = read_tensors_and_metadata(path, expect_digest=desc["digest"])
    except CorruptFileError as exc:
        raise ConfigError(str(exc)) from None
    recorded = meta.get("spaces_digest")
    if recorded is not None and recorded != spaces_digest(
            desc["algo"], desc["observation_space"], desc["action_space"]):
        raise ConfigError(f"{path} does not fit the policy in agent.json: its "
                          "observation_space, action_space or algo changed since the weights "
                          "were written (they do not match the spaces digest the weights record)")
    try:
        policy = build_policy(desc, where)
    except ConfigError as exc:
        if where in str(exc):
            raise
        raise ConfigError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError, AssertionError, NotImplementedError) as exc:
        raise ConfigError(f"{where}: the policy description is invalid "
                          f"({type(exc).__name__}: {safe_repr(str(exc))})") from None
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path} does not fit the policy in agent.json ({first})") from None
    policy.set_training_mode(False)
    return policy
