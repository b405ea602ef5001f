"""Study outputs: ``results.jsonl`` (one row per agent x shift), ``report.md`` and PNG plots.

The report follows the OOD protocol of Dittadi et al. (2021) and Träuble, Dittadi et al. (2022):
a table per shift with 95% CIs, OOD1 (colours the encoder saw, the agent did not) next to OOD2
(colours nothing saw), never pooled, paired tests of each shift against IN per agent run, and
Spearman rank correlations between each representation metric and OOD return across the learned
encoders. Brackets are always confidence intervals (:mod:`sparseshift.agents.stats`): for one
agent run the exact (Clopper-Pearson) binomial interval of its success rate and the bootstrap
interval of its mean return over evaluation episodes; for three or more runs Student's t interval
of the mean over runs. The spread of a few runs is printed as ``(range a-b, n runs)``.

Shifts are keyed by their label (``in``, ``real``, ``lighting:3``; the shift registry,
:mod:`sparseshift.envs.shifts.registry`); each row also names the shift and its severity. The
shifts evaluated at two or more severities (a sweep such as ``lighting:1,lighting:3,lighting:5``)
go to the robustness section (:mod:`sparseshift.experiments.study.robustness_report`): curves of
success against severity per encoder, the mean relative robustness per encoder and probe
robustness against agent robustness; the other shifts head the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseshift.agents.stats import (
    binomial_ci,
    format_interval,
    format_range,
    mcnemar_exact,
    paired_bootstrap,
    t_interval,
)
from sparseshift.agents.video import file_stem
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import atomic_write_text, read_json, strict_json, write_json_atomic
from sparseshift.envs.shifts.registry import COLOUR_SPLITS
from sparseshift.experiments.study.aggregates import group_aggregates
from sparseshift.experiments.study.aggregates import markdown as agg_markdown
from sparseshift.experiments.study.power import markdown as power_markdown
from sparseshift.experiments.study.power import power as power_of
from sparseshift.experiments.study.proxy_report import markdown as proxy_markdown
from sparseshift.experiments.study.proxy_report import proxy_correlations, save_figure
from sparseshift.experiments.study.proxy_report import scatter as proxy_scatter
from sparseshift.experiments.study.robustness_report import (
    agent_robustness,
    main_labels,
    probe_vs_agent,
    robustness_table,
    shift_info,
    sweep_labels,
)
from sparseshift.experiments.study.robustness_report import figures as robustness_figures
from sparseshift.experiments.study.runner import RunRef

#: Representation metrics correlated with OOD return (dotted keys into the eval-rep JSON).
METRIC_KEYS: tuple[str, ...] = (
    "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_test", "sap",
    "modularity", "explicitness_test", "factor_vae_eval", "linear_r2_mean", "mlp_r2_mean",
    "mse_per_pixel", *(f"proxy_mlp_{s}" for s in COLOUR_SPLITS[1:]),
)
#: The colour splits under which metrics are correlated with return (OOD1 and OOD2).
OOD_SPLITS: tuple[str, ...] = COLOUR_SPLITS[1:]


#: Columns of the report's representation table, where any encoder has them: disentanglement,
#: probes and reconstruction, Slot Attention's FG-ARI, the NWM's waves and forecasts.
TABLE_KEYS: tuple[tuple[str, str], ...] = (
    ("mig", "MIG"), ("dci_disentanglement", "DCI dis."), ("linear_r2_mean", "linear R2"),
    ("mlp_r2_mean", "MLP R2"), (f"proxy_mlp_{COLOUR_SPLITS[0]}", "proxy IN"),
    (f"proxy_mlp_{COLOUR_SPLITS[-1]}", "proxy OOD2"),
    ("mse_per_pixel", "recon MSE/px"), ("fg_ari", "FG-ARI"),
    ("wave_coherence_free", "wave coherence (free)"),
    ("wave_coherence_free_shuffled", "shuffled"), ("forecast_mse", "forecast MSE"),
    ("forecast_copy_last_mse", "copy-last MSE"),
)


def run_name(r: Mapping[str, Any], sep: str = "/") -> str:
    """An encoder run's name: ``label/s<seed>`` for a learner's run, the label alone for your
    encoders and the baselines (no encoder seed)."""
    seed = r.get("encoder_seed")
    return str(r["encoder"]) if seed is None else f"{r['encoder']}{sep}s{seed}"


def representation_table(table: Sequence[dict[str, Any]]) -> str:
    """Per env, one row per learned encoder: the metrics of :data:`TABLE_KEYS` it has."""
    parts = []
    for env in sorted({r["env_id"] for r in table}):
        enc: dict[str, dict[str, float]] = {}
        for r in table:
            if r["env_id"] == env and r["kind"] == "learned":
                name = run_name(r, " (") + (")" if r["encoder_seed"] is not None else "")
                if r.get("encoder_spec"):
                    name += " (yours)"
                enc.setdefault(name, r["metrics"])
        if not enc:
            continue
        cols = [(k, n) for k, n in TABLE_KEYS if any(k in m for m in enc.values())]
        lines = [f"### {env}", "", "| encoder | " + " | ".join(n for _, n in cols) + " |",
                 "|---|" + "---|" * len(cols)]
        for name, m in enc.items():
            cells = [f"{m[k]:.3f}" if k in m else "" for k, _ in cols]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts) if parts else "No learned encoders."


def encoder_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The scalar metrics of an eval-rep report: its summary, probe means, reconstruction."""
    out = flatten(report.get("summary", {}))
    probes = report.get("probes", {})
    for k in ("linear_r2_mean", "mlp_r2_mean"):
        if isinstance(probes.get(k), int | float):
            out[k] = float(probes[k])
    rec = report.get("reconstruction", {})
    if isinstance(rec.get("mse_per_pixel"), int | float):
        out["mse_per_pixel"] = float(rec["mse_per_pixel"])
    return out


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict with dotted keys."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = float(v)
    return out


def _episode_lists(v: Mapping[str, Any], saved: Mapping[str, Any] | None, n: int | None,
                   successes: int | None) -> tuple[list[float], list[bool]] | tuple[None, None]:
    """Per-episode returns and successes of one shift: from the stage result if it has them,
    else from the agent's ``eval.json`` when that file's summary is this evaluation's (same
    episodes, mean return and number of successes); ``(None, None)`` otherwise."""
    src = v if "returns" in v and "successes" in v else saved
    if src is None or n is None or successes is None:
        return None, None
    rets, succ = src.get("returns"), src.get("successes")
    if not isinstance(rets, list) or not isinstance(succ, list) or len(rets) != n or len(
            succ) != n or sum(bool(x) for x in succ) != successes:
        return None, None
    if not math.isclose(float(np.mean(rets)), float(v["return"]["mean"]), rel_tol=1e-9,
                        abs_tol=1e-12):
        return None, None
    return [float(x) for x in rets], [bool(x) for x in succ]


def rows(runs: Sequence[RunRef], results: Mapping[str, dict[str, Any]],
         out_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per (agent, shift): encoder, its metrics, agent seed, shift, return, success.

    ``metrics`` are the encoder's eval-rep metrics (a learner's run) or its proxy-task probes
    (your encoder; a random baseline's initialisation for this agent seed); ``encoder_spec`` and
    ``encoder_fingerprint`` name your encoder (None otherwise).

    ``success_ci`` is the exact (Clopper-Pearson) 95% interval of the run's success count over
    its episodes, ``return_ci`` the evaluation's bootstrap interval of the mean return.
    ``episode_returns``/``episode_successes`` are the per-episode lists (same episode seeds under
    every shift), read from the agent's ``eval.json`` under ``out_dir`` when the stage result
    lacks them; None when neither has them. ``shift`` is the result label, ``shift_name`` and
    ``severity`` the shift and severity it stands for (None: a colour split), from the
    evaluation's shift records.
    """
    out = []
    for r in runs:
        metrics: dict[str, float] = {}
        if r.eval_rep_task is not None:
            metrics = encoder_metrics(results[r.eval_rep_task.key].get("metrics", {}))
        elif r.probe_task is not None:  # your encoder, or this random initialisation: probes
            metrics = encoder_metrics({"summary": results[r.probe_task.key].get("summary", {})})
        ev = results[r.eval_task.key]["shifts"]
        agent_task = r.eval_task.deps[0]
        agent_dir = f"artifacts/{results[agent_task.key]['artifact']}/agent"
        rep_dir = (f"artifacts/{results[r.eval_rep_task.key]['artifact']}"
                   if r.eval_rep_task is not None else None)
        probe_dir = (f"artifacts/{results[r.probe_task.key]['artifact']}"
                     if r.probe_task is not None else None)
        saved_eval = saved_evaluation(out_dir, agent_dir)
        got = saved_eval.get("shifts")
        saved: dict[str, Any] = got if isinstance(got, dict) else {}
        defs = results[r.eval_task.key].get("shift_defs") or saved_eval.get("shift_defs")
        for shift, v in ev.items():
            shift_name, severity = shift_info(shift, defs if isinstance(defs, dict) else None)
            n = v["success"].get("n", v["return"].get("n"))
            k = None if n is None else round(float(v["success"]["mean"]) * int(n))
            success_ci = [v["success"]["ci_low"], v["success"]["ci_high"]]
            if k is not None and n is not None:
                exact = binomial_ci(k, int(n))
                success_ci = [exact.low, exact.high]
            ep_ret, ep_succ = _episode_lists(v, saved.get(shift), n, k)
            out.append({
                "env_id": r.env_id, "encoder": r.encoder, "kind": r.kind, "agent_dir": agent_dir,
                "eval_rep_dir": rep_dir, "probe_dir": probe_dir,
                "encoder_spec": r.encoder_spec, "encoder_fingerprint": r.fingerprint,
                "encoder_seed": r.encoder_seed, "agent_seed": r.agent_seed, "shift": shift,
                "shift_name": shift_name, "severity": severity,
                "return": v["return"]["mean"], "return_ci": [v["return"]["ci_low"],
                                                             v["return"]["ci_high"]],
                "return_ci_method": v["return"].get("method", "percentile-bootstrap"),
                "success": v["success"]["mean"], "successes": k, "success_ci": success_ci,
                "success_ci_method": "percentile-bootstrap" if k is None else "clopper-pearson",
                "episodes": v["return"].get("n"), "metrics": metrics,
                "episode_returns": ep_ret, "episode_successes": ep_succ,
            })
    return out


def saved_evaluation(out_dir: Path | None, agent_dir: str) -> dict[str, Any]:
    """The agent's ``eval.json`` under ``out_dir`` through the bounded reader ({} when there is
    none or it is damaged: the report then uses the stage result alone)."""
    path = None if out_dir is None else out_dir / agent_dir / "eval.json"
    if path is None or not path.is_file():
        return {}
    try:
        got = read_json(path, "evaluation")
    except ConfigError:
        return {}
    return got if isinstance(got, dict) else {}


def evaluation_records(runs: Sequence[RunRef], results: Mapping[str, dict[str, Any]],
                       out_dir: Path | None = None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per agent folder, the mean relative robustness its evaluation recorded (stage result, else
    its ``eval.json``; None where neither has it), and every shift label's definition record
    (the first evaluation that has it)."""
    recorded: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    for r in runs:
        agent_dir = f"artifacts/{results[r.eval_task.deps[0].key]['artifact']}/agent"
        if agent_dir in recorded:
            continue
        res = results[r.eval_task.key]
        saved = {} if res.get("shift_defs") and "robustness" in res else \
            saved_evaluation(out_dir, agent_dir)
        recorded[agent_dir] = res.get("robustness", saved.get("robustness"))
        got = res.get("shift_defs") or saved.get("shift_defs") or {}
        if isinstance(got, dict):
            for label, rec in got.items():
                defs.setdefault(label, rec)
    return recorded, defs


def shift_definitions(defs: Mapping[str, Any]) -> str:
    """Markdown: each shift label's definition (kind, colours, effective nuisance severities,
    SHA-256), and the verbatim text of user shift files."""
    if not defs:
        return ""
    lines = ["| shift | kind | colours | nuisances at their effective severity | sha256 |",
             "|---|---|---|---|---|"]
    sources: dict[str, str] = {}
    for label, rec in defs.items():
        if not isinstance(rec, Mapping):
            continue
        eff = ", ".join(f"{n} {float(v):.3g}" for n, v in (rec.get("effective") or {}).items())
        lines.append(f"| {label} | {rec.get('kind', '')} | {rec.get('colours', '')} | "
                     f"{eff or '-'} | `{str(rec.get('sha256', ''))[:12]}` |")
        src = (rec.get("definition") or {}).get("source")
        if isinstance(src, str):
            sources.setdefault(str(rec.get("name", label)), src)
    for name, src in sources.items():
        lang = "json" if src.lstrip().startswith("{") else "toml"
        lines += ["", f"User shift `{name}`, verbatim:", "", f"```{lang}", src.rstrip(), "```"]
    return "\n".join(lines)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan if undefined."""
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


@dataclass(frozen=True)
class RunSummary:
    """A table cell: the mean of ``runs`` run scores, its 95% interval ``ci`` (None for two runs)
    made by ``ci_method``, and the ``spread`` (min, max) of the run scores when there are
    several."""

    mean: float
    runs: int
    ci: tuple[float, float] | None
    ci_method: str
    spread: tuple[float, float] | None

    def format(self, percent: bool) -> str:
        """``74% [61, 84]`` (one run), ``74% (range 72-75, 2 runs)``, ``74% [70, 78] (range
        72-75, 3 runs)``: brackets are confidence intervals, never ranges."""
        parts = [f"{100 * self.mean:.0f}%" if percent else f"{self.mean:.2f}"]
        if self.ci is not None:
            parts.append(format_interval(*self.ci, percent=percent))
        if self.spread is not None:
            parts.append(f"({format_range(self.spread, percent=percent)}, {self.runs} runs)")
        return " ".join(parts)


def across_runs(rs: Sequence[dict[str, Any]], key: str) -> RunSummary:
    """Summary of ``key`` ("success" or "return") over the runs ``rs`` of one table cell.

    One run: its own interval over evaluation episodes (``{key}_ci``). Several: the mean of the
    run means and their range; with three or more also Student's t 95% interval of that mean
    over runs (clipped to [0, 1] for success).
    """
    if len(rs) == 1:
        r = rs[0]
        lo, hi = r[f"{key}_ci"]
        return RunSummary(float(r[key]), 1, (float(lo), float(hi)),
                          str(r.get(f"{key}_ci_method", "")), None)
    vals = [float(r[key]) for r in rs]
    ci: tuple[float, float] | None = None
    method = ""
    if len(vals) >= 3:
        iv = t_interval(vals)
        ci, method = (iv.low, iv.high), iv.method
        if key == "success":
            ci = (max(0.0, iv.low), min(1.0, iv.high))
    return RunSummary(float(np.mean(vals)), len(vals), ci, method, (min(vals), max(vals)))


def headline(table: Sequence[dict[str, Any]], sweeps: bool = False) -> str:
    """Markdown: per env, success and return per shift for every encoder (the shifts of
    :func:`~sparseshift.experiments.study.robustness_report.main_labels`; with ``sweeps``,
    success alone under the severity sweeps instead)."""
    lines: list[str] = []
    for env in dict.fromkeys(r["env_id"] for r in table):
        env_rows = [r for r in table if r["env_id"] == env]
        shifts = sweep_labels(table, env) if sweeps else main_labels(table, env)
        if not shifts:
            continue
        ret_cols = [] if sweeps else shifts
        lines += [f"### {env}", "",
                  "| encoder | " + " | ".join(f"{s} success" for s in shifts)
                  + "".join(f" | {s} return" for s in ret_cols) + " |",
                  "|---" * (1 + len(shifts) + len(ret_cols)) + "|"]
        for enc in dict.fromkeys(r["encoder"] for r in env_rows):
            cells_s, cells_r = [], []
            for s in shifts:
                rs = [r for r in env_rows if r["encoder"] == enc and r["shift"] == s]
                cells_s.append(across_runs(rs, "success").format(percent=True))
                if not sweeps:
                    cells_r.append(across_runs(rs, "return").format(percent=False))
            dirs = sorted({r["agent_dir"] for r in env_rows if r["encoder"] == enc})
            links = " ".join(f"[s{i}]({d})" for i, d in enumerate(dirs)) if dirs else ""
            lines.append(f"| {enc} {links} | " + " | ".join(cells_s + cells_r) + " |")
        lines.append("")
    return "\n".join(lines)


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def paired_shift_tests(table: Sequence[dict[str, Any]], resamples: int = 2000, seed: int = 0
                       ) -> tuple[str, list[dict[str, Any]]]:
    """Per agent run, each shift against IN on the same evaluation episode seeds: the exact
    McNemar test of success (with Newcombe's paired score interval of the change) and a paired
    bootstrap of the mean return change. Rows without per-episode lists are skipped. Returns the
    markdown table ("" when no run has them; the shifts of
    :func:`~sparseshift.experiments.study.robustness_report.main_labels` only) and the tests as
    JSON (every shift, the severity sweeps included)."""
    main = {env: set(main_labels(table, env)) for env in {r["env_id"] for r in table}}
    lines = ["| env | encoder | agent seed | shift | success IN -> shift | change (pp) [95% CI] | "
             "IN only / shift only | McNemar p | return change [95% CI] | bootstrap p |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    data: list[dict[str, Any]] = []
    for agent in dict.fromkeys(r["agent_dir"] for r in table):
        runs = [r for r in table if r["agent_dir"] == agent]
        base = next((r for r in runs if r["shift"] == "in"), None)
        if base is None or base.get("episode_successes") is None:
            continue
        for r in runs:
            if r is base or r.get("episode_successes") is None or len(
                    r["episode_successes"]) != len(base["episode_successes"]):
                continue
            mc = mcnemar_exact(base["episode_successes"], r["episode_successes"])
            pb = paired_bootstrap(base["episode_returns"], r["episode_returns"], seed, resamples)
            name = f"{r['encoder']}" + (f" (s{r['encoder_seed']})"
                                        if r["encoder_seed"] is not None else "")
            data.append({"env_id": r["env_id"], "encoder": r["encoder"],
                         "encoder_seed": r["encoder_seed"], "agent_seed": r["agent_seed"],
                         "agent_dir": agent, "shift": r["shift"], "success": mc.to_json(),
                         "return": pb.to_json()})
            if r["shift"] not in main[r["env_id"]]:
                continue
            lines.append(
                f"| {r['env_id']} | {name} | {r['agent_seed']} | {r['shift']} | "
                f"{100 * base['success']:.0f}% -> {100 * r['success']:.0f}% | "
                f"{100 * mc.diff:+.0f} {format_interval(mc.ci_low, mc.ci_high, percent=True)} | "
                f"{mc.a_only} / {mc.b_only} | {_p(mc.p_value)} | "
                f"{pb.diff:+.2f} {format_interval(pb.ci_low, pb.ci_high)} | {_p(pb.p_value)} |")
    return ("\n".join(lines) if data else ""), data


def ood_gaps(table: Sequence[dict[str, Any]]) -> str:
    """Markdown: return under OOD1 and OOD2 relative to IN, per encoder (not pooled)."""
    lines = ["| env | encoder | in return | ood1 - in | ood2 - in |", "|---|---|---|---|---|"]
    for env in dict.fromkeys(r["env_id"] for r in table):
        for enc in dict.fromkeys(r["encoder"] for r in table if r["env_id"] == env):
            vals = {s: [r["return"] for r in table if r["env_id"] == env
                        and r["encoder"] == enc and r["shift"] == s]
                    for s in COLOUR_SPLITS}
            if not vals[COLOUR_SPLITS[0]]:
                continue
            base = float(np.mean(vals[COLOUR_SPLITS[0]]))
            gaps = [f"{float(np.mean(vals[s])) - base:+.2f}" if vals[s] else "n/a"
                    for s in OOD_SPLITS]
            lines.append(f"| {env} | {enc} | {base:.2f} | {gaps[0]} | {gaps[1]} |")
    return "\n".join(lines)


def correlations(table: Sequence[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Spearman correlation of each metric with OOD return across learned encoder runs."""
    lines = ["| env | metric | vs ood1 return | vs ood2 return | runs |", "|---|---|---|---|---|"]
    data: dict[str, Any] = {}
    for env in dict.fromkeys(r["env_id"] for r in table):
        learned = [r for r in table if r["env_id"] == env and r["kind"] == "learned"]
        for key in METRIC_KEYS:
            cells = []
            n = 0
            for shift in OOD_SPLITS:
                rs = [r for r in learned if r["shift"] == shift and key in r["metrics"]]
                n = len(rs)
                rho = spearman([r["metrics"][key] for r in rs], [r["return"] for r in rs])
                data[f"{env}|{key}|{shift}"] = rho
                cells.append("n/a" if math.isnan(rho) else f"{rho:+.2f}")
            if n and any(c != "n/a" for c in cells):
                lines.append(f"| {env} | {key} | {cells[0]} | {cells[1]} | {n} |")
    if len(lines) == 2:
        return "", data
    return "\n".join(lines), data


def learning_curves(table: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Per env: IN success (periodic evaluations during training, from each agent's
    ``evaluations.json``) against env steps, one line per encoder (agent seeds averaged)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for env in dict.fromkeys(r["env_id"] for r in table):
        curves: dict[str, list[list[tuple[int, float]]]] = {}
        for d in dict.fromkeys(r["agent_dir"] for r in table if r["env_id"] == env):
            name = next(r["encoder"] for r in table if r["agent_dir"] == d)
            path = out / d / "evaluations.json"
            if path.is_file():
                hist = json.loads(path.read_text())
                curves.setdefault(name, []).append([(h["step"], h["success"]["mean"])
                                                    for h in hist])
        if not any(c for cs in curves.values() for c in cs):
            continue
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        for name, runs in curves.items():
            runs = [c for c in runs if c]
            if not runs:
                continue
            steps = [x for x, _ in runs[0]]
            ys = np.mean([[y for _, y in c][: len(steps)] for c in runs
                          if len(c) >= len(steps)], axis=0)
            ax.plot(steps, 100 * ys, marker="o", ms=3, label=f"{name} ({len(runs)} run"
                    f"{'s' if len(runs) > 1 else ''})")
        ax.set_xlabel("env steps")
        ax.set_ylabel("success on IN colours (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.set_title(f"{env.split('/')[-1]}: learning curves (periodic evaluation)", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        paths.append(save_figure(fig, out / f"learning_curves_{env.split('/')[-1]}.png"))
    return paths


def pictures(table: Sequence[dict[str, Any]], out: Path) -> list[str]:
    """Markdown embedding each learned encoder's latent traversal and, for the best learned
    agent and the baselines, the evaluation video thumbnails per shift (where they exist)."""
    md: list[str] = []
    for env in dict.fromkeys(r["env_id"] for r in table):
        env_rows = [r for r in table if r["env_id"] == env]
        reps = dict.fromkeys(r["eval_rep_dir"] for r in env_rows if r["eval_rep_dir"])
        for d in reps:
            name = next(run_name(r) for r in env_rows if r["eval_rep_dir"] == d)
            if (out / d / "traversal.png").is_file():
                md.append(f"**{name}** latent traversal ([metrics]({d}/metrics.json)):\n\n"
                          f"![traversal of {name}]({d}/traversal.png)\n")
        ins = [r for r in env_rows if r["shift"] == "in" and r["kind"] == "learned"]
        chosen = ([max(ins, key=lambda r: r["success"])] if ins else []) + [
            next(r for r in env_rows if r["encoder"] == b and r["shift"] == "in")
            for b in dict.fromkeys(r["encoder"] for r in env_rows if r["kind"] == "baseline")]
        # the shifts heading the report (a severity sweep's videos stay in the agent folder)
        stems = {file_stem(s) for s in main_labels(table, env)}
        for r in chosen:
            thumbs = sorted((out / r["agent_dir"] / "videos").glob("*_0.gif"))
            thumbs = [t for t in thumbs if t.stem.rsplit("_", 1)[0] in stems]
            if thumbs:
                cells = " ".join(f"![{r['encoder']} {t.stem.rsplit('_', 1)[0]}]"
                                 f"({r['agent_dir']}/videos/{t.name})" for t in thumbs)
                shifts = ", ".join(t.stem.rsplit("_", 1)[0] for t in thumbs)
                md.append(f"**{r['encoder']}** (agent seed {r['agent_seed']}), first evaluation "
                          f"episode per shift ({shifts}; [videos]({r['agent_dir']}/videos)):"
                          f"\n\n{cells}\n")
    return md


def plots(table: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Returns per shift and encoder (bars with CIs) and metric vs OOD return scatters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for env in dict.fromkeys(r["env_id"] for r in table):
        env_rows = [r for r in table if r["env_id"] == env]
        encs = list(dict.fromkeys(r["encoder"] for r in env_rows))
        shifts = main_labels(table, env)
        fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(encs), 3.2))
        width = 0.8 / len(shifts)
        for i, s in enumerate(shifts):
            ms, lo, hi = [], [], []
            for e in encs:
                c = across_runs([r for r in env_rows if r["encoder"] == e and r["shift"] == s],
                                "return")
                bar = c.ci if c.ci is not None else c.spread or (c.mean, c.mean)
                ms.append(c.mean)
                lo.append(c.mean - bar[0])
                hi.append(bar[1] - c.mean)
            ax.bar(np.arange(len(encs)) + i * width, ms, width, yerr=[lo, hi], label=s,
                   capsize=2)
        ax.set_xticks(np.arange(len(encs)) + 0.4 - width / 2, encs, rotation=20, fontsize=8)
        ax.set_ylabel("return (bars: 95% CI; 2 runs: range)", fontsize=8)
        ax.set_title(env.split("/")[-1], fontsize=9)
        ax.legend(fontsize=7, title="shift", loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.set_xlabel("encoder")
        paths.append(save_figure(fig, out / f"returns_{env.split('/')[-1]}.png"))
        learned = [r for r in env_rows if r["kind"] == "learned"]
        keys = [k for k in ("dci_disentanglement", "mig", "mlp_r2_mean")
                if any(k in r["metrics"] for r in learned)]
        if learned and keys:
            fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0), squeeze=False)
            for ax, key in zip(axes[0], keys, strict=True):
                for s, marker in zip(OOD_SPLITS, "o^", strict=True):
                    rs = [r for r in learned if r["shift"] == s and key in r["metrics"]]
                    ax.scatter([r["metrics"][key] for r in rs], [r["return"] for r in rs],
                               marker=marker, label=s)
                    if s == OOD_SPLITS[-1]:  # name each encoder run once (next to its OOD2 point)
                        for r in rs:
                            ax.annotate(run_name(r),
                                        (r["metrics"][key], r["return"]), fontsize=5,
                                        xytext=(3, 3), textcoords="offset points")
                ax.set_xlabel(METRIC_LABELS.get(key, key), fontsize=8)
                ax.set_ylabel("mean return of the agent run", fontsize=8)
                _honest_ylim(ax)
                ax.legend(fontsize=7, title="shift", title_fontsize=7)
            fig.suptitle(env.split("/")[-1], fontsize=9)
            paths.append(save_figure(fig, out / f"metric_vs_ood_{env.split('/')[-1]}.png"))
    return paths


#: How figures name the representation metrics.
METRIC_LABELS: dict[str, str] = {
    "dci_disentanglement": "DCI disentanglement", "dci_completeness": "DCI completeness",
    "dci_informativeness_test": "DCI informativeness (test)", "mig": "MIG", "sap": "SAP",
    "modularity": "modularity", "explicitness_test": "explicitness (test)",
    "factor_vae_eval": "FactorVAE score", "linear_r2_mean": "linear probe R² (mean)",
    "mlp_r2_mean": "MLP probe R² (mean)", "mse_per_pixel": "reconstruction MSE per pixel",
}


def _honest_ylim(ax: Any, min_span: float = 0.5) -> None:
    """Widen a y axis whose data span less than ``min_span`` (return units) around their middle,
    so differences in the last digits are not drawn as a trend."""
    lo, hi = ax.get_ylim()
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - min_span / 2, mid + min_span / 2)


def task_r2(proxy: Mapping[str, Any]) -> dict[str, float | None]:
    """MLP-probe R² (accuracy for a discrete factor) of each task factor on IN frames, from a
    proxy-task result (a probe stage's result, or the ``proxy`` of an eval-rep report)."""
    factors = proxy.get("factors") or {}
    out: dict[str, float | None] = {}
    for name in proxy.get("task_factors") or []:
        f = factors.get(name)
        v = None if not isinstance(f, Mapping) else (f.get("mlp") or {}).get("in")
        out[str(name)] = None if v is None else float(v)
    return out


def floors(runs: Sequence[RunRef], results: Mapping[str, dict[str, Any]]
           ) -> tuple[str, list[dict[str, Any]]]:
    """Per env, each random initialisation (init seed = agent seed) as probed by the proxy task,
    next to every learned encoder run and your encoders: MLP-probe R² of the task factors on IN,
    the task score ``proxy_mlp_in_task``, the all-factor ``proxy_mlp_in`` and the IN success of
    the agents on that encoder. Returns the markdown ("" when no random initialisation was
    probed) and the entries as JSON."""
    entries: dict[tuple[str, str, Any], dict[str, Any]] = {}
    for r in runs:
        proxy: Mapping[str, Any] | None = None
        key: tuple[str, str, int | None]
        seed: int | None
        if r.kind == "baseline":
            if r.encoder != "random" or r.probe_task is None:
                continue
            key, what, seed = (r.env_id, "random", r.agent_seed), "random init", r.agent_seed
            proxy = results[r.probe_task.key]
        else:
            key, seed = (r.env_id, r.encoder, r.encoder_seed), r.encoder_seed
            what = "your encoder" if r.encoder_spec else "learned"
            if r.eval_rep_task is not None:
                proxy = (results[r.eval_rep_task.key].get("metrics") or {}).get("proxy")
            elif r.probe_task is not None:
                proxy = results[r.probe_task.key]
        if proxy is None:
            continue
        e = entries.setdefault(key, {
            "env_id": r.env_id, "encoder": r.encoder, "kind": what, "seed": seed,
            "task_r2_in": task_r2(proxy),
            "proxy_mlp_in_task": (proxy.get("summary") or {}).get("proxy_mlp_in_task"),
            "proxy_mlp_in": (proxy.get("summary") or {}).get("proxy_mlp_in"),
            "in_success": []})
        shifts = results[r.eval_task.key]["shifts"]
        if "in" in shifts:
            e["in_success"].append(float(shifts["in"]["success"]["mean"]))
    data = list(entries.values())
    envs = list(dict.fromkeys(e["env_id"] for e in data if e["kind"] == "random init"))
    if not envs:
        return "", data

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    parts = []
    for env in envs:
        lines = [f"### {env}", "",
                 "| encoder | init / encoder seed | task factors: MLP R² on IN | task score IN "
                 "| all-factor IN | agents' IN success |", "|---|---|---|---|---|---|"]
        for e in data:
            if e["env_id"] != env:
                continue
            r2 = ", ".join(f"{k} {num(v)}" for k, v in e["task_r2_in"].items()) or \
                "n/a (no task factors)"
            succ = e["in_success"]
            cell = "" if not succ else f"{100 * float(np.mean(succ)):.0f}%" + (
                f" (mean of {len(succ)} agents)" if len(succ) > 1 else "")
            seed_text = "" if e["seed"] is None else str(e["seed"])
            name = e["encoder"] + ("" if e["kind"] == "learned" else f" ({e['kind']})")
            lines.append(f"| {name} | {seed_text} | {r2} | {num(e['proxy_mlp_in_task'])} | "
                         f"{num(e['proxy_mlp_in'])} | {cell} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts), data


def write_report(preset_name: str, runs: Sequence[RunRef], results: Mapping[str, dict[str, Any]],
                 out: Path, seconds: float, extra: Mapping[str, Any] | None = None
                 ) -> tuple[Path, str]:
    """Write results.jsonl, report.md and plots; return the report path and headline table."""
    table = rows(runs, results, out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.jsonl", "".join(
        json.dumps(strict_json(r), sort_keys=True, allow_nan=False) + "\n" for r in table))
    head = headline(table)
    _, corr = correlations(table)
    power_data = power_of(table, {env: list(dict.fromkeys(r["shift"] for r in table
                                                         if r["env_id"] == env))
                                  for env in dict.fromkeys(r["env_id"] for r in table)})
    power_md = power_markdown(power_data)
    pngs = plots(table, out)
    curves = learning_curves(table, out)
    proxy_corr = proxy_correlations(table)
    proxy_pngs = proxy_scatter(table, proxy_corr, out)
    main = {env: set(main_labels(table, env)) for env in {r["env_id"] for r in table}}
    aggs = group_aggregates([r for r in table if r["shift"] in main[r["env_id"]]])
    paired_md, paired = paired_shift_tests(table)
    floors_md, floors_data = floors(runs, results)
    recorded, shift_defs = evaluation_records(runs, results, out)
    robust = agent_robustness(table, recorded)
    robust_md, robust_data = robustness_table(table, robust)
    probe_md, probe_data = probe_vs_agent(table)
    robust_pngs = robustness_figures(table, out)
    sweeps_md = headline(table, sweeps=True)
    yours = list(dict.fromkeys((r.encoder, r.encoder_spec, r.fingerprint) for r in runs
                               if r.encoder_spec is not None))
    compute = sum(float(v.get("seconds", 0.0)) for v in results.values())
    n_agents = len({r.eval_task.key for r in runs})
    md = [f"# sparseshift study: preset `{preset_name}`", "",
          f"{n_agents} agents, {len(table)} result rows; {compute:.0f} s of stage time in all, "
          f"{seconds:.0f} s wall time for this invocation (finished stages are reused). "
          "Brackets are 95% confidence intervals. One agent run per cell: success with the exact "
          "(Clopper-Pearson) binomial interval over its evaluation episodes, return with the "
          "percentile bootstrap interval of the mean over episodes. Several runs (encoder and "
          "agent seeds): the mean of the run means, their range and number as "
          "\"(range a-b, n runs)\", and with three or more runs Student's t interval of that "
          "mean over runs (success clipped to 0-100%); two runs get no interval. Encoder names "
          "link to their agents' folders (s0, s1, ...: agent runs). Resolved configuration: "
          "[study_config.json](study_config.json); every row, with its per-episode results: "
          "[results.jsonl](results.jsonl).",
          "", *(["Your encoders (judged like the learned ones: in the proxy correlations and "
                 "the 'all learned' aggregates): " + "; ".join(
                     f"`{label}` = `{spec}` (fingerprint `{str(fp)[:12]}`)"
                     for label, spec, fp in yours) + ".", ""] if yours else []),
          "## Results per shift", "", head,
          "## Each shift against IN, per agent run (paired)", "",
          "The same agent on the same evaluation episode seeds under IN and under the shift. "
          "Success: exact McNemar test (two-sided binomial test of the discordant episodes: IN "
          "only = succeeded under IN only), with Newcombe's paired score 95% interval of the "
          "change in percentage points. Return: paired percentile bootstrap over episodes "
          "(2,000 resamples, seed 0) of the mean change, with its two-sided bootstrap p-value "
          "(never below 2/2001). p-values are per comparison, not corrected for the number of "
          "comparisons.", "",
          paired_md or "No per-episode results (eval.json) to pair.", "",
          *(["The severity sweeps' paired tests are in [study.json](study.json) "
             "(`paired_shift_tests`).", ""] if sweeps_md else []),
          "## Robustness", "",
          "How success falls as a shift gets stronger. Graded shifts (nuisances and "
          "compositions such as `real`, levels 1-5; docs/shifts.md) are drawn as curves of "
          "success and return against severity per encoder, IN at severity 0; the colour splits "
          "have a panel of their own. An encoder's runs (encoder seeds x agent seeds, the same "
          "episode seeds) are pooled in the curves: a point is the success over all their "
          "episodes with the exact interval of that count, and the mean return with its "
          "bootstrap interval over the pooled episodes. These intervals cover the evaluation "
          "episodes of these agents, not the spread between training seeds, which the table "
          "below gives as a range.", "",
          *[f"![{p.stem}]({p.name})" for p in robust_pngs], "",
          *(["### Success per severity", "", sweeps_md] if sweeps_md else []),
          "### Mean relative robustness", "",
          "Each agent's mean relative robustness, as its evaluation recorded it (eval.json "
          "`robustness`): success under a shift / success IN, averaged over the shift's "
          "severities, then over every shift evaluated (OOD1 and OOD2 included), with a paired "
          "percentile bootstrap 95% interval over episodes; 1 = no loss. Per shift the same "
          "ratio for that shift alone. One run: its value [95% CI]. Several runs: the mean over "
          "runs and the per-run range (not an interval). Undefined for an agent with no success "
          "IN.", "",
          robust_md or "No shift besides IN was evaluated.", "",
          "### Probe robustness against agent robustness", "",
          "Does the OOD proxy task tell which nuisance breaks an encoder's agents? Per learned "
          "encoder run and shift (the proxy must have rendered the shift: the metrics' "
          "`proxy_splits`): probe robustness against its agents' robustness, then Spearman's "
          "rho across encoder runs with a percentile bootstrap 95% interval over runs when "
          "there are at least three (with a handful of runs the interval is wide: read the "
          "sign and the interval, not the point; with fewer than three, the table alone).", "",
          probe_md or "No learned encoder has proxy scores under a shift besides IN.", "",
          *(["### Shift definitions", "",
             "What each label stood for, as the evaluations recorded it (the definition's "
             "SHA-256; a user shift file verbatim).", "", shift_definitions(shift_defs), ""]
            if shift_defs else []),
          "## Aggregates over runs (Agarwal et al. 2021)", "",
          "Interquartile mean of success over runs (encoder and agent seeds; envs as tasks) with "
          "a stratified bootstrap 95% CI over runs, and the optimality gap (mean shortfall below "
          "100% success). A group with one run per env has no interval over runs.", "",
          agg_markdown(aggs), ""]
    if curves:
        md += ["## Learning curves", "", *[f"![{p.stem}]({p.name})" for p in curves], ""]
    md += ["## Representations", "",
           "Metrics of each frozen encoder on the study's pairs dataset (disentanglement_lib "
           "protocols; FG-ARI for Slot Attention; for the Neural Wave Machine, plane-wave "
           "coherence of the free-running sheet vs a site-shuffled control and forecast MSE vs "
           "repeating the last frame, on its video).", "", representation_table(table), "",
           *pictures(table, out),
           *(["## Floors: each random initialisation, probed", "",
              "The random baseline is an untrained encoder initialised from the agent seed, so "
              "each of its agents has its own floor. Each initialisation is probed like the "
              "learned encoders (the OOD proxy task's MLP probes, fitted and scored on IN "
              "frames): R² (accuracy for a discrete factor) of each task factor, the task score "
              "(mean over the task factors, negative R² as 0) and the all-factor score, next to "
              "the IN success of the agents on that encoder (for a random initialisation: its "
              "one agent).", "", floors_md, ""] if floors_md else []),
           "## OOD1 vs OOD2 (return relative to IN)", "",
           "OOD1: colours the encoder saw in pretraining but the agent never did. OOD2: colours "
           "nothing trained on.", "", ood_gaps(table), "",
           "## Does the OOD proxy task predict the agents? (Träuble et al. 2022)", "",
           "Per encoder run: the proxy score (MLP probes per factor group trained on IN colours, "
           "mean R^2 over the non-colour groups, scored on frames of each shift) next to its "
           "agents' success under that shift; then Spearman's rho across encoders with a "
           "percentile bootstrap 95% CI over encoders. With a handful of encoders the CIs are "
           "wide: read the sign and the interval, not the point.", "",
           proxy_markdown(table, proxy_corr) if proxy_corr else
           "No learned encoder has proxy scores.", "",
           *[f"![{p.stem}]({p.name})" for p in proxy_pngs], ""]
    if power_md:
        md += ["## Do the proxy and the metrics rank the agents? (power)", "",
               "Träuble et al. (2022) ask whether an encoder's OOD proxy score and its "
               "disentanglement predict its agents' success out of distribution (OOD1: colours "
               "the encoder saw; OOD2: colours it did not). Spearman's rho across learned "
               "encoder runs between each metric and the mean success of the run's agents, per "
               "shift, next to what independence gives at the same number of runs: an interval "
               "that excludes 0 means something only where the null rarely does so.", "",
               power_md, ""]
    md += ["## Returns per shift", "", *[f"![{p.stem}]({p.name})" for p in pngs], ""]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(md))
    write_json_atomic(out / "study.json", {"preset": preset_name, "seconds": seconds,
                                           "stage_seconds": compute,
                                           "correlations": corr,
                                           "power": power_data,
                                           "proxy_correlations": proxy_corr,
                                           "aggregates": aggs,
                                           "paired_shift_tests": paired,
                                           "floors": floors_data,
                                           "robustness": {
                                               "agents": robust,
                                               "encoders": robust_data,
                                               "probe_vs_agent": probe_data},
                                           "shift_defs": shift_defs,
                                           **dict(extra or {})})
    return report, head
