"""Property-based fuzzing (Hypothesis) of the dataset readers and the learner configs.

Generated malformed datasets (random attribute values and types, broken JSON, wrong shapes and
dtypes, huge declared sizes written as unallocated chunks, NaN and infinite factors, missing
arrays, truncated files and flipped bytes, re-signed with valid checksums and fingerprint as a
hostile file would be, or not) go through ``open_dataset`` and ``inspect --verify``,
``train-rep --data`` and ``eval-rep --data``; generated model options (``--model KEY=VALUE``,
huge, negative or wrong-typed values, for every built-in learner) go through the configs and
``train-rep``. Each must give a typed :class:`ConfigError` (the Python API) or exactly one line and
exit status 2 (the command line), never a traceback, never allocate more than
:data:`MEMORY_BUDGET` (traced by ``tracemalloc``) and finish within :data:`SECONDS` per example.

The default run is short (a few dozen examples per reader); ``-m slow`` runs many more.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sparseshift.envs.data import open_dataset  # noqa: E402
from sparseshift.envs.data.layout import CHECKSUM_GROUP, arrays_of, fingerprint  # noqa: E402
from sparseshift.envs.data.summary import summary  # noqa: E402
from sparseshift.envs.infra.config import field_types  # noqa: E402
from sparseshift.envs.infra.errors import ConfigError  # noqa: E402
from sparseshift.experiments.cli import main  # noqa: E402
from sparseshift.representations.model_config import MAX_PARAMS, parse_config_options  # noqa: E402
from sparseshift.representations.registry import learner_class, make_learner  # noqa: E402
from tests.test_data_helpers import make  # noqa: E402

#: Most bytes one example may allocate (Python and NumPy allocations, traced).
MEMORY_BUDGET = 200 << 20
#: Most seconds one example may take (an opened dataset, or one command).
SECONDS = 60.0
LEARNERS = ("beta_vae", "ada_gvae", "ada_mlvae", "slot_attention", "nwm")
#: A tiny conv VAE for the commands that train or evaluate a fuzzed dataset.
TINY_MODEL = ("--model", "channels=4,4,8,8", "--model", "hidden=16", "--model", "latent_dim=3")
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
          HealthCheck.filter_too_much]


def examples(n: int) -> Callable[[Any], Any]:
    """Hypothesis settings for ``n`` examples (derandomized: the same examples every run; no
    shrinking, which can take many minutes of commands: a failure shows the example as
    generated)."""
    return settings(max_examples=n, deadline=None, suppress_health_check=HEALTH,
                    derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate))


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny clean datasets (pairs, video) and a tiny beta-VAE run trained on the pairs."""
    root = tmp_path_factory.mktemp("fuzz")
    pairs = make(root / "pairs.h5", "pairs", n=48, seed=3, part_rows=16)
    video = make(root / "video.h5", "video", n=48, seed=3, part_rows=16)
    run = root / "run"
    assert main(["train-rep", "--learner", "beta_vae", "--data", str(pairs), "--steps", "2",
                 "--batch", "4", "--out", str(run), "--quiet", "--no-tensorboard",
                 *TINY_MODEL]) == 0
    return {"pairs": pairs, "video": video, "run": run, "root": root}


@contextmanager
def bounded() -> Iterator[None]:
    """The example's traced allocation peak stays under MEMORY_BUDGET and it ends in SECONDS."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    took = time.monotonic() - start
    assert peak < MEMORY_BUDGET, f"allocated {peak >> 20} MiB"
    assert took < SECONDS, f"took {took:.0f} s"


def one_line_or_ok(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    """Run the command line in-process: exit 0, or exit 2 with exactly one line on stderr."""
    with bounded():
        rc = main(argv)
    _, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and ": error: " in lines[0], err
        return rc, lines[0]
    return rc, ""


# ------------------------------------------------------------------------------ forging
def _plain(v: Any) -> Any:
    if isinstance(v, bytes | np.bytes_):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def resign(path: Path) -> None:
    """Recompute every chunk checksum (zeros for arrays too large to read) and the fingerprint,
    as a hostile file would: only the content checks can then refuse it."""
    try:
        _resign(path)
    except (TypeError, ValueError, OSError, KeyError, UnicodeError):
        pass  # what the edits left cannot be signed: the file stays unsigned


def _resign(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        attrs = {k: _plain(v) for k, v in f.attrs.items() if k != "fingerprint"}
        kind = str(attrs.get("kind"))
        version = attrs.get("format_version")
        version = version if isinstance(version, int) and 1 <= version <= 3 else 3
        obs: tuple[str, ...] = ()
        try:
            arrays = json.loads(attrs["collector"])["observation"]["arrays"]
            obs = tuple(k for k in arrays if isinstance(k, str))
        except Exception:  # whatever the edits left: sign what is there
            pass
        sums: dict[str, np.ndarray] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for n in arrays_of(kind, obs, version):
            d = f.get(n)
            if not isinstance(d, h5py.Dataset) or not d.shape or d.chunks is None:
                continue
            rows = int(d.chunks[0])
            count = -(-d.shape[0] // rows)
            if d.size * d.dtype.itemsize <= 8 << 20 and count <= 1 << 16:
                a = d[...]
                s = np.array([zlib.crc32(np.ascontiguousarray(a[i:i + rows]).data)
                              for i in range(0, len(a), rows)], np.uint32).reshape(-1)
            else:  # zeros, stored as unwritten chunks (the file stays small)
                s = np.zeros(min(count, 1 << 24), np.uint32)
            key = f"{CHECKSUM_GROUP}/{n}"
            if key in f:
                del f[key]
            if len(s) > 1 << 16:
                f.create_dataset(key, shape=s.shape, dtype="u4", chunks=(1 << 16,))
            else:
                f[key] = s
            sums[n], shapes[n] = s, tuple(int(x) for x in d.shape)
        try:
            f.attrs["fingerprint"] = fingerprint(kind, sums, shapes, attrs, version)
        except (TypeError, ValueError):
            pass  # attributes JSON cannot encode: the file stays unsigned


#: Root attributes an edit sets (Hypothesis favours the first: the most telling one).
ATTRS = ("n", "factor_spec", "image_size", "collector", "kind", "env_id", "format_version",
         "fingerprint", "env_kwargs", "colour_scheme", "colours", "render_preset", "seed",
         "part_rows", "created", "versions", "extra_attribute", "format")
JSON_ATTRS = ("factor_spec", "collector", "env_kwargs", "colour_scheme", "versions")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=10)

attr_values = st.one_of(
    st.integers(-2**63, 2**63 - 1),
    st.sampled_from([0, 1, -1, 8, 64, 513, 2**31, 10**9 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(min_size=1, max_size=40).map(np.bytes_),
    json_values.map(json.dumps),
    st.integers(1, 100_000).map(lambda d: "[" * d + "]" * d),
    st.integers(30, 6000).map(lambda d: '{"a": ' + "9" * d + "}"),
    st.lists(st.integers(-5, 5), min_size=2, max_size=5).map(np.array),
)

DTYPES = ("u1", "f4", "f8", "?", "i8", "f2", "i1")
ROWS = (0, 1, 2, 47, 49, 2**16, 2**28, 2**33)


def _mutate_json(draw: Callable[[Any], Any], value: Any) -> Any:
    """``value`` with one random place replaced by a random JSON value."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: _mutate_json(draw, value[key])}
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], _mutate_json(draw, value[i]), *value[i + 1:]]
    return draw(json_values)


def _replace(f: h5py.File, name: str, shape: tuple[int, ...], dtype: str) -> None:
    del f[name]
    rows = max(1, min(shape[0], 1 << 16)) if shape else 1
    d = f.create_dataset(name, shape=shape, dtype=dtype, chunks=(rows, *shape[1:]) if shape
                         else None, maxshape=(None, *shape[1:]) if shape else None,
                         compression="gzip" if shape else None)
    if shape and d.size * d.dtype.itemsize <= 4 << 20:
        d[...] = np.zeros(shape, dtype) if dtype != "f4" else np.full(shape, np.nan, dtype)


def edit_file(draw: Callable[[Any], Any], path: Path) -> None:
    """One random edit of the HDF5 file at ``path`` (it stays a readable HDF5 file; an edit
    h5py cannot make, e.g. text it cannot encode, is left out)."""
    with h5py.File(path, "r+") as f:
        try:
            _edit(draw, f)
        except (TypeError, ValueError, OSError, KeyError, UnicodeError):
            pass


def _edit(draw: Callable[[Any], Any], f: h5py.File) -> None:
    arrays = sorted(n for n in _datasets(f) if not n.startswith(CHECKSUM_GROUP))
    if not arrays:
        return
    op = draw(st.sampled_from(("attr", "json", "shape", "drop", "nonfinite", "checksums")))
    if op == "attr":
        key = draw(st.sampled_from(ATTRS))
        f.attrs[key] = draw(attr_values)
    elif op == "json":
        key = draw(st.sampled_from([k for k in JSON_ATTRS if k in f.attrs] or ["collector"]))
        try:
            value = json.loads(_plain(f.attrs.get(key, "{}")))
        except (ValueError, RecursionError):
            value = {}
        f.attrs[key] = json.dumps(_mutate_json(draw, value))
    elif op == "shape":
        name = draw(st.sampled_from(arrays))
        old = f[name].shape
        rows = draw(st.sampled_from((old[0], *ROWS)))
        tail = list(old[1:])
        if tail and draw(st.booleans()):
            tail[-1] = max(1, tail[-1] + draw(st.sampled_from((-1, 1, 7))))
        dtype = draw(st.sampled_from((str(f[name].dtype), *DTYPES)))
        _replace(f, name, (rows, *tail), dtype)
    elif op == "drop":
        name = draw(st.sampled_from(arrays))
        victim = draw(st.sampled_from((name, f"{CHECKSUM_GROUP}/{name}")))
        if victim in f:
            del f[victim]
            if draw(st.booleans()):
                f.create_group(victim)
    elif op == "nonfinite":
        names = [n for n in arrays if "factors" in n and 0 < f[n].size <= 1 << 20
                 and f[n].ndim == 2]
        if names:
            name = draw(st.sampled_from(names))
            a = f[name][...].astype(np.float32)
            a[draw(st.integers(0, len(a) - 1)), draw(st.integers(0, a.shape[1] - 1))] = \
                draw(st.sampled_from((np.nan, np.inf, -np.inf)))
            f[name][...] = a
    else:
        name = draw(st.sampled_from(arrays))
        key = f"{CHECKSUM_GROUP}/{name}"
        if key in f:
            del f[key]
        n = draw(st.sampled_from((0, 1, 2**20, 2**34)))
        f.create_dataset(key, shape=(n,), dtype="u4", chunks=(max(1, min(n, 1 << 16)),))


def _datasets(f: h5py.File) -> list[str]:
    out: list[str] = []
    f.visititems(lambda name, obj: out.append(name) if isinstance(obj, h5py.Dataset) else None)
    return out


def damage(draw: Callable[[Any], Any], path: Path) -> None:
    """Byte-level damage after signing: truncation or flipped bytes."""
    data = bytearray(path.read_bytes())
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data) - 1))
        path.write_bytes(bytes(data[:cut]))
        return
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= draw(st.integers(1, 255))
    path.write_bytes(bytes(data))


def fuzzed(draw: Callable[[Any], Any], src: Path, dst: Path) -> Path:
    """A malformed copy of ``src`` at ``dst``: 1 to 3 edits, usually re-signed, sometimes
    damaged at the byte level."""
    shutil.copy(src, dst)
    for _ in range(draw(st.integers(1, 3))):
        edit_file(draw, dst)
    if draw(st.sampled_from((True, True, True, False))):
        resign(dst)
    if draw(st.sampled_from((False,) * 9 + (True,))):  # False first: Hypothesis favours it
        damage(draw, dst)
    return dst


# ------------------------------------------------------------------------------ readers
def _open_and_read(path: Path) -> None:
    """open_dataset, then everything the readers do with an opened dataset."""
    with bounded():
        try:
            ds = open_dataset(path)
        except ConfigError:
            return
        try:
            ds.verify()
            summary(ds, path.stat().st_size)
            for name in ds.row_arrays:
                ds.take(name, np.arange(min(3, len(ds))))
            disk = open_dataset(path, memory_budget=0)
            disk.verify()
            disk.take(disk.row_arrays[0], np.array([0, len(disk) - 1]))
            with pytest.raises(ConfigError):
                disk.take(disk.row_arrays[0], np.array([-1]))
            disk.close()
        except ConfigError:
            pass
        finally:
            ds.close()


def _fuzz_open(clean: dict[str, Path], n: int) -> None:
    @examples(n)
    @given(st.data(), st.sampled_from(("pairs", "video")))
    def prop(data: st.DataObject, kind: str) -> None:
        path = fuzzed(data.draw, clean[kind], clean["root"] / f"open_{kind}.h5")
        _open_and_read(path)

    prop()


def _fuzz_inspect(clean: dict[str, Path], capsys: pytest.CaptureFixture[str], n: int) -> None:
    @examples(n)
    @given(st.data(), st.sampled_from(("pairs", "video")))
    def prop(data: st.DataObject, kind: str) -> None:
        path = fuzzed(data.draw, clean[kind], clean["root"] / f"inspect_{kind}.h5")
        one_line_or_ok(capsys, ["inspect", str(path), "--verify"])

    prop()


def _fuzz_train(clean: dict[str, Path], capsys: pytest.CaptureFixture[str], n: int) -> None:
    counter = iter(range(10**9))

    @examples(n)
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        path = fuzzed(data.draw, clean["pairs"], clean["root"] / "train.h5")
        out = clean["root"] / f"train_out{next(counter)}"
        one_line_or_ok(capsys, ["train-rep", "--learner", "ada_gvae", "--data", str(path),
                                "--steps", "1", "--batch", "2", "--out", str(out), "--quiet",
                                "--no-tensorboard", *TINY_MODEL])
        shutil.rmtree(out, ignore_errors=True)

    prop()


def _fuzz_eval(clean: dict[str, Path], capsys: pytest.CaptureFixture[str], n: int,
               proxy: bool = False) -> None:
    """eval-rep on fuzzed datasets (the OOD proxy task, which builds the dataset's env from its
    attributes and renders frames, only when ``proxy``: it takes seconds per example)."""

    @examples(n)
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        path = fuzzed(data.draw, clean["pairs"], clean["root"] / "eval.h5")
        one_line_or_ok(capsys, ["eval-rep", str(clean["run"]), "--data", str(path), "--out",
                                str(clean["root"] / "m.json"), "--quiet", "--num-train", "64",
                                "--num-test", "32", "--factor-vae", "off", "--dci-estimators",
                                "2", *(() if proxy else ("--no-proxy",))])

    prop()


def test_fuzzed_datasets_open_or_refuse(clean: dict[str, Path]) -> None:
    _fuzz_open(clean, 25)


def test_fuzzed_datasets_inspect_verify(clean: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_inspect(clean, capsys, 25)


def test_fuzzed_datasets_train_rep(clean: dict[str, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_train(clean, capsys, 10)


def test_fuzzed_datasets_eval_rep(clean: dict[str, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_eval(clean, capsys, 5)


@pytest.mark.slow
def test_fuzzed_datasets_many(clean: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_open(clean, 600)
    _fuzz_inspect(clean, capsys, 300)
    _fuzz_train(clean, capsys, 100)
    _fuzz_eval(clean, capsys, 60, proxy=True)


# ------------------------------------------------------------------------------ known bombs
def test_a_tiny_file_declaring_gigabytes_is_refused_before_anything_is_allocated(
        clean: dict[str, Path]) -> None:
    """Issue 21: a small dataset that declares tens of GiB of factors (52 GiB here, and 6 TiB
    of frames: unallocated chunks, valid checksums and fingerprint) is refused, naming the
    file, before it is read."""
    path = clean["root"] / "declares.h5"
    shutil.copy(clean["pairs"], path)
    n = 5 * 10**8
    with h5py.File(path, "r+") as f:
        for name in ("factors_a", "factors_b", "changed", "intervened", "frames_a", "frames_b"):
            old = f[name]
            shape, dtype = (n, *old.shape[1:]), old.dtype
            del f[name]
            rows = 64 if name.startswith("frames") else max(
                1, (1 << 30) // max(1, int(np.prod(shape[1:])) * dtype.itemsize))
            f.create_dataset(name, shape=shape, dtype=dtype, chunks=(rows, *shape[1:]),
                             compression="gzip")
        f.attrs["n"] = n
    resign(path)
    assert path.stat().st_size < 1 << 20
    with bounded(), pytest.raises(ConfigError, match=f"{path}.*more than a file of"):
        open_dataset(path)


@pytest.mark.parametrize(("edit", "needle"), [
    ("n0", "attribute 'n' is 0: the dataset is empty"),
    ("wide", "array 'factors_a' has 27 factor columns, but attribute 'factor_spec' declares 26"),
    ("narrow", "array 'factors_a' has 25 factor columns"),
    ("nan", "array 'factors_b' holds a non-finite factor value (nan at row 5"),
    ("utf8", "attribute 'env_id' is not UTF-8 text"),
    ("json", "attribute 'factor_spec' is not valid JSON"),
    ("deep", "attribute 'collector' nests deeper than"),
    ("digits", "attribute 'env_kwargs' is not valid JSON ('an integer of 5000 digits')"),
])
def test_issue_examples_are_one_line_naming_file_and_field(
        clean: dict[str, Path], capsys: pytest.CaptureFixture[str], edit: str,
        needle: str) -> None:
    path = clean["root"] / f"{edit}.h5"
    shutil.copy(clean["pairs"], path)
    with h5py.File(path, "r+") as f:
        if edit == "n0":
            for name in ("factors_a", "factors_b", "changed", "intervened", "frames_a",
                         "frames_b"):
                _replace(f, name, (0, *f[name].shape[1:]), str(f[name].dtype))
            f.attrs["n"] = 0
        elif edit in ("wide", "narrow"):
            a = f["factors_a"][...]
            a = np.concatenate([a, a[:, :1]], 1) if edit == "wide" else a[:, :-1]
            del f["factors_a"]
            f.create_dataset("factors_a", data=a, chunks=(16, a.shape[1]), compression="gzip")
        elif edit == "nan":
            a = f["factors_b"][...]
            a[5, 2] = np.nan
            f["factors_b"][...] = a
        elif edit == "utf8":
            f.attrs["env_id"] = np.bytes_(b"sparseshift/\xff")
        elif edit == "json":
            f.attrs["factor_spec"] = '[{"name": '
        elif edit == "deep":
            f.attrs["collector"] = "[" * 50_000 + "]" * 50_000
        else:
            f.attrs["env_kwargs"] = '{"image_size": ' + "9" * 5000 + "}"
    resign(path)
    with pytest.raises(ConfigError) as info:
        open_dataset(path)
    assert str(path) in str(info.value) and needle in str(info.value), str(info.value)
    rc, line = one_line_or_ok(capsys, ["inspect", str(path), "--verify"])
    assert rc == 2 and needle in line


def test_take_refuses_negative_and_out_of_range_rows(clean: dict[str, Path]) -> None:
    for budget in (None, 0):  # in RAM and on disk
        ds = open_dataset(clean["video"], memory_budget=budget)
        for rows in ([-1], [0, 48], [10**12]):
            with pytest.raises(ConfigError, match=f"{clean['video']}: row .* of 'frames' is out"):
                ds.take("frames", np.array(rows))
        with pytest.raises(ConfigError, match="integer indices"):
            ds.take("factors", np.array([0.5]))
        assert ds.take("frames", np.array([[0, 47]])).shape == (1, 2, 64, 64, 3)
        ds.close()


def test_verify_of_a_dataset_on_disk_reads_block_by_block(clean: dict[str, Path],
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import sparseshift.envs.data.dataset as dataset

    monkeypatch.setattr(dataset, "LOAD_ROWS", 8)
    ds = open_dataset(clean["video"], memory_budget=0)
    whole = int(np.prod(ds.shapes["frames"]))
    tracemalloc.start()
    ds.verify()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < whole // 2


# ------------------------------------------------------------------------------ model options
def _sizing_fields(name: str) -> dict[str, tuple[int, int]]:
    """The integer fields (and integer tuples) a learner's config bounds on both sides."""
    cls = learner_class(name).config_cls
    types = field_types(cls)
    return {f.name: (f.metadata["min"], f.metadata["max"]) for f in dataclasses.fields(cls)
            if types[f.name] in (int, tuple[int, ...]) and f.metadata.get("min") is not None
            and f.metadata.get("max") is not None}


def _field_names(name: str) -> list[str]:
    return list(learner_class(name).config_cls.field_names())


huge_or_negative = st.one_of(
    st.integers(10**6, 10**4000).map(str),  # str() refuses more than 4300 digits
    st.integers(-10**40, -1).map(str),
    st.sampled_from(["abc", "1.5", "nan", "inf", "-inf", "1e400", "", "0x10", "true", "none",
                     "1,abc", "9" * 5000, "3,-4", "1" + ",1" * 40]),
)
any_value = st.one_of(
    huge_or_negative,
    st.integers(-3, 300).map(str),
    st.lists(st.integers(1, 70), min_size=1, max_size=6).map(lambda v: ",".join(map(str, v))),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=10),
)


def _fuzz_model_api(n: int) -> None:
    @examples(n)
    @given(st.sampled_from(LEARNERS), st.data())
    def prop(name: str, data: st.DataObject) -> None:
        cls = learner_class(name)
        keys = data.draw(st.lists(st.sampled_from([*_field_names(name), "nope"]), min_size=1,
                                  max_size=3, unique=True))
        items = [f"{k}={data.draw(any_value)}" for k in keys]
        with bounded():
            try:
                cfg = cls.config_cls.from_json(parse_config_options(cls.config_cls, items))
            except ConfigError as exc:
                assert "\n" not in str(exc).strip()
                return
            count = cfg.param_count()
            assert 0 < count <= MAX_PARAMS
            if count <= 2_000_000 and cfg.image_size <= 64:  # build it: the estimate is exact
                learner = make_learner(name, cfg)
                assert sum(p.numel() for p in learner.parameters()) == count

    prop()


def _fuzz_model_cli(clean: dict[str, Path], capsys: pytest.CaptureFixture[str], n: int) -> None:
    @examples(n)
    @given(st.sampled_from(LEARNERS), st.data())
    def prop(name: str, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(_sizing_fields(name))))
        value = data.draw(huge_or_negative)
        low, high = _sizing_fields(name)[key]
        default = getattr(learner_class(name).config_cls(), key)
        assume(value != "" or not isinstance(default, tuple))  # () takes the default layers
        try:  # a value the generator made valid after all (e.g. "1,1,...") is skipped
            numbers = [int(v) for v in value.split(",")]
            assume(not all(low <= v <= high for v in numbers) or len(numbers) > 16)
        except ValueError:
            pass
        data_path = clean["video" if name == "nwm" else "pairs"]
        rc, line = one_line_or_ok(capsys, [
            "train-rep", "--learner", name, "--data", str(data_path), "--steps", "1",
            "--batch", "2", "--out", str(clean["root"] / f"never_{name}"), "--quiet",
            "--no-tensorboard", "--model", f"{key}={value}"])
        assert rc == 2 and key in line, line

    prop()


def test_fuzzed_model_options_are_bounded_and_estimated_exactly() -> None:
    _fuzz_model_api(40)


def test_fuzzed_model_options_on_the_command_line(clean: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_model_cli(clean, capsys, 25)


@pytest.mark.slow
def test_fuzzed_model_options_many(clean: dict[str, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_model_api(1000)
    _fuzz_model_cli(clean, capsys, 300)


@pytest.mark.parametrize("name", LEARNERS)
def test_every_learner_refuses_a_model_over_the_parameter_budget(name: str) -> None:
    """Each field is within its bound, the product is not: refused before anything is built,
    naming the fields that size the largest part."""
    wide = {"beta_vae": {"hidden": 65536, "channels": (2048,) * 4},
            "ada_gvae": {"latent_dim": 4096, "hidden": 65536},
            "ada_mlvae": {"hidden": 65536, "channels": (2048,) * 4},
            "slot_attention": {"slot_size": 4096, "mlp_hidden": 65536},
            "nwm": {"sheet": 256, "sheet_channels": 64}}[name]
    cls = learner_class(name).config_cls
    with bounded(), pytest.raises(ConfigError, match=r"parameters, more than the 268,435,456 "
                                  r"\(2\*\*28\) allowed; its largest part"):
        cls.from_json(wide)
