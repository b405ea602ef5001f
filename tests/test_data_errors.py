"""Bad input and damaged files: one clear line, exit 2, nothing overwritten; corruption found."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from sparseshift.envs.data import open_dataset
from sparseshift.envs.data.layout import FRAME_CHUNK_ROWS
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import main
from tests.test_data_helpers import GRID, make

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("e") / "pairs.h5", "pairs", n=64, seed=1)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_exit_2(capsys: pytest.CaptureFixture[str], needle: str, *args: str) -> None:
    rc, _, err = cli(capsys, *args)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def collect_args(out: Path, *extra: str) -> list[str]:
    return ["collect", "--env", GRID, "--kind", "pairs", "--n", "32", "--out", str(out),
            "--part-rows", "32", "--quiet", *extra]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--env", "sparseshift/Nope-v0"), "unknown env id 'sparseshift/Nope-v0'"),
        (("--k", "99"), "larger than the number of factor groups"),
        (("--k", "-2"), "--k must be -1"),
        (("--k", "0"), "--k must be -1"),
        (("--colours", "in+blue"), "unknown colour split 'blue'"),
        (("--n", "0"), "n must be a positive integer"),
        (("--n", "-5"), "n must be a positive integer"),
        (("--image-size", "60"), "multiple of 8"),
        (("--workers", "0"), "--workers must be >= 1"),
        (("--part-rows", "-1"), "part_rows must be"),
        (("--policy", "scripted"), "--policy applies to --kind video"),
    ],
)
def test_collect_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                           extra: tuple[str, ...], needle: str) -> None:
    out = tmp_path / "x.h5"
    one_line_exit_2(capsys, needle, *collect_args(out), *extra)
    assert not out.exists() and not out.with_name("x.h5.parts").exists()


def test_video_policy_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = ["collect", "--env", GRID, "--kind", "video", "--n", "8",
            "--out", str(tmp_path / "v.h5")]
    one_line_exit_2(capsys, "no scripted policy for sparseshift/ColourGrid-v0", *base,
                    "--policy", "scripted")
    one_line_exit_2(capsys, "is none of these", *base, "--policy", str(tmp_path / "missing"))
    bogus = tmp_path / "bogus.zip"
    bogus.write_bytes(b"not a zip")
    one_line_exit_2(capsys, "zip files are not loaded", *base, "--policy", str(bogus))
    one_line_exit_2(capsys, "--k applies to --kind pairs", *base, "--k", "2")


def test_existing_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "p.h5"
    rc, stdout, _ = cli(capsys, *collect_args(out))
    assert rc == 0 and "32 pairs" in stdout
    before = out.read_bytes()
    rc, _, err = cli(capsys, *collect_args(out))  # same configuration: complete, exit 0
    assert rc == 0 and "already complete" in err
    one_line_exit_2(capsys, "different configuration (differs in seed)",
                    *collect_args(out, "--seed", "4"))
    assert out.read_bytes() == before
    other = tmp_path / "other.h5"
    other.write_bytes(b"precious")
    one_line_exit_2(capsys, "not a sparseshift dataset", *collect_args(other))
    assert other.read_bytes() == b"precious"


def test_parts_of_a_different_run_are_not_touched(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    out = tmp_path / "p.h5"
    parts = tmp_path / "p.h5.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text('{"seed": 123}')
    one_line_exit_2(capsys, "different configuration", *collect_args(out))
    assert (parts / "manifest.json").read_text() == '{"seed": 123}' and not out.exists()


def flip_frame_chunk(path: Path, name: str = "frames_a", chunk: int = 5) -> None:
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(chunk)
    with path.open("r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        b = fh.read(4)
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(bytes(x ^ 0xFF for x in b))


def test_corrupt_chunk_is_reported(capsys: pytest.CaptureFixture[str], pairs: Path,
                                   tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    shutil.copy(pairs, bad)
    flip_frame_chunk(bad)
    with pytest.raises(ConfigError, match="corrupt data in 'frames_a' chunk 5"):
        open_dataset(bad)
    disk = open_dataset(bad, memory_budget=0)  # lazy: found when verified or read
    with pytest.raises(ConfigError, match="corrupt data in 'frames_a' chunk 5"):
        disk.verify()
    rows = FRAME_CHUNK_ROWS
    with pytest.raises(ConfigError, match="corrupt"):
        disk.take("frames_a", np.array([5 * rows + 1]))
    assert disk.take("frames_a", np.array([5 * rows - 1])).shape == (1, 64, 64, 3)
    one_line_exit_2(capsys, "corrupt data in 'frames_a' chunk 5", "inspect", str(bad), "--verify")
    rc, out, _ = cli(capsys, "inspect", str(pairs), "--verify")
    assert rc == 0 and "chunk checksums match" in out


def test_wrong_but_decodable_chunk_fails_its_checksum(pairs: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    shutil.copy(pairs, bad)
    with h5py.File(bad, "r+") as f:  # a valid deflate stream with other content
        rows = FRAME_CHUNK_ROWS
        f["frames_b"].id.write_direct_chunk((7 * rows, 0, 0, 0),
                                            zlib.compress(bytes(rows * 64 * 64 * 3), 1))
    with pytest.raises(ConfigError, match=r"'frames_b' chunk 7 .*checksum mismatch"):
        open_dataset(bad)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "version", "fingerprint"])
def test_bad_files(capsys: pytest.CaptureFixture[str], pairs: Path, tmp_path: Path,
                   damage: str) -> None:
    bad = tmp_path / "bad.h5"
    needle = {"missing": "no dataset at", "garbage": "not a readable HDF5 file",
              "truncated": "not a readable HDF5 file", "version": "format version 99",
              "fingerprint": "do not match the fingerprint"}[damage]
    if damage == "garbage":
        bad.write_bytes(b"hello, not hdf5" * 100)
    elif damage == "truncated":
        bad.write_bytes(pairs.read_bytes()[: pairs.stat().st_size // 2])
    elif damage != "missing":
        shutil.copy(pairs, bad)
        with h5py.File(bad, "r+") as f:
            if damage == "version":
                f.attrs["format_version"] = 99
            else:
                f["checksums/changed"][0] ^= 1
    with pytest.raises(ConfigError, match=needle):
        open_dataset(bad)
    one_line_exit_2(capsys, needle, "inspect", str(bad))


def test_inspect_summary_and_sheet(capsys: pytest.CaptureFixture[str], pairs: Path,
                                   tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    rc, out, _ = cli(capsys, "inspect", str(pairs), "--sheet", str(sheet))
    assert rc == 0
    for needle in ("pairs dataset", "64 intervention pairs", "compression ratio", "in+ood1",
                   "object0_colour", "in:", "ood1:", "agent.x"):
        assert needle in out
    assert sheet.stat().st_size > 1000


def test_module_entry_point_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sparseshift.experiments", "inspect",
                           str(tmp_path / "no.h5")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no dataset at" in proc.stderr
