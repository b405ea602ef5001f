"""Weakly supervised video datasets: the lossless HDF5 format, pair generation, pair and sequence
sampling.

``open_dataset`` and ``Sampler`` are what learners use. Collection (``sparseshift collect``), which
runs behaviour policies and trained agents among them, sits above the agents layer in
:mod:`sparseshift.agents.collect`. The file layout is documented in ``docs/datasets.md`` and
:mod:`sparseshift.envs.data.layout`.
PyTorch adapters (``FrameDataset``, ``InterventionPairDataset``, ``TemporalPairDataset``,
``SequenceDataset``, ``TransitionDataset``, ``SampledBatches``, ``to_float_chw``) live in
:mod:`sparseshift.envs.data.torch_datasets` and are importable from here; torch is imported only
when one of them is first used.
"""

from typing import Any

from sparseshift.envs.data.dataset import Dataset, open_dataset
from sparseshift.envs.data.sampler import Sampler

#: Names re-exported lazily from :mod:`sparseshift.envs.data.torch_datasets` (imports torch).
TORCH_NAMES: frozenset[str] = frozenset({
    "FrameDataset", "InterventionPairDataset", "SampledBatches", "SequenceDataset",
    "TemporalPairDataset", "TransitionDataset", "to_float_chw",
})

__all__ = ["Dataset", "Sampler", "open_dataset", *sorted(TORCH_NAMES)]


def __getattr__(name: str) -> Any:
    if name in TORCH_NAMES:
        from sparseshift.envs.data import torch_datasets

        return getattr(torch_datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
