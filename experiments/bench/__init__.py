"""Benchmarks: ``sparseshift bench NAME``.

Each benchmark module defines ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``
and prints its rates next to a limit measured in the same run, as ratios (medians of repeats), so
the figures mean something on a shared, noisy machine. Benchmarks are never timed tests.
:data:`BENCHES` maps each name to a loader that imports the benchmark's module (plainly, when it
is asked for) and returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType, ModuleType


def _envs() -> ModuleType:
    from sparseshift.experiments.bench import envs

    return envs


def _collect() -> ModuleType:
    from sparseshift.experiments.bench import collect

    return collect


def _train() -> ModuleType:
    from sparseshift.experiments.bench import train

    return train


def _agents() -> ModuleType:
    from sparseshift.experiments.bench import agents

    return agents


def _evalrep() -> ModuleType:
    from sparseshift.experiments.bench import evalrep

    return evalrep


#: Benchmark name -> the loader of its module, in the order ``sparseshift bench --help`` lists
#: them.
BENCHES: Mapping[str, Callable[[], ModuleType]] = MappingProxyType({
    "envs": _envs,
    "collect": _collect,
    "train": _train,
    "agents": _agents,
    "evalrep": _evalrep,
})
