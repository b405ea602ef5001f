"""The one config format: typed fields, JSON round trips, one-line errors, CLI flags derived from
the fields (each CLI default is its config's default) and ``--config FILE`` (TOML or JSON)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

import pytest

from sparseshift.agents.config import AgentConfig, EvaluateConfig
from sparseshift.envs.data.config import CollectConfig
from sparseshift.envs.infra.config import (
    Config,
    check_int,
    check_number,
    opt,
    parse_assignments,
    parse_text,
)
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import build_parser, main
from sparseshift.experiments.commands.options import build_config
from sparseshift.experiments.study.disentangle import PRESETS as DISENTANGLE
from sparseshift.experiments.study.presets import PRESETS, StudyConfig
from sparseshift.representations.config import EvalConfig, TrainConfig
from sparseshift.representations.model_config import LRSchedule

GRID = "sparseshift/ColourGrid-v0"


@dataclasses.dataclass(frozen=True)
class Inner(Config):
    a: int = opt(1, min=0, max=10)


@dataclasses.dataclass(frozen=True)
class Outer(Config):
    name: str = opt(help="required")
    rate: float = opt(0.5)
    mode: Literal["x", "y"] = opt("x")
    sizes: tuple[int, ...] = opt((1, 2))
    maybe: int | None = opt(None, min=1)
    inner: Inner = opt(factory=Inner)
    flag: bool = opt(False)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rate": "fast"}, "rate must be a number, got 'fast'"),
        ({"rate": float("nan")}, "rate must be a finite number"),
        ({"mode": "z"}, "unknown mode 'z'; valid: x, y"),
        ({"sizes": "1,2"}, "sizes must be a list of (an integer)"),
        ({"maybe": 0}, "maybe must be a positive integer, got 0"),
        ({"inner": {"a": 11}}, "a must be an integer in [0, 10], got 11"),
        ({"inner": {"b": 1}}, "unknown Inner option(s) ['b']; valid: a"),
        ({"flag": 1}, "flag must be true or false"),
    ],
)
def test_field_types_and_bounds_are_one_line_errors(kwargs: dict[str, Any], needle: str
                                                    ) -> None:
    with pytest.raises(ConfigError) as err:
        Outer.from_json({"name": "n", **kwargs})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_coercion_and_round_trip() -> None:
    cfg = Outer.from_json({"name": "n", "rate": 1, "sizes": [3, 4], "inner": {"a": 2.0}})
    assert cfg.rate == 1.0 and isinstance(cfg.rate, float)
    assert cfg.sizes == (3, 4) and cfg.inner == Inner(2) and isinstance(cfg.inner.a, int)
    assert Outer.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    with pytest.raises(ConfigError, match="Outer needs name"):
        Outer.from_json({})
    with pytest.raises(ConfigError, match=r"unknown Outer option\(s\) \['nme'\]"):
        Outer.from_json({"nme": "n"})


def test_value_helpers() -> None:
    assert check_int("n", 3.0, 1) == 3
    for bad in (True, 2.5, "3", -1):
        with pytest.raises(ConfigError, match="n must be a positive integer"):
            check_int("n", bad, 1)
    with pytest.raises(ConfigError, match=r"x must be a number in \(0, 1\]"):
        check_number("x", 0.0, 0.0, 1.0, low_open=True)
    assert parse_text(int, "1e5") == 100_000 and parse_text(tuple[int, ...], "32,64") == (32, 64)
    assert parse_text(int | None, "none") is None
    with pytest.raises(ValueError, match="an integer"):
        parse_text(int, "1.5")
    assert parse_assignments(["a=1", "b=x=y"], "--hp") == {"a": "1", "b": "x=y"}
    for bad, needle in ((["a"], "takes KEY=VALUE"), (["a=1", "a=2"], "given twice")):
        with pytest.raises(ConfigError, match=needle):
            parse_assignments(bad, "--hp")


CONFIGS: list[Config] = [
    CollectConfig(env_id=GRID, kind="pairs", n=10),
    TrainConfig(learner="ada_gvae", model={"beta": 4.0}, lr_schedule=LRSchedule(10, 100, 0.5)),
    EvalConfig(max_code_dims=64),
    AgentConfig(GRID, "state", hyperparams={"n_envs": 2}, env_kwargs={"size": 6}),
    EvaluateConfig(shifts=("in", "ood2"), policy="stochastic"),
    *PRESETS.values(),
    *DISENTANGLE.values(),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__name__)
def test_every_config_round_trips_through_json(cfg: Config) -> None:
    assert type(cfg).from_json(json.loads(json.dumps(cfg.to_json()))) == cfg


@pytest.mark.parametrize(
    ("command", "required", "cls"),
    [
        ("train-rep", ["--data", "d.h5", "--out", "o"], TrainConfig),
        ("train-agent", ["--out", "o", "--env", GRID, "--encoder", "state"], AgentConfig),
        ("evaluate", ["agent_dir"], EvaluateConfig),
        ("collect", ["--out", "x.h5", "--env", GRID, "--kind", "pairs", "--n", "10"],
         CollectConfig),
        ("eval-rep", ["run_dir", "--data", "d.h5"], EvalConfig),
    ],
)
def test_cli_defaults_are_the_config_defaults(command: str, required: list[str],
                                              cls: type[Config]) -> None:
    """Flags the user does not give take the config class's default: the CLI holds none."""
    args = build_parser().parse_args([command, *required])
    from_cli = build_config(cls, args, _extras(command))
    given = {f.name: getattr(from_cli, f.name) for f in dataclasses.fields(cls)
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert from_cli == cls.from_json(given)
    sub = _subparser(command)
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True) and f.default is not dataclasses.MISSING and \
                not isinstance(f.default, bool):
            action = next(a for a in sub._actions if a.dest == f.name)
            shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else (
                "none" if f.default is None else str(f.default))
            assert f"(default {shown})" in (action.help or ""), (command, f.name)


def _extras(command: str) -> dict[str, Any]:
    return {}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = action.choices[command]
    return sub


def test_train_rep_config_file_and_flags(tmp_path: Path) -> None:
    from sparseshift.experiments.commands.train_rep import build

    toml = tmp_path / "run.toml"
    toml.write_text('learner = "ada_gvae"\nsteps = 7\nlr_schedule = "2:10:0.5"\n'
                    '[model]\nbeta = 4.0\nlatent_dim = 6\n')
    args = build_parser().parse_args(["train-rep", "--data", "d", "--out", "o", "--config",
                                      str(toml), "--steps", "9", "--model", "beta=2"])
    cfg = build(args)
    assert cfg == TrainConfig(learner="ada_gvae", steps=9, lr_schedule=LRSchedule(2, 10, 0.5),
                              model={"beta": 2.0, "latent_dim": 6})
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 3\n")
    with pytest.raises(ConfigError, match=r"unknown TrainConfig option\(s\) \['stepz'\]"):
        build(build_parser().parse_args(["train-rep", "--data", "d", "--out", "o", "--config",
                                         str(bad)]))


def test_train_agent_config_file(tmp_path: Path) -> None:
    from sparseshift.experiments.commands.train_agent import build

    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"env_id": GRID, "encoder": "state", "steps": 64,
                                "hyperparams": {"n_envs": 2, "n_steps": 16}}))
    args = build_parser().parse_args(["train-agent", "--out", "o", "--config", str(path),
                                      "--hp", "n_steps=32", "--seed", "3"])
    assert build(args) == AgentConfig(GRID, "state", steps=64, seed=3,
                                      hyperparams={"n_envs": 2, "n_steps": 32})


@pytest.mark.parametrize(
    ("hp", "needle"),
    [("n_envs=abc", "--hp n_envs='abc': expects an integer"),
     ("n_envs=0", "hyperparameter n_envs must be a positive integer"),
     ("learning_rate=-1", "hyperparameter learning_rate must be a number in (0, 1]"),
     ("batch_size=0", "hyperparameter batch_size must be a positive integer"),
     ("nope=1", "unknown ppo hyperparameter 'nope'")],
)
def test_bad_hyperparameters_are_one_line_exit_2(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, hp: str, needle: str) -> None:
    rc = main(["train-agent", "--env", GRID, "--encoder", "state", "--steps", "64", "--out",
               str(tmp_path / "a"), "--hp", hp])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "a").exists()


def test_study_config_file_runs_a_custom_study(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text(f'''
name = "mine"
description = "state oracle only"
[metrics]
num_train = 64
num_test = 32
[[envs]]
env_id = "{GRID}"
baselines = ["state"]
[envs.data]
kind = "pairs"
n = 64
[envs.agent]
steps = 64
eval_every = 0
[envs.agent.hyperparams]
n_envs = 2
n_steps = 32
batch_size = 32
n_epochs = 1
[envs.evaluation]
episodes = 2
shifts = ["in", "ood2"]
''')
    study = StudyConfig.load(toml)
    assert study.envs[0].data.env_id == GRID and study.envs[0].agent.encoder == "learned"
    assert main(["study", "--config", str(toml), "--out", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "mine" / "study_config.json").read_text())
    assert StudyConfig.from_json(saved["study"]) == study
    rows = (tmp_path / "out" / "mine" / "results.jsonl").read_text().splitlines()
    assert {json.loads(r)["shift"] for r in rows} == {"in", "ood2"}
