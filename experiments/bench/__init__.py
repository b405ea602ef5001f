"""Benchmarks: ``sparseshift bench NAME``.

Each benchmark module defines ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``
and prints its rates next to a limit measured in the same run, as ratios (medians of repeats), so
the figures mean something on a shared, noisy machine. Benchmarks are never timed tests.
"""

BENCHES: dict[str, str] = {
    "envs": "sparseshift.experiments.bench.envs",
    "collect": "sparseshift.experiments.bench.collect",
    "train": "sparseshift.experiments.bench.train",
    "agents": "sparseshift.experiments.bench.agents",
    "evalrep": "sparseshift.experiments.bench.evalrep",
}
