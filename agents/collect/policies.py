"""Behaviour policies for video collection: smooth random motion, predictable motion (straight
lines in grids, sinusoidal joint targets on TriFinger), a scripted pusher, or a trained sparseshift
agent.

A *policy spec* is the ``--policy`` string: ``random``, ``straight``, ``sinusoid``, ``scripted`` or
an agent directory (``sparseshift train-agent --out``) whose policy acts on the env's observation
(the ``state`` and ``pixels`` baselines). :func:`describe_policy` resolves and validates it once (in
the main process), giving a JSON-able description (the policy's settings included) that goes into
the dataset's config; :func:`policy_factory` turns that description into a function
``rng -> Policy`` inside each worker (the agent is loaded once per worker). Stable-Baselines3
``.zip`` files are refused: SB3's ``load`` unpickles parts of the zip, so a shared file could run
code. Agents load from safetensors and JSON only (:mod:`sparseshift.agents.policy_io`), through
:func:`sparseshift.agents.replay.load_agent_policy`. Collection sits above the agents layer, so
it imports them plainly; the env-specific policies (and torch, for agents) are imported only when
a policy is built.

An agent's policy runs on the CPU by default; ``collect --device`` puts it on another torch device
(:func:`policy_device` checks it once, before any work). The device is a runtime setting, not part
of the dataset's configuration: it changes where the policy's arithmetic runs, not what was asked
for. The other policies do not use torch and ignore it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from sparseshift.envs.data.generate import Policy
from sparseshift.envs.infra.errors import ConfigError


class Scripted(Protocol):
    """A scripted behaviour policy class: built as ``cls(env, rng)``."""

    def __call__(self, env: gym.Env[Any, Any], rng: np.random.Generator) -> Policy: ...


def _scripted_pusher() -> Scripted:
    from sparseshift.envs.trifinger.scripted import ScriptedPusher

    return ScriptedPusher


#: Env ids with a scripted behaviour policy: a function returning its class (the env module is
#: imported only when the policy is asked for).
SCRIPTED: dict[str, Callable[[], Scripted]] = {
    "sparseshift/TriFingerPush-v0": _scripted_pusher,
}
#: The loader recorded in an agent policy's description (``"loader"``), kept as it was when it
#: named the function that loads the agent: it is part of every such dataset's manifest and
#: fingerprint. It is a label only; the agent is loaded by importing
#: :func:`sparseshift.agents.replay.load_agent_policy` (:func:`_load_agent`).
AGENT_LOADER = "sparseshift.agents.replay:load_agent_policy"


def class_label(cls: Any) -> str:
    """``module:QualName`` of a class: how a scripted policy is named in a dataset's manifest."""
    return f"{cls.__module__}:{cls.__qualname__}"


def scripted_class(label: str) -> Scripted:
    """The scripted policy class a dataset's manifest names (``class_label``); a one-line
    :class:`ConfigError` if this sparseshift has none of that name."""
    for get in SCRIPTED.values():
        cls = get()
        if class_label(cls) == label:
            return cls
    raise ConfigError(f"scripted policy {label} is not available (this sparseshift has "
                      f"{', '.join(class_label(get()) for get in SCRIPTED.values())})")


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


class StraightLinePolicy:
    """Predictable grid motion: the agent walks in straight lines at one cell per step.

    For ColourGrid envs (:class:`~sparseshift.envs.grid.colourgrid.ColourGridEnv`). Each episode
    starts with a uniformly drawn heading. Every step, with probability ``turn_prob`` the agent
    turns 90 degrees (left or right, equally likely); otherwise it keeps its heading. If the next
    cell is off the grid or holds an object, the heading reverses (a bounce, as off a wall);
    if that cell is blocked too, the agent tries the two perpendicular headings, and if all four
    are blocked it keeps its heading and stays. Objects are obstacles, so the agent never touches
    one and episodes run to the time limit. Between bounces and turns the agent's position is
    linear in time. The policy reads the env's state (privileged, like the scripted pusher);
    ``obs`` is ignored. Envs without an agent (``agent=False``) take their only action (0): their
    objects move by themselves (``drift``).
    """

    TURN_PROB = 0.05
    ENVS = "a ColourGrid env (sparseshift/ColourGrid-v0, sparseshift/ColourGridOne-v0)"

    def __init__(
        self, env: gym.Env[Any, Any], rng: np.random.Generator, turn_prob: float = TURN_PROB
    ) -> None:
        from sparseshift.envs.grid.colourgrid import MOVES, ColourGridEnv

        u = env.unwrapped
        if not isinstance(u, ColourGridEnv):
            raise ConfigError(f"the straight policy needs {self.ENVS}, got {type(u).__name__}")
        if not 0.0 <= turn_prob <= 1.0:
            raise ConfigError(f"turn_prob must be in [0, 1], got {turn_prob}")
        self.env, self.rng, self.turn_prob = u, rng, float(turn_prob)
        self._moves = np.array(MOVES, dtype=np.int64)
        spec = u.factor_spec
        self._agent = ([spec.index("agent.x"), spec.index("agent.y")] if u.has_agent else [])
        self._objects = np.array(
            [[spec.index(f"object{i}.x"), spec.index(f"object{i}.y")] for i in range(u.n_objects)]
        )
        self.heading = 0
        self.reset()

    @staticmethod
    def supports(env_id: str) -> bool:
        """Whether ``env_id``'s class is a ColourGrid env (what the policy drives)."""
        from sparseshift.envs.grid.colourgrid import ColourGridEnv
        from sparseshift.envs.registry import env_class

        return issubclass(env_class(env_id), ColourGridEnv)

    @classmethod
    def settings(cls) -> dict[str, float]:
        """The defaults, recorded in the dataset's configuration."""
        return {"turn_prob": cls.TURN_PROB}

    def reset(self) -> None:
        """Draw the episode's first heading (call after ``env.reset``)."""
        self.heading = int(self.rng.integers(len(self._moves)))

    def _blocked(self, heading: int, agent: np.ndarray, objects: np.ndarray) -> bool:
        x, y = agent + self._moves[heading]
        size = self.env.size
        return not (0 <= x < size and 0 <= y < size) or bool(
            np.any((objects[:, 0] == x) & (objects[:, 1] == y)))

    def act(self, obs: Any = None) -> int:
        if not self._agent:
            return 0
        u = self.rng.random()
        if u < self.turn_prob:  # one draw decides whether and which way to turn
            self.heading = (self.heading + (1 if u < self.turn_prob / 2 else 3)) % 4
        f = self.env.get_factors().astype(np.int64)
        agent, objects = f[self._agent], f[self._objects]
        h = self.heading
        for cand in (h, (h + 2) % 4, (h + 1) % 4, (h + 3) % 4):
            if not self._blocked(cand, agent, objects):
                self.heading = cand
                break
        return self.heading


class SinusoidPolicy:
    """Predictable TriFinger motion: every actuated joint's target follows its own sinusoid.

    For the TriFinger envs (Reach, Push, ObjectReach), either action mode. At every reset, joint
    ``j`` draws a period ``T_j ~ U[period]`` (steps) and an amplitude ``A_j ~ U[amplitude]``
    (rad), capped to half its range and, in ``delta`` mode, so that no step asks for more than
    0.9 of the env's largest target increment (``A_j * 2 pi / T_j <= 0.9 * DELTA_SCALE``). The
    centre ``c_j`` is drawn uniformly among those that keep ``c_j +- A_j`` inside the joint range
    and put the reset angle ``q0_j`` on the curve; the phase then follows from ``q0_j`` (rising
    or falling, equally likely), so the target starts where the finger is and moves smoothly:
    ``target_j(t) = c_j + A_j sin(2 pi t / T_j + phi_j)``. The per-episode centre, phase and
    period are random; within an episode the motion is periodic and can be forecast. The PD
    servos track the targets; contacts (the cube, another finger) may disturb the joints.
    Privileged like the scripted pusher: it reads the reset joint angles from the env.
    """

    PERIOD = (30.0, 60.0)  # steps (25 Hz): 1.2-2.4 s
    AMPLITUDE = (0.1, 0.4)  # rad
    ENVS = ("a TriFinger env (sparseshift/TriFingerReach-v0, TriFingerPush-v0, "
            "TriFingerObjectReach-v0)")

    def __init__(
        self,
        env: gym.Env[Any, Any],
        rng: np.random.Generator,
        period: tuple[float, float] = PERIOD,
        amplitude: tuple[float, float] = AMPLITUDE,
    ) -> None:
        from sparseshift.envs.trifinger.env import DELTA_SCALE, TriFingerEnv

        u = env.unwrapped
        if not isinstance(u, TriFingerEnv):
            raise ConfigError(f"the sinusoid policy needs {self.ENVS}, got {type(u).__name__}")
        lo_t, hi_t = (float(v) for v in period)
        lo_a, hi_a = (float(v) for v in amplitude)
        if not (1.0 < lo_t <= hi_t and 0.0 < lo_a <= hi_a):
            raise ConfigError(f"sinusoid needs 1 < period low <= high and 0 < amplitude low <= "
                              f"high, got period {period}, amplitude {amplitude}")
        self.env, self.rng = u, rng
        self.period, self.amplitude = (lo_t, hi_t), (lo_a, hi_a)
        self.delta = u.action_mode == "delta"
        self.delta_scale = float(DELTA_SCALE)
        nj = len(u.ACTUATED_JOINTS)
        joints = u.factor_spec.factors[:nj]  # the actuated joints come first, with their ranges
        self.low = np.array([f.low for f in joints], dtype=np.float64)
        self.high = np.array([f.high for f in joints], dtype=np.float64)
        self.centre = np.zeros(nj)
        self.amp = np.zeros(nj)
        self.omega = np.zeros(nj)
        self.phase = np.zeros(nj)
        self._command = np.zeros(nj)  # the env's joint target (delta mode), tracked
        self._t = 0
        self.reset()

    @staticmethod
    def supports(env_id: str) -> bool:
        """Whether ``env_id``'s class is a TriFinger env (joint-position targets the policy
        drives)."""
        from sparseshift.envs.registry import env_class
        from sparseshift.envs.trifinger.env import TriFingerEnv

        return issubclass(env_class(env_id), TriFingerEnv)

    @classmethod
    def settings(cls) -> dict[str, list[float]]:
        """The defaults, recorded in the dataset's configuration."""
        return {"period": list(cls.PERIOD), "amplitude": list(cls.AMPLITUDE)}

    def reset(self) -> None:
        """Draw the episode's sinusoids through the current joint angles (after ``env.reset``)."""
        rng, nj = self.rng, len(self.low)
        q0 = np.clip(self.env.get_factors()[:nj].astype(np.float64), self.low, self.high)
        self.omega = 2.0 * np.pi / rng.uniform(*self.period, size=nj)
        amp = np.minimum(rng.uniform(*self.amplitude, size=nj), (self.high - self.low) / 2.0)
        if self.delta:
            amp = np.minimum(amp, 0.9 * self.delta_scale / self.omega)
        lo = np.maximum(self.low + amp, q0 - amp)
        hi = np.maximum(np.minimum(self.high - amp, q0 + amp), lo)
        self.centre = rng.uniform(lo, hi)
        self.amp = amp
        rising = np.arcsin(np.clip((q0 - self.centre) / amp, -1.0, 1.0))
        self.phase = np.where(rng.random(nj) < 0.5, rising, np.pi - rising)
        self._command = q0.copy()
        self._t = 0

    def target(self, t: int) -> np.ndarray:
        """The joint targets of step ``t`` (t = 0 is the reset pose)."""
        return np.asarray(self.centre + self.amp * np.sin(self.omega * t + self.phase))

    def act(self, obs: Any = None) -> np.ndarray:
        self._t += 1
        goal = self.target(self._t)
        if self.delta:
            a = np.clip((goal - self._command) / self.delta_scale, -1.0, 1.0).astype(np.float32)
            step = self.delta_scale * a.astype(np.float64)
            self._command = np.clip(self._command + step, self.low, self.high)
            return a
        return np.clip(2.0 * (goal - self.low) / (self.high - self.low) - 1.0, -1.0,
                       1.0).astype(np.float32)


#: Predictable-motion policies by ``--policy`` name; each has ``supports(env_id)``,
#: ``settings()`` (recorded in the dataset) and is built as ``Class(env, rng, **settings)``.
MOTION: dict[str, type[StraightLinePolicy] | type[SinusoidPolicy]] = {
    "straight": StraightLinePolicy,
    "sinusoid": SinusoidPolicy,
}


def _motion_factory(
    desc: dict[str, Any], env: gym.Env[Any, Any]
) -> Callable[[np.random.Generator], Policy]:
    """``rng -> policy`` for a described motion policy, with the recorded settings."""
    cls = MOTION[desc["type"]]
    settings = {k: desc[k] for k in cls.settings()}
    if cls is SinusoidPolicy:
        period, amplitude = tuple(settings["period"]), tuple(settings["amplitude"])
        return lambda rng: SinusoidPolicy(env, rng, period, amplitude)
    return lambda rng: StraightLinePolicy(env, rng, float(settings["turn_prob"]))


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
    if spec in MOTION:
        cls = MOTION[spec]
        if not cls.supports(env_id):
            raise ConfigError(f"--policy {spec} needs {cls.ENVS}, not {env_id} (use --policy "
                              "random or a trained agent directory)")
        return {"type": spec, **cls.settings()}
    if spec == "scripted":
        if env_id not in SCRIPTED:
            raise ConfigError(
                f"no scripted policy for {env_id}; scripted policies exist for "
                f"{', '.join(SCRIPTED)} (use --policy random or a trained agent directory)"
            )
        return {"type": "scripted", "class": class_label(SCRIPTED[env_id]())}
    path = Path(spec)
    if path.suffix == ".zip":
        raise ConfigError(f"--policy {spec}: Stable-Baselines3 .zip files are not loaded (SB3's "
                          "load unpickles, which can run code); give a sparseshift agent "
                          "directory (train-agent --out)")
    agent_json = path / "agent.json"
    if not agent_json.is_file():
        raise ConfigError(f"--policy must be random, {', '.join(MOTION)}, scripted or an agent "
                          f"directory; {spec!r} is none of these")
    try:
        agent = json.loads(agent_json.read_text())
        digest = str(agent["policy"]["digest"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise ConfigError(f"{agent_json} is not a finished sparseshift agent") from None
    return {"type": "agent", "path": str(path.resolve()), "digest": digest,
            "loader": AGENT_LOADER, "deterministic": True}


#: What ``collect --device`` accepts.
DEVICE_HELP = ("torch device of a trained agent's policy: auto (an accelerator if one is "
               "available, else cpu), cpu, cuda, cuda:N or mps (default cpu: a small MLP is "
               "fastest there; other policies do not use torch)")


def policy_device(spec: str) -> str:
    """The torch device ``--device spec`` names, as a string (``cuda`` -> ``cuda:0``); an unknown
    or unavailable device is a one-line :class:`ConfigError`."""
    from sparseshift.representations.runtime import resolve_device

    return str(resolve_device(spec))


def _load_agent(desc: dict[str, Any]) -> Any:
    from sparseshift.agents.replay import load_agent_policy  # imports torch

    return load_agent_policy(Path(desc["path"]), desc["digest"])


def check_policy(desc: dict[str, Any], env: gym.Env[Any, Any]) -> None:
    """Raise ConfigError if a described policy cannot act in ``env`` (spaces checked)."""
    if desc["type"] == "random":
        SmoothRandomPolicy(env.action_space, np.random.default_rng(0))
    elif desc["type"] in MOTION:
        _motion_factory(desc, env)(np.random.default_rng(0))
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
    desc: dict[str, Any], env: gym.Env[Any, Any], device: str = "cpu"
) -> Callable[[np.random.Generator], Policy]:
    """A function building a fresh policy for ``env`` from a part's own Generator; an agent's
    policy is loaded once and moved to ``device`` (a resolved torch device string)."""
    if desc["type"] == "random":
        return lambda rng: SmoothRandomPolicy(env.action_space, rng)
    if desc["type"] in MOTION:
        return _motion_factory(desc, env)
    if desc["type"] == "scripted":
        cls = scripted_class(str(desc["class"]))
        return lambda rng: cls(env, rng)
    if desc["type"] != "agent":
        raise ConfigError(f"cannot replay a {desc['type']!r} policy (this sparseshift replays "
                          f"random, {', '.join(MOTION)}, scripted and agent-directory policies)")
    import torch

    torch.set_num_threads(1)  # identical floating-point results in every worker
    model = _load_agent(desc).to(torch.device(device))
    return lambda rng: _AgentPolicy(model)
