"""Resolve an agent's ``encoder`` argument to a frozen learner and a JSON description of it.

* a representation run directory: :func:`sparseshift.representations.checkpoint.load_learner`
  (eval mode); the fingerprint is :func:`sparseshift.representations.checkpoint.
  encoder_fingerprint` (its config and the content digest of its weights);
* your own encoder (:mod:`sparseshift.representations.external`): ``package.module:factory``
  (with optional safetensors weights), an installed ``sparseshift.encoders`` entry point, an
  ``export-encoder`` folder, or from Python any ``torch.nn.Module``; the fingerprint covers its
  factory, spec and weights;
* ``random``: the default :data:`sparseshift.agents.config.RANDOM_LEARNER` architecture at the
  env's image size, untrained, initialised from the agent seed (init seed = agent seed) inside
  :func:`torch.random.fork_rng` (the global torch RNG is left as it was);
* ``pixels`` / ``state`` / ``sensors``: no frozen encoder (end-to-end CNN, ground-truth state,
  proprioception alone).

The description is stored in the agent's ``agent.json``; :func:`load_encoder` with
``expect_fingerprint`` refuses an encoder whose weights changed since the agent was trained, and
with ``env_id`` warns (:class:`EncoderEnvWarning`) when the run's dataset came from another env.
Code runs only when the user named it: a factory recorded in ``agent.json`` is imported only if
``plugins`` allows it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparseshift.agents.config import BASELINES, NO_ENCODER, RANDOM_LEARNER
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.base import Learner
from sparseshift.representations.checkpoint import (
    RUN_FILE,
    encoder_fingerprint,
    load_learner,
    read_run,
    tensor_digest,
)
from sparseshift.representations.external import (
    ENCODER_FILE,
    ModuleEncoder,
    as_encoder,
    build_from_factory,
    load_exported,
)
from sparseshift.representations.external import encoder_fingerprint as module_fingerprint
from sparseshift.representations.plugins import Plugins, entry_point_spec, is_code_spec


@dataclass(frozen=True)
class ResolvedEncoder:
    """A frozen learner (None for ``pixels`` / ``state``) and its description for ``agent.json``."""

    learner: Learner | None
    description: dict[str, Any]
    #: The description's fingerprint (None for the baselines without an encoder).
    fingerprint: str | None = field(init=False)

    def __post_init__(self) -> None:
        fp = self.description.get("fingerprint")
        object.__setattr__(self, "fingerprint", None if fp is None else str(fp))


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
                 env_id: str | None = None, plugins: Plugins | None = None,
                 weights: str | None = None, module: nn.Module | Learner | None = None,
                 recorded: dict[str, Any] | None = None) -> ResolvedEncoder:
    """Resolve ``spec`` (a baseline name, a run or exported-encoder folder, ``module:factory`` or
    an installed encoder entry point; see the module docstring).

    ``module`` (Python only) is the encoder itself; ``spec`` is then just its label.
    ``recorded`` is the description an agent recorded: a factory it names is imported only when
    ``plugins`` allows it (the user named it), never because the file says so. With ``env_id``,
    an encoder whose run records a dataset of another env gets an :class:`EncoderEnvWarning`.
    """
    plugins = plugins or Plugins()
    if spec in NO_ENCODER and module is None:
        return ResolvedEncoder(None, {"kind": spec, "fingerprint": None})
    if module is not None:
        learner = as_encoder(module, image_size)
        desc: dict[str, Any] = {"kind": "module", "label": spec,
                                "config": learner.config.to_json(),
                                "fingerprint": module_fingerprint(learner)}
    elif spec == "random":
        learner = random_learner(image_size, seed)
        desc = {"kind": "random", "learner": RANDOM_LEARNER, "init_seed": seed,
                "config": learner.config.to_json(), "fingerprint": weights_fingerprint(learner)}
    elif recorded is not None and recorded.get("kind") == "factory":
        factory = str(recorded.get("factory", ""))
        where = "the agent's agent.json"
        learner = build_from_factory(factory, plugins, image_size, weights, where=where)
        desc = _factory_desc(learner, weights)
    else:
        path = Path(spec).expanduser()
        if path.is_dir() and (path / RUN_FILE).is_file():
            if weights is not None:
                raise ConfigError("--encoder-weights is for an encoder named by its factory; a "
                                  "run folder has its own checkpoint")
            path = path.resolve()
            learner = load_learner(path, plugins=plugins)
            run = read_run(path)
            desc = {"kind": "checkpoint", "path": str(path), "learner": learner.name,
                    "config": run.get("model", learner.config.to_json()),
                    "run": {k: run[k] for k in ("identity", "train", "dataset") if k in run},
                    "fingerprint": encoder_fingerprint(path)}
        elif path.is_dir() and (path / ENCODER_FILE).is_file():
            if weights is not None:
                raise ConfigError("--encoder-weights is for an encoder named by its factory; an "
                                  "exported folder has its own weights")
            path = path.resolve()
            learner = load_exported(path, plugins)
            desc = {"kind": "exported", "path": str(path), "learner": learner.name,
                    "config": learner.config.to_json(),
                    "fingerprint": module_fingerprint(learner)}
        elif is_code_spec(spec) or entry_point_spec(spec, "sparseshift.encoders") is not None:
            learner = build_from_factory(spec, plugins.with_spec(spec), image_size, weights)
            desc = _factory_desc(learner, weights)
        else:
            raise ConfigError(
                f"encoder {spec!r} is neither a representation run folder (no {RUN_FILE}), an "
                f"exported encoder folder (no {ENCODER_FILE}), package.module:factory, an "
                f"installed sparseshift.encoders entry point, nor one of {', '.join(BASELINES)}")
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


def _factory_desc(learner: Learner, weights: str | None) -> dict[str, Any]:
    assert isinstance(learner, ModuleEncoder)
    desc: dict[str, Any] = {"kind": "factory", "factory": learner.spec.factory,
                            "learner": learner.name, "config": learner.config.to_json(),
                            "fingerprint": module_fingerprint(learner)}
    if weights is not None:
        desc["path"] = str(Path(weights).expanduser().resolve())
    return desc
