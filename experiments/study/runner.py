"""Build a study's task graph from a preset and run it (in process or on Ray).

Task graph per env (see :mod:`sparseshift.experiments.study.presets`)::

    collect ─┬─ rep(learner, seed) ─┬─ eval_rep
             │                      └─ agent(seed) ── eval_agent
             └─ (baselines: agent(state | pixels | random, seed) ── eval_agent)

Artifacts live in ``OUT/artifacts/<stage>/<key>``; rerunning skips finished stages and an
interrupted study resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseshift.envs.errors import ConfigError
from sparseshift.envs.io import output_dir, output_lock, package_versions, write_json_atomic
from sparseshift.experiments.study.graph import ProgressPrinter, Task, run_local, run_ray
from sparseshift.experiments.study.presets import LEARNED, EnvPlan, StudyConfig
from sparseshift.experiments.study.stages import VIDEO
from sparseshift.representations.config import ProxyConfig

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


def _needs_video(learner: str) -> bool:
    """Whether a learner trains on sequences (the Neural Wave Machine): video, not pairs."""
    from sparseshift.representations.registry import learner_class

    return learner_class(learner).batch_kind == "sequences"


def build(study: StudyConfig, device: str | None = None) -> list[RunRef]:
    """The study's runs, each with the tasks it needs (shared tasks are deduplicated by key).
    ``device`` places the torch stages (representation training and evaluation, agents' frozen
    encoders) on that device; collection and proxy rendering stay on the CPU."""
    runtime = {} if device is None else {"device": device}
    runs: list[RunRef] = []
    for plan in study.envs:
        collect = Task("collect", f"{STAGES}:collect_stage", plan.data, label=plan.env_id)
        proxy = None
        if study.metrics.proxy:
            proxy = Task("proxy_data", f"{STAGES}:proxy_data_stage",
                         ProxyConfig.of(study.metrics), deps=(collect,), label=plan.env_id)
        video = None
        if plan.video is not None:
            video = Task("collect", f"{STAGES}:collect_stage", plan.video,
                         label=plan.env_id + VIDEO)

        def agent_eval(encoder: str, kind: str, enc_seed: int | None, deps: tuple[Task, ...],
                       eval_rep: Task | None, rep: Task | None, label: str,
                       plan: EnvPlan = plan) -> None:
            for agent_seed in plan.agent_seeds:
                agent = Task("agent", f"{STAGES}:train_agent_stage",
                             plan.agent.replace(encoder=encoder, seed=agent_seed), deps=deps,
                             label=f"{label}/s{agent_seed}", runtime=runtime)
                ev = Task("eval_agent", f"{STAGES}:eval_agent_stage", plan.evaluation,
                          deps=(agent,), label=agent.label)
                runs.append(RunRef(plan.env_id, label, kind, enc_seed, agent_seed, ev, eval_rep,
                                   rep))

        for lp in plan.learners:
            for seed in lp.seeds:
                data = collect
                if _needs_video(lp.train.learner):
                    if video is None:
                        raise ConfigError(f"{lp.train.learner} trains on sequences: give the "
                                          f"{plan.env_id} plan a video dataset")
                    data = video
                rep = Task("rep", f"{STAGES}:train_rep_stage",
                           lp.train.replace(seed=seed, progress=False), deps=(data,),
                           label=f"{lp.label}/s{seed}", runtime=runtime)
                # Sequence learners also get their video: the wave and forecast analysis.
                deps = (collect, rep) if data is collect else (collect, rep, data)
                erep = Task("eval_rep", f"{STAGES}:eval_rep_stage", study.metrics,
                            deps=deps if proxy is None else (*deps, proxy), label=rep.label,
                            runtime=runtime)
                agent_eval(LEARNED, "learned", seed, (rep,), erep, rep, lp.label)
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


#: Version of the artifact layout (2: config objects hashed by their full JSON, results naming
#: files relative to their artifact folder). Earlier layouts cannot be reused.
ARTIFACT_FORMAT = 2
FORMAT_FILE = "FORMAT.json"


def check_artifact_format(root: Path) -> None:
    """Refuse an artifact folder of another layout version (one line); stamp a new one."""
    stamp = root / FORMAT_FILE
    if stamp.is_file():
        try:
            version = json.loads(stamp.read_text()).get("format_version")
        except (json.JSONDecodeError, AttributeError):
            raise ConfigError(f"{stamp} is not valid JSON; use a new --out") from None
        if version != ARTIFACT_FORMAT:
            raise ConfigError(f"{root} holds study artifacts of format {version}; this "
                              f"sparseshift reads format {ARTIFACT_FORMAT}: use a new --out")
        return
    if root.is_dir() and any(root.iterdir()):
        raise ConfigError(f"{root} holds study artifacts of format 1 (sparseshift 0.1 before the "
                          f"sparseshift.* namespace); this sparseshift reads format "
                          f"{ARTIFACT_FORMAT}: use a new --out")
    write_json_atomic(stamp, {"format": "sparseshift-study-artifacts",
                              "format_version": ARTIFACT_FORMAT})


def run_study(preset: StudyConfig, out: Path, ray: str | bool = False, jobs: int = 1,
              device: str | None = None
              ) -> tuple[list[RunRef], dict[str, dict[str, Any]], float]:
    """Run (or resume) a study; returns its runs, the results by task key and the wall time.
    ``device`` places the torch stages (see :func:`build`); None leaves each config's own."""
    runs = build(preset, device)
    out = output_dir(out, "study_config.json")
    with output_lock(out):
        return _run(preset, runs, out, ray, jobs)


def _run(preset: StudyConfig, runs: list[RunRef], out: Path, ray: str | bool, jobs: int
         ) -> tuple[list[RunRef], dict[str, dict[str, Any]], float]:
    root = out / "artifacts"
    check_artifact_format(root)
    write_json_atomic(out / "study_config.json", {"study": preset.to_json(),
                                                  "versions": package_versions()})
    t0 = time.perf_counter()

    progress = ProgressPrinter(targets(runs), jobs=jobs if ray is False else 1)
    if ray is False:
        results = run_local(targets(runs), root, progress, jobs=jobs)
    else:
        results = run_ray(targets(runs), root, ray if isinstance(ray, str) else None, progress)
    return runs, results, time.perf_counter() - t0
