"""Sampler: shapes, determinism, episode boundaries, and reading from disk like from RAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparseshift.envs.data import Sampler, open_dataset
from sparseshift.envs.data.sampler import frames_left
from sparseshift.envs.infra.errors import ConfigError
from tests.test_data_helpers import make


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # ColourGrid episodes end at the target or after 50 steps, so 640 frames hold many episodes
    return make(tmp_path_factory.mktemp("sv") / "video.h5", "video", n=640, seed=1)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("sp") / "pairs.h5", "pairs", n=96, seed=2)


def test_frames_left() -> None:
    starts = np.array([1, 0, 0, 1, 0, 1, 1, 0], bool)
    assert frames_left(starts).tolist() == [2, 1, 0, 1, 0, 0, 1, 0]


def test_shapes_and_dtypes(video: Path, pairs: Path) -> None:
    v, p = Sampler(open_dataset(video)), Sampler(open_dataset(pairs))
    nf = len(open_dataset(video).factor_spec)
    b = v.frames(16)
    assert b["x"].shape == (16, 64, 64, 3) and b["x"].dtype == np.uint8
    assert b["factors"].shape == (16, nf) and b["factors"].dtype == np.float32
    assert p.frames(16)["x"].shape == (16, 64, 64, 3)
    ip = p.intervention_pairs(8)
    assert set(ip) == {"x1", "x2", "factors1", "factors2", "changed"}
    assert ip["changed"].dtype == bool and ip["changed"].shape == (8, nf)
    assert np.array_equal(ip["changed"], ip["factors1"] != ip["factors2"])
    tp = v.temporal_pairs(8, 3)
    assert set(tp) == set(ip) and np.array_equal(tp["changed"], tp["factors1"] != tp["factors2"])
    sq = v.sequences(4, 6)
    assert sq["x"].shape == (4, 6, 64, 64, 3) and sq["factors"].shape == (4, 6, nf)


def test_pairs_frames_come_from_both_sides(pairs: Path) -> None:
    ds = open_dataset(pairs)
    x = Sampler(ds, seed=0).frames(400)["x"]
    flat = x.reshape(len(x), -1)
    in_a = (flat[:, None] == ds.frames_a.reshape(len(ds), -1)[None]).all(-1).any(-1)
    in_b = (flat[:, None] == ds.frames_b.reshape(len(ds), -1)[None]).all(-1).any(-1)
    assert (in_a | in_b).all() and (in_a & ~in_b).any() and (in_b & ~in_a).any()


def test_deterministic_for_a_seed(video: Path) -> None:
    ds = open_dataset(video)
    a, b, c = Sampler(ds, seed=7), Sampler(ds, seed=7), Sampler(ds, seed=8)
    for name, args in (("frames", (32,)), ("temporal_pairs", (32, (1, 5))), ("sequences", (8, 4))):
        x, y, z = (getattr(s, name)(*args) for s in (a, b, c))
        assert all(np.array_equal(x[k], y[k]) for k in x)
        assert not np.array_equal(x["factors"] if "factors" in x else x["factors1"],
                                  z["factors"] if "factors" in z else z["factors1"])


def test_temporal_pairs_and_sequences_never_cross_episodes(video: Path) -> None:
    ds = open_dataset(video)
    ep = np.cumsum(ds.episode_starts) - 1
    assert ep[-1] >= 10, "want many episodes"
    t, u = Sampler(ds, seed=0).temporal_index(5000, (1, 12))
    assert (ep[t] == ep[u]).all()
    assert set((u - t).tolist()) == set(range(1, 13))
    # the batches hold exactly those rows
    b = Sampler(ds, seed=0).temporal_pairs(5000, (1, 12))
    assert np.array_equal(b["x1"], ds.frames[t]) and np.array_equal(b["x2"], ds.frames[u])
    assert np.array_equal(b["factors2"], ds.factors[u])
    idx = Sampler(ds, seed=1).sequence_index(2000, 8)
    assert (np.diff(idx, axis=1) == 1).all() and (ep[idx[:, 0]] == ep[idx[:, -1]]).all()
    q = Sampler(ds, seed=1).sequences(2000, 8)
    assert np.array_equal(q["x"], ds.frames[idx]) and np.array_equal(q["factors"], ds.factors[idx])
    # every valid start is reachable: starts cover all frames with >= 7 frames left
    assert set(idx[:, 0].tolist()) <= set(np.flatnonzero(frames_left(ds.episode_starts) >= 7))


def test_gaps_longer_than_episodes_are_refused(video: Path) -> None:
    s = Sampler(open_dataset(video))
    with pytest.raises(ConfigError, match="longest episode"):
        s.temporal_pairs(4, 10_000)
    with pytest.raises(ConfigError, match="longest episode"):
        s.sequences(4, 10_000)


def test_kind_mismatch_is_a_config_error(video: Path, pairs: Path) -> None:
    with pytest.raises(ConfigError, match="pairs dataset"):
        Sampler(open_dataset(video)).intervention_pairs(4)
    with pytest.raises(ConfigError, match="video dataset"):
        Sampler(open_dataset(pairs)).temporal_pairs(4, 1)
    with pytest.raises(ConfigError, match="video dataset"):
        Sampler(open_dataset(pairs)).sequences(4, 3)


def test_on_disk_reads_equal_in_memory(video: Path, pairs: Path) -> None:
    for path in (video, pairs):
        ram, disk = open_dataset(path), open_dataset(path, memory_budget=0)
        assert ram.in_memory and not disk.in_memory
        calls = [("frames", (48,))] + ([("temporal_pairs", (48, (1, 4))), ("sequences", (6, 5))]
                                       if ram.kind == "video" else [("intervention_pairs", (48,))])
        for name, args in calls:
            x, y = getattr(Sampler(ram, 5), name)(*args), getattr(Sampler(disk, 5), name)(*args)
            assert all(np.array_equal(x[k], y[k]) for k in x), name
        with pytest.raises(ConfigError, match="memory budget"):
            _ = disk.frames if disk.kind == "video" else disk.frames_a
