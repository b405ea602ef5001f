"""A frozen learner turned into an observation -> feature-vector map for RL.

Following the frozen-representation protocol of Dittadi et al. (ICLR 2021, *On the Transfer of
Disentangled Representations in Realistic Settings*) and Traeuble, Dittadi et al. (ICLR 2022, *The
Role of Pretrained Representations for the OOD Generalization of RL Agents*), the policy sees the
encoder's latents of the camera frame concatenated with the proprioceptive state and the goal
(``obs_mode="pixels_proprio"``), and the encoder is never updated by the RL loss.

:class:`FrozenEncoder` holds that map; the VecEnv wrapper (:mod:`sparseshift.agents.wrapper`) and
the
evaluation loop (:mod:`sparseshift.agents.rollout`) both use it, so training and evaluation encode
identically.
Set-valued latents (learners with ``Capability.SET_LATENTS``, e.g. slots, ``latent_shape ==
(K, D)``) are flattened slot-major into the feature vector;
:class:`sparseshift.agents.extractors.DeepSetsExtractor` knows ``K`` and ``D`` and treats them as
a set.

Encoder state of stateful learners (``Capability.STATEFUL``, e.g. the Neural Wave Machine) is a
tensor or a nested tuple / list / dict of tensors whose first dimension indexes the parallel
streams (envs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from sparseshift.agents.standardize import LatentStats
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.base import Capability, Learner

PIXELS = "pixels"
PROPRIO = "proprio"


def tree_map(fn: Callable[..., torch.Tensor], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leaf-wise to a tensor or nested tuple / list / dict of tensors (None stays)."""
    if tree is None:
        return None
    if isinstance(tree, torch.Tensor):
        return fn(tree, *rest)
    if isinstance(tree, Mapping):
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return type(tree)(tree_map(fn, *items) for items in zip(tree, *rest, strict=True))
    raise TypeError(f"encoder state leaves must be tensors, got {type(tree).__name__}")


def select_state(state: Any, index: torch.Tensor) -> Any:
    """The state of the streams ``index`` (first dimension)."""
    return tree_map(lambda t: t.index_select(0, index), state)


def assign_state(state: Any, index: torch.Tensor, rows: Any) -> Any:
    """``state`` with the streams ``index`` replaced by ``rows`` (a state of ``len(index)``)."""
    return tree_map(lambda t, r: t.index_copy(0, index, r.to(t.dtype)), state, rows)


def reset_state(state: Any, initial: Any, mask: torch.Tensor) -> Any:
    """``state`` with the streams where ``mask`` is true replaced by ``initial``'s."""

    def leaf(t: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        m = mask.reshape(-1, *([1] * (t.dim() - 1)))
        return torch.where(m, init.to(t.dtype), t)

    return tree_map(leaf, state, initial)


def pixel_layout(space: spaces.Space[Any]) -> tuple[tuple[int, ...], int]:
    """``(pixel shape, proprio size)`` of an env observation space (pixels or pixels_proprio)."""
    if isinstance(space, spaces.Dict):
        if PIXELS not in space.spaces:
            raise ConfigError("a frozen encoder needs pixel observations (obs_mode pixels or "
                              f"pixels_proprio); got a Dict without 'pixels': {list(space.spaces)}")
        pix = space.spaces[PIXELS]
        prop = space.spaces.get(PROPRIO)
        extra = sorted(set(space.spaces) - {PIXELS, PROPRIO})
        if extra:
            raise ConfigError(f"unexpected observation keys {extra}")
        psize = 0 if prop is None else math.prod(prop.shape or ())
    else:
        pix, psize = space, 0
    if not (isinstance(pix, spaces.Box) and pix.dtype == np.uint8 and len(pix.shape) == 3
            and pix.shape[-1] == 3):
        raise ConfigError(f"pixel observations must be uint8 HxWx3, got {pix}")
    return tuple(pix.shape), int(psize)


class FrozenEncoder:
    """A learner in eval mode with frozen weights, mapping env observations to float32 features.

    Features are ``[standardised latents.flatten(), proprio]``; :attr:`observation_space` is
    their Box. ``stats`` (:class:`~sparseshift.agents.standardize.LatentStats`, measured once
    before training and recorded in ``agent.json``) standardises the latents per dimension, so
    every encoder reaches the policy through the same view; ``None`` passes them raw (only for
    measuring the statistics themselves).
    """

    def __init__(self, learner: Learner, env_space: spaces.Space[Any],
                 stats: LatentStats | None = None) -> None:
        self.learner = learner.eval()
        self.learner.requires_grad_(False)
        self.pixel_shape, self.proprio_dim = pixel_layout(env_space)
        self.is_dict = isinstance(env_space, spaces.Dict)
        size = int(learner.config.image_size)
        if self.pixel_shape != (size, size, 3):
            raise ConfigError(
                f"the encoder was trained on {size}x{size} images but the env renders "
                f"{self.pixel_shape[0]}x{self.pixel_shape[1]}; use --image-size {size} or another "
                "encoder"
            )
        self.latent_shape = tuple(int(d) for d in learner.latent_shape)
        self.is_set = learner.supports(Capability.SET_LATENTS)
        if len(self.latent_shape) != (2 if self.is_set else 1):
            want = "(K, D) for set-valued latents" if self.is_set else "(D,)"
            raise ConfigError(f"latent shape of learner {learner.name!r} must be {want}, got "
                              f"{self.latent_shape}")
        self.latent_size = math.prod(self.latent_shape)
        self.stateful = learner.supports(Capability.STATEFUL)
        self.stats = stats
        if stats is not None:
            if stats.mean.shape != (self.latent_shape[-1],):
                raise ConfigError(f"latent statistics of size {stats.mean.shape[0]} do not fit "
                                  f"latents of shape {self.latent_shape}")
        dim = self.latent_size + self.proprio_dim
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)

    @property
    def set_shape(self) -> tuple[int, int] | None:
        """``(K, D)`` for set-valued latents, else None."""
        return (self.latent_shape[0], self.latent_shape[1]) if self.is_set else None

    def initial_state(self, batch: int) -> Any:
        return self.learner.initial_state(batch) if self.stateful else None

    def split(self, obs: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Batched observations -> (uint8 frames ``[B, H, W, 3]``, proprio ``[B, P]`` or None)."""
        if self.is_dict:
            frames = np.asarray(obs[PIXELS])
            prop = None
            if self.proprio_dim:
                prop = np.asarray(obs[PROPRIO], dtype=np.float32).reshape(len(frames), -1)
            return frames, prop
        return np.asarray(obs), None

    def stack(self, observations: Sequence[Any]) -> Any:
        """Stack single observations (arrays or dicts) into one batch."""
        if self.is_dict:
            return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
        return np.stack(observations)

    def concat(self, a: Any, b: Any) -> Any:
        """Concatenate two batches along the batch dimension."""
        if self.is_dict:
            return {k: np.concatenate([a[k], b[k]]) for k in a}
        return np.concatenate([a, b])

    def latents(self, obs: Any, state: Any = None) -> tuple[np.ndarray, Any]:
        """Raw latents of a batch in one forward pass: ``([B, latent_size] float32, state)``."""
        return self._encode(self.split(obs)[0], state)

    def _encode(self, frames: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.learner.device)
        with torch.inference_mode():
            if self.stateful:
                z, state = self.learner.encode_step(x, state)
            else:
                z = self.learner.encode(x)
        return z.reshape(len(frames), -1).float().cpu().numpy(), state

    def features(self, obs: Any, state: Any = None) -> tuple[np.ndarray, Any]:
        """Encode a batch in one forward pass; returns ``(features [B, F] float32, new state)``."""
        frames, prop = self.split(obs)
        lat, state = self._encode(frames, state)
        if self.stats is not None:
            n = len(lat)
            lat = self.stats.apply(lat.reshape(n, -1, self.latent_shape[-1])).reshape(n, -1)
        if prop is None:
            return np.ascontiguousarray(lat, dtype=np.float32), state
        return np.concatenate([lat, prop], axis=1).astype(np.float32, copy=False), state
