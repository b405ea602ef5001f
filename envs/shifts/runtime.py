"""What an env holds to apply its shift: per-episode draws and the per-frame pipeline.

:func:`env_shift_arg` validates an env's ``shift`` kwarg (None, ``"none"``, a shift token such as
``"real:4"`` or ``"lighting@2.5"``, or an :class:`~sparseshift.envs.shifts.registry.EnvShift` /
:class:`~sparseshift.envs.shifts.registry.ResolvedShift` from a user's registry) against the
features the env offers. :class:`ShiftRuntime` then draws each nuisance's episode parameters from
its own child generator of one seed taken from the env's RNG at reset (so two envs with the same
seed give identical frames), and applies the frame nuisances in stage order. With no frame
nuisance a frame is returned as rendered: un-shifted rendering pays nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparseshift.envs.infra.errors import ConfigError, safe_repr
from sparseshift.envs.shifts.nuisance import Nuisance, Scene
from sparseshift.envs.shifts.registry import (
    EnvShift,
    ResolvedShift,
    check_supported,
    default_registry,
)


def env_shift_arg(shift: object, features: frozenset[str], env: str) -> EnvShift | None:
    """The env kwarg ``shift`` -> the nuisances to apply (None: none). Colour splits are the
    env's ``colours`` kwarg, so a colour shift other than ``in`` is refused here."""
    if shift is None or shift == "none":
        return None
    if isinstance(shift, str):
        resolved = default_registry().resolve(shift)
    elif isinstance(shift, ResolvedShift | EnvShift):
        resolved = shift  # type: ignore[assignment]
    else:
        raise ConfigError(f"shift must be None, a shift name such as 'real:3', or a resolved "
                          f"shift, got {safe_repr(shift)}")
    if isinstance(resolved, ResolvedShift):
        if resolved.colours != "in":
            raise ConfigError(f"shift {resolved.label!r} changes the colour split to "
                              f"{resolved.colours!r}: pass colours={resolved.colours!r} and "
                              "its nuisances as the env's shift")
        out = resolved.env_shift()
    else:
        out = resolved if resolved.components else None
    if out is not None:
        check_supported(out, features, env)
    return out


class ShiftRuntime:
    """Applies one :class:`EnvShift` to one env's scene (per episode) and frames (per frame)."""

    def __init__(self, shift: EnvShift, scene: Scene) -> None:
        self.shift, self.scene = shift, scene
        self._states: list[Any] = [None] * len(shift.components)
        self._rngs = [np.random.default_rng(0) for _ in shift.components]
        order = sorted((n.stage, i) for i, (n, _) in enumerate(shift.components)
                       if n.stage is not None)
        self._frame_order = [i for _, i in order]

    @property
    def label(self) -> str:
        return self.shift.label

    @property
    def transforms_frames(self) -> bool:
        return bool(self._frame_order)

    def new_episode(self, rng: np.random.Generator) -> None:
        """Restore the scene, then draw every nuisance's parameters for this episode."""
        self.scene.restore()
        seeds = np.random.SeedSequence(int(rng.integers(2**63))).spawn(len(self._rngs))
        for i, ((nuisance, severity), seed) in enumerate(
                zip(self.shift.components, seeds, strict=True)):
            self._rngs[i] = np.random.default_rng(seed)
            self._states[i] = nuisance.episode(severity, self._rngs[i], self.scene)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """A new uint8 frame with this episode's frame nuisances applied."""
        if not self._frame_order:
            return frame.copy()
        img = frame.astype(np.float32)
        for i in self._frame_order:
            nuisance: Nuisance = self.shift.components[i][0]
            img = nuisance.frame(img, self._states[i], self._rngs[i], self.scene)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def rng_states(self) -> list[Any]:
        """The per-frame generators' states (to apply a frame without consuming randomness)."""
        return [r.bit_generator.state for r in self._rngs]

    def set_rng_states(self, states: list[Any]) -> None:
        for r, s in zip(self._rngs, states, strict=True):
            r.bit_generator.state = s
