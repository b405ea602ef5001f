"""docs/python.md runs as written, the API takes str and PathLike paths, and a user's mypy finds
sparseshift's types (py.typed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python.md"


def test_python_page_runs_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    run = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("(64, 64, 3) uint8")
    assert "noise" in lines[1] and "real" not in lines[1]  # a grid has no lights or camera
    assert lines[-2].startswith("agent {'in': ") and lines[-1].startswith("floor {'in': ")
    for name in ("grid-pairs.h5", "rep/run.json", "metrics.json", "agent/eval.json",
                 "agent/robustness.png", "floor/robustness.md"):
        assert (tmp_path / name).is_file(), name


def test_api_functions_take_str_and_pathlike(tmp_path: Path) -> None:
    from sparseshift.envs.infra.errors import ConfigError
    from sparseshift.experiments import api

    assert api.ConfigError is ConfigError  # a notebook catches it from the one module
    a = api.collect_dataset({"env_id": "sparseshift/ColourGrid-v0", "kind": "pairs", "n": 64},
                            str(tmp_path / "a.h5"))
    b = api.collect_dataset({"env_id": "sparseshift/ColourGrid-v0", "kind": "pairs", "n": 64},
                            tmp_path / "b.h5")
    assert a.fingerprint == b.fingerprint and a.path.name == "a.h5"
    with pytest.raises(ConfigError, match="unknown"):
        api.collect_dataset({"env_id": "sparseshift/ColourGrid-v0", "kind": "pairs",
                             "nn": 1}, tmp_path / "c.h5")
    with pytest.raises(ConfigError, match="mapping"):
        api.train_representation(["ada_gvae"], a.path, tmp_path / "r")


@pytest.mark.skipif(shutil.which("mypy") is None and not (Path(sys.executable).parent
                                                          / "mypy").exists(),
                    reason="mypy not installed")
def test_a_users_mypy_finds_the_types(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(
        "from sparseshift.experiments import api\n"
        "from sparseshift.envs.shifts.registry import default_registry\n"
        "n: int = api.list_shifts()\n"  # a deliberate type error: a tuple is not an int
        "reg = default_registry()\n"
        "x: str = reg.resolve('real').label\n")
    mypy = str(Path(sys.executable).parent / "mypy")
    run = subprocess.run([mypy, "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                          str(script)], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    out = run.stdout
    assert "import-not-found" not in out and "missing library stubs" not in out, out
    assert ('Incompatible types in assignment (expression has type "tuple[str, ...]", variable '
            'has type "int")') in out, out
    assert out.count("error:") == 1, out
