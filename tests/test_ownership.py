"""Own only what you write (issue 21, item 2): a command deletes or overwrites only files it
created in this or an earlier run of itself, identified exactly (temp names recorded in its
lock's journal), never by pattern; symlinked staging folders are refused; export-rep refuses a
training run or a folder it did not write; read-only or full disks are refused before the work
(one line, exit 2), and a failed write leaves nothing behind."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import main
from sparseshift.representations.config import TrainConfig
from sparseshift.representations.train import train
from tests.test_data_helpers import GRID, make

ROOT = Path(__file__).resolve().parents[1]
TINY = TrainConfig(learner="ada_gvae", steps=4, batch=8, progress=False, tensorboard=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pairs dataset and two trained runs on it."""
    root = tmp_path_factory.mktemp("ownership")
    data = make(root / "pairs.h5", "pairs", n=128)
    train(TINY, data, root / "runs" / "a")
    train(TINY.replace(seed=1), data, root / "runs" / "b")
    return {"root": root, "data": data, "a": root / "runs" / "a", "b": root / "runs" / "b"}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def one_line(capsys: pytest.CaptureFixture[str], rc: int, needle: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    return err[0]


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if "tmp" in p.name]


# ------------------------------------------------------------------ (a) the stale-temp sweep


def test_a_user_note_survives_a_failing_train_rep(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's example: the note under --out was deleted by the lock's pattern sweep."""
    home = tmp_path / "home"
    note = home / "notes" / ".draft.tmp.md"
    note.parent.mkdir(parents=True)
    note.write_text("x\n")
    other = home / ".y.tmp"
    other.write_text("mine\n")
    rc = main(["train-rep", "--learner", "ada_gvae", "--data", str(tmp_path / "missing.h5"),
               "--out", str(home)])
    assert rc == 2
    capsys.readouterr()
    assert note.read_text() == "x\n" and other.read_text() == "mine\n"


def test_a_user_temp_like_file_survives_a_successful_run(world: dict[str, Path],
                                                         tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    note = out / ".checkpoint.safetensors.x1y2.tmp"  # looks like a temp; is the user's
    note.write_bytes(b"keep")
    train(TINY.replace(steps=2), world["data"], out)
    assert note.read_bytes() == b"keep"
    assert (out / "checkpoint.safetensors").is_file()


_KILLED = """
import os, signal, sys
from pathlib import Path
from sparseshift.envs.infra.io import atomic_output, output_dir, output_lock
out = output_dir(sys.argv[1], "run.json")
with output_lock(out):
    with atomic_output(out / "checkpoint.safetensors") as tmp:
        tmp.write_bytes(b"half")
        with atomic_output(out / "sub" / "progress.json") as tmp2:
            tmp2.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writers_own_temps_are_removed_and_nothing_else(world: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    user = [out / ".x.tmp.md", out / ".checkpoint.safetensors.abc.tmp", out / "sub" / ".x.tmp"]
    for p in user:
        p.parent.mkdir(exist_ok=True)
        p.write_text("user\n")
    res = subprocess.run([sys.executable, "-c", _KILLED, str(out)], cwd=ROOT, timeout=120)
    assert res.returncode == -9
    left = set(temps(out)) - set(user)
    assert len(left) == 2, left  # the killed writer's two temps
    train(TINY.replace(steps=2), world["data"], out)
    assert set(temps(out)) == set(user)  # its temps are gone, the user's files kept
    assert all(p.read_text() == "user\n" for p in user)


def test_a_forged_journal_deletes_nothing_it_does_not_name_exactly(tmp_path: Path) -> None:
    """A journal planted in a folder (e.g. one downloaded) cannot make the lock delete files
    outside the folder, through symlinks, or whose names are not the writer's temp names."""
    from sparseshift.envs.infra.io import JOURNAL_FILE, output_lock

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("v")
    outside = tmp_path / ".victim.0123456789abcdef0123456789abcdef.tmp"
    outside.write_text("v")
    (tmp_path / "elsewhere").mkdir()
    far = tmp_path / "elsewhere" / ".far.0123456789abcdef0123456789abcdef.tmp"
    far.write_text("v")
    (out / "link").symlink_to(tmp_path / "elsewhere")
    plain = out / "notes.txt"
    plain.write_text("v")
    lines = [{"temp": "../victim.txt"}, {"temp": str(victim)}, {"temp": "notes.txt"},
             {"temp": "../" + outside.name}, {"temp": "link/" + far.name}, [1], "x", {"temp": 3}]
    import json

    (out / JOURNAL_FILE).write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    with output_lock(out):
        pass
    assert victim.exists() and outside.exists() and far.exists() and plain.exists()


# ------------------------------------------------------------------ (b) collect staging


def test_b_a_symlinked_parts_folder_is_refused_and_its_target_untouched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    (target / ".draft.tmp").write_text("more")
    c = tmp_path / "c"
    c.mkdir()
    (c / "grid.h5.parts").symlink_to(target)
    before = snapshot(target)
    rc = main(["collect", "--env", GRID, "--kind", "pairs", "--n", "8", "--quiet",
               "--out", str(c / "grid.h5")])
    one_line(capsys, rc, "symbolic link")
    assert snapshot(target) == before
    assert not (c / "grid.h5").exists()


def test_b_collect_keeps_user_files_next_to_its_output_and_in_its_staging_folder(
        tmp_path: Path) -> None:
    out = tmp_path / "grid.h5"
    beside = tmp_path / ".grid.h5.tmp-notes"  # the old glob(".grid.h5.tmp*") deleted it
    beside.write_text("mine")
    parts = tmp_path / "grid.h5.parts"
    parts.mkdir()
    stray = parts / "README.txt"
    stray.write_text("mine too")
    make(out, "pairs", n=64, part_rows=32)
    assert beside.read_text() == "mine" and stray.read_text() == "mine too"
    assert sorted(p.name for p in parts.iterdir()) == ["README.txt"]  # only its own removed


def test_b_a_disk_full_collect_leaves_no_part_temp(tmp_path: Path, monkeypatch: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """'Disk full leaves a .part-*.tmpPID while saying nothing was kept'."""
    import sparseshift.agents.collect.store as store

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store, "chunk_checksums", full)
    rc = main(["collect", "--env", GRID, "--kind", "pairs", "--n", "64", "--quiet",
               "--out", str(tmp_path / "grid.h5")])
    one_line(capsys, rc, "disk is full")
    assert temps(tmp_path) == []
    assert not (tmp_path / "grid.h5").exists()


# ------------------------------------------------------------------ (c) export-rep


@pytest.mark.parametrize("onto", ["a", "b"])
def test_c_export_onto_a_training_run_is_refused(world: dict[str, Path], onto: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = {k: snapshot(world[k]) for k in ("a", "b")}
    rc = main(["export-rep", str(world["a"]), "--out", str(world[onto])])
    one_line(capsys, rc, "export-rep")
    assert {k: snapshot(world[k]) for k in ("a", "b")} == before


def test_c_export_refuses_a_non_empty_folder_it_did_not_write(
        world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc = main(["export-rep", str(world["a"]), "--out", str(out)])
    one_line(capsys, rc, "not empty")
    assert snapshot(out) == {"notes.txt": b"mine"}


def test_c_export_redoes_its_own_export_and_refuses_another_runs(
        world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sparseshift.representations.checkpoint import encoder_fingerprint, read_checkpoint

    out = tmp_path / "export"
    assert main(["export-rep", str(world["a"]), "--out", str(out)]) == 0
    assert main(["export-rep", str(world["a"]), "--out", str(out)]) == 0  # redone
    capsys.readouterr()
    assert read_checkpoint(out).weights_only
    assert encoder_fingerprint(out) == encoder_fingerprint(world["a"])
    before = snapshot(out)
    rc = main(["export-rep", str(world["b"]), "--out", str(out)])
    one_line(capsys, rc, "another run")
    assert snapshot(out) == before


def test_c_a_failed_export_leaves_no_run_json(world: dict[str, Path], tmp_path: Path,
                                              monkeypatch: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """'export-rep leaves run.json without its checkpoint' (disk full on the checkpoint)."""
    import sparseshift.representations.checkpoint as ck

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck, "save_file", full)
    out = tmp_path / "export"
    rc = main(["export-rep", str(world["a"]), "--out", str(out)])
    one_line(capsys, rc, "disk is full")
    assert not out.exists()  # nothing behind: not even the folder it created


# ------------------------------------------------------------------ read-only and full disks


def test_a_read_only_out_is_refused_before_the_work(world: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import sparseshift.representations.train as rt

    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:  # chmod does not stop root: make the filesystem refuse instead
        real = os.open

        def refusing(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if Path(path).parent == out and flags & os.O_CREAT:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing)
    else:
        out.chmod(0o555)

    def no_work(*args: Any) -> None:
        raise AssertionError("the work started")

    monkeypatch.setattr(rt, "_train", no_work)
    try:
        rc = main(["train-rep", "--learner", "ada_gvae", "--data", str(world["data"]),
                   "--out", str(out)])
    finally:
        out.chmod(0o755)
    one_line(capsys, rc, "cannot write")
    assert list(out.iterdir()) == []


def test_a_full_disk_is_refused_before_the_work(world: dict[str, Path], tmp_path: Path,
                                                monkeypatch: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import sparseshift.representations.train as rt

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def no_work(*args: Any) -> None:
        raise AssertionError("the work started")

    monkeypatch.setattr(os, "posix_fallocate", full)
    monkeypatch.setattr(rt, "_train", no_work)
    out = tmp_path / "full"
    rc = main(["train-rep", "--learner", "ada_gvae", "--data", str(world["data"]),
               "--out", str(out)])
    one_line(capsys, rc, "full")


def test_check_writable_is_a_config_error_naming_the_folder(tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    from sparseshift.envs.infra.io import check_writable

    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    real = os.open

    def refusing(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(ConfigError, match=f"cannot write to {tmp_path}"):
        check_writable(tmp_path)


def test_b_a_killed_collections_temps_are_removed_by_pid_exactly(tmp_path: Path) -> None:
    """The temp names of the processes a killed collection recorded are removed on resume;
    look-alikes of anyone else are kept."""
    from sparseshift.agents.collect.collect import parts_dir, pid_temp
    from sparseshift.agents.collect.store import part_path, tmp_name
    from sparseshift.envs.infra.io import Journal

    out = tmp_path / "grid.h5"
    parts = parts_dir(out)
    parts.mkdir()
    assert pid_temp(part_path(parts, 0), os.getpid()) == tmp_name(part_path(parts, 0))
    dead = 4_000_001
    Journal(parts).record({"pid": dead})
    theirs = [pid_temp(part_path(parts, 0), dead), pid_temp(out, dead)]
    kept = [pid_temp(part_path(parts, 0), dead + 1), tmp_path / ".grid.h5.tmpnotes",
            parts / ".part-000000.h5.tmp"]
    for p in theirs + kept:
        p.write_bytes(b"x")
    make(out, "pairs", n=64, part_rows=32)
    assert not any(p.exists() for p in theirs) and all(p.exists() for p in kept)
