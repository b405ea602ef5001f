"""Collection: round trip, the intervention protocol, determinism across workers, resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sparseshift.envs.data import open_dataset
from sparseshift.envs.data.generate import choose_count
from sparseshift.envs.registry import make as make_env
from tests.test_data_helpers import GRID, arrays, make, raw_chunks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("v") / "video.h5", "video", n=300, seed=3)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("p") / "pairs.h5", "pairs", n=150, seed=4)


def test_video_round_trip(video: Path) -> None:
    ds = open_dataset(video, verify=True)
    assert ds.kind == "video" and len(ds) == 300 and ds.env_id == GRID
    assert ds.frames.shape == (300, 64, 64, 3) and ds.frames.dtype == np.uint8
    assert ds.factors.shape == (300, len(ds.factor_spec)) and ds.factors.dtype == np.float32
    assert ds.episode_starts.dtype == bool and ds.episode_starts[0]
    assert ds.actions.shape == (300,) and ds.rewards.shape == (300,)
    assert ds.attrs["seed"] == 3 and ds.attrs["colours"] == "in+ood1"
    assert ds.attrs["collector"]["policy"]["type"] == "random"
    # every stored frame is exactly what the env renders for the stored factors
    env = make_env(GRID, colours="in+ood1", image_size=64)
    env.reset(seed=0)
    u = env.unwrapped
    for i in (0, 57, 299):
        u.set_factors(ds.factors[i])
        assert np.array_equal(u.render_frame(), ds.frames[i])
    # random behaviour moves the agent: consecutive frames in an episode usually differ
    same = [np.array_equal(ds.frames[i], ds.frames[i + 1]) for i in range(299)
            if not ds.episode_starts[i + 1]]
    assert np.mean(same) < 0.5


def test_pairs_changed_mask_is_exact(pairs: Path) -> None:
    ds = open_dataset(pairs)
    assert ds.kind == "pairs" and len(ds) == 150
    assert np.array_equal(ds.changed, ds.factors_a != ds.factors_b)
    assert ds.changed.any(axis=1).all()  # every pair really changes
    spec, groups = ds.factor_spec, ds.attrs["collector"]["groups"]
    intervened = open_dataset(pairs).take("intervened", np.arange(len(ds)))
    for i in range(len(ds)):
        allowed = spec.group_mask([g for g, on in zip(groups, intervened[i], strict=True) if on])
        assert not ds.changed[i][~allowed].any()  # nothing outside the chosen groups changed
        for g, on in zip(groups, intervened[i], strict=True):  # each chosen group changed
            if on:
                assert ds.changed[i][list(spec.group_indices(g))].any()
    env = make_env(GRID, colours="in+ood1", image_size=64)
    env.reset(seed=0)
    for i in (0, 149):
        for frames, factors in ((ds.frames_a, ds.factors_a), (ds.frames_b, ds.factors_b)):
            env.unwrapped.set_factors(factors[i])
            assert np.array_equal(env.unwrapped.render_frame(), frames[i])


def test_fixed_k_changes_exactly_k_groups(tmp_path: Path) -> None:
    ds = open_dataset(make(tmp_path / "k2.h5", "pairs", n=64, k=2))
    assert (ds.take("intervened", np.arange(64)).sum(axis=1) == 2).all()


def test_k_minus_one_follows_locatello() -> None:
    rng = np.random.default_rng(0)
    counts = np.array([choose_count(rng, -1, 6) for _ in range(6000)])
    assert counts.min() == 1 and counts.max() == 6
    # P(1) = 1/2 + 1/2 * 1/6, every other count 1/2 * 1/6
    assert abs(np.mean(counts == 1) - 7 / 12) < 0.03
    assert abs(np.mean(counts == 4) - 1 / 12) < 0.02


def test_workers_give_identical_bytes(tmp_path: Path) -> None:
    one = make(tmp_path / "w1.h5", "pairs", n=200, workers=1, seed=9)
    two = make(tmp_path / "w2.h5", "pairs", n=200, workers=2, seed=9)
    assert raw_chunks(one) == raw_chunks(two)
    assert open_dataset(one).fingerprint == open_dataset(two).fingerprint
    v1 = make(tmp_path / "v1.h5", "video", n=200, workers=1)
    v2 = make(tmp_path / "v2.h5", "video", n=200, workers=2)
    assert raw_chunks(v1) == raw_chunks(v2)


@pytest.mark.parametrize("kind", ["video", "pairs"])
def test_writer_process_gives_identical_bytes(tmp_path: Path, kind: str) -> None:
    """Parts compressed in a writer process (final file built while collecting) or inline, with
    or without helpers: the same chunks."""
    got = [raw_chunks(make(tmp_path / f"{w}-{writer}.h5", kind, n=200, workers=w, seed=2,
                           part_rows=32, writer=writer))
           for w, writer in ((1, "inline"), (1, "process"), (2, "process"), (2, "inline"))]
    assert all(g == got[0] for g in got[1:])
    assert not list(tmp_path.glob("*.parts")) and not list(tmp_path.glob(".*tmp*"))


def _collect_cmd(out: Path, n: int, workers: int, writer: str = "auto") -> list[str]:
    code = (
        "import sys; from pathlib import Path; "
        "from sparseshift.agents.collect.collect import collect; "
        "from sparseshift.envs.data.config import CollectConfig; "
        f"collect(CollectConfig({GRID!r}, 'pairs', n={n}, seed=5, part_rows=32), "
        f"Path(sys.argv[1]), workers={workers}, progress=False, writer={writer!r})"
    )
    return [sys.executable, "-c", code, str(out)]


@pytest.mark.parametrize(("workers", "writer"), [(1, "inline"), (2, "inline"), (1, "process")])
def test_kill_9_then_resume_gives_identical_bytes(tmp_path: Path, workers: int,
                                                  writer: str) -> None:
    n = 480
    ref = tmp_path / "ref.h5"
    subprocess.run(_collect_cmd(ref, n, 1, "inline"), cwd=ROOT, check=True, timeout=300)
    out = tmp_path / "out.h5"
    parts = out.with_name(out.name + ".parts")
    proc = subprocess.Popen(_collect_cmd(out, n, workers, writer), cwd=ROOT)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("part-*.h5"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it was killed; make it longer"
    assert len(list(parts.glob("part-*.h5"))) < n // 32
    subprocess.run(_collect_cmd(out, n, workers, writer), cwd=ROOT, check=True, timeout=300)
    assert not parts.exists() and not list(tmp_path.glob(".*tmp*"))
    got, want = arrays(out), arrays(ref)
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), k
    assert raw_chunks(out) == raw_chunks(ref)


def test_scripted_trifinger_push_video(tmp_path: Path) -> None:
    pytest.importorskip("sparseshift.envs.trifinger.scripted")
    path = tmp_path / "push.h5"
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    collect(CollectConfig("sparseshift/TriFingerPush-v0", "video", n=48, policy="scripted",
                          part_rows=48), path, progress=False)
    ds = open_dataset(path, verify=True)
    assert ds.attrs["collector"]["policy"]["type"] == "scripted"
    assert ds.actions.shape == (48, 9) and ds.actions.dtype == np.float32
    assert np.abs(np.diff(ds.factors[:, :9], axis=0)).max() > 0  # the fingers move


_KILL_WRITER = """
import multiprocessing as mp, os, signal, sys, threading, time
from pathlib import Path
from sparseshift.agents.collect.collect import collect
from sparseshift.envs.data.config import CollectConfig

def kill_children():
    while not mp.active_children():
        time.sleep(0.005)
    time.sleep(0.3)
    for child in mp.active_children():
        os.kill(child.pid, signal.SIGKILL)

threading.Thread(target=kill_children, daemon=True).start()
try:
    collect(CollectConfig(%r, 'video', n=20000, seed=5), Path(sys.argv[1]), workers=1,
            progress=False, writer='process')
except RuntimeError as exc:
    print(exc)
    sys.exit(3)
"""


def test_dead_writer_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """kill -9 of the writer process: the collector says so and exits (it used to block at exit
    on a queue nobody drains); running the command again finishes the dataset."""
    out = tmp_path / "out.h5"
    res = subprocess.run([sys.executable, "-c", _KILL_WRITER % GRID, str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "collection writer died" in res.stdout and not out.exists()
    resume = _KILL_WRITER.replace("threading.Thread(target=kill_children, daemon=True).start()",
                                  "")
    res = subprocess.run([sys.executable, "-c", resume % GRID, str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and out.exists(), (res.stdout, res.stderr)
    assert not out.with_name(out.name + ".parts").exists()


# ------------------------------------------------- format 3: policy and final observations


@pytest.mark.parametrize(("obs_mode", "key"), [("state", "state"), ("pixels_proprio", "proprio")])
def test_video_stores_policy_and_final_observations(tmp_path: Path, obs_mode: str,
                                                    key: str) -> None:
    """Every row's policy observation and every episode's observation after its last step are
    stored, and are what the env gives in the stored state."""
    ds = open_dataset(make(tmp_path / "v.h5", "video", n=200, seed=6, obs_mode=obs_mode),
                      verify=True)
    assert ds.version == 3 and ds.obs_keys == (key,)
    assert ds.observation["pixels"] == (None if obs_mode == "state" else "pixels")
    obs, final = ds.obs[key], ds.final_obs[key]
    ends = ds.episode_ends()
    assert obs.shape[0] == 200 and obs.dtype == np.float32
    assert len(ends) == int(ds.episode_starts.sum()) == len(final) == len(ds.final_frames)
    assert ds.truncated[63] and ds.truncated[-1]  # part boundaries (64 rows) end episodes
    env = make_env(GRID, colours="in+ood1", image_size=64, obs_mode=obs_mode)
    env.reset(seed=0)
    u = env.unwrapped

    def seen() -> np.ndarray:
        o = u._obs()
        return np.asarray(o if obs_mode == "state" else o[key])

    for t in (0, 17, 199):
        u.set_factors(ds.factors[t])
        assert np.array_equal(seen(), obs[t])
        if obs_mode == "pixels_proprio":  # the observation's frame is the stored frame
            assert np.array_equal(u._obs()["pixels"], ds.frames[t])
    for e in range(len(ends)):
        u.set_factors(ds.final_factors[e])
        assert np.array_equal(seen(), final[e])
        assert np.array_equal(u.render_frame(), ds.final_frames[e])
    # the final observation follows the last row's action: it is a new state, not the last row
    moved = [not np.array_equal(ds.final_factors[e], ds.factors[t]) for e, t in enumerate(ends)]
    assert np.mean(moved) > 0.5
    # a frame-only policy stores no obs/ arrays, only the final frames and factors
    px = open_dataset(make(tmp_path / "px.h5", "video", n=64, seed=6))
    assert px.obs_keys == () and px.obs == {} and len(px.final_frames) == len(px.episode_ends())


def test_observations_identical_for_any_workers_and_writer(tmp_path: Path) -> None:
    got = [raw_chunks(make(tmp_path / f"{w}-{writer}.h5", "video", n=200, workers=w, seed=2,
                           part_rows=32, writer=writer, obs_mode="pixels_proprio"))
           for w, writer in ((1, "inline"), (1, "process"), (2, "inline"))]
    assert "final/frames" in got[0] and "obs/proprio" in got[0]
    assert "checksums/final/obs/proprio" in got[0]
    assert all(g == got[0] for g in got[1:])


def downgrade(path: Path, out: Path, version: int) -> Path:
    """A copy of the format-3 video ``path`` as format ``version`` wrote it: without the
    observation arrays, the collector without an observation layout, re-fingerprinted."""
    import h5py

    from sparseshift.envs.data.layout import arrays_of, dumps, fingerprint

    out.write_bytes(path.read_bytes())
    with h5py.File(out, "r+") as f:
        for group in ("obs", "final", "checksums/obs", "checksums/final"):
            if group in f:
                del f[group]
        collector = json.loads(f.attrs["collector"])
        collector.pop("observation", None)
        collector["format_version"] = version
        f.attrs["collector"] = dumps(collector)
        f.attrs["format_version"] = version
        names = arrays_of("video", version=version)
        sums = {n: f[f"checksums/{n}"][...] for n in names}
        shapes = {n: f[n].shape for n in names}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v.item()
                     if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        f.attrs["fingerprint"] = fingerprint("video", sums, shapes, attrs, version)
    return out


def test_format_1_and_2_videos_still_load(tmp_path: Path) -> None:
    from sparseshift.envs.data import Sampler
    from sparseshift.envs.infra.errors import ConfigError

    src = make(tmp_path / "v3.h5", "video", n=128, seed=1, obs_mode="state")
    for version in (1, 2):
        ds = open_dataset(downgrade(src, tmp_path / f"v{version}.h5", version), verify=True)
        assert ds.version == version and ds.obs_keys == () and len(ds) == 128
        assert np.array_equal(ds.frames, open_dataset(src).frames)
        assert Sampler(ds).temporal_pairs(4, 2)["x1"].shape == (4, 64, 64, 3)
        with pytest.raises(ConfigError, match=f"format 3 or later.*is format {version}"):
            _ = ds.final_frames
    # collecting over an older file says so (and leaves it alone)
    old = tmp_path / "v2.h5"
    before = old.read_bytes()
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    with pytest.raises(ConfigError, match="holds a format-2 collection; this sparseshift "
                                          "collects format 3"):
        collect(CollectConfig(GRID, "video", n=128, seed=1, obs_mode="state", part_rows=64),
                old, progress=False)
    assert old.read_bytes() == before


def _collect_video_cmd(out: Path, n: int, writer: str) -> list[str]:
    code = (
        "import sys; from pathlib import Path; "
        "from sparseshift.agents.collect.collect import collect; "
        "from sparseshift.envs.data.config import CollectConfig; "
        f"collect(CollectConfig({GRID!r}, 'video', n={n}, seed=5, part_rows=32, "
        "obs_mode='pixels_proprio'), "
        f"Path(sys.argv[1]), workers=1, progress=False, writer={writer!r})"
    )
    return [sys.executable, "-c", code, str(out)]


def test_kill_9_then_resume_video_with_observations(tmp_path: Path) -> None:
    """The per-episode arrays (re-chunked at assembly) resume to the same bytes too."""
    n = 32 * 200
    ref = tmp_path / "ref.h5"
    subprocess.run(_collect_video_cmd(ref, n, "inline"), cwd=ROOT, check=True, timeout=300)
    out = tmp_path / "out.h5"
    parts = out.with_name(out.name + ".parts")
    proc = subprocess.Popen(_collect_video_cmd(out, n, "process"), cwd=ROOT)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("part-*.h5"))) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it was killed; make it longer"
    assert len(list(parts.glob("part-*.h5"))) < n // 32
    subprocess.run(_collect_video_cmd(out, n, "process"), cwd=ROOT, check=True, timeout=300)
    assert not parts.exists()
    assert raw_chunks(out) == raw_chunks(ref)
    assert open_dataset(out, verify=True).fingerprint == open_dataset(ref).fingerprint
