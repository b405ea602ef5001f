"""How torch runs a stage: thread count and deterministic algorithms, set and restored in one place.

Every stage that runs torch (representation training and evaluation, agent training, study
stages, benchmarks) enters :func:`torch_run`: results are bitwise reproducible on the CPU for a
fixed seed and thread count, and the caller's settings come back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from sparseshift.envs.config import check_int


@contextlib.contextmanager
def torch_run(threads: int | None = None, deterministic: bool = True) -> Iterator[None]:
    """Pin torch to ``threads`` CPU threads (``None``: leave as is) and, with ``deterministic``,
    turn on ``torch.use_deterministic_algorithms(True, warn_only=True)`` for the block; restore
    both afterwards."""
    if threads is not None:
        check_int("threads", threads, 1, 1024)
    old_threads = torch.get_num_threads()
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(was, warn_only=was_warn)
