"""``sparseshift export``: LeRobot and Minari round trips (skipped without the library), and the
one-line errors (no library needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from sparseshift.envs.data import open_dataset
from sparseshift.envs.data.export import FRAMES_PER_BATCH, export
from tests.test_data_collect import downgrade
from tests.test_data_errors import cli, one_line_exit_2
from tests.test_data_helpers import make


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


needs_minari = pytest.mark.skipif(not _has("minari"), reason="minari is not installed "
                                  "(pip install 'minari>=0.5')")
needs_lerobot = pytest.mark.skipif(not _has("lerobot"), reason="lerobot is not installed "
                                   "(pip install 'lerobot>=0.4')")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("ev") / "grid.h5", "video", n=160, seed=3,
                obs_mode="pixels_proprio")


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("es") / "state.h5", "video", n=96, seed=4,
                obs_mode="state")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("ep") / "pairs.h5", "pairs", n=32, seed=3)


@pytest.mark.parametrize("fmt", ["lerobot", "minari"])
def test_pairs_do_not_export(capsys: pytest.CaptureFixture[str], pairs: Path, tmp_path: Path,
                             fmt: str) -> None:
    one_line_exit_2(capsys, "holds intervention pairs", "export", str(pairs), "--format", fmt,
                    "--out", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_minari_needs_format_3(capsys: pytest.CaptureFixture[str], state: Path,
                               tmp_path: Path) -> None:
    old = downgrade(state, tmp_path / "v2.h5", 2)
    one_line_exit_2(capsys, "needs every episode's final observation", "export", str(old),
                    "--format", "minari", "--out", str(tmp_path / "m"))


@pytest.mark.parametrize(("fmt", "module"), [("lerobot", "lerobot"), ("minari", "minari")])
def test_missing_library_names_the_extra(capsys: pytest.CaptureFixture[str], state: Path,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         fmt: str, module: str) -> None:
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    need = {"lerobot": "lerobot>=0.4", "minari": "minari>=0.5"}[fmt]
    one_line_exit_2(capsys, f"pip install '{need}' (from a sparseshift checkout: pip install -e "
                    f"'.[{fmt}]')", "export", str(state),
                    "--format", fmt, "--out", str(tmp_path / "x"), "--quiet")
    assert not (tmp_path / "x").exists()


def test_bad_options(capsys: pytest.CaptureFixture[str], state: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        cli(capsys, "export", str(state), "--format", "rlds", "--out", str(tmp_path / "x"))
    assert stop.value.code == 2 and "invalid choice: 'rlds'" in capsys.readouterr().err
    one_line_exit_2(capsys, "--task and --video apply to --format lerobot only", "export",
                    str(state), "--format", "minari", "--out", str(tmp_path / "x"), "--video")
    one_line_exit_2(capsys, "no dataset at", "export", str(tmp_path / "none.h5"), "--format",
                    "minari", "--out", str(tmp_path / "x"))


@needs_minari
@pytest.mark.parametrize("which", ["video", "state"])
def test_minari_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
                           which: str) -> None:
    """Every episode loads back with minari: T+1 observations (the last the final one), actions,
    rewards, flags and factors exactly as stored."""
    import minari

    path = request.getfixturevalue(which)
    root = tmp_path / "minari"
    rc, out, err = cli(capsys, "export", str(path), "--format", "minari", "--out", str(root),
                       "--quiet")
    assert rc == 0, err
    assert "minari.load_dataset('sparseshift/" in out and str(root) in out
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    m = minari.load_dataset(f"sparseshift/{path.stem}-v0")
    ds = open_dataset(path)
    starts, ends = np.flatnonzero(ds.episode_starts), ds.episode_ends()
    assert m.total_episodes == len(starts) and m.total_steps == len(ds)
    for e, ep in enumerate(m.iterate_episodes()):
        rows = np.arange(starts[e], ends[e] + 1)
        if which == "video":
            assert np.array_equal(ep.observations["pixels"][:-1], ds.frames[rows])
            assert np.array_equal(ep.observations["pixels"][-1], ds.final_frames[e])
            assert np.array_equal(ep.observations["proprio"][:-1], ds.obs["proprio"][rows])
            assert np.array_equal(ep.observations["proprio"][-1], ds.final_obs["proprio"][e])
        else:
            assert np.array_equal(ep.observations[:-1], ds.obs["state"][rows])
            assert np.array_equal(ep.observations[-1], ds.final_obs["state"][e])
        assert np.array_equal(ep.actions, ds.actions[rows])
        assert np.array_equal(ep.rewards, ds.rewards[rows])
        assert np.array_equal(ep.terminations, ds.terminated[rows])
        assert np.array_equal(ep.truncations, ds.truncated[rows])
        assert np.array_equal(ep.infos["factors"][-1], ds.final_factors[e])
    assert m.recover_environment().spec.id == ds.env_id
    # a second export of the same id into the same root is refused, the first left alone
    one_line_exit_2(capsys, "already exists", "export", str(path), "--format", "minari",
                    "--out", str(root))
    assert minari.load_dataset(f"sparseshift/{path.stem}-v0").total_steps == len(ds)


@needs_minari
def test_minari_export_in_several_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          state: Path) -> None:
    import minari

    import sparseshift.envs.data.export as exp

    monkeypatch.setattr(exp, "FRAMES_PER_BATCH", 20)
    res = export(state, "minari", tmp_path, name="mine/small-v3")
    assert FRAMES_PER_BATCH > 20 and res.path == tmp_path / "mine/small-v3"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    m = minari.load_dataset("mine/small-v3")
    assert m.total_episodes == res.episodes and m.total_steps == 96


@needs_lerobot
def test_lerobot_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                            video: Path) -> None:
    """The LeRobotDataset loads back with lerobot: lossless frames, state, factors, actions,
    rewards and done flags, episode by episode."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = tmp_path / "lerobot"
    rc, _, err = cli(capsys, "export", str(video), "--format", "lerobot", "--out", str(out),
                     "--task", "reach the target shape", "--quiet")
    assert rc == 0, err
    lr = LeRobotDataset("sparseshift/grid", root=out)
    ds = open_dataset(video)
    starts = np.flatnonzero(ds.episode_starts)
    assert lr.num_episodes == len(starts) and lr.num_frames == len(ds) and lr.fps == 10
    for i in (0, 37, len(ds) - 1):
        item = lr[i]
        img = (item["observation.image"] * 255).round().to(torch.uint8).permute(1, 2, 0)
        assert np.array_equal(img.numpy(), ds.frames[i])
        assert np.array_equal(item["observation.state"].numpy(), ds.obs["proprio"][i])
        assert np.array_equal(item["observation.environment_state"].numpy(), ds.factors[i])
        assert int(item["action"]) == int(ds.actions[i])
        assert float(item["next.reward"]) == float(ds.rewards[i])
        assert bool(item["next.done"]) == bool(ds.terminated[i])
        assert bool(item["next.truncated"]) == bool(ds.truncated[i])
        assert int(item["episode_index"]) == int(np.searchsorted(starts, i, side="right") - 1)
        assert item["task"] == "reach the target shape"
    names = lr.features["observation.environment_state"]["names"]
    assert names == [f.name for f in ds.factor_spec.factors]
    one_line_exit_2(capsys, "already exists", "export", str(video), "--format", "lerobot",
                    "--out", str(out))
