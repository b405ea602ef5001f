"""Build a study's task graph from a preset and run it (in process or on Ray).

Task graph per env (see :mod:`sparseshift.experiments.study.presets`)::

    collect ─┬─ rep(learner, seed) ─┬─ eval_rep
             │                      └─ agent(seed) ── eval_agent
             ├─ proxy_data ─┬─ probe(your encoder)        (when the study computes the proxy)
             │              └─ probe(random, init seed = agent seed)
             ├─ (your encoders: encoder(fingerprint) ── agent(seed) ── eval_agent)
             └─ (baselines: agent(state | pixels | random | sensors, seed) ── eval_agent)

Your own encoders (:class:`~sparseshift.experiments.study.presets.EncoderPlan`) are resolved
once, when the graph is built: a bad spec, a module that does not import or weights that do not
fit is a one-line :class:`~sparseshift.envs.infra.errors.ConfigError` before any stage runs. Their
agents
depend on an ``encoder`` task whose config holds the encoder's fingerprint (factory, spec and the
content digest of its weights), so changed weights give new artifact keys, never a stale reuse.

Shift files (``.toml``/``.json`` user shifts) named by a plan's evaluation shifts or the proxy's
shifts are read once when the graph is built: the tasks that use them depend on a ``shift_files``
task whose config holds each file's SHA-256, so an edited file gives new artifact keys, never a
stale reuse (and a file edited while the study runs is a one-line error).

Artifacts live in ``OUT/artifacts/<stage>/<key>``; rerunning skips finished stages and an
interrupted study resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sparseshift.envs.infra.config import Config, opt
from sparseshift.envs.infra.errors import ConfigError, safe_repr
from sparseshift.envs.infra.io import (
    output_dir,
    output_lock,
    package_versions,
    read_json,
    write_json_atomic,
)
from sparseshift.experiments.study.graph import ProgressPrinter, Task, run_local, run_ray
from sparseshift.experiments.study.presets import LEARNED, EnvPlan, StudyConfig
from sparseshift.experiments.study.scorecard import ProbeConfig, probe_stage
from sparseshift.experiments.study.stages import (
    VIDEO,
    collect_stage,
    eval_agent_stage,
    eval_rep_stage,
    proxy_data_stage,
    train_agent_stage,
    train_rep_stage,
)
from sparseshift.representations.config import ProxyConfig


@dataclass(frozen=True)
class RunRef:
    """How one evaluated agent came about: the rows of the results table hang off this."""

    env_id: str
    encoder: str  # learner or encoder plan label, or baseline name
    kind: str  # "learned" (a learner's run or your own encoder) or "baseline"
    encoder_seed: int | None  # a learner's seed; None for your encoders and the baselines
    agent_seed: int
    eval_task: Task
    eval_rep_task: Task | None
    rep_task: Task | None
    #: Proxy-task probes of this run's frozen encoder: your encoder's, or the random baseline's
    #: initialisation for this agent seed (None without the proxy, or for other runs).
    probe_task: Task | None = None
    #: Your encoder's spec and fingerprint (None for learners and baselines).
    encoder_spec: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class EncoderRef(Config):
    """Your encoder as the study resolved it: the config of its ``encoder`` task, whose key (and
    so the keys of its agents) follows the fingerprint."""

    config_name: ClassVar[str] = "encoder"

    encoder: str = opt(help="encoder spec (a folder by its absolute path)")
    fingerprint: str = opt(help="fingerprint of the encoder when the study was built")
    encoder_weights: str | None = opt(None, "absolute path of its safetensors weights")
    image_size: int = opt(64, "image size of the env", min=8, max=512)


def encoder_stage(config: EncoderRef, inputs: Mapping[str, dict[str, Any]], out: Path,
                  runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check that your encoder is still the one the study was built with (its agents hang off
    this task, so their keys follow its fingerprint)."""
    from sparseshift.agents.encoders import load_encoder
    from sparseshift.experiments.study.stages import plugins_of

    enc = load_encoder(config.encoder, config.image_size, 0, plugins=plugins_of(runtime),
                       weights=config.encoder_weights)
    if enc.fingerprint != config.fingerprint:
        raise ConfigError(f"encoder {config.encoder!r} changed while the study ran (fingerprint "
                          f"{str(enc.fingerprint)[:12]} != {config.fingerprint[:12]}); rerun "
                          "the study")
    return {"fingerprint": enc.fingerprint, "description": enc.description}


@dataclass(frozen=True)
class ShiftFilesRef(Config):
    """The shift files a shift list names, with the SHA-256 of each when the study was built:
    the config of a ``shift_files`` task, so the keys of the tasks that read them follow their
    content."""

    config_name: ClassVar[str] = "shift_files"

    files: tuple[str, ...] = opt((), "shift files as the shift list names them")
    digests: tuple[str, ...] = opt((), "SHA-256 of each file's text, in the same order")


def shift_files(shifts: Iterable[str] | None) -> ShiftFilesRef | None:
    """The files among ``shifts`` (the list syntax) with their digests (None: no files)."""
    from sparseshift.envs.shifts.registry import default_registry
    from sparseshift.envs.shifts.severity import parse_requests

    if shifts is None:
        return None
    files = sorted({r.name for r in parse_requests(list(shifts))
                    if r.name.lower().endswith((".toml", ".json"))})
    if not files:
        return None
    reg = default_registry()
    return ShiftFilesRef(tuple(files), tuple(reg.load_file(f).digest for f in files))


def shift_files_stage(config: ShiftFilesRef, inputs: Mapping[str, dict[str, Any]], out: Path
                      ) -> dict[str, Any]:
    """Check that every shift file still has the digest the study was built with."""
    ref = shift_files(config.files)
    now = () if ref is None else ref.digests
    for f, was, is_ in zip(config.files, config.digests, now, strict=True):
        if was != is_:
            raise ConfigError(f"shift file {f} changed while the study ran (sha256 {is_[:12]} "
                              f"!= {was[:12]}); rerun the study")
    return {"digests": dict(zip(config.files, config.digests, strict=True))}


def _files_task(shifts: Iterable[str] | None, label: str) -> tuple[Task, ...]:
    """The ``shift_files`` dependency of a task whose shift list names files (else none)."""
    ref = shift_files(shifts)
    return () if ref is None else (Task("shift_files", shift_files_stage, ref,
                                        label=label),)


def config_modules(study: StudyConfig) -> set[str]:
    """The modules of the ``package.module:factory`` encoders the study config names (named by
    the user, so allowed)."""
    from sparseshift.representations.plugins import is_code_spec

    return {ep.encoder.partition(":")[0] for plan in study.envs for ep in plan.encoders
            if is_code_spec(ep.encoder)}


def resolve_encoders(study: StudyConfig, plugins: Iterable[str]
                     ) -> dict[tuple[int, str], EncoderRef]:
    """Every encoder plan of the study resolved once, by (plan index, label): a bad spec, a
    module that does not import or weights that do not fit is a one-line ConfigError now."""
    from sparseshift.agents.encoders import load_encoder
    from sparseshift.representations.plugins import Plugins

    allowed = Plugins.of(*plugins)
    seen: dict[tuple[str, str | None, int], EncoderRef] = {}
    out: dict[tuple[int, str], EncoderRef] = {}
    for i, plan in enumerate(study.envs):
        size = plan.agent.image_size
        for ep in plan.encoders:
            # files by absolute path: every stage process finds them whatever its folder
            weights = (None if ep.encoder_weights is None
                       else str(Path(ep.encoder_weights).expanduser().resolve()))
            folder = Path(ep.encoder).expanduser()
            spec = str(folder.resolve()) if folder.is_dir() else ep.encoder
            memo = (spec, weights, size)
            if memo not in seen:
                where = f"study {study.name}, {plan.env_id}, encoder {ep.label!r}"
                try:
                    enc = load_encoder(spec, size, 0, plugins=allowed, weights=weights)
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
                if enc.learner is None or enc.fingerprint is None:
                    raise ConfigError(f"{where}: {ep.encoder!r} is no frozen encoder")
                seen[memo] = EncoderRef(encoder=spec, fingerprint=enc.fingerprint,
                                        encoder_weights=weights, image_size=size)
            out[(i, ep.label)] = seen[memo]
    return out


def _needs_video(learner: str) -> bool:
    """Whether a learner trains on sequences (the Neural Wave Machine): video, not pairs."""
    from sparseshift.representations.registry import learner_class

    return learner_class(learner).batch_kind == "sequences"


def build(study: StudyConfig, device: str | None = None, plugins: Iterable[str] = ()
          ) -> list[RunRef]:
    """The study's runs, each with the tasks it needs (shared tasks are deduplicated by key).
    ``device`` places the torch stages (representation training and evaluation, agents' frozen
    encoders) on that device; collection and proxy rendering stay on the CPU. ``plugins`` are the
    modules the user allowed (``--plugin``); the modules of ``package.module:factory`` encoders
    in the study config are allowed too, and every stage that loads an encoder gets them all
    (``runtime["plugins"]``). Your encoders are resolved here, once (:func:`resolve_encoders`)."""
    modules = tuple(sorted({*plugins, *config_modules(study)}))
    refs = resolve_encoders(study, modules)
    runtime: dict[str, Any] = {"plugins": modules}
    if device is not None:
        runtime["device"] = device
    runs: list[RunRef] = []
    for index, plan in enumerate(study.envs):
        collect = Task("collect", collect_stage, plan.data, label=plan.env_id)
        proxy = None
        if study.metrics.proxy:
            proxy = Task("proxy_data", proxy_data_stage,
                         ProxyConfig.of(study.metrics),
                         deps=(collect, *_files_task(study.metrics.proxy_splits, "proxy")),
                         label=plan.env_id)
        # the agent task stays the first dependency of an evaluation (the report reads it)
        eval_files = _files_task(plan.evaluation.shifts, "evaluation")
        video = None
        if plan.video is not None:
            video = Task("collect", collect_stage, plan.video,
                         label=plan.env_id + VIDEO)

        def agent_eval(encoder: str, kind: str, enc_seed: int | None, deps: tuple[Task, ...],
                       eval_rep: Task | None, rep: Task | None, label: str,
                       plan: EnvPlan = plan, weights: str | None = None,
                       probes: Mapping[int, Task] | None = None,
                       ref: EncoderRef | None = None,
                       eval_files: tuple[Task, ...] = eval_files) -> None:
            for agent_seed in plan.agent_seeds:
                agent = Task("agent", train_agent_stage,
                             plan.agent.replace(encoder=encoder, seed=agent_seed,
                                                encoder_weights=weights),
                             deps=deps, label=f"{label}/s{agent_seed}", runtime=runtime)
                ev = Task("eval_agent", eval_agent_stage, plan.evaluation,
                          deps=(agent, *eval_files), label=agent.label, runtime=runtime)
                runs.append(RunRef(plan.env_id, label, kind, enc_seed, agent_seed, ev, eval_rep,
                                   rep, (probes or {}).get(agent_seed),
                                   None if ref is None else ref.encoder,
                                   None if ref is None else ref.fingerprint))

        for lp in plan.learners:
            for seed in lp.seeds:
                data = collect
                if _needs_video(lp.train.learner):
                    if video is None:
                        raise ConfigError(f"{lp.train.learner} trains on sequences: give the "
                                          f"{plan.env_id} plan a video dataset")
                    data = video
                rep = Task("rep", train_rep_stage,
                           lp.train.replace(seed=seed, progress=False), deps=(data,),
                           label=f"{lp.label}/s{seed}", runtime=runtime)
                # Sequence learners also get their video: the wave and forecast analysis.
                deps = (collect, rep) if data is collect else (collect, rep, data)
                erep = Task("eval_rep", eval_rep_stage, study.metrics,
                            deps=deps if proxy is None else (*deps, proxy), label=rep.label,
                            runtime=runtime)
                agent_eval(LEARNED, "learned", seed, (rep,), erep, rep, lp.label)
        for ep in plan.encoders:
            ref = refs[(index, ep.label)]
            # the agents hang off the encoder task, whose config holds the fingerprint: changed
            # weights give new keys, never a stale artifact
            enc = Task("encoder", encoder_stage, ref, label=ep.label, runtime=runtime)
            probes: dict[int, Task] = {}
            if proxy is not None:
                probe = Task("probe", probe_stage,
                             ProbeConfig(ref.encoder, ref.encoder_weights, 0, ref.fingerprint),
                             deps=(proxy,), label=ep.label, runtime=runtime)
                probes = dict.fromkeys(plan.agent_seeds, probe)
            agent_eval(ref.encoder, "learned", None, (enc,), None, None, ep.label,
                       weights=ref.encoder_weights, probes=probes, ref=ref)
        for base in plan.baselines:
            probes = {}
            if base == "random" and proxy is not None:
                # each random initialisation is probed: init seed = agent seed, as train-agent
                probes = {s: Task("probe", probe_stage,
                                  ProbeConfig("random", None, s, ""), deps=(proxy,),
                                  label=f"random/s{s}", runtime=runtime)
                          for s in plan.agent_seeds}
            agent_eval(base, "baseline", None, (), None, None, base, probes=probes)
    return runs


def targets(runs: list[RunRef]) -> list[Task]:
    out: list[Task] = []
    for r in runs:
        out.append(r.eval_task)
        out += [t for t in (r.eval_rep_task, r.probe_task) if t is not None]
    return out


#: Version of the artifact layout (2: config objects hashed by their full JSON, results naming
#: files relative to their artifact folder; 3: agents see standardised latents, so agents of
#: layout 2, trained on raw latents, must not be mixed in). Earlier layouts cannot be reused.
ARTIFACT_FORMAT = 3
FORMAT_FILE = "FORMAT.json"


def check_artifact_format(root: Path) -> None:
    """Refuse an artifact folder of another layout version (one line); stamp a new one."""
    stamp = root / FORMAT_FILE
    if stamp.is_file():
        try:
            version = read_json(stamp, "artifact format stamp").get("format_version")
        except ConfigError as exc:
            raise ConfigError(f"{exc}; use a new --out") from None
        if version != ARTIFACT_FORMAT:
            raise ConfigError(f"{root} holds study artifacts of format {safe_repr(version)}; this "
                              f"sparseshift reads format {ARTIFACT_FORMAT}: use a new --out")
        return
    if root.is_dir() and any(root.iterdir()):
        raise ConfigError(f"{root} holds study artifacts of format 1 (sparseshift 0.1 before the "
                          f"sparseshift.* namespace); this sparseshift reads format "
                          f"{ARTIFACT_FORMAT}: use a new --out")
    write_json_atomic(stamp, {"format": "sparseshift-study-artifacts",
                              "format_version": ARTIFACT_FORMAT})


def run_study(preset: StudyConfig, out: Path, ray: str | bool = False, jobs: int = 1,
              device: str | None = None, plugins: Iterable[str] = ()
              ) -> tuple[list[RunRef], dict[str, dict[str, Any]], float]:
    """Run (or resume) a study; returns its runs, the results by task key and the wall time.
    ``device`` places the torch stages (see :func:`build`); None leaves each config's own.
    ``plugins``: modules the user allowed (``--plugin``), see :func:`build`."""
    runs = build(preset, device, plugins)
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
