"""Resolve an agent's ``encoder`` argument to a frozen learner and a JSON description of it.

* a representation run directory: :func:`sparseshift.representations.checkpoint.load_learner` (eval
mode);
  the fingerprint is :func:`sparseshift.representations.checkpoint.encoder_fingerprint` (its
  config and the content digest of its weights: the same for identical runs);
* ``random``: the default :data:`sparseshift.agents.config.RANDOM_LEARNER` architecture at the
env's image
  size, untrained, initialised from the agent seed inside :func:`torch.random.fork_rng` (the global
  torch RNG is left as it was); the fingerprint hashes its weights;
* ``pixels`` / ``state``: no frozen encoder (end-to-end CNN, ground-truth state).

The description is stored in the agent's ``agent.json``; :func:`load_encoder` with
``expect_fingerprint`` refuses an encoder whose weights changed since the agent was trained, and
with ``env_id`` warns (:class:`EncoderEnvWarning`) when the run's dataset came from another env.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparseshift.agents.config import BASELINES, RANDOM_LEARNER
from sparseshift.envs.errors import ConfigError
from sparseshift.representations.base import Learner
from sparseshift.representations.checkpoint import (
    RUN_FILE,
    encoder_fingerprint,
    load_learner,
    tensor_digest,
)


@dataclass(frozen=True)
class ResolvedEncoder:
    """A frozen learner (None for ``pixels`` / ``state``) and its description for ``agent.json``."""

    learner: Learner | None
    description: dict[str, Any]

    @property
    def fingerprint(self) -> str | None:
        fp = self.description.get("fingerprint")
        return None if fp is None else str(fp)


class EncoderEnvWarning(UserWarning):
    """An encoder trained on frames of one env is used by an agent in another."""


def check_encoder_env(description: dict[str, Any], env_id: str) -> str:
    """``""`` when the encoder's training frames came from ``env_id`` (or the run does not say),
    else the warning text naming both envs; :func:`load_encoder` issues it as an
    :class:`EncoderEnvWarning`."""
    dataset = (description.get("run") or {}).get("dataset") or {}
    trained = dataset.get("env_id")
    if not trained or trained == env_id:
        return ""
    where = description.get("path", "the encoder")
    return (f"encoder {where} was trained on frames of {trained}, but the agent's env is "
            f"{env_id}: its latents may not describe these frames (train a representation on "
            f"{env_id} data, or use the matching env)")


def weights_fingerprint(learner: Learner) -> str:
    """Content digest of the learner's weights (names, dtypes, shapes and bytes, by name)."""
    return tensor_digest(learner.state_dict())


def random_learner(image_size: int, seed: int) -> Learner:
    """The default VAE encoder architecture, untrained, initialised from ``seed``."""
    from sparseshift.representations.registry import make_learner

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        learner = make_learner(RANDOM_LEARNER, {"image_size": image_size})
    return learner.eval()


def load_encoder(spec: str, image_size: int, seed: int,
                 expect_fingerprint: str | None = None,
                 env_id: str | None = None) -> ResolvedEncoder:
    """Resolve ``spec`` (a run directory or a baseline name); see the module docstring.

    With ``env_id``, an encoder whose run records a dataset of another env gets an
    :class:`EncoderEnvWarning` naming both (:func:`check_encoder_env`).
    """
    if spec in ("pixels", "state"):
        return ResolvedEncoder(None, {"kind": spec, "fingerprint": None})
    if spec == "random":
        learner = random_learner(image_size, seed)
        desc = {"kind": "random", "learner": RANDOM_LEARNER, "init_seed": seed,
                "config": learner.config.to_json(), "fingerprint": weights_fingerprint(learner)}
    else:
        path = Path(spec).expanduser().resolve()
        if not (path / RUN_FILE).is_file():
            raise ConfigError(
                f"encoder {spec!r} is neither a representation run directory (no {RUN_FILE}) nor "
                f"one of {', '.join(BASELINES)}"
            )
        learner = load_learner(path)
        run = json.loads((path / RUN_FILE).read_text())
        desc = {"kind": "checkpoint", "path": str(path), "learner": learner.name,
                "config": run.get("model", learner.config.to_json()),
                "run": {k: run[k] for k in ("identity", "train", "dataset") if k in run},
                "fingerprint": encoder_fingerprint(path)}
    size = int(learner.config.image_size)
    if size != image_size:
        raise ConfigError(
            f"encoder {spec!r} was trained on {size}x{size} images but the agent's env renders "
            f"{image_size}x{image_size} (use --image-size {size})"
        )
    if expect_fingerprint is not None and desc["fingerprint"] != expect_fingerprint:
        raise ConfigError(
            f"encoder {spec!r} changed since the agent was trained (fingerprint "
            f"{str(desc['fingerprint'])[:12]} != {expect_fingerprint[:12]})"
        )
    if env_id is not None:
        message = check_encoder_env(desc, env_id)
        if message:
            warnings.warn(message, EncoderEnvWarning, stacklevel=2)
    return ResolvedEncoder(learner.eval(), desc)
