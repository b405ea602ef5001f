"""Evaluate a trained agent under colour shifts: per-shift return and success with 95% CIs.

The OOD protocol of Dittadi et al. (ICLR 2021) and Traeuble, Dittadi et al. (ICLR 2022): ``in``
(the training colours), ``ood1`` (colours the encoder saw in pretraining, the policy did not),
``ood2`` (colours neither saw) and ``real`` (IN colours through the TriFinger sim-to-real image
shift). Results are reported per shift, never pooled, each with a seeded percentile-bootstrap
interval (:mod:`sparseshift.agents.stats`).

Episode seeds are drawn from ``seed`` in a range disjoint from every training seed
(:data:`sparseshift.agents.config.EVAL_SEED_BASE`) and are the same for every shift, so shifts are
compared on
paired episodes. Actions are the policy's mode (``deterministic``) or sampled from a seeded
generator (``stochastic``); ``auto`` picks per env family
(:data:`sparseshift.agents.config.AUTO_DETERMINISTIC`). ``eval.json`` in the agent directory is
written
atomically; an existing one with the same parameters is returned without re-running.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparseshift.agents.config import (
    EVAL_SEED_BASE,
    AgentConfig,
    EvaluateConfig,
    check_eval_policy,
    is_deterministic,
)
from sparseshift.agents.encoders import load_encoder
from sparseshift.agents.encoding import FrozenEncoder
from sparseshift.agents.envs import make_env, parse_shifts
from sparseshift.agents.policy_io import load_policy
from sparseshift.agents.rollout import run_episodes
from sparseshift.agents.stats import DEFAULT_RESAMPLES, bootstrap_ci
from sparseshift.agents.train import (
    AGENT_FILE,
    DONE_FILE,
    FORMAT,
    FORMAT_VERSION,
    episode_seeds,
)
from sparseshift.agents.video import write_video
from sparseshift.envs.errors import ConfigError
from sparseshift.envs.io import read_json, write_json_atomic
from sparseshift.representations.runtime import torch_run

EVAL_FILE = "eval.json"
EVAL_ENVS = 4


def read_agent(agent_dir: Path) -> dict[str, Any]:
    """The ``agent.json`` of a finished agent directory (one-line ConfigError otherwise: not an
    agent, unfinished, unreadable, of another format version, or missing its config)."""
    path = agent_dir / AGENT_FILE
    if not path.is_file():
        raise ConfigError(f"{agent_dir} is not an agent directory (no {AGENT_FILE})")
    data = read_json(path, "agent file")
    if data.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a sparseshift agent file")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ConfigError(
            f"{path} has agent format {version!r}; this sparseshift reads format "
            f"{FORMAT_VERSION} (format 1 stored an SB3 zip, which is never unpickled): train the "
            "agent again")
    if not (agent_dir / DONE_FILE).is_file() or not isinstance(data.get("policy"), dict):
        raise ConfigError(f"the agent in {agent_dir} has not finished training")
    if not isinstance(data.get("config"), dict):
        raise ConfigError(f"{path} has no agent config")
    return data


def load_model(agent_dir: Path, agent: dict[str, Any]) -> Any:
    """The agent's policy, rebuilt from ``agent.json`` and ``policy.safetensors`` (no pickle);
    it has SB3's ``predict(obs, deterministic)``."""
    return load_policy(agent_dir, agent["policy"])


def encoder_spec(agent_dir: Path, agent: dict[str, Any], config: AgentConfig) -> str:
    """Where the agent's encoder is: its recorded path (relative to the agent folder) or the
    baseline name."""
    path = agent.get("encoder", {}).get("path")
    if not path:
        return config.encoder
    return str((agent_dir / path) if not Path(path).is_absolute() else Path(path))


def evaluate(agent_dir: str | Path, shifts: str | Sequence[str] = "in", episodes: int = 50,
             seed: int = 0, video: int = 0, resamples: int = DEFAULT_RESAMPLES,
             policy: str | None = None) -> dict[str, Any]:
    """:func:`run_evaluation` with the :class:`EvaluateConfig` built from keyword arguments
    (``shifts`` may be comma-separated)."""
    names = tuple(s.strip() for s in shifts.split(",")) if isinstance(shifts, str) else \
        tuple(shifts)
    return run_evaluation(agent_dir, EvaluateConfig(shifts=names, episodes=episodes, seed=seed,
                                                    video=video, resamples=resamples,
                                                    policy=policy))  # type: ignore[arg-type]


def run_evaluation(agent_dir: str | Path, cfg: EvaluateConfig) -> dict[str, Any]:
    """Evaluate the agent in ``agent_dir`` as ``cfg`` says; returns (and writes) ``eval.json``.

    ``cfg.video`` > 0 also writes the first ``video`` episodes of each shift to
    ``videos/<shift>_<k>.mp4``. ``cfg.policy`` (auto / deterministic / stochastic) defaults to the
    agent's ``eval_policy``.
    """
    episodes, seed, video, resamples = cfg.episodes, cfg.seed, cfg.video, cfg.resamples
    out = Path(agent_dir)
    agent = read_agent(out)
    config = AgentConfig.from_json(agent["config"])
    names = parse_shifts(list(cfg.shifts), config.env_id)
    mode = check_eval_policy(config.eval_policy if cfg.policy is None else cfg.policy)
    det = is_deterministic(mode, config.family)
    params = {"shifts": list(names), "episodes": episodes, "seed": seed, "resamples": resamples,
              "policy": "deterministic" if det else "stochastic"}
    # The policy and the encoder are loaded (and their digests checked) before a cached result
    # is trusted: changed weights must never hide behind an old eval.json.
    desc = agent.get("encoder", {})
    encoder = load_encoder(encoder_spec(out, agent, config), config.image_size, config.seed,
                           expect_fingerprint=desc.get("fingerprint"))
    model = load_model(out, agent)
    previous = out / EVAL_FILE
    if previous.is_file() and not video:
        try:
            old: dict[str, Any] = json.loads(previous.read_text())
            if old.get("params") == params:
                return old
        except json.JSONDecodeError:
            pass
    ep_seeds = episode_seeds(EVAL_SEED_BASE, seed, episodes)

    def act(obs: Any) -> np.ndarray:
        return model.predict(obs, deterministic=det)[0]

    results: dict[str, Any] = {}
    with torch_run(config.torch_threads):
        for shift in names:
            envs = [make_env(config, shift) for _ in range(min(EVAL_ENVS, episodes))]
            try:
                enc = (FrozenEncoder(encoder.learner, envs[0].observation_space)
                       if encoder.learner is not None else None)
                eps = run_episodes(envs, act, ep_seeds, enc, record=video, torch_seed=seed)
            finally:
                for env in envs:
                    env.close()
            returns = [e.ret for e in eps]
            success = [float(e.success) for e in eps]
            results[shift] = {
                "return": bootstrap_ci(returns, seed, resamples).to_json(),
                "success": bootstrap_ci(success, seed, resamples).to_json(),
                "mean_length": float(np.mean([e.length for e in eps])),
                "returns": returns,
                "successes": [bool(s) for s in success],
            }
            videos = [str(write_video(e.frames, out / "videos" / f"{shift}_{k}.mp4"))
                      for k, e in enumerate(eps[:video])]
            if videos:
                results[shift]["videos"] = videos
    result = {"agent": str(out.resolve()), "env_id": config.env_id, "algo": config.algo,
              "encoder": desc.get("kind", config.encoder_kind), "train_seed": config.seed,
              "train_colours": config.colours,
              "params": params, "episode_seeds": ep_seeds, "shifts": results}
    write_json_atomic(out / EVAL_FILE, result)
    return result


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table: one row per shift, mean and 95% CI of return and success."""
    lines = [f"{'shift':<6} {'return':>9} {'95% CI':>21} {'success':>8} {'95% CI':>15} {'n':>5}"]
    for shift, r in result["shifts"].items():
        ret, suc = r["return"], r["success"]
        lines.append(
            f"{shift:<6} {ret['mean']:>9.3f} [{ret['ci_low']:>8.3f}, {ret['ci_high']:>8.3f}] "
            f"{suc['mean']:>8.3f} [{suc['ci_low']:.3f}, {suc['ci_high']:.3f}] {ret['n']:>5}"
        )
    colours = result.get("train_colours", "in")
    if colours != "in":
        lines.append(f"note: this agent trained on the {colours} colours, so 'in' (the IN split) "
                     "is not its training distribution")
    policy = result.get("params", {}).get("policy")
    if policy:
        how = "the policy's mode" if policy == "deterministic" else "sampled, seeded"
        lines.append(f"actions: {policy} ({how}); 95% CIs: percentile bootstrap over episodes")
    return "\n".join(lines)
