"""The configuration of a dataset: what a collection run was asked for and what it resolved to.

:class:`CollectConfig` is what the user asks for; :class:`Resolved` is a validated run whose
``to_json()`` is the manifest recorded in the dataset: two runs with equal manifests produce
byte-identical arrays, whatever the number of workers, so the manifest decides whether an existing
output may be resumed or is complete. Resolving a config runs its behaviour policy once, so it
lives with collection, above the agents it may load
(:func:`sparseshift.agents.collect.resolve.resolve`); this module is what pair generation and
dataset readers need, and imports nothing above the envs.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from sparseshift.envs.data.layout import (
    COMPRESSION,
    DEFAULT_PART_ROWS,
    FORMAT_VERSION,
    FRAME_CHUNK_ROWS,
    MAX_ROWS,
    arrays_of,
)
from sparseshift.envs.infra.config import SEED_MAX, Config, opt
from sparseshift.envs.infra.errors import ConfigError, check_image_size
from sparseshift.envs.registry import entry, make
from sparseshift.envs.shifts.colours import parse_splits

#: States, and resamples per state, tried before a group counts as unable to change.
PROBE_STATES = 16
PROBE_DRAWS = 8


@dataclass(frozen=True)
class CollectConfig(Config):
    """What the user asked for (``sparseshift collect`` options)."""

    env_id: str = opt(help="env id, see 'sparseshift envs'", flag="--env", metavar="ENV_ID")
    kind: Literal["video", "pairs"] = opt(help="what to record")
    n: int = opt(help="frames (video) or pairs to record", min=1, max=MAX_ROWS)
    seed: int = opt(0, "seed of everything random", min=0, max=SEED_MAX)
    colours: str = opt("in+ood1", "colour splits to sample from, e.g. in, in+ood1, all")
    image_size: int = opt(64, "frame size in pixels", min=8, max=512)
    k: int | None = opt(None, "pairs: factor groups changed per pair, or -1 for 1 or "
                        "k_obs ~ U[1, K] with equal probability (none: -1)")
    policy: str = opt("random", "video: random (smooth random motion), scripted (the "
                      "TriFingerPush pusher), straight (ColourGrid: straight lines), "
                      "sinusoid (TriFinger: per-joint sine targets), or a trained agent "
                      "directory (state or pixels baseline)")
    render_preset: str | None = opt(None, "render preset (TriFinger; none: fast)")
    obs_mode: Literal["pixels", "state", "pixels_proprio"] = opt(
        "pixels", "observation mode the policy acts on")
    part_rows: int = opt(DEFAULT_PART_ROWS, f"rows per resumable part (a multiple of "
                         f"{FRAME_CHUNK_ROWS}); part of the configuration, so it changes the data",
                         min=FRAME_CHUNK_ROWS, max=1 << 20)

    def validate(self) -> None:
        entry(self.env_id)
        if self.part_rows % FRAME_CHUNK_ROWS:
            raise ConfigError(f"part_rows must be a positive multiple of {FRAME_CHUNK_ROWS}, "
                              f"got {self.part_rows}")
        if self.kind == "video" and self.k is not None:
            raise ConfigError("--k applies to --kind pairs only")
        if self.kind == "pairs" and self.k is not None and (self.k < -1 or self.k == 0):
            raise ConfigError(f"--k must be -1 (random, Locatello et al. 2020) or >= 1, "
                              f"got {self.k}")
        if self.kind == "pairs" and self.policy != "random":
            raise ConfigError("--policy applies to --kind video only")
        check_image_size(self.image_size)
        parse_splits(self.colours)


@dataclass(frozen=True)
class Resolved:
    """A validated run: the config plus everything derived from the env and the policy."""

    config: CollectConfig
    env_kwargs: dict[str, Any]
    policy: dict[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()  # pairs: the groups interventions may change
    action_dtype: str = "float32"
    action_shape: tuple[int, ...] = ()
    env_info: dict[str, Any] = field(default_factory=dict)  # factor_spec, colour_scheme (JSON)
    #: video: how policy observations are stored (:func:`~sparseshift.envs.data.layout.
    #: observation_layout`)
    observation: dict[str, Any] = field(default_factory=dict)
    #: Runtime, not configuration: the torch device a trained agent's policy runs on
    #: (``collect --device``, resolved). Left out of :meth:`to_json`, so it is not part of the
    #: manifest or the fingerprint; helper processes get it next to the manifest.
    device: str = "cpu"

    @property
    def obs_keys(self) -> tuple[str, ...]:
        """The stored parts of the policy observation (``obs/<key>`` arrays)."""
        return tuple(self.observation.get("arrays", {}))

    @property
    def arrays(self) -> tuple[str, ...]:
        """The arrays of every part and of the final file, in the order they are written."""
        return arrays_of(self.config.kind, self.obs_keys)

    @property
    def n_parts(self) -> int:
        return -(-self.config.n // self.config.part_rows)

    def part_range(self, index: int) -> tuple[int, int]:
        start = index * self.config.part_rows
        return start, min(self.config.n, start + self.config.part_rows)

    def to_json(self) -> dict[str, Any]:
        cfg = self.config.to_json()
        return {
            "format_version": FORMAT_VERSION,
            **cfg,
            "env_kwargs": self.env_kwargs,
            "policy": self.policy,
            "groups": list(self.groups),
            "action_dtype": self.action_dtype,
            "action_shape": list(self.action_shape),
            "env_info": self.env_info,
            "observation": self.observation,
            "compression": COMPRESSION,
            "frame_chunk_rows": FRAME_CHUNK_ROWS,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Resolved:
        # The manifest's "policy" holds the resolved description; the --policy text is its type
        # (random, scripted) or, for an agent (or a format-1 SB3 zip), its path.
        desc = d["policy"] or {"type": "random"}
        text = desc["path"] if "path" in desc else desc["type"]
        values = {k: d[k] for k in CollectConfig.field_names() if k != "policy"}
        cfg = CollectConfig.from_json({**values, "policy": text})
        return cls(cfg, dict(d["env_kwargs"]), dict(d["policy"]), tuple(d["groups"]),
                   str(d["action_dtype"]), tuple(d["action_shape"]), dict(d["env_info"]),
                   dict(d.get("observation", {})))


def make_env(run: Resolved) -> gym.Env[Any, Any]:
    """Build the run's env (each worker builds its own)."""
    return make(run.config.env_id, **run.env_kwargs)


def env_parameters(env_id: str) -> frozenset[str]:
    """Keyword arguments the env class of ``env_id`` accepts."""
    from sparseshift.envs.registry import env_class  # imports the env's module

    return frozenset(inspect.signature(env_class(env_id)).parameters)


def check_env_kwargs(env_id: str, kwargs: Mapping[str, Any]) -> None:
    """One-line ConfigError for env kwargs the env class of ``env_id`` does not take."""
    valid = env_parameters(env_id) - {"self"}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ConfigError(f"unknown env kwarg(s) {unknown} for {env_id}; valid: "
                          f"{', '.join(sorted(valid))}")


def variable_groups(env: Any, seed: int) -> tuple[str, ...]:
    """Settable groups that can take more than one value under the chosen colours.

    A group is probed from :data:`PROBE_STATES` sampled states (whether a group can change may
    depend on the state). One that never differs from its base in :data:`PROBE_DRAWS` resamples
    per state (e.g. a colour with a one-colour palette in the chosen splits) is left out.
    """
    rng = np.random.default_rng([seed, 0x9E3779B9])
    bases = [np.asarray(env.sample_factors(rng), dtype=np.float32) for _ in range(PROBE_STATES)]
    out = []
    for g in env.settable_groups:
        idx = list(env.factor_spec.group_indices(g))
        if any(
            np.any(np.asarray(env.sample_factors(rng, base=b, groups=[g]))[idx] != b[idx])
            for b in bases
            for _ in range(PROBE_DRAWS)
        ):
            out.append(g)
    return tuple(out)
