"""Grid worlds with colour-shift factors: ColourGrid and MiniGrid tasks re-rendered by sparseshift.

Modules: :mod:`~sparseshift.envs.grid.render` (vectorised numpy tile renderer),
:mod:`~sparseshift.envs.grid.colourgrid` (``sparseshift/ColourGrid-v0`` and, by parameters,
``sparseshift/ColourGridOne-v0``), :mod:`~sparseshift.envs.grid.minigrid_adapter`
(``sparseshift/MiniGrid-*``).
Env modules are imported lazily by ``gymnasium.make``; importing this package imports neither
MiniGrid nor the envs (make them with :func:`sparseshift.envs.registry.make`). Speed:
``sparseshift bench envs``.
"""
