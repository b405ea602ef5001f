"""Weakly supervised video datasets: collection, lossless HDF5 storage, pair and sequence sampling.

``open_dataset`` and ``Sampler`` are what learners use; ``collect`` is what ``sparseshift collect``
runs. The file layout is documented in ``docs/datasets.md`` and :mod:`sparseshift.envs.data.layout`.
"""

from sparseshift.envs.data.dataset import Dataset, open_dataset
from sparseshift.envs.data.sampler import Sampler

__all__ = ["Dataset", "Sampler", "open_dataset"]
