"""Benchmarks: ``sparseshift bench NAME``.

Each benchmark module defines ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``
and prints its rates next to a limit measured in the same run, as ratios (medians of repeats), so
the figures mean something on a shared, noisy machine. Benchmarks are never timed tests.
:func:`bench_modules` imports them (plainly) when the ``bench`` parser is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType, ModuleType

#: The benchmarks, in the order ``sparseshift bench --help`` lists them (module names here).
BENCHES: tuple[str, ...] = ("envs", "collect", "train", "agents", "evalrep")


def bench_modules() -> Mapping[str, ModuleType]:
    """The benchmark modules by name, imported plainly when the ``bench`` parser is built."""
    from sparseshift.experiments.bench import agents, collect, envs, evalrep, train

    found = {"envs": envs, "collect": collect, "train": train, "agents": agents,
             "evalrep": evalrep}
    return MappingProxyType({name: found[name] for name in BENCHES})
