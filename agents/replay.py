"""Replaying a trained agent as a behaviour policy for video collection (``collect --policy DIR``).

Only agents whose policy acts on the env's own observation can replay there: the ``state`` and
``pixels`` baselines. Loading is :func:`sparseshift.agents.policy_io.load_policy` (safetensors and
JSON, no pickle); ``digest`` pins the weights the collection was configured with, so a resumed
collection cannot silently switch policies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparseshift.agents.evaluate import load_model, read_agent
from sparseshift.envs.infra.errors import ConfigError


def load_agent_policy(agent_dir: Path, digest: str | None) -> Any:
    """The policy of ``agent_dir`` (SB3 ``predict`` API, with its observation and action
    spaces)."""
    agent = read_agent(agent_dir)
    kind = agent.get("encoder", {}).get("kind")
    if kind not in ("state", "pixels"):
        raise ConfigError(f"{agent_dir}: only agents on the env's own observation (state or "
                          f"pixels baselines) can drive a collection; this one acts on the "
                          f"latents of a {kind!r} encoder")
    if digest is not None and agent["policy"].get("digest") != digest:
        raise ConfigError(f"the agent in {agent_dir} changed since this collection was "
                          "configured (policy digest differs)")
    return load_model(agent_dir, agent)
