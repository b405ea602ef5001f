"""MuJoCo TriFingerPro envs (Wuthrich et al. 2020) with ground-truth factors and colour splits.

Modules: :mod:`~sparseshift.envs.trifinger.model` (MJCF location, reference constants, cached ids),
:mod:`~sparseshift.envs.trifinger.render` (presets, renderer, segmentation, raw speed loop),
:mod:`~sparseshift.envs.trifinger.env` (the base
env), :mod:`~sparseshift.envs.trifinger.tasks` (Reach, Push) and
:mod:`~sparseshift.envs.trifinger.scripted` (a scripted
pusher).

Importing this package selects the headless GL backend
(:func:`sparseshift.envs.core.gl.select_backend`:
``MUJOCO_GL=egl`` unless set, OSMesa as the fallback) before any of its modules imports MuJoCo:
this is where MuJoCo is first needed, so nothing else in sparseshift sets an environment variable.
"""

from sparseshift.envs.core.gl import select_backend

select_backend()

