"""Study presets: typed, frozen descriptions of what a study trains and evaluates.

A study follows the shape of Träuble, Dittadi et al. (ICLR 2022): per env, collect a weakly
supervised dataset on the IN+OOD1 colours, train several representation learners (and seeds) on
it, train agents on the frozen encoders with IN colours only (several agent seeds each), plus the
``state`` (oracle), ``pixels`` (end-to-end CNN), ``random`` (untrained frozen encoder, init seed =
agent seed) and ``sensors`` (proprioception alone) baselines, and evaluate every agent on IN,
OOD1, OOD2 and, for TriFinger, the ``real`` shift
(:func:`~sparseshift.envs.registry.default_shifts`), plus graded nuisance sweeps where a
preset asks for them. A plan's ``encoders`` add the user's own frozen encoders
(:class:`EncoderPlan`), judged exactly like the learned ones.

Shift lists (a plan's ``evaluation.shifts``, the ``metrics.proxy_splits``) take the syntax of every
command: ``in,ood2,lighting:1-5,real:3`` (:mod:`sparseshift.envs.shifts.severity`), names from the
shift registry (the shipped shifts and installed ``sparseshift.shifts`` entry points) or shift
files (``.toml``/``.json``, read relative to the working directory). They are checked when the
config is built or loaded, before any stage runs: an unknown name, a bad severity (``real:0.5``)
or a shift the plan's env cannot render (``real`` on ColourGrid) is one :class:`ConfigError`
line.

A study is a :class:`StudyConfig`: every stage's config is the config object of that stage
(:class:`~sparseshift.envs.data.config.CollectConfig`,
:class:`~sparseshift.representations.config.TrainConfig`,
:class:`~sparseshift.representations.config.EvalConfig`,
:class:`~sparseshift.agents.config.AgentConfig`,
:class:`~sparseshift.agents.config.EvaluateConfig`), so a preset can set anything those can
(image size, render preset, colours, hyperparameters). A custom study needs no Python:
``sparseshift study --config my_study.toml`` reads a :class:`StudyConfig` from JSON or TOML, where
the env id of a plan fills in the ``env_id`` of its ``data``, ``video`` and ``agent`` tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseshift.agents.config import BASELINES, AgentConfig, EvaluateConfig
from sparseshift.envs.data.config import CollectConfig
from sparseshift.envs.infra.config import C, Config, check_choice, opt
from sparseshift.envs.infra.errors import ConfigError, choice_error, safe_repr
from sparseshift.envs.registry import default_shifts
from sparseshift.representations.config import EvalConfig, TrainConfig

#: The ``encoder`` of an agent template: replaced by the trained representation's directory.
LEARNED = "learned"
#: Longest study name and encoder label (characters).
MAX_NAME = 100


def check_name(what: str, value: str) -> str:
    """``value`` if it can name a folder on every system and be printed on one line: non-empty
    after stripping, at most :data:`MAX_NAME` characters, no path separator (``/`` or ``\\``),
    no NUL or other control character, not ``.``/``..`` and not starting with ``.``; else a
    one-line :class:`ConfigError` naming ``what``."""
    why = ""
    if not value.strip():
        why = "is empty"
    elif len(value) > MAX_NAME:
        why = f"is {len(value)} characters long (at most {MAX_NAME})"
    elif any(not c.isprintable() for c in value):
        why = "holds a control character (a NUL byte, a newline, ...)"
    elif "/" in value or "\\" in value:
        why = "holds a path separator"
    elif value.startswith("."):
        why = "starts with '.' (hidden, or '..': the parent folder)"
    if why:
        raise ConfigError(f"{what} must be a plain folder name; {safe_repr(value)} {why}")
    return value


@dataclass(frozen=True)
class LearnerPlan(Config):
    """One representation learner configuration, trained once per seed (the seed of ``train``
    is replaced by each of ``seeds``)."""

    label: str = opt(help="name of this encoder in tables and artifact labels")
    train: TrainConfig = opt(help="the training run (sparseshift train-rep options)")
    seeds: tuple[int, ...] = opt((0,), "encoder seeds")

    def validate(self) -> None:
        check_name("a learner plan's label", self.label)
        if not self.seeds:
            raise ConfigError(f"learner plan {self.label!r} needs at least one seed")


@dataclass(frozen=True)
class EncoderPlan(Config):
    """A frozen encoder of the user's, judged like a learned one: agents for every agent seed
    and, when the study computes the OOD proxy task, its probes (docs/your_encoder.md names what
    ``encoder`` may be). A ``package.module:factory`` written here counts as named by the user:
    its module is imported (and allowed to the agents and their evaluation)."""

    label: str = opt(help="name of this encoder in tables and artifact labels")
    encoder: str = opt(help="package.module:factory, an installed sparseshift.encoders entry "
                       "point, an export-encoder folder or a representation run folder")
    encoder_weights: str | None = opt(None, "safetensors weights for a package.module:factory "
                                      "or entry-point encoder", metavar="W.safetensors")

    def validate(self) -> None:
        from sparseshift.representations.plugins import (
            ENCODER_GROUP,
            entry_point_spec,
            is_code_spec,
        )

        if not self.label.strip():
            raise ConfigError("an encoder plan needs a label")
        check_name("an encoder plan's label", self.label)
        if not self.encoder.strip():
            raise ConfigError(f"encoder plan {self.label!r}: encoder is empty")
        if self.encoder in (*BASELINES, LEARNED):
            raise ConfigError(f"encoder plan {self.label!r}: {self.encoder!r} is a baseline; "
                              "list it under baselines")
        if self.encoder_weights is None:
            return
        if not self.encoder_weights.strip():
            raise ConfigError(f"encoder plan {self.label!r}: encoder_weights is empty")
        if is_code_spec(self.encoder):
            return
        if Path(self.encoder).expanduser().is_dir():
            raise ConfigError(f"encoder plan {self.label!r}: encoder_weights is for an encoder "
                              f"named by its factory; the folder {self.encoder} has its own "
                              "weights")
        if entry_point_spec(self.encoder, ENCODER_GROUP) is None:
            raise ConfigError(f"encoder plan {self.label!r}: encoder_weights needs encoder as "
                              f"package.module:factory or an installed {ENCODER_GROUP} entry "
                              f"point, got {self.encoder!r}")


@dataclass(frozen=True)
class EnvPlan(Config):
    """Everything a study does on one env."""

    env_id: str = opt(help="env id")
    data: CollectConfig = opt(help="the weakly supervised dataset (sparseshift collect)")
    agent: AgentConfig = opt(help="agent template (encoder 'learned' and the seed are filled in)")
    learners: tuple[LearnerPlan, ...] = opt((), "representation learners")
    encoders: tuple[EncoderPlan, ...] = opt((), "your own frozen encoders, judged like the "
                                            "learned ones")
    agent_seeds: tuple[int, ...] = opt((0,), "agent seeds per encoder")
    baselines: tuple[str, ...] = opt(("state", "random", "pixels"), "baseline encoders")
    evaluation: EvaluateConfig = opt(factory=lambda: EvaluateConfig(episodes=20),
                                     help="evaluation of every agent (sparseshift evaluate)")
    video: CollectConfig | None = opt(None, "video dataset for sequence learners (the NWM)")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EnvPlan:
        """As :meth:`Config.from_json`; the plan's ``env_id`` fills in the ``env_id`` of its
        ``data``, ``video`` and ``agent`` tables, and the agent's ``encoder`` defaults to
        ``learned``."""
        d = dict(data) if isinstance(data, Mapping) else data
        if isinstance(d, dict) and "env_id" in d:
            for key in ("data", "video", "agent"):
                if isinstance(d.get(key), Mapping):
                    d[key] = {"env_id": d["env_id"], **d[key]}
            if isinstance(d.get("agent"), Mapping):
                d["agent"] = {"encoder": LEARNED, **d["agent"]}
        return super().from_json(d)

    def validate(self) -> None:
        for name, cfg in (("data", self.data), ("video", self.video), ("agent", self.agent)):
            if cfg is not None and cfg.env_id != self.env_id:
                raise ConfigError(f"plan {self.env_id}: {name}.env_id is {cfg.env_id}")
        if self.video is not None and self.video.kind != "video":
            raise ConfigError(f"plan {self.env_id}: video.kind must be video")
        if self.agent.encoder != LEARNED:
            raise ConfigError(f"plan {self.env_id}: the agent template's encoder must be "
                              f"{LEARNED!r} (each learner's run is filled in)")
        if self.agent.encoder_weights is not None:
            raise ConfigError(f"plan {self.env_id}: the agent template takes no "
                              "encoder_weights (give them in an encoders entry)")
        for base in self.baselines:
            check_choice("baseline", base, BASELINES)
        if not self.agent_seeds:
            raise ConfigError(f"plan {self.env_id}: agent_seeds is empty")
        for cfg in (self.data, self.video):
            if cfg is not None and cfg.image_size != self.agent.image_size:
                raise ConfigError(f"plan {self.env_id}: the agents' image size "
                                  f"{self.agent.image_size} differs from the data's "
                                  f"{cfg.image_size}")
        check_plan_shifts(self.env_id, self.evaluation.shifts)
        labels = [lp.label for lp in self.learners] + [ep.label for ep in self.encoders]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"plan {self.env_id}: learner and encoder labels must be unique, "
                              f"got {labels}")
        taken = sorted(set(labels) & {*BASELINES, LEARNED})
        if taken:
            raise ConfigError(f"plan {self.env_id}: label {taken[0]!r} is a baseline's name; "
                              "give the encoder another label")


#: The keys of the ``study_config.json`` a study writes: its resolved config and the versions.
SAVED_STUDY_KEYS = frozenset({"study", "versions"})


@dataclass(frozen=True)
class StudyConfig(Config):
    """A whole study (a preset, or ``sparseshift study --config FILE``)."""

    name: str = opt(help="study name (the output goes to OUT/NAME)")
    envs: tuple[EnvPlan, ...] = opt(help="one plan per env")
    description: str = opt("", "what the study is for")
    metrics: EvalConfig = opt(factory=EvalConfig, help="representation metrics protocol")

    @classmethod
    def load(cls: type[C], path: str | Path, overrides: Mapping[str, Any] | None = None) -> C:
        """The study in a JSON or TOML file: a StudyConfig, or the ``study_config.json`` a study
        saved (``{"study": ..., "versions": ...}``; its ``study`` is the config, so a saved
        study reruns as it was)."""
        from sparseshift.envs.infra.io import read_document

        p = Path(path)
        if p.suffix == ".json" and p.is_file():
            data = read_document(p, "config file")
            if isinstance(data, Mapping) and set(data) == SAVED_STUDY_KEYS:
                try:
                    return cls.from_json({**dict(data["study"]), **dict(overrides or {})})
                except (ConfigError, TypeError) as exc:
                    raise ConfigError(f"config file {p} (a saved study, its 'study'): "
                                      f"{exc}") from None
        return super().load(path, overrides)

    def validate(self) -> None:
        check_name("the study name", self.name)
        if not self.envs:
            raise ConfigError("a study needs at least one env plan")
        if self.metrics.proxy:  # every env must render at least one of the proxy's shifts
            from sparseshift.representations.proxy import env_splits

            for plan in self.envs:
                try:
                    env_splits(plan.env_id, self.metrics.proxy_splits)
                except ConfigError as exc:
                    raise ConfigError(f"metrics.proxy_splits: {exc}") from None


def check_plan_shifts(env_id: str, shifts: tuple[str, ...]) -> None:
    """The evaluation shifts of a plan resolved against the shift registry and checked against
    ``env_id`` (names, severities, files, scene features): one :class:`ConfigError` line naming
    the plan otherwise."""
    from sparseshift.envs.registry import scene_offer
    from sparseshift.envs.shifts.registry import registry_for

    try:
        registry_for(shifts).resolve_all(shifts, scene_offer(env_id))
    except ConfigError as exc:
        raise ConfigError(f"plan {env_id}: evaluation shifts: {exc}") from None


# ---------------------------------------------------------------------------- builders


def vae_plans(steps: int, seeds: tuple[int, ...], betas: tuple[float, ...] = (4.0,),
              batch: int = 64) -> tuple[LearnerPlan, ...]:
    """Ada-GVAE and one beta-VAE per beta (Locatello et al. 2020; Higgins et al. 2017)."""
    def plan(learner: str, label: str, beta: float) -> LearnerPlan:
        return LearnerPlan(label, TrainConfig(learner=learner, model={"beta": beta}, steps=steps,
                                              batch=batch, progress=False), seeds)

    return (plan("ada_gvae", "ada_gvae", 1.0),
            *(plan("beta_vae", f"beta_vae_b{b:g}", b) for b in betas))


def env_plan(env_id: str, data: Mapping[str, Any], agent: Mapping[str, Any],
             learners: tuple[LearnerPlan, ...] = (), video: Mapping[str, Any] | None = None,
             **fields: Any) -> EnvPlan:
    """An :class:`EnvPlan` from option dicts (the agent template evaluates during training on
    a quarter of its budget and checkpoints once at the end unless set)."""
    steps = int(agent.get("steps", 100_000))
    agent = {"eval_every": max(steps // 4, 1), "eval_episodes": 5, "checkpoint_every": steps,
             **agent}
    return EnvPlan.from_json({"env_id": env_id, "data": dict(data), "agent": agent,
                              "learners": learners, "video": video, **fields})


#: The smoke preset's shifts: the grid's colour splits and three levels of sensor noise (cheap on
#: a grid: it exercises the report's robustness section).
SMOKE_SHIFTS: tuple[str, ...] = (*default_shifts("sparseshift/ColourGrid-v0"),
                                 "noise:1", "noise:3", "noise:5")

SMOKE = StudyConfig(
    name="smoke",
    description="ColourGrid only, tiny budgets, the state, random and sensors baselines: checks "
                "that every stage runs (~1 min on 2 cores).",
    envs=(
        env_plan(
            "sparseshift/ColourGrid-v0",
            data={"kind": "pairs", "n": 2000},
            learners=vae_plans(steps=150, seeds=(0,), batch=32),
            agent={"steps": 2048},
            baselines=("state", "random", "sensors"),
            evaluation={"shifts": SMOKE_SHIFTS, "episodes": 10, "seed": 1000},
        ),
    ),
    metrics=EvalConfig(num_train=1000, num_test=500, dci_estimators=10,
                       proxy_splits=SMOKE_SHIFTS),
)


def _all_learners(steps: int, batch: int = 64) -> tuple[LearnerPlan, ...]:
    """Every registered learner at one seed: the VAEs, Slot Attention (its defaults: lr 4e-4,
    batch 32, learned slot queries; a warm-up of a tenth of the steps instead of 10k) and the
    Neural Wave Machine (sequences of 8 frames)."""
    return (
        *vae_plans(steps=steps, seeds=(0,), batch=batch),
        LearnerPlan("ada_mlvae", TrainConfig(learner="ada_mlvae", model={"beta": 1.0},
                                             steps=steps, batch=batch, progress=False)),
        LearnerPlan("slot_attention", TrainConfig(
            learner="slot_attention", steps=steps, progress=False,
            lr_schedule=f"{max(steps // 10, 1)}:100000:0.5")),  # type: ignore[arg-type]
        LearnerPlan("nwm", TrainConfig(learner="nwm", steps=steps, batch=8, lr=2e-3, seq_len=8,
                                       progress=False)),
    )


def _object_reach_learners() -> tuple[LearnerPlan, ...]:
    """Six encoder runs for object reaching: weakly supervised (Ada-GVAE x2 seeds, Ada-ML-VAE;
    Locatello et al. 2020) and unsupervised (beta-VAE x2 seeds at the same beta, and beta 1;
    Higgins et al. 2017). 3500 steps of 64 images (32 pairs or 64 single frames) at learning rate
    1e-3 with the KL weight ramped up over the first 1000 steps; beta 0.1, because at beta 1 the
    fingers take the code and the cube is not encoded within this budget (cube x/y probe R2 about
    0.5; docs/study.md has the measurements). The beta 1 run is kept as that contrast."""
    def plan(learner: str, label: str, beta: float, seeds: tuple[int, ...]) -> LearnerPlan:
        batch = 32 if learner != "beta_vae" else 64  # 64 images per step either way
        return LearnerPlan(label, TrainConfig(learner=learner,
                                              model={"beta": beta, "kl_warmup": 1000},
                                              steps=3500, batch=batch, lr=1e-3, progress=False),
                           seeds)

    return (plan("ada_gvae", "ada_gvae_b0.1", 0.1, (0, 1)),
            plan("ada_mlvae", "ada_mlvae_b0.1", 0.1, (0,)),
            plan("beta_vae", "beta_vae_b0.1", 0.1, (0, 1)),
            plan("beta_vae", "beta_vae_b1", 1.0, (0,)))


OBJECT_REACH = "sparseshift/TriFingerObjectReach-v0"
#: The quick preset's graded sweeps: three levels of a scene nuisance (lighting) and a sensor one
#: (noise), each its own curve in the report's robustness section; with IN as severity 0 that is
#: four points per curve for 6 shifts more than the colour splits and ``real`` (docs/study.md
#: gives the cost).
QUICK_SWEEPS: tuple[str, ...] = ("lighting:1", "lighting:3", "lighting:5",
                                 "noise:1", "noise:3", "noise:5")
QUICK_SHIFTS: tuple[str, ...] = (*default_shifts(OBJECT_REACH), *QUICK_SWEEPS)

QUICK = StudyConfig(
    name="quick",
    description=(
        "TriFingerObjectReach from pixels (Träuble et al. 2022's object reaching): six frozen "
        "encoders (Ada-GVAE x2, Ada-ML-VAE, beta-VAE beta 0.1 x2 and beta 1) trained on "
        "single-factor intervention pairs, 3 agent seeds each, against the floors random (each "
        "init probed) and sensors and the references state and pixels (3 agent seeds each); "
        "agents on IN colours, evaluated on IN, OOD1, OOD2, real and lighting and noise at levels "
        "1, 3 and 5 (robustness curves); the OOD proxy task on the same shifts against the "
        "agents."
    ),
    envs=(
        env_plan(
            OBJECT_REACH,
            # k = 1: one factor group per pair. With k = -1 the Ada-GVAE threshold is dominated by
            # the finger's confident dims and the cube is averaged away (docs/study.md).
            data={"kind": "pairs", "n": 10_000, "k": 1},
            learners=_object_reach_learners(),
            agent={"steps": 100_000},
            agent_seeds=(0, 1, 2),
            baselines=("state", "random", "sensors", "pixels"),
            evaluation={"shifts": QUICK_SHIFTS, "episodes": 40, "seed": 1000, "video": 1},
        ),
    ),
    metrics=EvalConfig(num_train=4000, num_test=2000, dci_estimators=20, max_code_dims=64,
                       factor_vae="grouping", proxy_splits=QUICK_SHIFTS),
)

#: The full preset's graded sweeps (every level): TriFinger's scene and lens nuisances, the grid's
#: sensor ones. The proxy task renders the union; each env keeps the ones it supports.
FULL_TRIFINGER_SWEEPS: tuple[str, ...] = ("lighting:1-5", "noise:1-5", "distortion:1-5")
FULL_GRID_SWEEPS: tuple[str, ...] = ("noise:1-5", "blur:1-5")

FULL = StudyConfig(
    name="full",
    description=(
        "The shape of Träuble et al. 2022 for a cluster (--ray ADDRESS): object reaching, both "
        "other TriFinger tasks and ColourGrid; beta-VAE betas {1, 2, 4, 8}, Ada-GVAE and "
        "Ada-ML-VAE, 5 encoder seeds, 5 agent seeds per encoder; ColourGrid also with Slot "
        "Attention and the Neural Wave Machine (its agents on 300-step encoders did not beat the "
        "random encoder, so it left the quick preset); agents evaluated on the colour splits, "
        "real (TriFinger) and every level of lighting, noise and distortion (TriFinger) or noise "
        "and blur (ColourGrid)."
    ),
    envs=(
        *(env_plan(
            env_id,
            data={"kind": "pairs", "n": 200_000},
            learners=(
                *vae_plans(steps=300_000, seeds=(0, 1, 2, 3, 4), betas=(1.0, 2.0, 4.0, 8.0)),
                LearnerPlan("ada_mlvae", TrainConfig(learner="ada_mlvae", model={"beta": 1.0},
                                                     steps=300_000, progress=False),
                            (0, 1, 2, 3, 4)),
            ),
            agent={"steps": agent_steps},
            agent_seeds=(0, 1, 2, 3, 4),
            evaluation={"shifts": (*default_shifts(env_id), *FULL_TRIFINGER_SWEEPS),
                        "episodes": 100, "seed": 1000},
        )
            for env_id, agent_steps in (
                (OBJECT_REACH, 1_000_000),
                ("sparseshift/TriFingerReach-v0", 1_000_000),
                ("sparseshift/TriFingerPush-v0", 3_000_000),
            )),
        env_plan(
            "sparseshift/ColourGrid-v0",
            data={"kind": "pairs", "n": 200_000},
            video={"kind": "video", "n": 100_000},
            learners=(*vae_plans(steps=300_000, seeds=(0, 1, 2, 3, 4),
                                 betas=(1.0, 2.0, 4.0, 8.0)),
                      *_all_learners(steps=300_000)[-3:]),
            agent={"steps": 300_000},
            agent_seeds=(0, 1, 2, 3, 4),
            evaluation={"shifts": (*default_shifts("sparseshift/ColourGrid-v0"),
                                   *FULL_GRID_SWEEPS), "episodes": 100, "seed": 1000},
        ),
    ),
    metrics=EvalConfig(proxy_splits=tuple(dict.fromkeys(
        (*default_shifts(OBJECT_REACH), *FULL_TRIFINGER_SWEEPS, *FULL_GRID_SWEEPS)))),
)

# ---------------------------------------------------------------------------- the sweep
# The sweep preset gives the proxy question of Träuble, Dittadi et al. (ICLR 2022) power: does an
# encoder's OOD proxy score (or its disentanglement) predict how its agents generalise? They used
# 240 encoders and over 10,000 policies; six encoders of similar quality give rank correlations
# with intervals about 1.8 wide. This preset trains 24 encoder runs on TriFingerObjectReach, spread
# from near-random to the quick preset's recipe: three learners (Ada-GVAE and Ada-ML-VAE, Locatello
# et al. 2020; beta-VAE, Higgins et al. 2017) x two KL weights (0.1, 1) x four training lengths
# (100 to 3000 steps of 64 images), one seed each. Each encoder gets two agents of 20k PPO steps
# (the demo's learned agent passes 90% IN success by 25k steps); the random (init probed) and
# sensors floors get two each. Agents are evaluated on IN, OOD1, OOD2 and real at levels 1, 3 and
# 5 (25 episodes per shift); the proxy task renders the same shifts. The report's power section
# gives Spearman's rho of the task proxy and of each disentanglement metric against agent success
# per shift, with intervals, next to the interval width expected under the null at this n.

#: Training lengths (steps of 64 images) and KL weights crossed with the three learners.
SWEEP_STEPS: tuple[int, ...] = (100, 400, 1200, 3000)
SWEEP_BETAS: tuple[float, ...] = (0.1, 1.0)
SWEEP_LEARNERS: tuple[str, ...] = ("ada_gvae", "ada_mlvae", "beta_vae")
SWEEP_SHIFTS: tuple[str, ...] = (*default_shifts(OBJECT_REACH), "real:1", "real:5")


def sweep_learners(steps: tuple[int, ...] = SWEEP_STEPS, betas: tuple[float, ...] = SWEEP_BETAS,
                   learners: tuple[str, ...] = SWEEP_LEARNERS) -> tuple[LearnerPlan, ...]:
    """One plan per (learner, beta, steps), seed 0; the KL weight ramps up over the first
    third of the steps (at most 1000, the quick recipe's warm-up)."""
    out = []
    for learner in learners:
        batch = 64 if learner == "beta_vae" else 32  # 64 images per step either way
        for beta in betas:
            for n in steps:
                out.append(LearnerPlan(
                    f"{learner}_b{beta:g}_s{n}",
                    TrainConfig(learner=learner, model={"beta": beta,
                                                        "kl_warmup": min(1000, n // 3)},
                                steps=n, batch=batch, lr=1e-3, progress=False),
                    (0,)))
    return tuple(out)


SWEEP = StudyConfig(
    name="sweep",
    description=(
        "TriFingerObjectReach: 24 encoder runs spread from near-random to the quick recipe "
        "(Ada-GVAE, Ada-ML-VAE, beta-VAE x beta 0.1, 1 x 100-3000 steps), 2 agents each and the "
        "random and sensors floors; agents evaluated on IN, OOD1, OOD2 and real at levels 1, 3, "
        "5; the proxy task on the same shifts. Answers whether proxy score and disentanglement "
        "rank agents' OOD success (Träuble et al. 2022) with intervals narrow enough to mean "
        "something."
    ),
    envs=(
        env_plan(
            OBJECT_REACH,
            data={"kind": "pairs", "n": 10_000, "k": 1},
            learners=sweep_learners(),
            agent={"steps": 20_000},
            agent_seeds=(0, 1),
            baselines=("random", "sensors"),
            evaluation={"shifts": SWEEP_SHIFTS, "episodes": 25, "seed": 1000},
        ),
    ),
    metrics=EvalConfig(num_train=2000, num_test=1000, dci_estimators=20, max_code_dims=64,
                       factor_vae="grouping", proxy_splits=SWEEP_SHIFTS),
)


PRESETS: dict[str, StudyConfig] = {p.name: p for p in (SMOKE, QUICK, SWEEP, FULL)}


def get_preset(name: str) -> StudyConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise choice_error("preset", name, PRESETS) from None
