"""Behaviour policies for video collection: smooth random motion, a scripted pusher, or a trained
sparseshift agent.

A *policy spec* is the ``--policy`` string: ``random``, ``scripted`` or an agent directory
(``sparseshift train-agent --out``) whose policy acts on the env's observation (the ``state`` and
``pixels`` baselines). :func:`describe_policy` resolves and validates it once (in the main
process), giving a JSON-able description that goes into the dataset's config; :func:`policy_factory`
turns that description into a function ``rng -> Policy`` inside each worker (the agent is loaded
once per worker). Stable-Baselines3 ``.zip`` files are refused: SB3's ``load`` unpickles parts of
the zip, so a shared file could run code. Agents load from safetensors and JSON only
(:mod:`sparseshift.agents.policy_io`), through :data:`AGENT_LOADER` (a ``module:function`` string,
so this data layer does not import the agents layer).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from sparseshift.envs.errors import ConfigError

#: Env ids with a scripted behaviour policy: ``module:Class`` called as ``Class(env, rng)``.
SCRIPTED: dict[str, str] = {
    "sparseshift/TriFingerPush-v0": "sparseshift.envs.trifinger.scripted:ScriptedPusher",
}
#: ``loader(agent_dir, digest) -> policy with predict(obs, deterministic)``.
AGENT_LOADER = "sparseshift.agents.replay:load_agent_policy"


class Policy(Protocol):
    """What the collector needs from a behaviour policy."""

    def reset(self) -> None: ...

    def act(self, obs: Any) -> Any: ...


class SmoothRandomPolicy:
    """Random behaviour that looks like motion, not noise.

    Box actions follow an Ornstein-Uhlenbeck process in the normalised box [-1, 1]^d
    (``x += theta * (0 - x) + sigma * N(0, 1)``, clipped), mapped to the action bounds, so joint
    targets drift smoothly. Discrete actions repeat the previous action with probability
    ``persistence`` and otherwise draw a new one uniformly.
    """

    THETA, SIGMA, PERSISTENCE = 0.15, 0.25, 0.6

    def __init__(
        self,
        space: gym.Space[Any],
        rng: np.random.Generator,
        theta: float = THETA,
        sigma: float = SIGMA,
        persistence: float = PERSISTENCE,
    ) -> None:
        self.space = space
        self.rng = rng
        self.theta, self.sigma, self.persistence = theta, sigma, persistence
        self._box = isinstance(space, gym.spaces.Box)
        self._start = int(space.start) if isinstance(space, gym.spaces.Discrete) else 0
        if isinstance(space, gym.spaces.Box):
            low = np.where(np.isfinite(space.low), space.low, -1.0)
            high = np.where(np.isfinite(space.high), space.high, 1.0)
            self._centre, self._half = (high + low) / 2.0, (high - low) / 2.0
        elif not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(
                f"random policy supports Box and Discrete action spaces, not {type(space).__name__}"
            )
        self._state: np.ndarray | int = 0
        self.reset()

    def reset(self) -> None:
        if isinstance(self.space, gym.spaces.Box):
            self._state = self.rng.uniform(-1.0, 1.0, size=self.space.shape)
        else:
            assert isinstance(self.space, gym.spaces.Discrete)
            self._state = int(self.rng.integers(int(self.space.n)))

    def act(self, obs: Any) -> Any:
        if self._box:
            x = np.asarray(self._state)
            x = x - self.theta * x + self.sigma * self.rng.standard_normal(x.shape)
            self._state = np.clip(x, -1.0, 1.0)
            return (self._centre + self._half * self._state).astype(self.space.dtype)
        if self.rng.random() >= self.persistence:
            self._state = int(self.rng.integers(int(self.space.n)))  # type: ignore[attr-defined]
        return self._start + int(self._state)

    @classmethod
    def settings(cls) -> dict[str, float]:
        """The defaults, recorded in the dataset's configuration."""
        return {"theta": cls.THETA, "sigma": cls.SIGMA, "persistence": cls.PERSISTENCE}


def spaces_match(policy_space: gym.Space[Any], env_space: gym.Space[Any]) -> bool:
    """True if a policy trained on ``policy_space`` can act on observations from ``env_space``.

    SB3 stores image spaces channel-first when it transposed them during training and transposes
    HWC observations back in ``predict``, so both layouts match.
    """
    if type(policy_space) is not type(env_space):
        return False
    if isinstance(env_space, gym.spaces.Box) and isinstance(policy_space, gym.spaces.Box):
        shp = env_space.shape
        ok = policy_space.shape == shp or (
            len(shp) == 3 and policy_space.shape == (shp[2], shp[0], shp[1])
        )
        return ok and policy_space.dtype == env_space.dtype
    if isinstance(env_space, gym.spaces.Dict) and isinstance(policy_space, gym.spaces.Dict):
        return set(env_space.spaces) == set(policy_space.spaces) and all(
            spaces_match(policy_space.spaces[k], v) for k, v in env_space.spaces.items()
        )
    return bool(policy_space == env_space)


def describe_policy(spec: str, env_id: str) -> dict[str, Any]:
    """Resolve ``--policy`` into a JSON-able description (validated)."""
    if spec == "random":
        return {"type": "random", **SmoothRandomPolicy.settings()}
    if spec == "scripted":
        if env_id not in SCRIPTED:
            raise ConfigError(
                f"no scripted policy for {env_id}; scripted policies exist for "
                f"{', '.join(SCRIPTED)} (use --policy random or a trained agent directory)"
            )
        return {"type": "scripted", "class": SCRIPTED[env_id]}
    path = Path(spec)
    if path.suffix == ".zip":
        raise ConfigError(f"--policy {spec}: Stable-Baselines3 .zip files are not loaded (SB3's "
                          "load unpickles, which can run code); give a sparseshift agent "
                          "directory (train-agent --out)")
    agent_json = path / "agent.json"
    if not agent_json.is_file():
        raise ConfigError(f"--policy must be random, scripted or an agent directory; {spec!r} "
                          "is none of these")
    try:
        agent = json.loads(agent_json.read_text())
        digest = str(agent["policy"]["digest"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise ConfigError(f"{agent_json} is not a finished sparseshift agent") from None
    return {"type": "agent", "path": str(path.resolve()), "digest": digest,
            "loader": AGENT_LOADER, "deterministic": True}


def _load_agent(desc: dict[str, Any]) -> Any:
    module, name = AGENT_LOADER.split(":")
    loader = getattr(importlib.import_module(module), name)
    return loader(Path(desc["path"]), desc["digest"])


def check_policy(desc: dict[str, Any], env: gym.Env[Any, Any]) -> None:
    """Raise ConfigError if a described policy cannot act in ``env`` (spaces checked)."""
    if desc["type"] == "random":
        SmoothRandomPolicy(env.action_space, np.random.default_rng(0))
    elif desc["type"] == "agent":
        policy = _load_agent(desc)
        if not spaces_match(policy.observation_space, env.observation_space):
            raise ConfigError(
                f"policy {desc['path']} acts on observations {policy.observation_space}, but the "
                f"env gives {env.observation_space} (try another --obs-mode)"
            )
        if not spaces_match(policy.action_space, env.action_space):
            raise ConfigError(
                f"policy {desc['path']} outputs actions {policy.action_space}, but the env takes "
                f"{env.action_space}"
            )


class _AgentPolicy:
    """A trained agent's policy acting with its mode (deterministic)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def reset(self) -> None:
        pass

    def act(self, obs: Any) -> Any:
        action, _ = self.model.predict(obs, deterministic=True)
        return action


def policy_factory(
    desc: dict[str, Any], env: gym.Env[Any, Any]
) -> Callable[[np.random.Generator], Policy]:
    """A function building a fresh policy for ``env`` from a part's own Generator."""
    if desc["type"] == "random":
        return lambda rng: SmoothRandomPolicy(env.action_space, rng)
    if desc["type"] == "scripted":
        module, name = str(desc["class"]).split(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"scripted policy {desc['class']} is not available ({exc})") from None
        return lambda rng: cls(env, rng)
    if desc["type"] != "agent":
        raise ConfigError(f"cannot replay a {desc['type']!r} policy (this sparseshift replays "
                          "random, scripted and agent-directory policies)")
    import torch

    torch.set_num_threads(1)  # identical floating-point results in every worker
    model = _load_agent(desc)
    return lambda rng: _AgentPolicy(model)
