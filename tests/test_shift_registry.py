"""The shift registry and severity grammar: names, levels, compositions, user shift files."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.shifts.nuisance import Nuisance
from sparseshift.envs.shifts.nuisances import NUISANCES, Noise
from sparseshift.envs.shifts.registry import (
    COLOUR_SPLITS,
    REAL,
    ShiftDef,
    default_registry,
)
from sparseshift.envs.shifts.severity import ShiftRequest, parse_requests


def test_grammar_expands_levels_and_keeps_order() -> None:
    reqs = parse_requests("in, ood2,lighting:1-3,real:3,noise@2.5")
    assert [r.label for r in reqs] == ["in", "ood2", "lighting:1", "lighting:2", "lighting:3",
                                       "real:3", "noise@2.5"]
    assert reqs[2] == ShiftRequest("lighting", 1.0)
    assert parse_requests(["in,ood1", "blur:5"])[-1].severity == 5.0


@pytest.mark.parametrize("bad", ["real:0.5", "real:6", "real:0", "real:3-1", "real:a",
                                 "noise@6", "noise@-1", "noise@nan", "", "a b", "in,in",
                                 "x:1:2"])
def test_grammar_refuses_bad_tokens_in_one_line(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_requests(bad)
    assert "\n" not in str(e.value)


def test_registry_declares_every_shift_once() -> None:
    reg = default_registry()
    assert reg.names[:3] == COLOUR_SPLITS == ("in", "ood1", "ood2")
    assert set(reg.names) == {*COLOUR_SPLITS, *(n.name for n in NUISANCES), "real"}
    kinds = {n: reg.shifts[n].kind for n in reg.names}
    assert kinds["in"] == "colours" and kinds["noise"] == "nuisance"
    assert kinds["real"] == "composition"


def test_resolve_scales_compositions_and_keeps_bare_labels() -> None:
    reg = default_registry()
    real = reg.resolve("real")
    assert real.label == "real" and real.severity == 3.0
    assert {n.name: s for n, s in real.components} == dict(REAL)
    real5 = reg.resolve("real:5")
    eff = {n.name: s for n, s in real5.components}
    assert eff["lighting"] == 5.0 and eff["camera"] == pytest.approx(5 / 3)
    assert eff["noise"] == pytest.approx(10 / 3)
    assert reg.resolve("in").env_shift() is None
    with pytest.raises(ConfigError, match="colour split and takes no severity"):
        reg.resolve("ood2:3")
    with pytest.raises(ConfigError, match="listed twice"):
        reg.resolve_all("real,real:3")


def test_magnitudes_interpolate_and_grow_with_level() -> None:
    noise = Noise()
    assert noise.magnitude("std", 0) == 0.0
    assert noise.magnitude("std", 3) == 10.0
    assert noise.magnitude("std", 2.5) == pytest.approx(8.0)
    for n in NUISANCES:
        for p in n.levels:
            mags = [n.magnitude(p, k) for k in range(6)]
            assert mags == sorted(mags) and mags[5] > 0, (n.name, p)


def test_draws_are_seeded_and_graded() -> None:
    noise = Noise()
    img = np.full((16, 16, 3), 128, np.float32)
    out = [noise.frame(img.copy(), noise.magnitude("std", k), np.random.default_rng(1),
                       None) for k in (1, 5)]  # type: ignore[arg-type]
    assert np.std(out[1] - 128) > 3 * np.std(out[0] - 128)
    again = noise.frame(img.copy(), 3.0, np.random.default_rng(1), None)  # type: ignore[arg-type]
    assert np.array_equal(again, out[0])


def test_user_shift_file_is_checked_and_recorded_verbatim(tmp_path: Path) -> None:
    text = 'name = "dusk"\nsummary = "dim warm light"\ncolours = "ood2"\n' \
           '[nuisances]\nlighting = 4\nambient = 1.5\n'
    f = tmp_path / "dusk.toml"
    f.write_text(text)
    reg = default_registry()
    r = reg.resolve(f"{f}:5")
    assert r.label == "dusk:5" and r.colours == "ood2" and r.kind == "composition"
    assert {n.name: s for n, s in r.components} == {"lighting": 5.0, "ambient": 2.5}
    rec = r.record()
    assert rec["definition"]["source"] == text
    import hashlib

    assert rec["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    f2 = tmp_path / "dusk2.toml"
    f2.write_text(text.replace("= 4", "= 3"))
    assert reg.resolve(str(f2)).record()["sha256"] != rec["sha256"]
    rel = reg.relative_to(tmp_path).resolve("dusk.toml")
    assert rel.name == "dusk"


@pytest.mark.parametrize("body, match", [
    ('name = "real"\n[nuisances]\nnoise = 1\n', "already a registered"),
    ('name = "x"\n[nuisances]\nfog = 1\n', "nuisance"),
    ('name = "x"\n[nuisances]\nnoise = 9\n', r"\[0, 5\]"),
    ('name = "x"\ncolours = "ood3"\n', "colours"),
    ('name = "x"\nextra = 1\n', "unknown key"),
    ('summary = "no name"\n', "name"),
    ('name = "Bad Name"\n', "lower-case"),
    ('name = "x"\n[nuisances]\nnoise = true\n', "number"),
])
def test_bad_shift_files_are_one_line_errors(tmp_path: Path, body: str, match: str) -> None:
    f = tmp_path / "s.toml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=match) as e:
        default_registry().resolve(str(f))
    assert "\n" not in str(e.value)


def test_oversized_or_missing_shift_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text('{"name": "x", "summary": "' + "a" * (70 << 10) + '"}')
    with pytest.raises(ConfigError):
        default_registry().resolve(str(big))
    with pytest.raises(ConfigError, match="not found"):
        default_registry().resolve(str(tmp_path / "none.toml"))


def test_registry_is_immutable_and_extensible() -> None:
    @dataclass(frozen=True)
    class Dim(Nuisance):
        name: ClassVar[str] = "dim"
        summary: ClassVar[str] = "darken"
        needs: ClassVar[frozenset[str]] = frozenset({"frame"})
        levels: ClassVar[Any] = {"factor": (0.1, 0.2, 0.3, 0.4, 0.5)}
        stage: ClassVar[int | None] = 2

        def episode(self, severity: float, rng: np.random.Generator, scene: Any) -> Any:
            return self.magnitude("factor", severity)

    base = default_registry()
    ext = base.with_nuisance(Dim()).with_shift(
        ShiftDef("gloom", "composition", "dim and noisy", "in", (("dim", 3.0), ("noise", 1.0))))
    assert "dim" not in base.names and {"dim", "gloom"} <= set(ext.names)
    assert [n.name for n, _ in ext.resolve("gloom:3").components] == ["dim", "noise"]
    with pytest.raises(ConfigError, match="already registered"):
        ext.with_nuisance(Dim())
    with pytest.raises(ConfigError, match="nuisance"):
        base.with_shift(ShiftDef("bad", "composition", "", "in", (("fog", 1.0),)))


def test_resolved_shifts_pickle() -> None:
    r = default_registry().resolve("real:4")
    again = pickle.loads(pickle.dumps(r.env_shift()))
    assert again == r.env_shift()
