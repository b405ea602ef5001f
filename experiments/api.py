"""sparseshift from Python: one module of entry points for scripts and notebooks.

Every stage of the data flow (env -> dataset file -> learner checkpoint -> agent -> results) has
one function here, with distinct names, taking ``str`` or ``os.PathLike`` paths and either a
config object or a plain mapping of its options (the same names as the command-line flags, with
underscores; a default lives in the config class, nowhere else). They do what the commands do
and write the same artifacts, so a notebook and ``sparseshift ...`` can share folders::

    from sparseshift.experiments import api

    data = api.collect_dataset({"env_id": "sparseshift/ColourGrid-v0", "kind": "pairs",
                                "n": 2000}, "grid.h5")
    run = api.train_representation({"learner": "ada_gvae", "steps": 300}, data.path, "rep")
    agent = api.train_agent({"env_id": "sparseshift/ColourGrid-v0", "encoder": str(run.out_dir),
                             "steps": 20_000}, "agent")
    result = api.evaluate_agent(agent, "in,ood2,noise:1-5", episodes=50)

docs/python.md walks through all of it (tests/test_python_api.py runs that page).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sparseshift.envs.infra.errors import ConfigError

if TYPE_CHECKING:
    import gymnasium as gym
    from torch import nn

    from sparseshift.agents.collect.collect import CollectResult
    from sparseshift.envs.infra.config import Config
    from sparseshift.representations.train import TrainResult

PathLike = str | os.PathLike[str]
C = TypeVar("C", bound="Config")

__all__ = [
    "ConfigError",
    "collect_dataset",
    "evaluate_agent",
    "evaluate_representation",
    "list_shifts",
    "make_env",
    "run_scorecard",
    "run_study",
    "train_agent",
    "train_representation",
]


def _config(cls: type[C], value: C | Mapping[str, Any]) -> C:
    """``value`` if it is already a ``cls``, else ``cls`` built from the mapping (checked: one
    :class:`~sparseshift.envs.infra.errors.ConfigError` line for a bad or unknown option)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.from_json(value)
    raise ConfigError(f"expected a {cls.__name__} or a mapping of its options, got "
                      f"{type(value).__name__}")


def make_env(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """A sparseshift env (``gymnasium.make`` with one-line errors), e.g.
    ``make_env("sparseshift/TriFingerReach-v0", obs_mode="pixels", shift="real:4")``."""
    from sparseshift.envs.registry import make

    return make(env_id, **kwargs)


def list_shifts(env_id: str | None = None, plugins: Sequence[str] = ()) -> tuple[str, ...]:
    """The registered shift names (those ``env_id`` supports, if given); ``plugins``: modules
    whose ``SPARSESHIFT_SHIFTS`` you allow (docs/shifts.md)."""
    from sparseshift.envs.registry import scene_offer
    from sparseshift.envs.shifts.registry import registry_with

    reg = registry_with(plugins)
    return reg.supported(scene_offer(env_id)) if env_id is not None else reg.names


def collect_dataset(config: Any, out: PathLike, workers: int = 1,
                    progress: bool = False) -> CollectResult:
    """Collect (or resume) a weakly supervised dataset: ``config`` is a
    :class:`~sparseshift.envs.data.config.CollectConfig` or its options
    (``env_id``, ``kind`` = pairs | video, ``n``, ...); ``out`` an ``.h5`` path."""
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    return collect(_config(CollectConfig, config), Path(out), workers=workers,
                   progress=progress)


def train_representation(config: Any, data: PathLike, out: PathLike) -> TrainResult:
    """Train (or resume) a representation learner on the dataset ``data`` into the run folder
    ``out``: ``config`` is a :class:`~sparseshift.representations.config.TrainConfig` or its
    options (``learner``, ``steps``, ``batch``, ``model`` = the learner's options, ...)."""
    from sparseshift.representations.config import TrainConfig
    from sparseshift.representations.train import train

    cfg = _config(TrainConfig, {"progress": False, **config} if isinstance(config, Mapping)
                  else config)
    return train(cfg, Path(data), Path(out))


def evaluate_representation(run: PathLike | nn.Module, data: PathLike, out: PathLike | None = None,
                            config: Any = None) -> dict[str, Any]:
    """Disentanglement metrics, probes and the OOD proxy task of a run folder (or any frozen
    ``nn.Module`` encoder) on the dataset ``data``; ``config``: an
    :class:`~sparseshift.representations.config.EvalConfig` or its options. Writes ``out``
    (JSON) when given and returns the report."""
    from sparseshift.representations.config import EvalConfig
    from sparseshift.representations.evaluate import evaluate

    cfg = None if config is None else _config(EvalConfig, config)
    target = run if not isinstance(run, str | os.PathLike) else Path(run)
    return evaluate(target, Path(data), cfg, None if out is None else Path(out))


def train_agent(config: Any, out: PathLike, *, encoder: nn.Module | None = None,
                plugins: Sequence[str] = (), progress: bool = False) -> Path:
    """Train (or resume) a PPO/SAC agent into the folder ``out`` and return it: ``config`` is an
    :class:`~sparseshift.agents.config.AgentConfig` or its options (``env_id``, ``encoder`` = a
    run or export folder, ``module:factory``, or a baseline: random, sensors, state, pixels;
    ``steps``, ``seed``, ...). ``encoder``: your own frozen ``nn.Module`` instead
    (docs/your_encoder.md); ``plugins``: modules you allow a file to name."""
    from sparseshift.agents.config import AgentConfig
    from sparseshift.agents.train import train_agent as _train
    from sparseshift.representations.plugins import Plugins

    return _train(_config(AgentConfig, config), Path(out), progress, plugins=Plugins.of(*plugins),
                  encoder=encoder)


def evaluate_agent(agent: PathLike, shifts: str | Sequence[str] = "in,ood1,ood2",
                   episodes: int = 50, seed: int = 0, *, video: int = 0,
                   encoder: nn.Module | None = None, plugins: Sequence[str] = (),
                   progress: bool = False) -> dict[str, Any]:
    """Evaluate a trained agent under ``shifts`` (the shift syntax: ``"in,ood2,lighting:1-5"``,
    shift files included; docs/shifts.md) on shared episode seeds; writes and returns its
    ``eval.json`` (exact success intervals, paired tests against IN, robustness)."""
    from sparseshift.agents.evaluate import evaluate
    from sparseshift.representations.plugins import Plugins

    return evaluate(Path(agent), shifts, episodes=episodes, seed=seed, video=video,
                    progress=progress, plugins=Plugins.of(*plugins), encoder=encoder)


def run_study(study: Any, out: PathLike, *, jobs: int = 1, device: str | None = None,
              plugins: Sequence[str] = ()) -> Path:
    """Run (or resume) a study and write its report; returns ``report.md``. ``study``: a preset
    name (``smoke``, ``quick``, ``sweep``, ``full``), a study config file (TOML/JSON), a
    :class:`~sparseshift.experiments.study.presets.StudyConfig` or its options. The output goes
    to ``out/<study name>`` as with ``sparseshift study --out``."""
    from sparseshift.experiments.study.presets import PRESETS, StudyConfig, get_preset
    from sparseshift.experiments.study.report import write_report
    from sparseshift.experiments.study.runner import run_study as _run

    if isinstance(study, str) and study in PRESETS:
        cfg = get_preset(study)
    elif isinstance(study, str | os.PathLike):
        cfg = StudyConfig.load(Path(study))
    else:
        cfg = _config(StudyConfig, study)
    folder = Path(out) / cfg.name
    runs, results, seconds = _run(cfg, folder, False, jobs=jobs, device=device,
                                  plugins=plugins)
    report, _ = write_report(cfg.name, runs, results, folder, seconds, {"jobs": jobs})
    return Path(report)


def run_scorecard(config: Any, out: PathLike, *, jobs: int = 1, plugins: Sequence[str] = (),
                  device: str | None = None) -> dict[str, Any]:
    """Judge one encoder against the floors (random, sensors) and references on the fixed
    protocol (``sparseshift scorecard``); ``config``: a
    :class:`~sparseshift.experiments.study.scorecard.ScorecardConfig` or its options
    (``encoder``, ``seeds``, ``steps``, ...). Returns the scorecard JSON."""
    from sparseshift.experiments.study.scorecard import ScorecardConfig
    from sparseshift.experiments.study.scorecard import run_scorecard as _run

    return _run(_config(ScorecardConfig, config), Path(out), plugins=plugins, jobs=jobs,
                device=device)
