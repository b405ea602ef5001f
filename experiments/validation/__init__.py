"""Validation tools that check our envs against outside references.

:mod:`~sparseshift.experiments.validation.fidelity` runs our MuJoCo TriFingerPro side by side with
the official simulator (``trifinger_simulation``, PyBullet) and measures the difference;
:mod:`~sparseshift.experiments.validation.fidelity_official` is its official side, a script run by
another interpreter (it imports nothing from sparseshift). ``sparseshift fidelity`` runs them. The
envs never use these modules at run time.
"""
