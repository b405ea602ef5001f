"""Packaging and imports: one top-level name, gymnasium ids after ``import sparseshift``, and
imports without side effects (no environment variable, no output, no MuJoCo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = ("envs", "representations", "agents", "experiments", "assets")


def python(code: str, cwd: Path, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    """A user's project folder with its own ``envs`` and ``agents`` packages, which must not be
    what sparseshift imports."""
    for name in ("envs", "agents"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ImportError('the user project\\'s own {name} package was imported')\n")
    return tmp_path


def test_every_package_folder_is_listed_in_pyproject() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"] == {"sparseshift": "."}
    on_disk = {"sparseshift"} | {
        "sparseshift." + ".".join(p.parent.relative_to(ROOT).parts)
        for top in LAYOUT for p in (ROOT / top).rglob("__init__.py")
    }
    assert set(cfg["packages"]) == on_disk


@pytest.mark.parametrize(
    "prelude, env_id",
    [
        ("import sparseshift", "sparseshift/ColourGrid-v0"),
        ("", "sparseshift:sparseshift/ColourGrid-v0"),
        ("", "sparseshift.envs:sparseshift/TriFingerPush-v0"),
    ],
)
def test_gym_make_from_a_project_with_its_own_envs_folder(user_project: Path, prelude: str,
                                                           env_id: str) -> None:
    proc = python(f"import gymnasium as gym\n{prelude}\nenv = gym.make({env_id!r})\n"
                  "obs, info = env.reset(seed=0)\nprint(obs.shape, env.unwrapped.__module__)",
                  user_project)
    assert proc.returncode == 0, proc.stderr
    assert "(64, 64, 3) sparseshift.envs." in proc.stdout


def test_imports_have_no_side_effects(user_project: Path) -> None:
    """Importing errors, io, configs, metrics or learners sets no environment variable, prints
    nothing and imports no MuJoCo, MiniGrid or SB3. Libraries set variables of their own when
    imported (gymnasium: PYGAME_HIDE_SUPPORT_PROMPT; scikit-learn: KMP_DUPLICATE_LIB_OK,
    KMP_INIT_AT_FORK), so the baseline is taken after importing them."""
    modules = [
        "sparseshift.envs.infra.errors", "sparseshift.envs.infra.io",
        "sparseshift.envs.data.config",
        "sparseshift.representations.metrics", "sparseshift.representations.base",
        "sparseshift.representations.registry", "sparseshift.representations.vae",
        "sparseshift.representations.weak", "sparseshift.representations.slots",
        "sparseshift.representations.nwm", "sparseshift.representations.train",
        "sparseshift.agents.config", "sparseshift.experiments.study.presets",
        "sparseshift.experiments.cli",
    ]
    code = (
        "import os, sys, json, gymnasium, torch, sklearn\n"
        "before = dict(os.environ)\n"
        f"for m in {modules!r}: __import__(m)\n"
        "changed = sorted(k for k in set(os.environ) | set(before) "
        "if os.environ.get(k) != before.get(k))\n"
        "heavy = sorted(m for m in ('mujoco', 'minigrid', 'stable_baselines3') "
        "if m in sys.modules)\n"
        "sys.stdout.write(json.dumps({'changed': changed, 'heavy': heavy}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    proc = python(code, user_project, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout) == {"changed": [], "heavy": []}


def test_mujoco_envs_select_the_gl_backend_where_mujoco_is_first_needed(user_project: Path
                                                                        ) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    proc = python("import os, sparseshift\nassert 'MUJOCO_GL' not in os.environ\n"
                  "import sparseshift.envs.trifinger.env\nprint(os.environ['MUJOCO_GL'])",
                  user_project, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("egl", "osmesa")


def test_wheel_installs_only_sparseshift(tmp_path: Path, user_project: Path) -> None:
    """A regular (non-editable) wheel holds one top-level package, ``sparseshift`` (plus its
    dist-info), with every module and the assets; installed on its own it serves the envs."""
    # Built from a copy: setuptools' build/ folder in a source tree keeps stale modules.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "out", "runs", "*.egg-info", "__pycache__", ".*_cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("sparseshift-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"sparseshift", wheel.name.split("-py")[0]
                                                + ".dist-info"}
    for top in LAYOUT:
        for path in (ROOT / top).rglob("*.py"):
            assert "sparseshift/" + path.relative_to(ROOT).as_posix() in names
    assert "sparseshift/assets/trifinger/trifingerpro.xml" in names
    assert "sparseshift/assets/colours/grid8.json" in names
    assert not any(n.startswith("sparseshift/tests/") for n in names)

    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)], capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == [
        "bin", "sparseshift"] or sorted(
        p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == ["sparseshift"]
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = python("import gymnasium as gym, sparseshift\n"
                  "env = gym.make('sparseshift/TriFingerReach-v0')\nenv.reset(seed=0)\n"
                  "print(sparseshift.__file__)", user_project, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(site / "sparseshift" / "__init__.py")
