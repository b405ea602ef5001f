"""Timing helpers shared by the benchmarks: repeated measurements, medians and ratio tables."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """A rate measured ``len(samples)`` times; ``median`` is what tables report."""

    name: str
    unit: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Half the range of the samples, relative to the median."""
        if len(self.samples) < 2 or self.median == 0:
            return 0.0
        return (max(self.samples) - min(self.samples)) / 2 / self.median


def measure(name: str, unit: str, fn: Callable[[int], None], n: int, repeats: int = 3,
            warmup: int = 1) -> Rate:
    """Call ``fn(n)`` ``warmup + repeats`` times; each timed call yields ``n / seconds``."""
    for _ in range(warmup):
        fn(max(1, n // 10))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(n)
        samples.append(n / (time.perf_counter() - t0))
    return Rate(name, unit, tuple(samples))


def interleaved(fns: dict[str, Callable[[int], None]], unit: str, n: int,
                repeats: int = 3) -> dict[str, Rate]:
    """Measure several candidates in turns (A B C A B C ...) so drifting load hits all alike."""
    for fn in fns.values():
        fn(max(1, n // 10))
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn(n)
            samples[k].append(n / (time.perf_counter() - t0))
    return {k: Rate(k, unit, tuple(v)) for k, v in samples.items()}


def format_row(rate: Rate, reference: Rate | None = None, goal: float | None = None) -> str:
    """One table row: name, median rate (+- spread), ratio to the reference, and the goal."""
    text = f"{rate.name:<44} {rate.median:>10.1f} {rate.unit:<9} (+-{100 * rate.spread:4.1f}%)"
    if reference is not None and reference.median > 0:
        ratio = rate.median / reference.median
        text += f"  {ratio:6.2f}x {reference.name}"
        if goal is not None:
            text += f"  goal >= {goal:.2f}x: {'ok' if ratio >= goal else 'MISSED'}"
    return text
