"""Build a study's task graph from a preset and run it (in process or on Ray).

Task graph per env (see :mod:`sparseshift.experiments.study.presets`)::

    collect ─┬─ rep(learner, seed) ─┬─ eval_rep
             │                      └─ agent(seed) ── eval_agent
             └─ (baselines: agent(state | pixels | random, seed) ── eval_agent)

Artifacts live in ``OUT/artifacts/<stage>/<key>``; rerunning skips finished stages and an
interrupted study resumes where it stopped.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseshift.envs.errors import ConfigError
from sparseshift.experiments.study.graph import Task, run_local, run_ray
from sparseshift.experiments.study.presets import EnvPlan, StudyPreset
from sparseshift.experiments.study.stages import VIDEO

STAGES = "sparseshift.experiments.study.stages"


@dataclass(frozen=True)
class RunRef:
    """How one evaluated agent came about: the rows of the results table hang off this."""

    env_id: str
    encoder: str  # learner label or baseline name
    kind: str  # "learned" or "baseline"
    encoder_seed: int | None
    agent_seed: int
    eval_task: Task
    eval_rep_task: Task | None
    rep_task: Task | None


def _agent_config(plan: EnvPlan, encoder: str, seed: int) -> dict[str, Any]:
    return {
        "env_id": plan.env_id,
        "encoder": encoder,
        "algo": plan.algo,
        "steps": plan.agent_steps,
        "seed": seed,
        "colours": "in",
        "hyperparams": [list(x) for x in plan.agent_hyperparams],
        "eval_every": max(plan.agent_steps // 4, 1),
        "eval_episodes": 5,
        "checkpoint_every": plan.agent_steps,
    }


def _needs_video(learner: str) -> bool:
    """Whether a learner trains on sequences (the Neural Wave Machine): video, not pairs."""
    from sparseshift.representations.registry import learner_class

    return learner_class(learner).batch_kind == "sequences"


def build(preset: StudyPreset) -> list[RunRef]:
    """The study's runs, each with the tasks it needs (shared tasks are deduplicated by key)."""
    runs: list[RunRef] = []
    metric_cfg = {"num_train": preset.metrics.num_train, "num_test": preset.metrics.num_test,
                  "dci_estimators": preset.metrics.dci_estimators, "seed": preset.seed}
    if preset.metrics.max_code_dims is not None:  # absent keeps earlier artifacts' keys valid
        metric_cfg["max_code_dims"] = preset.metrics.max_code_dims
    for plan in preset.envs:
        collect = Task("collect", f"{STAGES}:collect_stage", {
            "env_id": plan.env_id, "kind": plan.data_kind, "n": plan.data_n,
            "seed": preset.seed, "colours": "in+ood1", "policy": plan.data_policy,
        }, label=plan.env_id)
        video = None
        if plan.video_n > 0:
            video = Task("collect", f"{STAGES}:collect_stage", {
                "env_id": plan.env_id, "kind": "video", "n": plan.video_n,
                "seed": preset.seed, "colours": "in+ood1", "policy": plan.data_policy,
            }, label=plan.env_id + VIDEO)
        eval_cfg = {"shifts": list(plan.shifts), "episodes": plan.eval_episodes,
                    "seed": preset.seed + 1000}

        def agent_eval(encoder: str, kind: str, enc_seed: int | None, deps: tuple[Task, ...],
                       eval_rep: Task | None, rep: Task | None, label: str,
                       plan: EnvPlan = plan, eval_cfg: dict[str, Any] = eval_cfg) -> None:
            for agent_seed in plan.agent_seeds:
                agent = Task("agent", f"{STAGES}:train_agent_stage",
                             _agent_config(plan, encoder, agent_seed), deps=deps,
                             label=f"{label}/s{agent_seed}")
                ev = Task("eval_agent", f"{STAGES}:eval_agent_stage", eval_cfg, deps=(agent,),
                          label=agent.label)
                runs.append(RunRef(plan.env_id, label, kind, enc_seed, agent_seed, ev, eval_rep,
                                   rep))

        for lp in plan.learners:
            for seed in lp.seeds:
                rep_cfg: dict[str, Any] = {
                    "learner": lp.learner, "model": dict(lp.model), "steps": lp.steps,
                    "seed": seed, "batch": lp.batch, "lr": lp.lr, "pairs": lp.pairs,
                    "gap": lp.gap, "seq_len": lp.seq_len,
                }
                if lp.lr_schedule is not None:  # absent keeps earlier artifacts' keys valid
                    rep_cfg["lr_schedule"] = lp.lr_schedule
                data = collect
                if _needs_video(lp.learner):
                    if video is None:
                        raise ConfigError(f"{lp.learner} trains on sequences: set video_n > 0 in "
                                          f"the {plan.env_id} plan")
                    data = video
                rep = Task("rep", f"{STAGES}:train_rep_stage", rep_cfg, deps=(data,),
                           label=f"{lp.label}/s{seed}")
                # Sequence learners also get their video: the wave and forecast analysis.
                erep = Task("eval_rep", f"{STAGES}:eval_rep_stage", metric_cfg,
                            deps=(collect, rep) if data is collect else (collect, rep, data),
                            label=rep.label)
                agent_eval("learned", "learned", seed, (rep,), erep, rep, lp.label)
        for base in plan.baselines:
            agent_eval(base, "baseline", None, (), None, None, base)
    return runs


def targets(runs: list[RunRef]) -> list[Task]:
    out: list[Task] = []
    for r in runs:
        out.append(r.eval_task)
        if r.eval_rep_task is not None:
            out.append(r.eval_rep_task)
    return out


def run_study(preset: StudyPreset, out: Path, ray: str | bool = False, jobs: int = 1
              ) -> tuple[list[RunRef], dict[str, dict[str, Any]], float]:
    """Run (or resume) a study; returns its runs, the results by task key and the wall time."""
    runs = build(preset)
    root = out / "artifacts"
    t0 = time.perf_counter()

    def progress(task: Task, i: int, n: int, cached: bool) -> None:
        state = "done, skipped" if cached else "running"
        print(f"[{i + 1}/{n}] {task.stage:<10} {task.label:<40} {state}", file=sys.stderr,
              flush=True)

    if ray is False:
        results = run_local(targets(runs), root, progress, jobs=jobs)
    else:
        results = run_ray(targets(runs), root, ray if isinstance(ray, str) else None, progress)
    return runs, results, time.perf_counter() - t0
