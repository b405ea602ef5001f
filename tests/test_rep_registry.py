"""Learner registry (static table, lazy imports, "module:Class" learners) and learner capabilities
(declared per class, checked when a class is defined; what evaluate, the training loop's image
grids and the agents do with them)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_rep_support as support
import torch

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations import evaluate as ev_mod
from sparseshift.representations.base import Batch, Capability, Learner, LearnerConfig
from sparseshift.representations.checkpoint import load_learner
from sparseshift.representations.evaluate import EvalConfig, evaluate
from sparseshift.representations.plugins import Plugins
from sparseshift.representations.registry import (
    BUILTIN_LEARNERS,
    learner_class,
    learner_names,
    make_learner,
)
from sparseshift.representations.train import TrainConfig, _Logger, train
from sparseshift.representations.vae import BetaVAE

TINY = support.TINY
one_thread = support.one_thread
pairs_path = support.pairs_path
video_path = support.video_path

C = Capability
SLOT_MODEL: dict[str, Any] = {"num_slots": 3, "slot_size": 8, "mlp_hidden": 8}
NWM_MODEL: dict[str, Any] = {"channels": (4, 4, 8, 8), "hidden": 16, "sheet": 4,
                             "forecast_steps": 2}


class ExternalVAE(BetaVAE):
    """A learner outside the built-in table, named ``"test_rep_registry:ExternalVAE"``."""

    name = "external_vae"


class _Minimal(Learner):
    """Declares nothing: its capabilities are derived."""

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (2,)

    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        return {"loss": torch.zeros(())}

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(frames), 2)


# -- registry ---------------------------------------------------------------------------------


def test_registry_and_learner_modules_import_without_a_cycle() -> None:
    """Importing the registry imports no learner (and no torch), every built-in resolves from a
    fresh interpreter, and importing a learner module imports no registry."""
    code = (
        "import json, sys\n"
        "from sparseshift.representations import registry\n"
        "before = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "modules = {}\n"
        "for n in registry.learner_names():\n"
        "    cls = registry.learner_class(n)\n"
        "    assert cls.name == n, n\n"
        "    modules[n] = cls.__module__\n"
        "print(json.dumps({'torch': before, 'modules': modules}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["torch"] == [], "importing the registry imported torch"
    modules = sorted(set(out["modules"].values()))
    assert modules == ["sparseshift.representations.nwm", "sparseshift.representations.slots",
                       "sparseshift.representations.vae", "sparseshift.representations.weak"]
    code = (
        "import importlib, json, sys\n"
        "out = {}\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "    out[m] = 'sparseshift.representations.registry' in sys.modules\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert json.loads(proc.stdout) == dict.fromkeys(modules, False)


def test_builtin_table_names_each_class_by_its_declared_name() -> None:
    assert learner_names() == ("ada_gvae", "ada_mlvae", "beta_vae", "nwm", "slot_attention")
    for name, load in BUILTIN_LEARNERS.items():
        cls = learner_class(name)
        assert cls.name == name and load() is cls
        # the "module:Class" form names the same class
        assert learner_class(f"{cls.__module__}:{cls.__qualname__}") is cls


def test_module_class_names_resolve_to_learner_subclasses() -> None:
    assert learner_class("test_rep_registry:ExternalVAE") is ExternalVAE
    learner = make_learner("test_rep_registry:ExternalVAE", TINY)
    assert isinstance(learner, ExternalVAE) and learner.name == "external_vae"
    assert TrainConfig("test_rep_registry:ExternalVAE").learner == "test_rep_registry:ExternalVAE"


@pytest.mark.parametrize(("name", "needle"), [
    ("nope", "unknown learner 'nope'; valid: ada_gvae, ada_mlvae, beta_vae, nwm, slot_attention"),
    ("no_such_module_xyz:Foo", "cannot import module 'no_such_module_xyz'"),
    ("sparseshift.representations.vae:Nope",
     "'sparseshift.representations.vae' has no attribute 'Nope'"),
    ("sparseshift.representations.vae:BetaVAE.Nope",
     "'sparseshift.representations.vae.BetaVAE' has no attribute 'Nope'"),
    ("sparseshift.representations.vae:VAEConfig", "is not a subclass of "
     "sparseshift.representations.base.Learner (got VAEConfig)"),
    ("sparseshift.representations.vae:reparameterise", "(got function)"),
    ("sparseshift.representations.vae:ConvVAE", "is abstract (does not implement loss)"),
    (":BetaVAE", "neither a built-in learner"),
    ("sparseshift.representations.vae:", "neither a built-in learner"),
    ("a:b:c", "neither a built-in learner"),
])
def test_bad_learner_names_are_one_line_config_errors(name: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        learner_class(name)
    assert needle in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="learner"):
        TrainConfig(name)


def test_a_module_class_learner_trains_resumes_and_loads(pairs_path: Path,
                                                         tmp_path: Path) -> None:
    spec = "test_rep_registry:ExternalVAE"
    cfg = TrainConfig(spec, model=TINY, steps=1, batch=4, progress=False, tensorboard=False)
    train(cfg, pairs_path, tmp_path / "run")
    res = train(dataclasses.replace(cfg, steps=2), pairs_path, tmp_path / "run")  # resumes
    assert res.resumed_from == 1 and res.step == 2
    assert json.loads((tmp_path / "run" / "run.json").read_text())["learner"] == spec
    # The run.json names the module: loading it refuses until the user allows that module.
    with pytest.raises(ConfigError, match=r"--plugin test_rep_registry"):
        load_learner(tmp_path / "run")
    learner = load_learner(tmp_path / "run", plugins=Plugins.of("test_rep_registry"))
    assert type(learner) is ExternalVAE


# -- capabilities -----------------------------------------------------------------------------

EXPECTED: dict[str, frozenset[Capability]] = {
    "beta_vae": frozenset({C.VECTOR_CODE, C.RECONSTRUCT, C.DECODE}),
    "ada_gvae": frozenset({C.VECTOR_CODE, C.RECONSTRUCT, C.DECODE}),
    "ada_mlvae": frozenset({C.VECTOR_CODE, C.RECONSTRUCT, C.DECODE}),
    "slot_attention": frozenset({C.SET_LATENTS, C.SLOT_MASKS, C.RECONSTRUCT}),
    "nwm": frozenset({C.VECTOR_CODE, C.STATEFUL, C.WAVES, C.RECONSTRUCT}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capabilities_of_each_builtin_learner(name: str) -> None:
    cls = learner_class(name)
    assert cls.capabilities == EXPECTED[name]
    assert cls.stateful == (C.STATEFUL in EXPECTED[name])
    assert cls.supports() and cls.supports(*EXPECTED[name])
    assert cls.missing(*EXPECTED[name]) == ""
    others = [c for c in Capability if c not in EXPECTED[name]]
    assert cls.missing(*others) == f"learner {name!r} lacks {', '.join(c.value for c in others)}"
    assert not any(cls.supports(c) for c in others)


def test_latent_rank_matches_the_declared_latent_kind() -> None:
    models = {"slot_attention": SLOT_MODEL, "nwm": NWM_MODEL}
    for name in EXPECTED:
        learner = make_learner(name, models.get(name, TINY))
        rank = 2 if learner.supports(C.SET_LATENTS) else 1
        assert len(learner.latent_shape) == rank, name


def test_undeclared_capabilities_are_derived_and_declared_ones_inherited() -> None:
    assert _Minimal.capabilities == frozenset({C.VECTOR_CODE}) and not _Minimal.stateful

    class Decoding(_Minimal):
        def decode(self, latents: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(latents), 8, 8, 3)

    class Stateful(_Minimal):
        stateful = True

        def encode_step(self, frames: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
            return self.encode(frames), state

    assert Decoding.capabilities == frozenset({C.VECTOR_CODE, C.DECODE})
    assert Stateful.capabilities == frozenset({C.VECTOR_CODE, C.STATEFUL}) and Stateful.stateful

    class Declared(Decoding):
        capabilities = frozenset({C.VECTOR_CODE})

    class Child(Declared):  # inherits the declaration, is not re-derived
        pass

    assert Child.capabilities == frozenset({C.VECTOR_CODE})
    assert learner_class("ada_gvae").capabilities == BetaVAE.capabilities  # via ConvVAE


@pytest.mark.parametrize(("caps", "body", "needle"), [
    (frozenset({C.VECTOR_CODE, C.SET_LATENTS}), {}, "exactly one of set_latents, vector_code"),
    (frozenset({C.RECONSTRUCT}), {}, "exactly one of"),
    (frozenset({C.VECTOR_CODE, C.RECONSTRUCT}), {}, "capability 'reconstruct'"),
    (frozenset({C.VECTOR_CODE, C.STATEFUL}), {}, "capability 'stateful'"),
    (frozenset({C.VECTOR_CODE, C.SLOT_MASKS}), {}, "capability 'slot_masks'"),
    (frozenset({C.VECTOR_CODE}), {"stateful": True}, "sets stateful = True"),
    (frozenset({C.VECTOR_CODE, "decode"}), {}, "must be Capability values"),
])
def test_inconsistent_capability_declarations_fail_at_class_definition(
        caps: frozenset[Any], body: dict[str, Any], needle: str) -> None:
    with pytest.raises(TypeError, match=needle):
        type("Bad", (_Minimal,), {"capabilities": caps, **body})


class _FakeWriter:
    def __init__(self) -> None:
        self.tags: list[str] = []

    def add_image(self, tag: str, image: np.ndarray, step: int, dataformats: str) -> None:
        assert image.dtype == np.uint8 and image.ndim == 3
        self.tags.append(tag)


@pytest.mark.parametrize(("name", "tags"), [
    ("beta_vae", ["reconstructions", "traversal"]),
    ("slot_attention", ["reconstructions"]),
    ("nwm", ["reconstructions"]),
])
def test_training_image_grids_follow_capabilities(name: str, tags: list[str],
                                                  tmp_path: Path) -> None:
    learner = make_learner(name, {"slot_attention": SLOT_MODEL, "nwm": NWM_MODEL}.get(name, TINY))
    logger = _Logger(tmp_path, enabled=False, start_step=0)
    writer = _FakeWriter()
    logger.writer = writer
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    logger.images(learner, frames, 1)
    assert writer.tags == tags and learner.training


def test_traversal_grid_without_the_capability_is_a_config_error() -> None:
    from sparseshift.representations.viz import traversal_grid

    learner = make_learner("slot_attention", SLOT_MODEL)
    with pytest.raises(ConfigError, match="lacks vector_code, decode"):
        traversal_grid(learner, np.zeros((64, 64, 3), np.uint8))


# -- evaluate: which steps run ----------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(pairs_path: Path, video_path: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("cap_runs")
    plans = {"beta_vae": (TINY, pairs_path, 8), "slot_attention": (SLOT_MODEL, pairs_path, 8),
             "nwm": (NWM_MODEL, video_path, 4)}
    out = {}
    for name, (model, data, seq_len) in plans.items():
        train(TrainConfig(name, model=model, steps=1, batch=2, progress=False,
                          tensorboard=False, seq_len=seq_len), data, root / name)
        out[name] = (root / name, data)
    return out


@pytest.mark.parametrize(("name", "ran", "skipped"), [
    ("beta_vae",
     ["per_dimension_metrics", "factor_vae", "probes", "reconstruction", "proxy", "traversal"],
     {"slots": "learner 'beta_vae' lacks slot_masks"}),
    ("slot_attention", ["probes", "reconstruction", "proxy", "slots"],
     {"per_dimension_metrics": "set-valued latents (3, 8) have no fixed dimension order (see "
                               "fg_ari and the probes)",
      "factor_vae": "per-dimension metrics skipped: set-valued latents (3, 8) have no fixed "
                    "dimension order (see fg_ari and the probes)",
      "traversal": "learner 'slot_attention' lacks vector_code, decode"}),
    ("nwm", ["per_dimension_metrics", "factor_vae", "probes", "reconstruction", "proxy"],
     {"slots": "learner 'nwm' lacks slot_masks", "traversal": "learner 'nwm' lacks decode"}),
])
def test_evaluate_runs_only_the_steps_capabilities_allow(
        runs: dict[str, tuple[Path, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        name: str, ran: list[str], skipped: dict[str, str]) -> None:
    calls: list[str] = []

    def spy(step: ev_mod.EvalStep) -> ev_mod.EvalStep:
        return dataclasses.replace(step, run=lambda ev: calls.append(step.name))

    monkeypatch.setattr(ev_mod, "STEPS", tuple(spy(s) for s in ev_mod.STEPS))
    run_dir, data = runs[name]
    report = evaluate(run_dir, data, EvalConfig(num_train=40, num_test=20),
                      traversal_png=tmp_path / "t.png")
    assert calls == ran
    assert report["skipped"] == skipped
    assert not (set(ran) & set(skipped))
    # without a requested traversal PNG the traversal step is neither run nor recorded
    calls.clear()
    report = evaluate(run_dir, data, EvalConfig(num_train=40, num_test=20, probes=False))
    assert calls == [s for s in ran if s not in ("traversal", "probes")]
    assert report["skipped"] == {**{k: v for k, v in skipped.items() if k != "traversal"},
                                 "probes": "probes disabled (probes=False)"}


def test_evaluate_records_config_skips_and_still_reports_as_before(
        runs: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    run_dir, data = runs["beta_vae"]
    cfg = EvalConfig(num_train=60, num_test=30, dci_estimators=3, factor_vae="off", probes=False)
    report = evaluate(run_dir, data, cfg, out=tmp_path / "m.json",
                      traversal_png=tmp_path / "t.png")
    assert report["skipped"] == {"factor_vae": "factor_vae mode 'off'",
                                 "probes": "probes disabled (probes=False)",
                                 "slots": "learner 'beta_vae' lacks slot_masks"}
    m = report["metrics"]
    assert m["factor_vae_method"] == "off" and m["factor_vae_note"] == "" and "mig" in m
    assert report["probes"] == {} and report["reconstruction"]["mse_per_pixel"] > 0
    assert list(report["seconds"]) == ["encode", "mig_dci_sap_modularity", "factor_vae",
                                       "probes_reconstruction", "proxy"]
    assert json.loads((tmp_path / "m.json").read_text())["skipped"] == report["skipped"]
    assert (tmp_path / "t.png").stat().st_size > 0 and "slots" not in report


def test_frozen_encoder_reads_latent_kind_and_state_from_capabilities() -> None:
    from gymnasium import spaces

    from sparseshift.agents.encoding import FrozenEncoder

    space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    slots = FrozenEncoder(make_learner("slot_attention", SLOT_MODEL), space)
    assert slots.set_shape == (3, 8) and not slots.stateful
    nwm = FrozenEncoder(make_learner("nwm", NWM_MODEL), space)
    assert nwm.set_shape is None and nwm.stateful

    class Wrong(_Minimal):  # a (K, D) latent without declaring set_latents
        @property
        def latent_shape(self) -> tuple[int, ...]:
            return (2, 3)

    with pytest.raises(ConfigError, match=r"must be \(D,\), got \(2, 3\)"):
        FrozenEncoder(Wrong(LearnerConfig()), space)
