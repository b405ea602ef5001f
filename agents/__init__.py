"""sparseshift agents: Stable-Baselines3 policies on frozen encoders, evaluated under shifts.

Frozen encoders (a learner checkpoint, an exported or user encoder, random features) are run once
per env step in a VecEnv wrapper and standardised per latent dimension; the sensors-only, state
and pixels baselines need none (:mod:`~sparseshift.agents.encoders`). Training
(:func:`sparseshift.agents.train.train_agent`), evaluation under the shifts of the registry
(:func:`sparseshift.agents.evaluate.run_evaluation`: exact binomial intervals, paired tests on
shared episodes, robustness curves) and the statistics (:mod:`~sparseshift.agents.stats`) live
here. Agent folders hold ``agent.json`` and safetensors weights; nothing is unpickled.
"""
