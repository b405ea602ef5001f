"""Study presets: typed, frozen descriptions of what a study trains and evaluates.

A study follows the shape of Träuble, Dittadi et al. (ICLR 2022): per env, collect a weakly
supervised dataset on the IN+OOD1 colours, train several representation learners (and seeds) on
it, train agents on the frozen encoders with IN colours only (several agent seeds each), plus the
``state`` (oracle), ``pixels`` (end-to-end CNN) and ``random`` (untrained frozen encoder)
baselines, and evaluate every agent on IN, OOD1, OOD2 and, for TriFinger, the ``real`` shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sparseshift.envs.errors import choice_error


@dataclass(frozen=True)
class LearnerPlan:
    """One representation learner configuration, trained once per seed."""

    learner: str
    label: str
    steps: int
    seeds: tuple[int, ...] = (0,)
    model: tuple[tuple[str, Any], ...] = ()
    batch: int = 64
    lr: float = 1e-4
    pairs: str | None = None
    gap: int = 1
    seq_len: int = 8
    #: ``TrainConfig.lr_schedule`` (``"W:D:R"`` or ``"constant"``); None: the learner's default.
    lr_schedule: str | None = None


@dataclass(frozen=True)
class EnvPlan:
    """Everything a study does on one env."""

    env_id: str
    data_kind: str  # "pairs" or "video"
    data_n: int
    learners: tuple[LearnerPlan, ...]
    agent_steps: int
    agent_seeds: tuple[int, ...] = (0,)
    baselines: tuple[str, ...] = ("state", "random", "pixels")
    algo: str = "ppo"
    shifts: tuple[str, ...] = ("in", "ood1", "ood2")
    eval_episodes: int = 20
    data_policy: str = "random"
    video_n: int = 0  # video dataset for sequence learners (the NWM); 0: none
    agent_hyperparams: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class EvalPlan:
    """Representation-metric protocol sizes (disentanglement_lib uses 10,000 / 5,000)."""

    num_train: int = 10_000
    num_test: int = 5_000
    dci_estimators: int = 30
    #: Skip per-dimension metrics for codes wider than this (the NWM's 512-dim sheet): DCI's
    #: boosted trees took minutes there. None: compute them for every code.
    max_code_dims: int | None = None


@dataclass(frozen=True)
class StudyPreset:
    name: str
    description: str
    envs: tuple[EnvPlan, ...]
    metrics: EvalPlan = field(default_factory=EvalPlan)
    seed: int = 0


def _vaes(steps: int, seeds: tuple[int, ...], betas: tuple[float, ...] = (4.0,),
          batch: int = 64) -> tuple[LearnerPlan, ...]:
    plans = [LearnerPlan("ada_gvae", "ada_gvae", steps, seeds, (("beta", 1.0),), batch)]
    plans += [LearnerPlan("beta_vae", f"beta_vae_b{b:g}", steps, seeds, (("beta", b),), batch)
              for b in betas]
    return tuple(plans)


SMOKE = StudyPreset(
    name="smoke",
    description="ColourGrid only, tiny budgets: checks that every stage runs (~1 min on 2 cores).",
    envs=(
        EnvPlan(
            env_id="sparseshift/ColourGrid-v0",
            data_kind="pairs",
            data_n=2000,
            learners=_vaes(steps=150, seeds=(0,), batch=32),
            agent_steps=2048,
            agent_seeds=(0,),
            baselines=("state", "random"),
            eval_episodes=10,
        ),
    ),
    metrics=EvalPlan(num_train=1000, num_test=500, dci_estimators=10),
)

def _all_learners(steps: int, batch: int = 64) -> tuple[LearnerPlan, ...]:
    """Every registered learner at one seed: the VAEs, Slot Attention (reference lr 4e-4 with a
    short warm-up instead of 10k steps) and the Neural Wave Machine (sequences of 8 frames)."""
    return (
        *_vaes(steps=steps, seeds=(0,), batch=batch),
        LearnerPlan("ada_mlvae", "ada_mlvae", steps, (0,), (("beta", 1.0),), batch),
        LearnerPlan("slot_attention", "slot_attention", steps, (0,), (), batch=32, lr=4e-4,
                    lr_schedule=f"{max(steps // 10, 1)}:100000:0.5"),
        LearnerPlan("nwm", "nwm", steps, (0,), (), batch=8, lr=2e-3, seq_len=8),
    )


QUICK = StudyPreset(
    name="quick",
    description=(
        "ColourGrid with every registered learner and TriFingerReach with Ada-GVAE and beta-VAE, "
        "one seed each; agent budgets that let the state oracle learn (~15 min on 2 cores)."
    ),
    envs=(
        EnvPlan(
            env_id="sparseshift/ColourGrid-v0",
            data_kind="pairs",
            data_n=10_000,
            video_n=5_000,
            learners=_all_learners(steps=300),
            agent_steps=50_000,
            agent_seeds=(0,),
            baselines=("state", "random", "pixels"),
            eval_episodes=30,
        ),
        EnvPlan(
            env_id="sparseshift/TriFingerReach-v0",
            data_kind="pairs",
            data_n=4000,
            learners=_vaes(steps=300, seeds=(0,)),
            agent_steps=60_000,
            agent_seeds=(0,),
            baselines=("state", "random"),
            shifts=("in", "ood1", "ood2", "real"),
            eval_episodes=20,
        ),
    ),
    metrics=EvalPlan(num_train=4000, num_test=2000, dci_estimators=20, max_code_dims=64),
)

FULL = StudyPreset(
    name="full",
    description=(
        "The shape of Träuble et al. 2022 for a cluster (--ray ADDRESS): both TriFinger tasks and "
        "ColourGrid, beta-VAE betas {1, 2, 4, 8} and Ada-GVAE/Ada-ML-VAE, 5 encoder seeds, "
        "5 agent seeds per encoder."
    ),
    envs=tuple(
        EnvPlan(
            env_id=env_id,
            data_kind="pairs",
            data_n=200_000,
            learners=(
                *_vaes(steps=300_000, seeds=(0, 1, 2, 3, 4), betas=(1.0, 2.0, 4.0, 8.0)),
                LearnerPlan("ada_mlvae", "ada_mlvae", 300_000, (0, 1, 2, 3, 4), (("beta", 1.0),)),
            ),
            agent_steps=agent_steps,
            agent_seeds=(0, 1, 2, 3, 4),
            shifts=shifts,
            eval_episodes=100,
        )
        for env_id, agent_steps, shifts in (
            ("sparseshift/TriFingerReach-v0", 1_000_000, ("in", "ood1", "ood2", "real")),
            ("sparseshift/TriFingerPush-v0", 3_000_000, ("in", "ood1", "ood2", "real")),
            ("sparseshift/ColourGrid-v0", 300_000, ("in", "ood1", "ood2")),
        )
    ),
)

PRESETS: dict[str, StudyPreset] = {p.name: p for p in (SMOKE, QUICK, FULL)}


def get_preset(name: str) -> StudyPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise choice_error("preset", name, PRESETS) from None
