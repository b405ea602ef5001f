"""PyTorch adapters: items, DataLoader workers (fork and spawn), seeding, kinds, transitions."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from sparseshift.envs.data import Sampler, open_dataset  # noqa: E402
from sparseshift.envs.data.sampler import frames_left  # noqa: E402
from sparseshift.envs.data.torch_datasets import (  # noqa: E402
    FrameDataset,
    InterventionPairDataset,
    SampledBatches,
    SequenceDataset,
    TemporalPairDataset,
    TransitionDataset,
    to_float_chw,
)
from sparseshift.envs.infra.errors import ConfigError  # noqa: E402
from tests.test_data_helpers import make  # noqa: E402


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("tv") / "video.h5", "video", n=320, seed=1,
                obs_mode="pixels_proprio")


@pytest.fixture(scope="module")
def pixels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("tx") / "pixels.h5", "video", n=128, seed=2)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("tp") / "pairs.h5", "pairs", n=64, seed=2)


def batches(dataset: Any, **kw: Any) -> list[dict[str, Any]]:
    return list(DataLoader(dataset, **kw))


def same(a: Any, b: Any) -> bool:
    """Nested dicts/lists of tensors are equal."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(torch.equal(a, b))


def test_items_match_the_arrays(video: Path, pairs: Path) -> None:
    ds, dp = open_dataset(video), open_dataset(pairs)
    nf = len(ds.factor_spec)
    f = FrameDataset(video)
    assert len(f) == 320
    item = f[7]
    assert item["x"].dtype == torch.uint8 and item["x"].shape == (64, 64, 3)
    assert np.array_equal(item["x"].numpy(), ds.frames[7])
    assert item["factors"].dtype == torch.float32 and item["factors"].shape == (nf,)
    fp = FrameDataset(pairs)
    assert len(fp) == 128
    assert np.array_equal(fp[3]["x"].numpy(), dp.frames_a[3])
    assert np.array_equal(fp[64 + 3]["x"].numpy(), dp.frames_b[3])
    assert np.array_equal(fp[-1]["factors"].numpy(), dp.factors_b[-1])
    ip = InterventionPairDataset(dp)[5]
    assert set(ip) == {"x1", "x2", "factors1", "factors2", "changed"}
    assert np.array_equal(ip["changed"].numpy(), dp.changed[5])
    assert np.array_equal(ip["x2"].numpy(), dp.frames_b[5])
    with pytest.raises(IndexError):
        f[320]


def test_temporal_pairs_enumerate_every_valid_pair_once(video: Path) -> None:
    ds = open_dataset(video)
    left = frames_left(ds.episode_starts)
    want = {(t, g) for g in range(1, 6) for t in np.flatnonzero(left >= g).tolist()}
    tp = TemporalPairDataset(ds, (1, 5))
    t, u = tp.index(np.arange(len(tp)))
    got = set(zip(t.tolist(), (u - t).tolist(), strict=True))
    assert len(tp) == len(want) and got == want
    ep = np.cumsum(ds.episode_starts) - 1
    assert (ep[t] == ep[u]).all()
    item = tp[len(tp) - 1]
    assert set(item) == {"x1", "x2", "factors1", "factors2", "changed"}
    one = TemporalPairDataset(ds, 3)  # one gap: starts in time order
    t3, u3 = one.index(np.arange(len(one)))
    assert (np.diff(t3) > 0).all() and (u3 - t3 == 3).all()
    assert np.array_equal(one[0]["x2"].numpy(), ds.frames[t3[0] + 3])


def test_sequences_are_every_valid_run_in_time_order(video: Path) -> None:
    ds = open_dataset(video)
    sq = SequenceDataset(ds, 6)
    starts = np.flatnonzero(frames_left(ds.episode_starts) >= 5)
    assert len(sq) == len(starts)
    item = sq[4]
    assert item["x"].shape == (6, 64, 64, 3) and item["factors"].shape == (6, len(ds.factor_spec))
    assert np.array_equal(item["x"].numpy(), ds.frames[starts[4] : starts[4] + 6])


@pytest.mark.parametrize(("make_it", "match"), [
    (lambda v, p: InterventionPairDataset(v), "intervention pairs need a pairs dataset"),
    (lambda v, p: TemporalPairDataset(p, 1), "temporal pairs need a video dataset"),
    (lambda v, p: SequenceDataset(p, 4), "sequences need a video dataset"),
    (lambda v, p: TransitionDataset(p), "transitions need a video dataset"),
    (lambda v, p: TemporalPairDataset(v, 10_000), "longest episode"),
    (lambda v, p: SequenceDataset(v, 0), "sequence length must be >= 1"),
    (lambda v, p: SampledBatches(v, "intervention_pairs", 8), "need a pairs dataset"),
    (lambda v, p: SampledBatches(v, "pairs", 8), "cannot sample 'pairs'"),
    (lambda v, p: SampledBatches(v, "frames", 0), "batch size must be positive"),
])
def test_kinds_a_dataset_cannot_provide_are_one_line_errors(
        video: Path, pairs: Path, make_it: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        make_it(video, pairs)
    assert "\n" not in str(err.value)


def test_dataloader_workers_give_the_same_batches(video: Path) -> None:
    """num_workers 0 and 2 (fork), RAM and disk: the same shuffled batches for one seed."""
    def run(data: Any, workers: int, **kw: Any) -> list[dict[str, Any]]:
        return batches(TemporalPairDataset(data, (1, 4)), batch_size=32, shuffle=True,
                       generator=torch.Generator().manual_seed(3), num_workers=workers, **kw)

    ref = run(video, 0)
    assert len(ref) == -(-len(TemporalPairDataset(video, (1, 4))) // 32)
    assert ref[0]["x1"].shape == (32, 64, 64, 3) and ref[0]["x1"].dtype == torch.uint8
    disk = open_dataset(video, memory_budget=0)
    assert not disk.in_memory
    _ = disk.take("frames", np.arange(3))  # the parent holds an open HDF5 handle before forking
    assert same(run(disk, 2, multiprocessing_context="fork"), ref)
    assert same(run(video, 2, multiprocessing_context="fork"), ref)
    other = batches(TemporalPairDataset(video, (1, 4)), batch_size=32, shuffle=True,
                    generator=torch.Generator().manual_seed(4))
    assert not same(other, ref)


def test_spawned_workers_reopen_the_file(pixels: Path) -> None:
    """With spawn nothing h5py is pickled: workers open the file themselves (here on disk)."""
    disk = open_dataset(pixels, memory_budget=0)
    _ = disk.take("frames", np.arange(3))
    state = pickle.dumps(disk)
    assert b"h5py" not in state and len(state) < 1000
    ref = batches(SequenceDataset(pixels, 4), batch_size=16)
    got = batches(SequenceDataset(disk, 4), batch_size=16, num_workers=2,
                  multiprocessing_context="spawn")
    assert same(got, ref)


def test_plain_dataset_in_a_dataloader(video: Path) -> None:
    """DataLoader(open_dataset(path)) gives rows of every row array."""
    ds = open_dataset(video)
    got = batches(ds, batch_size=100, num_workers=2)
    assert [len(b["frames"]) for b in got] == [100, 100, 100, 20]
    assert set(got[0]) == set(ds.row_arrays) and "obs/proprio" in got[0]
    assert np.array_equal(torch.cat([b["frames"] for b in got]).numpy(), ds.frames)
    assert np.array_equal(torch.cat([b["obs/proprio"] for b in got]).numpy(),
                          ds.obs["proprio"])
    assert np.array_equal(ds[-1]["factors"], ds.factors[-1])


def test_pickled_dataset_checks_its_fingerprint(pixels: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.h5"
    copy.write_bytes(pixels.read_bytes())
    ds = open_dataset(copy)
    state = pickle.dumps(ds)
    assert pickle.loads(state).fingerprint == ds.fingerprint
    make(tmp_path / "other.h5", "video", n=64, seed=9)
    copy.write_bytes((tmp_path / "other.h5").read_bytes())
    with pytest.raises(ConfigError, match="changed since it was opened"):
        pickle.loads(state)


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
def test_sampled_batches_same_stream_for_any_workers(video: Path) -> None:
    def run(workers: int) -> list[dict[str, Any]]:
        return batches(SampledBatches(video, "temporal_pairs", 16, seed=5, num_batches=5,
                                      gap=(1, 3)), batch_size=None, num_workers=workers)

    ref = run(0)
    assert len(ref) == 5 and ref[0]["x1"].shape == (16, 64, 64, 3)
    assert same(run(2), ref) and same(run(3), ref)
    s = Sampler(open_dataset(video))
    s.rng = np.random.default_rng([5, 2])
    want = s.temporal_pairs(16, (1, 3))
    assert all(np.array_equal(ref[2][k].numpy(), want[k]) for k in want)
    seq = next(iter(DataLoader(SampledBatches(video, "sequences", 4, length=6), batch_size=None)))
    assert seq["x"].shape == (4, 6, 64, 64, 3)


def test_transform(video: Path, pairs: Path) -> None:
    x = torch.full((2, 4, 4, 3), 255, dtype=torch.uint8)
    y = to_float_chw(x)
    assert y.shape == (2, 3, 4, 4) and y.dtype == torch.float32 and float(y.max()) == 1.0
    ip = InterventionPairDataset(pairs, transform=to_float_chw)[0]
    assert ip["x1"].shape == (3, 64, 64) and ip["x2"].dtype == torch.float32
    assert ip["factors1"].dtype == torch.float32  # only images are transformed
    b = next(iter(DataLoader(SequenceDataset(video, 3, transform=to_float_chw), batch_size=4)))
    assert b["x"].shape == (4, 3, 3, 64, 64)
    sb = SampledBatches(video, "frames", 8, transform=to_float_chw).draw(0)
    assert sb["x"].shape == (8, 3, 64, 64)
    tr = TransitionDataset(video, transform=to_float_chw)[0]
    assert tr["obs"]["pixels"].shape == (3, 64, 64) and tr["obs"]["proprio"].shape == (7,)


def test_transitions(video: Path, pixels: Path) -> None:
    """next_obs is the next row's observation within an episode and the final observation at
    its end; every episode's final observation appears once."""
    ds = open_dataset(video)
    tr = TransitionDataset(ds, factors=True)
    got = batches(tr, batch_size=len(tr))[0]
    ends = ds.episode_ends()
    assert len(ends) == len(ds.final_frames) == int(ds.episode_starts.sum())
    inner = np.setdiff1d(np.arange(len(ds)), ends)
    nxt = got["next_obs"]
    assert np.array_equal(nxt["pixels"][inner].numpy(), ds.frames[inner + 1])
    assert np.array_equal(nxt["proprio"][inner].numpy(), ds.obs["proprio"][inner + 1])
    assert np.array_equal(nxt["pixels"][ends].numpy(), ds.final_frames)
    assert np.array_equal(nxt["proprio"][ends].numpy(), ds.final_obs["proprio"])
    assert np.array_equal(got["next_factors"][ends].numpy(), ds.final_factors)
    assert np.array_equal(got["obs"]["proprio"].numpy(), ds.obs["proprio"])
    assert np.array_equal(got["action"].numpy(), ds.actions)
    done = (got["terminated"] | got["truncated"]).numpy()
    assert np.array_equal(np.flatnonzero(done), ends)
    px = TransitionDataset(pixels)[len(open_dataset(pixels)) - 1]  # frame-only observations
    assert px["obs"].shape == (64, 64, 3) and px["next_obs"].dtype == torch.uint8
    assert np.array_equal(px["next_obs"].numpy(), open_dataset(pixels).final_frames[-1])
