"""MuJoCo TriFingerPro envs (Wuthrich et al. 2020) with ground-truth factors and colour splits.

Modules: :mod:`~envs.trifinger.model` (MJCF location, reference constants, cached ids),
:mod:`~envs.trifinger.render` (presets, renderer, segmentation, raw speed loop),
:mod:`~envs.trifinger.shift` (the ``real`` rendering shift), :mod:`~envs.trifinger.env` (the base
env), :mod:`~envs.trifinger.tasks` (Reach, Push) and :mod:`~envs.trifinger.scripted` (a scripted
pusher). Import :mod:`envs` first so the headless GL backend is selected before MuJoCo loads.
"""
