"""Shared fixtures of the representation tests: tiny datasets collected from ColourGrid and tiny
learner configs (no tests here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

#: A tiny conv VAE (64x64 input, the real architecture with few channels).
TINY: dict[str, Any] = {"channels": (4, 4, 8, 8), "hidden": 16, "latent_dim": 4}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def _collect(root: Path, kind: str, n: int) -> Path:
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    out = root / f"{kind}.h5"
    collect(CollectConfig("sparseshift/ColourGrid-v0", kind, n, seed=0), out, progress=False)
    return out


@pytest.fixture(scope="session")
def pairs_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _collect(tmp_path_factory.mktemp("rep_data"), "pairs", 96)


@pytest.fixture(scope="session")
def video_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _collect(tmp_path_factory.mktemp("rep_data"), "video", 160)
