"""What every sparseshift env is built on: :class:`~sparseshift.envs.core.base.FactorEnv` (the
Gymnasium env with ground-truth factors, colour schemes and shifts), the factor specs
(:mod:`~sparseshift.envs.core.factors`) and the headless GL backend choice for MuJoCo
(:mod:`~sparseshift.envs.core.gl`).

Above :mod:`sparseshift.envs.shifts` (an env applies shifts) and below the env packages
(:mod:`sparseshift.envs.trifinger`, :mod:`sparseshift.envs.grid`) and the registry
(:mod:`sparseshift.envs.registry`), which names the env classes.
"""
