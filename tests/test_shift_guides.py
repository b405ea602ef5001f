"""docs/shifts.md's guides, followed literally: a new nuisance in one file (used from the CLI
with --plugin and from Python) and a new env in two files of a copy of the package (the envs/
module and one registry entry), which then supports every frame shift and no scene shift."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparseshift.envs.registry import make
from sparseshift.envs.shifts.registry import default_registry

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "shifts.md"


def _python_block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    return next(b for b in blocks if containing in b)


def _cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparseshift.experiments", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_new_nuisance_in_one_file_from_cli_and_python(tmp_path: Path) -> None:
    (tmp_path / "fog.py").write_text(_python_block("class Fog"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fog.py"]  # the one file
    listed = _cli(["shifts", "--plugin", "fog", "--env", "sparseshift/ColourGrid-v0"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^fog\s+nuisance\s+blend towards grey", listed.stdout, flags=re.M)
    out = _cli(["render", "sparseshift/ColourGrid-v0", "--plugin", "fog", "--shift",
                "fog:1-5", "--split", "in", "--n", "2", "--out", "fog.png"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "fog.png").stat().st_size > 1000
    refused = _cli(["render", "sparseshift/ColourGrid-v0", "--shift", "fog:3", "--out",
                    "x.png"], tmp_path)
    assert refused.returncode == 2 and "fog" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    sys.path.insert(0, str(tmp_path))
    try:
        import fog  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    reg = default_registry().with_nuisance(fog.Fog())
    diffs = []
    for level in (1, 3, 5):
        plain = make("sparseshift/TriFingerReach-v0")
        foggy = make("sparseshift/TriFingerReach-v0", shift=reg.resolve(f"fog:{level}"))
        plain.reset(seed=3)
        foggy.reset(seed=3)
        a = plain.unwrapped.render_frame().astype(float)  # type: ignore[attr-defined]
        b = foggy.unwrapped.render_frame().astype(float)  # type: ignore[attr-defined]
        diffs.append(np.abs(a - b).mean())
        plain.close()
        foggy.close()
    assert 0 < diffs[0] < diffs[1] < diffs[2]


TOY_ENV = '''
"""A toy env for the guide: one square at x on a floor; the square's colour is a factor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from sparseshift.envs.core.base import FactorEnv, checked_init
from sparseshift.envs.core.factors import Factor, FactorSpec, colour_factors


class ToyEnv(FactorEnv[np.ndarray, int]):
    SHIFT_FEATURES: ClassVar[frozenset[str]] = frozenset({"frame", "surfaces"})
    object_names = ("background", "square")
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    @checked_init
    def __init__(self, obs_mode: str = "pixels", image_size: int = 32, colours: str = "in",
                 colour_scheme: str = "grid8", colour_seed: int = 0, shift: object = None,
                 render_mode: str | None = None) -> None:
        self.configure(obs_mode, render_mode, colours, colour_scheme, colour_seed,
                       ("object", "background"))
        self.configure_shift(shift)
        self.image_size = image_size
        self.factor_spec = FactorSpec((Factor("x", "continuous", 0.0, 1.0),
                                       *colour_factors("object_colour"),
                                       *colour_factors("background_colour")))
        self._v = np.zeros(len(self.factor_spec), dtype=np.float32)
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.action_space = spaces.Discrete(2)
        self.attach_scene()

    def get_factors(self) -> np.ndarray:
        return self._v.copy()

    def set_factors(self, values: Mapping[str, Any] | np.ndarray) -> None:
        self._v = np.asarray(self.factor_spec.update(self._v, values)[0], dtype=np.float32)

    def sample_factors(self, rng: np.random.Generator, base: np.ndarray | None = None,
                       groups: Any = None) -> np.ndarray:
        v = np.empty(len(self.factor_spec), dtype=np.float32)
        v[0] = rng.uniform()
        v[1:4] = self.colour_scheme["object"].sample(rng, self.colours)
        v[4:7] = self.colour_scheme["background"].sample(rng, self.colours)
        return v

    def _layout(self) -> np.ndarray:
        n = self.image_size
        seg = np.zeros((n, n), dtype=np.int32)
        x0 = int(self._v[0] * (n - 8))
        seg[n // 2 - 4:n // 2 + 4, x0:x0 + 8] = 1
        return seg

    def render_frame(self) -> np.ndarray:
        seg = self._layout()
        img = np.where(seg[..., None] == 1, self._v[1:4], self._v[4:7])
        return self.apply_shift((img * 255 + 0.5).astype(np.uint8))

    def segmentation(self) -> np.ndarray:
        return self._layout()

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        super().reset(seed=seed)
        self._v = self.sample_factors(self.np_random)
        self.new_shift_episode(self.np_random)
        return self.render_frame(), {"factors": self.get_factors()}

    def step(self, action: int) -> Any:
        self._v[0] = np.clip(self._v[0] + (0.1 if action else -0.1), 0, 1)
        return self.render_frame(), 0.0, False, False, {"factors": self.get_factors()}
'''

ENTRY = '''    EnvEntry(
        "sparseshift/Toy-v0",
        "sparseshift.envs.toy:ToyEnv",
        20,
        "grid",
        summary="the shifts guide's toy env",
        shift_features=GRID_FEATURES,
    ),
'''

CHECK = '''
import numpy as np, sparseshift
from sparseshift.envs.registry import make, scene_offer
from sparseshift.envs.shifts.registry import default_registry
assert sparseshift.__file__.startswith(COPY), sparseshift.__file__
reg = default_registry()
print("supported", ",".join(reg.supported(scene_offer("sparseshift/Toy-v0"))))
diffs = []
for level in range(1, 6):
    a, b = make("sparseshift/Toy-v0"), make("sparseshift/Toy-v0", shift=f"noise:{level}")
    a.reset(seed=1); b.reset(seed=1)
    diffs.append(float(np.abs(a.unwrapped.render_frame().astype(float)
                              - b.unwrapped.render_frame()).mean()))
print("noise", " ".join(f"{d:.3f}" for d in diffs))
try:
    make("sparseshift/Toy-v0", shift="real")
except Exception as exc:
    print("refused", type(exc).__name__, exc)
'''


@pytest.mark.timeout(600)
def test_new_env_in_two_files_supports_frame_shifts(tmp_path: Path) -> None:
    copy = tmp_path / "pkg" / "sparseshift"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".venv", ".git", "tests", "docs", "out", "runs", "*.egg-info", "__pycache__", ".*cache"))
    # File 1: the env module. File 2: one entry in the registry.
    (copy / "envs" / "toy.py").write_text(TOY_ENV)
    reg_file = copy / "envs" / "registry.py"
    text = reg_file.read_text()
    assert text.count("\n)\n\nENV_IDS") == 1
    reg_file.write_text(text.replace("\n)\n\nENV_IDS", "\n" + ENTRY + ")\n\nENV_IDS"))
    env = {"PYTHONPATH": str(copy.parent)}
    run = subprocess.run([sys.executable, "-c", f"COPY = {str(copy)!r}\n" + CHECK],
                         capture_output=True, text=True, timeout=300, env={**os.environ, **env},
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines())
    supported = set(lines["supported"].split(","))
    assert {"in", "ood1", "ood2", "noise", "blur", "texture", "jpeg", "distortion"} <= supported
    assert not {"real", "lighting", "camera", "ambient"} & supported
    diffs = [float(x) for x in lines["noise"].split()]
    assert diffs == sorted(diffs) and diffs[0] > 0
    assert "ConfigError" in lines["refused"] and "lights" in lines["refused"]
    shown = _cli(["render", "sparseshift/Toy-v0", "--shift", "blur:3,texture:5", "--n", "2",
                  "--out", "toy.png"], tmp_path, env)
    assert shown.returncode == 0, shown.stderr
    assert (tmp_path / "toy.png").is_file()
