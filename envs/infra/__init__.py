"""The infrastructure every layer of sparseshift uses, on the lowest floor; it imports nothing else
of ours.

* :mod:`~sparseshift.envs.infra.errors`: :class:`~sparseshift.envs.infra.errors.ConfigError`
  (bad input: one line, exit status 2 from the CLI) and the value checks that raise it;
* :mod:`~sparseshift.envs.infra.config`: the frozen-dataclass :class:`~sparseshift.envs.infra.
  config.Config` base and :func:`~sparseshift.envs.infra.config.opt` (one default, one help text,
  the CLI flag), JSON/TOML config files;
* :mod:`~sparseshift.envs.infra.io`: bounded, schema-checked readers and atomic writes;
* :mod:`~sparseshift.envs.infra.heartbeat`: the progress file of long work (what is running, how
  far, when it last moved).

It sits in ``envs/`` because the repository's top-level folders are fixed and the data flow puts
what every layer uses on the floor of the first stage.
"""
