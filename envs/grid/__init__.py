"""Grid worlds with colour-shift factors: ColourGrid and MiniGrid tasks re-rendered by sparseshift.

Modules: :mod:`~envs.grid.render` (vectorised numpy tile renderer), :mod:`~envs.grid.colourgrid`
(``sparseshift/ColourGrid-v0``), :mod:`~envs.grid.minigrid_adapter` (``sparseshift/MiniGrid-*``).
Env modules are imported lazily by ``gymnasium.make``; importing this package imports neither
MiniGrid nor the envs. Speed: ``sparseshift bench envs``.
"""

from __future__ import annotations

from envs.registry import make

__all__ = ["make"]
