"""Factor specs and colour splits: validation, groups, disjointness and seeded assignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sparseshift  # noqa: F401  (registers the ids)
from sparseshift.envs.core.factors import Factor, FactorSpec, colour_factors
from sparseshift.envs.infra.errors import ConfigError, check_image_size
from sparseshift.envs.shifts.colours import SPLITS, available_schemes, load_scheme, parse_splits


def spec() -> FactorSpec:
    return FactorSpec(
        (
            Factor("x", "continuous", -1.0, 1.0),
            Factor("n", "discrete", 0.0, 3.0, values=(0.0, 1.0, 2.0, 3.0)),
            *colour_factors("cube_colour"),
        )
    )


def test_spec_groups_and_indices() -> None:
    s = spec()
    assert s.names == ("x", "n", "cube_colour.r", "cube_colour.g", "cube_colour.b")
    assert s.groups == ("x", "n", "cube_colour")
    assert s.group_indices("cube_colour") == (2, 3, 4)
    assert s.group_mask(["n", "cube_colour"]).tolist() == [False, True, True, True, True]
    assert s.kinds[2] == "colour"


def test_update_sets_exactly_and_validates() -> None:
    s = spec()
    vec, mask = s.update(np.zeros(5), {"cube_colour": [1.0, 0.5, 0.0], "n": 2})
    assert vec.tolist() == [0.0, 2.0, 1.0, 0.5, 0.0]
    assert mask.tolist() == [False, True, True, True, True]
    with pytest.raises(ConfigError, match=r"colour channel 'cube_colour.r' must lie in \[0, 1\]"):
        s.update(np.zeros(5), {"cube_colour": [1.2, 0.0, 0.0]})
    with pytest.raises(ConfigError, match="must be one of"):
        s.update(np.zeros(5), {"n": 1.5})
    with pytest.raises(ConfigError, match="unknown factor or group 'y'; valid: x, n, cube_colour"):
        s.update(np.zeros(5), {"y": 0.0})
    with pytest.raises(ConfigError, match="takes 3 value"):
        s.update(np.zeros(5), {"cube_colour": 0.5})
    with pytest.raises(ConfigError, match="finite"):
        s.update(np.zeros(5), {"x": float("nan")})


def test_spec_json_round_trip() -> None:
    s = spec()
    again = FactorSpec.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s
    assert again.groups == s.groups


def test_duplicate_names_rejected() -> None:
    with pytest.raises(ConfigError, match="duplicate"):
        FactorSpec((Factor("x", "continuous", 0, 1), Factor("x", "continuous", 0, 1)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("in", ("in",)), ("in+ood1", ("in", "ood1")), ("ood2+in", ("in", "ood2")), ("all", SPLITS)],
)
def test_parse_splits(text: str, expected: tuple[str, ...]) -> None:
    assert parse_splits(text) == expected


@pytest.mark.parametrize("bad", ["", "ood3", "in+in", "in,ood1"])
def test_parse_splits_rejects(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_splits(bad)


@pytest.mark.parametrize("name", ["trifinger8", "trifinger-cw", "grid8", "grid-cw"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_schemes_disjoint_and_sampling_respects_split(name: str, seed: int) -> None:
    scheme = load_scheme(name, seed)
    rng = np.random.default_rng(seed)
    for obj, cs in scheme.objects.items():
        for split in SPLITS:
            for _ in range(50):
                c = cs.sample(rng, (split,))
                assert c.shape == (3,)
                assert np.all((c >= 0) & (c <= 1))
                assert cs.split_of(c) == split, (name, obj, split, c)


def test_seeded_assignment_permutes_but_keeps_sizes() -> None:
    a, b = load_scheme("trifinger8", 0), load_scheme("trifinger8", 5)
    sizes = [len(a["cube"].colours(s)) for s in SPLITS]
    assert sizes == [4, 2, 2]
    assert [len(b["cube"].colours(s)) for s in SPLITS] == sizes
    pool_a = np.sort(np.concatenate([a["cube"].colours(s) for s in SPLITS]), axis=0)
    pool_b = np.sort(np.concatenate([b["cube"].colours(s) for s in SPLITS]), axis=0)
    np.testing.assert_array_equal(pool_a, pool_b)
    assert not np.array_equal(a["cube"].colours("in"), b["cube"].colours("in"))
    assert load_scheme("trifinger8", 5) == b  # same seed, same assignment


def test_unknown_scheme_lists_valid() -> None:
    with pytest.raises(ConfigError, match="unknown colour scheme 'nope'; valid: "):
        load_scheme("nope")
    assert set(available_schemes()) >= {"trifinger8", "grid8"}


@pytest.mark.parametrize("size", [64, 128, 8, 256])
def test_image_sizes_ok(size: int) -> None:
    assert check_image_size(size) == size


@pytest.mark.parametrize("size", [0, -8, 60, 63.5, "64"])
def test_image_sizes_bad(size: object) -> None:
    with pytest.raises(ConfigError, match="image size"):
        check_image_size(size)  # type: ignore[arg-type]


def test_atomic_writes_are_readable_and_complete(tmp_path: Path) -> None:
    from sparseshift.envs.infra.io import FILE_MODE, atomic_write_bytes, write_json_atomic

    path = atomic_write_bytes(tmp_path / "a" / "x.bin", b"abc")
    assert path.read_bytes() == b"abc"
    assert path.stat().st_mode & 0o777 == FILE_MODE
    write_json_atomic(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, 2], "b": 1}
    assert not list(tmp_path.glob("**/.*.tmp"))  # no temp files left behind
