"""ruff and mypy run as part of the test suite, so CI enforces a clean tree.

mypy checks the package under its installed name: the repository root *is* the package
``sparseshift`` (``pyproject.toml`` maps it), so a temporary folder holds one symlink
``sparseshift -> <repo>`` and mypy runs ``-p sparseshift`` from there (tests, docs and outputs are
excluded in ``[tool.mypy]``). ``make lint`` runs this file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return path


def test_ruff_clean() -> None:
    proc = subprocess.run([tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_clean(tmp_path: Path) -> None:
    (tmp_path / "sparseshift").symlink_to(ROOT, target_is_directory=True)
    proc = subprocess.run(
        [tool("mypy"), "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(ROOT / ".mypy_cache"), "-p", "sparseshift"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues found" in proc.stdout
