"""Shifts: one registry of named, graded, user-definable distribution shifts.

A *shift* is what an agent or a probe is evaluated under: a colour split of the OOD protocol
(``in``, ``ood1``, ``ood2``; Dittadi et al., ICLR 2021), a graded rendering *nuisance* (lighting,
camera jitter, blur, sensor noise, lens distortion, ...; graded in levels 1-5 like ImageNet-C,
Hendrycks & Dietterich, ICLR 2019), or a named *composition* of nuisances on a colour split
(``real``: the sim-to-real imitation). Everything that names a shift reads it from here:

* :mod:`~sparseshift.envs.shifts.severity`: the ``name[:LEVEL|:A-B|@STRENGTH]`` grammar.
* :mod:`~sparseshift.envs.shifts.nuisance`: the :class:`Nuisance` contract and the scene features
  an env offers (``frame``, ``lights``, ``camera``, ``surfaces``).
* :mod:`~sparseshift.envs.shifts.nuisances`: the shipped nuisances.
* :mod:`~sparseshift.envs.shifts.registry`: :class:`ShiftRegistry` (names, kinds, compositions,
  user shift files) and :func:`default_registry`.
* :mod:`~sparseshift.envs.shifts.runtime`: what an env holds to apply a shift per episode and
  per frame.

See ``docs/shifts.md``: the shipped shifts and their severities, and how to add a shift or an env.
"""
