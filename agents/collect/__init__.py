"""Dataset collection: run a behaviour policy (or draw intervention pairs) and write a dataset.

:func:`sparseshift.agents.collect.collect.collect` is what ``sparseshift collect`` runs: it
resolves the config (:mod:`~sparseshift.agents.collect.resolve`), builds the behaviour policy
(:mod:`~sparseshift.agents.collect.policies`: smooth random motion, straight lines, sinusoids, a
scripted pusher or a trained agent) and makes the run's parts in this process, helper processes
(:mod:`~sparseshift.agents.collect.workers`) and an optional writer process
(:mod:`~sparseshift.agents.collect.writer`), which store them crash-safely and assemble the file
(:mod:`~sparseshift.agents.collect.store`).

Collection sits above the agents layer because a trained agent can be its behaviour policy, so it
imports agents plainly. What a dataset *is* stays below every learner, in
:mod:`sparseshift.envs.data`: the configuration and manifest (``config``), the file format
(``layout``, ``schema``), pair and rollout generation (``generate``), the readers (``dataset``,
``sampler``) and the exports. Importing this package imports none of its modules.
"""
