"""Resolve a collection config: check every user input against the env and the behaviour policy.

:func:`resolve` checks every user input (env id, colours, k, n, policy, part size), builds the env
once to read its factor spec and spaces, builds the behaviour policy once to check that it can act
in the env (a trained agent is loaded), and returns a :class:`~sparseshift.envs.data.config.
Resolved` run whose ``to_json()`` is the manifest (:mod:`sparseshift.envs.data.config`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from sparseshift.agents.collect.policies import check_policy, describe_policy
from sparseshift.envs.data.config import (
    CollectConfig,
    Resolved,
    env_parameters,
    make_env,
    variable_groups,
)
from sparseshift.envs.data.layout import observation_layout
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.shifts.colours import parse_splits

__all__ = ["resolve"]


def _action_layout(space: gym.Space[Any]) -> tuple[str, tuple[int, ...]]:
    if isinstance(space, gym.spaces.Box):
        return "float32", tuple(int(s) for s in space.shape)
    if isinstance(space, gym.spaces.Discrete):
        return "int64", ()
    if isinstance(space, gym.spaces.MultiDiscrete):
        return "int64", tuple(int(s) for s in space.shape)
    raise ConfigError(f"cannot record actions of space {type(space).__name__}")


def resolve(cfg: CollectConfig) -> Resolved:
    """Validate ``cfg`` against the env and the policy; raise ConfigError on bad input."""
    splits = parse_splits(cfg.colours)
    if cfg.kind == "pairs" and cfg.k is None:
        cfg = cfg.replace(k=-1)
    env_kwargs: dict[str, Any] = {
        "colours": "+".join(splits),
        "image_size": int(cfg.image_size),
        "obs_mode": cfg.obs_mode,
    }
    if "render_preset" in env_parameters(cfg.env_id):
        env_kwargs["render_preset"] = cfg.render_preset or "fast"
    elif cfg.render_preset is not None:
        raise ConfigError(f"{cfg.env_id} has no render presets (drop --render-preset)")
    policy = describe_policy(cfg.policy, cfg.env_id) if cfg.kind == "video" else {}
    run = Resolved(cfg, env_kwargs, policy)
    env = make_env(run)
    try:
        u: Any = env.unwrapped
        info = {"factor_spec": u.factor_spec.to_json(), "colour_scheme": u.colour_scheme.to_json(),
                "colour_objects": dict(getattr(u, "colour_objects", {}))}
        if cfg.kind == "pairs":
            env.reset(seed=cfg.seed)
            groups = variable_groups(u, cfg.seed)
            assert cfg.k is not None
            if not groups:
                raise ConfigError(f"no factor group of {cfg.env_id} can change under {cfg.colours}")
            if cfg.k > len(groups):
                raise ConfigError(
                    f"--k {cfg.k} is larger than the number of factor groups that can change "
                    f"({len(groups)}: {', '.join(groups)})"
                )
            return Resolved(cfg, env_kwargs, policy, groups, env_info=info)
        check_policy(policy, env)
        dtype, shape = _action_layout(env.action_space)
        try:
            observation = observation_layout(env.observation_space, int(cfg.image_size))
        except TypeError as exc:
            raise ConfigError(f"{cfg.env_id} --obs-mode {cfg.obs_mode}: {exc}") from None
        return Resolved(cfg, env_kwargs, policy, (), dtype, shape, info, observation)
    finally:
        env.close()
