"""The scorecard: one fixed protocol that judges any frozen encoder on object reaching.

``sparseshift scorecard --encoder SPEC`` runs, on ``sparseshift/TriFingerObjectReach-v0`` (the
object-reaching task of Träuble, Dittadi et al., ICLR 2022):

1. **Probes and the OOD proxy task** (:mod:`sparseshift.representations.proxy`) on the encoder
   and on every random initialisation used as a floor: linear and MLP probes fitted on IN-colour
   frames, scored on IN, OOD1, OOD2 and ``real``; the *task score* is the mean R² of the cube
   position (what the reward needs from the image).
2. **Agents on IN colours** (PPO, the study defaults): the encoder and the two floors, the
   standardised ``random`` encoder (init seed = agent seed) and ``sensors`` (no image), with
   ``seeds`` agent seeds each; the references ``state`` (oracle) and ``pixels`` (end to end) with
   ``reference_seeds`` seeds.
3. **Evaluation** of every agent on IN, OOD1, OOD2 and ``real`` on the same episode seeds:
   exact success intervals per run, each shift against IN by the exact McNemar test on the
   shared episodes, and across runs the interquartile mean with a stratified-bootstrap 95%
   interval (Agarwal et al., NeurIPS 2021; :mod:`sparseshift.experiments.study.aggregates`).
4. **Verdicts**: the encoder against each floor per shift, by McNemar on the episode pairs
   pooled over seeds (agent seed ``s`` of both sides ran the same episode seeds), next to the
   interval over runs.

Protocol, seeds and package versions are fixed and written into ``scorecard.json``, so two users'
scorecards compare. Runs on the study task graph: resumable, and a rerun reuses finished work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sparseshift.envs.infra.config import Config, opt
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.registry import default_shifts

ENV_ID = "sparseshift/TriFingerObjectReach-v0"
#: The shifts of the scorecard: the colour splits and ``real`` (read from the shift registry).
SHIFTS: tuple[str, ...] = default_shifts(ENV_ID)
FLOORS: tuple[str, ...] = ("random", "sensors")
REFERENCES: tuple[str, ...] = ("state", "pixels")
FORMAT = "sparseshift-scorecard"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ScorecardConfig(Config):
    """The scorecard protocol: everything that must match for two scorecards to compare."""

    config_name: ClassVar[str] = "scorecard"

    encoder: str = opt(help="the encoder to judge: a run or export-encoder folder, "
                       "package.module:factory or an installed encoder entry point")
    encoder_weights: str | None = opt(None, "safetensors weights for --encoder MODULE:FACTORY",
                                      metavar="W.safetensors")
    label: str = opt("", "the encoder's name in the tables (default: from --encoder)")
    seeds: int = opt(3, "agent seeds per encoder and floor (0..N-1)", min=1, max=100)
    reference_seeds: int = opt(1, "agent seeds of the state and pixels references (0: none)",
                               min=0, max=100)
    steps: int = opt(100_000, "PPO steps per agent", min=1000, max=10**9)
    episodes: int = opt(40, "evaluation episodes per shift", min=5, max=100_000)
    eval_seed: int = opt(1000, "evaluation seed (the same episodes for every agent)", min=0,
                         max=2**31 - 1025)
    proxy_train: int = opt(2000, "proxy task: IN frames the probes are fitted on", min=100,
                           max=1_000_000)
    proxy_test: int = opt(500, "proxy task: frames scored per shift", min=50, max=1_000_000)

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        text = self.encoder.rstrip("/")
        return text.rsplit("/", 1)[-1] if "/" in text else text

    def protocol(self) -> dict[str, Any]:
        """What is fixed for every encoder (the scorecard's comparability)."""
        d = {k: v for k, v in self.to_json().items()
             if k not in ("encoder", "encoder_weights", "label")}
        return {"env_id": ENV_ID, "shifts": list(SHIFTS), "floors": list(FLOORS),
                "references": list(REFERENCES), **d}


@dataclass(frozen=True)
class ProbeConfig(Config):
    """One encoder probed on the proxy frames (the random floor: one per init seed)."""

    config_name: ClassVar[str] = "probe"

    encoder: str = opt(help="encoder spec or 'random'")
    encoder_weights: str | None = opt(None, "weights")
    seed: int = opt(0, "init seed of a random encoder; probe seed", min=0)
    #: The encoder's fingerprint (for a user's encoder, so the artifact key follows its weights).
    fingerprint: str = opt("", "fingerprint of the encoder")


def probe_stage(config: ProbeConfig, inputs: Mapping[str, dict[str, Any]], out: Path,
                runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Proxy-task probes of one encoder on the rendered proxy frames."""
    import torch

    from sparseshift.agents.encoders import load_encoder
    from sparseshift.experiments.study.stages import _file, plugins_of
    from sparseshift.representations.evaluate import encode_frames
    from sparseshift.representations.proxy import ProxySet, proxy_scores

    data = ProxySet.load(Path(_file(inputs, "proxy_data", "proxy")))
    torch.set_num_threads(1)
    enc = load_encoder(config.encoder, int(data.frames["train"].shape[1]), config.seed,
                       plugins=plugins_of(runtime), weights=config.encoder_weights)
    if enc.learner is None:
        raise ConfigError(f"{config.encoder} has no frozen encoder to probe")
    scores = proxy_scores(lambda f: encode_frames(enc.learner, f, 256), data, seed=config.seed)
    return {"summary": scores["summary"], "factors": scores["factors"],
            "task_factors": scores["task_factors"], "fingerprint": enc.fingerprint}


def proxy_frames_stage(config: Any, inputs: Mapping[str, dict[str, Any]], out: Path
                       ) -> dict[str, Any]:
    """Render the proxy task's frames of the scorecard's env once, for every probe."""
    from sparseshift.representations.proxy import proxy_set

    data = proxy_set(config, ENV_ID, {"image_size": 64})
    data.save(out / "proxy.npz")
    return {"files": {"proxy": "proxy.npz"}}


@dataclass(frozen=True)
class Entry:
    """One row group of the scorecard: an encoder or a baseline and its agent seeds."""

    label: str
    kind: str  # "encoder", "floor" or "reference"
    encoder: str
    seeds: tuple[int, ...]


def entries(cfg: ScorecardConfig) -> list[Entry]:
    seeds = tuple(range(cfg.seeds))
    refs = tuple(range(cfg.reference_seeds))
    out = [Entry(cfg.name, "encoder", cfg.encoder, seeds),
           *(Entry(f, "floor", f, seeds) for f in FLOORS)]
    if refs:
        out += [Entry(r, "reference", r, refs) for r in REFERENCES]
    return out


def build_tasks(cfg: ScorecardConfig, fingerprint: str, plugins: Sequence[str],
                device: str | None = None) -> tuple[dict[str, Any], list[Any]]:
    """The task graph: ``({"probe": {label: [task per seed]}, "eval": {label: [task per seed]}},
    all targets)``."""
    from sparseshift.agents.config import AgentConfig, EvaluateConfig
    from sparseshift.experiments.study.graph import Task
    from sparseshift.experiments.study.stages import eval_agent_stage, train_agent_stage
    from sparseshift.representations.config import ProxyConfig

    runtime: dict[str, Any] = {"plugins": tuple(plugins)}
    if device is not None:
        runtime["device"] = device
    frames = Task("proxy_data", proxy_frames_stage,
                  ProxyConfig(cfg.proxy_train, cfg.proxy_test, 0, SHIFTS), label="objectreach")
    evaluation = EvaluateConfig(shifts=SHIFTS, episodes=cfg.episodes, seed=cfg.eval_seed)
    agent_base = {"env_id": ENV_ID, "steps": cfg.steps, "eval_every": max(cfg.steps // 4, 1),
                  "eval_episodes": 10, "checkpoint_every": 0}
    probes: dict[str, list[Task]] = {}
    evals: dict[str, list[Task]] = {}
    for e in entries(cfg):
        is_user = e.kind == "encoder"
        if is_user:
            probes[e.label] = [Task("probe", probe_stage,
                                    ProbeConfig(e.encoder, cfg.encoder_weights, 0, fingerprint),
                                    deps=(frames,), label=e.label, runtime=runtime)]
        elif e.encoder == "random":
            probes[e.label] = [Task("probe", probe_stage, ProbeConfig("random", None, s),
                                    deps=(frames,), label=f"random s{s}") for s in e.seeds]
        evals[e.label] = []
        for s in e.seeds:
            agent_cfg = AgentConfig.from_json({
                **agent_base, "seed": s, "encoder": e.encoder,
                "encoder_weights": cfg.encoder_weights if is_user else None})
            # the user's encoder is identified by its fingerprint, not by where it lies
            label = f"{e.label} s{s}" + (f" {fingerprint[:12]}" if is_user else "")
            # the user's agents depend on the encoder's probe task, whose config holds the
            # encoder's fingerprint: changed weights give new artifact keys, never a stale reuse
            agent = Task("agent", train_agent_stage, agent_cfg, label=label,
                         deps=tuple(probes[e.label]) if is_user else (), runtime=runtime)
            evals[e.label].append(Task("eval_agent", eval_agent_stage, evaluation,
                                       deps=(agent,), label=label, runtime=runtime))
    targets = [t for ts in probes.values() for t in ts] + [t for ts in evals.values()
                                                           for t in ts]
    return {"probe": probes, "eval": evals}, targets


# ----------------------------------------------------------------------------- the results


def _pooled(results: Sequence[dict[str, Any]], shift: str, key: str) -> list[Any]:
    return [v for r in results for v in r["shifts"][shift][key]]


def summarise(cfg: ScorecardConfig, tasks: dict[str, Any], results: Mapping[str, dict[str, Any]]
              ) -> dict[str, Any]:
    """Everything the scorecard reports, from the finished tasks' results."""
    from sparseshift.agents.stats import mcnemar_exact, success_interval
    from sparseshift.experiments.study.aggregates import iqm, stratified_bootstrap

    rows: dict[str, Any] = {}
    for label, ts in tasks["eval"].items():
        res = [results[t.key] for t in ts]
        per_shift: dict[str, Any] = {}
        for s in SHIFTS:
            runs = [float(r["shifts"][s]["success"]["mean"]) for r in res]
            point, lo, hi = stratified_bootstrap([np.asarray(runs)], iqm, 2000, seed=0)
            pooled = success_interval(_pooled(res, s, "successes"))
            entry: dict[str, Any] = {
                "runs": runs, "iqm": point, "iqm_ci": [lo, hi], "min": min(runs),
                "max": max(runs), "pooled": pooled.to_json()}
            if s != "in":
                entry["vs_in"] = mcnemar_exact(_pooled(res, "in", "successes"),
                                               _pooled(res, s, "successes")).to_json()
            per_shift[s] = entry
        rows[label] = {"kind": next(e.kind for e in entries(cfg) if e.label == label),
                       "seeds": len(res), "shifts": per_shift,
                       "returns": {s: float(np.mean([r["shifts"][s]["return"]["mean"]
                                                     for r in res])) for s in SHIFTS}}
    verdicts: dict[str, Any] = {}
    enc = [results[t.key] for t in tasks["eval"][cfg.name]]
    for floor in FLOORS:
        fl = [results[t.key] for t in tasks["eval"][floor]]
        per: dict[str, Any] = {}
        for s in SHIFTS:
            test = mcnemar_exact(_pooled(fl, s, "successes"), _pooled(enc, s, "successes"))
            per[s] = test.to_json()
        verdicts[floor] = per
    probes = {label: [results[t.key] for t in ts] for label, ts in tasks["probe"].items()}
    probe_rows: dict[str, Any] = {}
    for label, res in probes.items():
        keys = sorted({k for r in res for k in r["summary"]})
        probe_rows[label] = {
            "inits": len(res),
            "summary": {k: [r["summary"].get(k) for r in res] for k in keys},
            "cube_r2_in": [_cube_r2(r) for r in res]}
    return {"agents": rows, "verdicts": verdicts, "probes": probe_rows}


def _cube_r2(probe: dict[str, Any]) -> dict[str, float | None]:
    """MLP-probe R² of each task factor on IN frames."""
    out: dict[str, float | None] = {}
    for name in probe.get("task_factors", []):
        f = probe["factors"].get(name)
        out[name] = None if f is None else f["mlp"].get("in")
    return out


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _pts(v: float) -> str:
    """A difference of proportions in signed percentage points (never "-0")."""
    return f"{round(100 * v):+d}"


def _num(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def markdown(cfg: ScorecardConfig, summary: dict[str, Any], header: dict[str, Any]) -> str:
    from sparseshift.agents.evaluate import format_p

    agents, name = summary["agents"], cfg.name
    lines = [f"# sparseshift scorecard: {name}", "",
             f"Encoder `{cfg.encoder}` (fingerprint `{str(header['fingerprint'])[:16]}`) on "
             f"{ENV_ID}. Protocol: PPO {cfg.steps:,} steps on IN colours, {cfg.seeds} agent "
             f"seeds per encoder and floor, {cfg.reference_seeds} per reference; "
             f"{cfg.episodes} evaluation episodes per shift (seed {cfg.eval_seed}, the same "
             "episodes for every agent and shift). Every frozen encoder reaches the policy "
             "standardised per latent dimension (statistics from IN frames, recorded per agent).",
             "", "## Success per shift", "",
             "IQM over agent seeds with its stratified-bootstrap 95% interval over runs, "
             "(range: min-max over seeds); under a shift, the exact McNemar p of shift vs IN on "
             "the episode pairs pooled over seeds. A row with one run gives that run's exact "
             "(Clopper-Pearson) interval over its episodes instead; scorecard.json holds every "
             "row's pooled episode interval.", "",
             "| encoder | seeds | " + " | ".join(SHIFTS) + " |",
             "|---|---|" + "---|" * len(SHIFTS)]
    for label, r in agents.items():
        cells = []
        for s in SHIFTS:
            e = r["shifts"][s]
            if r["seeds"] > 1:
                cell = (f"{_pct(e['iqm'])} [{_pct(e['iqm_ci'][0])}, {_pct(e['iqm_ci'][1])}] "
                        f"(range {_pct(e['min'])}-{_pct(e['max'])})")
            else:  # one run: no interval over runs; its exact interval over episodes
                pooled = e["pooled"]
                cell = (f"{_pct(pooled['mean'])} (1 run; episodes [{_pct(pooled['ci_low'])}, "
                        f"{_pct(pooled['ci_high'])}])")
            if "vs_in" in e:
                cell += f"; vs IN {format_p(e['vs_in']['p_value'])}"
            cells.append(cell)
        lines.append(f"| {label} ({r['kind']}) | {r['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "## The encoder against the floors", "",
              f"`{name}` minus the floor, success on the episode pairs pooled over seeds (agent "
              "seed s of both ran the same episodes): difference [Newcombe 95% interval], exact "
              "McNemar p. The interval over runs is in the table above.", "",
              "| floor | " + " | ".join(SHIFTS) + " |", "|---|" + "---|" * len(SHIFTS)]
    for floor, per in summary["verdicts"].items():
        cells = [f"{_pts(t['diff'])} pts [{_pts(t['ci_low'])}, {_pts(t['ci_high'])}], "
                 f"{format_p(t['p_value'])}"
                 for t in (per[s] for s in SHIFTS)]
        lines.append(f"| {floor} | " + " | ".join(cells) + " |")
    lines += ["", "Verdict: " + verdict_text(name, summary), "", "## Probes", "",
              "MLP-probe R² of the cube position on IN frames and the proxy task scores "
              "(mean over factor groups, negative R² as 0; *task*: over the cube position only) "
              "per shift. The random floor is probed once per initialisation (= agent seed).",
              "", "| encoder | init | cube R² (IN) | " + " | ".join(
                  f"task {s}" for s in SHIFTS) + " | all-factor in |",
              "|---|---|---|" + "---|" * (len(SHIFTS) + 1)]
    for label, p in summary["probes"].items():
        for i in range(p["inits"]):
            cube = ", ".join(f"{k.split('.')[-1]} {_num(v)}" for k, v in
                             p["cube_r2_in"][i].items())
            task = [_num((p["summary"].get(f"proxy_mlp_{s}_task") or [None] * (i + 1))[i])
                    for s in SHIFTS]
            allf = _num((p["summary"].get("proxy_mlp_in") or [None] * (i + 1))[i])
            lines.append(f"| {label} | {i} | {cube} | " + " | ".join(task) + f" | {allf} |")
    lines += ["", f"Versions: {header['versions']}.",
              f"Wall time of this invocation: {header['seconds']:.0f} s (work finished by an "
              f"earlier invocation or another scorecard sharing the cache is reused); the stages "
              f"took {header.get('stage_seconds', 0.0):.0f} s in all, one core each.",
              "Figure: scorecard.png. Data: scorecard.json."]
    return "\n".join(lines) + "\n"


def verdict_text(name: str, summary: dict[str, Any]) -> str:
    """Which floor is stronger on IN, and whether the encoder beats it (IN and each shift)."""
    from sparseshift.agents.evaluate import format_p

    agents = summary["agents"]
    stronger = max(FLOORS, key=lambda f: agents[f]["shifts"]["in"]["pooled"]["mean"])
    parts = []
    for s in SHIFTS:
        t = summary["verdicts"][stronger][s]
        word = ("above" if t["diff"] > 0 else "below") if t["p_value"] < 0.05 else \
            "not distinguishable from"
        parts.append(f"{s}: {word} ({format_p(t['p_value'])})")
    return (f"the stronger floor on IN is {stronger}; {name} is " + "; ".join(parts)
            + ". p < 0.05 by the exact McNemar test on pooled episodes; the runs' spread is in "
              "the success table.")


def figure(cfg: ScorecardConfig, summary: dict[str, Any], path: Path) -> Path:
    """Success per shift for every encoder and baseline: IQM with its 95% interval over runs,
    each seed a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sparseshift.experiments.study.proxy_report import save_figure

    agents = summary["agents"]
    labels = list(agents)
    fig, ax = plt.subplots(figsize=(9, 4.6))
    width = 0.8 / len(labels)
    colours = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        r = agents[label]
        xs = np.arange(len(SHIFTS)) + (i - (len(labels) - 1) / 2) * width
        one = r["seeds"] == 1  # one run: its exact interval over episodes
        mid = [100 * r["shifts"][s]["iqm"] for s in SHIFTS]
        lo = [100 * (r["shifts"][s]["pooled"]["ci_low"] if one else r["shifts"][s]["iqm_ci"][0])
              for s in SHIFTS]
        hi = [100 * (r["shifts"][s]["pooled"]["ci_high"] if one else r["shifts"][s]["iqm_ci"][1])
              for s in SHIFTS]
        c = colours(i % 10)
        ax.bar(xs, mid, width * 0.9, color=c, alpha=0.35,
               label=f"{label} ({r['kind']}, " + ("1 seed, interval over episodes)" if one
                                                  else f"{r['seeds']} seeds)"))
        ax.errorbar(xs, mid, yerr=[np.subtract(mid, lo), np.subtract(hi, mid)], fmt="none",
                    ecolor=c, capsize=3)
        for j, s in enumerate(SHIFTS):
            runs = r["shifts"][s]["runs"]
            ax.scatter([xs[j]] * len(runs), [100 * v for v in runs], s=12, color=c, zorder=3)
    ax.set_xticks(np.arange(len(SHIFTS)))
    ax.set_xticklabels([f"{s}" for s in SHIFTS])
    ax.set_xlabel("evaluation shift\n(in: training colours; ood1: cube colours new to the policy; "
                  "ood2: new to policy and encoder; real: rendering shift)", fontsize=9)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"scorecard: {cfg.name} on object reaching\n(IQM over agent seeds with its "
                 "95% stratified-bootstrap interval over runs; dots: seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    save_figure(fig, path)
    return path


def run_scorecard(cfg: ScorecardConfig, out_dir: str | Path, plugins: Sequence[str] = (),
                  jobs: int = 1, device: str | None = None, stream: Any = None,
                  cache: str | Path | None = None) -> dict[str, Any]:
    """Run the protocol into ``out_dir`` (resumable) and write ``scorecard.md``,
    ``scorecard.json`` and ``scorecard.png``; returns the JSON. ``cache`` is the artifact folder
    (default ``out_dir/artifacts``): scorecards of several encoders that share one reuse the
    floors and references, which the fixed protocol makes identical."""
    import sys
    import time

    from sparseshift.agents.encoders import load_encoder
    from sparseshift.envs.infra.io import (
        atomic_write_text,
        output_dir,
        output_lock,
        package_versions,
        write_json_atomic,
    )
    from sparseshift.experiments.study.graph import ProgressPrinter, run_local, topo_order
    from sparseshift.representations.plugins import Plugins

    allowed = Plugins.of(*plugins)
    # resolve the encoder once, before any work: a bad spec or weights is one line, now
    enc = load_encoder(cfg.encoder, 64, 0, plugins=allowed, weights=cfg.encoder_weights)
    if enc.learner is None or cfg.encoder in ("random",):
        raise ConfigError(f"--encoder {cfg.encoder!r} is a baseline; the scorecard judges an "
                          "encoder against the baselines")
    fingerprint = str(enc.fingerprint)
    modules = set(allowed.modules)
    if ":" in cfg.encoder and not Path(cfg.encoder).exists():
        modules.add(cfg.encoder.partition(":")[0])
    tasks, targets = build_tasks(cfg, fingerprint, sorted(modules), device)
    out = output_dir(out_dir, "scorecard.json")
    t0 = time.perf_counter()
    stream = stream if stream is not None else sys.stdout
    with output_lock(out):
        root = Path(cache) if cache is not None else out / "artifacts"
        results = run_local(targets, root,
                            ProgressPrinter(targets, jobs=jobs, stream=stream), jobs=jobs)
        summary = summarise(cfg, tasks, results)
        header = {"format": FORMAT, "format_version": FORMAT_VERSION,
                  "encoder": {"spec": cfg.encoder, "label": cfg.name,
                              "fingerprint": fingerprint, "description": enc.description},
                  "protocol": cfg.protocol(), "versions": package_versions(),
                  "seconds": round(time.perf_counter() - t0, 1), "fingerprint": fingerprint,
                  "stage_seconds": round(sum(float(results[t.key].get("seconds", 0.0))
                                             for t in topo_order(targets)), 1)}
        data = {**header, **summary}
        write_json_atomic(out / "scorecard.json", data)
        atomic_write_text(out / "scorecard.md", markdown(cfg, summary, header))
        figure(cfg, summary, out / "scorecard.png")
    return data
