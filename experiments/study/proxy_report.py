"""Does the OOD proxy task predict how RL agents generalise? (Träuble, Dittadi et al. 2022)

For every learned encoder of a study (one point per encoder run; agent seeds averaged), the
proxy's score under a shift (:mod:`sparseshift.representations.proxy`: MLP probes trained on IN
colours, mean R^2/accuracy over the env's task factors where it declares them, else over the
non-colour factor groups; the all-factor score is shown beside it) is set against its agents'
success and return under the same shift. The report gives Spearman's rank correlation with a
percentile bootstrap 95% interval over encoders (encoders resampled with replacement; resamples
where the ranks are undefined are dropped and counted), and a scatter plot with every point
named. Every evaluated shift the proxy also scored is compared (severity sweeps such as
``lighting:1``, ``lighting:3`` included, one row and panel per label); the per-encoder table shows
the shifts heading the report (sweeps left out to keep it readable; their scores are in
``results.jsonl``), and the robustness section compares probe and agent robustness per nuisance
(:mod:`sparseshift.experiments.study.robustness_report`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparseshift.agents.stats import spearman_ci

PROBE = "mlp"
#: Scatter panels per row.
MAX_COLUMNS = 4


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write (110 dpi) and close a report figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.1)  # no label is ever cut
    plt.close(fig)
    return path


def encoder_points(table: Sequence[dict[str, Any]], env: str) -> list[dict[str, Any]]:
    """One entry per learned encoder run of ``env``: its label, proxy scores per shift and its
    agents' mean success and return per shift.

    ``proxy`` is the task score (``proxy_mlp_<shift>_task``, over the env's task factors) when
    every encoder of the env has one wherever it has the all-factor score, else the all-factor
    score; ``proxy_all`` is always the all-factor score and ``proxy_kind`` says which ``proxy``
    is (``"task"`` or ``"all"``, the same for every point of an env)."""
    points: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in table:
        if r["env_id"] != env or r["kind"] != "learned":
            continue
        key = (r["encoder"], r["encoder_seed"])
        name = (r["encoder"] if r["encoder_seed"] is None
                else f"{r['encoder']}/s{r['encoder_seed']}")
        p = points.setdefault(key, {"name": name,
                                    "proxy_all": {}, "proxy_task": {}, "success": {},
                                    "return": {}})
        for kind, suffix in (("proxy_all", ""), ("proxy_task", "_task")):
            proxy = r["metrics"].get(f"proxy_{PROBE}_{r['shift']}{suffix}")
            if proxy is not None:
                p[kind][r["shift"]] = float(proxy)
        p["success"].setdefault(r["shift"], []).append(float(r["success"]))
        p["return"].setdefault(r["shift"], []).append(float(r["return"]))
    task = any(p["proxy_task"] for p in points.values()) and all(
        set(p["proxy_all"]) <= set(p["proxy_task"]) for p in points.values())
    out = []
    for p in points.values():
        for k in ("success", "return"):
            p[k] = {s: float(np.mean(v)) for s, v in p[k].items()}
        task_scores = p.pop("proxy_task")
        p["proxy"] = task_scores if task else dict(p["proxy_all"])
        p["proxy_kind"] = "task" if task else "all"
        out.append(p)
    return out


def proxy_correlations(table: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per env and shift label (in the order evaluated): rho(proxy score, agent success) and
    rho(proxy score, agent return)."""
    out: dict[str, dict[str, Any]] = {}
    for env in dict.fromkeys(r["env_id"] for r in table):
        pts = encoder_points(table, env)
        per: dict[str, Any] = {}
        for s in dict.fromkeys(r["shift"] for r in table if r["env_id"] == env):
            have = [p for p in pts if s in p["proxy"] and s in p["success"]]
            if not have:
                continue
            per[s] = {k: spearman_ci([p["proxy"][s] for p in have], [p[k][s] for p in have])
                      for k in ("success", "return")}
        if per:
            out[env] = per
    return out


def _cell(c: dict[str, Any]) -> str:
    if math.isnan(c["rho"]):
        return "n/a"
    ci = "" if math.isnan(c["ci_low"]) else f" [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"
    dropped = c.get("degenerate_resamples", 0) / max(1, c.get("resamples", 0))
    note = f" ({100 * dropped:.0f}% of resamples undefined)" if dropped >= 0.05 else ""
    return f"{c['rho']:+.2f}{ci}{note}"


def markdown(table: Sequence[dict[str, Any]], corr: dict[str, dict[str, Any]]) -> str:
    """The per-encoder proxy/agent table and the correlation table, per env."""
    from sparseshift.experiments.study.robustness_report import main_labels

    parts = []
    for env, per in corr.items():
        pts = encoder_points(table, env)
        shifts = [s for s in main_labels(table, env) if s in per]
        # The task score (over the env's task factors) leads where there is one; the all-factor
        # score follows as a secondary column.
        task = bool(pts) and pts[0]["proxy_kind"] == "task"
        name = "task proxy" if task else "proxy"
        cols = [("proxy", name)] + ([("proxy_all", "all-factor proxy")] if task else [])
        lines = [f"### {env}", "",
                 *([f"task proxy: MLP score over {env.split('/')[-1]}'s task factors (what the "
                    "reward needs from the image); the correlations use it. all-factor proxy: "
                    "over every non-colour factor group.", ""] if task else []),
                 "| encoder | " + " | ".join(f"{label} {s}" for _, label in cols
                                            for s in shifts) + " | "
                 + " | ".join(f"success {s}" for s in shifts) + " |",
                 "|---|" + "---|" * ((len(cols) + 1) * len(shifts))]
        for p in pts:
            cells = [f"{p[k][s]:.2f}" if s in p[k] else "" for k, _ in cols for s in shifts]
            cells += [f"{100 * p['success'][s]:.0f}%" if s in p["success"] else ""
                      for s in shifts]
            lines.append(f"| {p['name']} | " + " | ".join(cells) + " |")
        lines += ["", f"| shift | rho({name}, success) [95% CI] | rho({name}, return) [95% CI] "
                  "| encoders |", "|---|---|---|---|"]
        for s in per:
            c = per[s]
            lines.append(f"| {s} | {_cell(c['success'])} | {_cell(c['return'])} | "
                         f"{c['success']['n']} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def scatter(table: Sequence[dict[str, Any]], corr: dict[str, dict[str, Any]], out: Path
            ) -> list[Path]:
    """Per env: one panel per shift, proxy score (x) against agent success (y), each point an
    encoder run named beside it; rho in the panel title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for env, per in corr.items():
        pts = encoder_points(table, env)
        shifts = list(per)
        cols = min(MAX_COLUMNS, len(shifts))
        rows = -(-len(shifts) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
        for ax in axes.flat[len(shifts):]:
            ax.set_visible(False)
        for ax, s in zip(axes.flat, shifts, strict=False):
            have = [p for p in pts if s in p["proxy"] and s in p["success"]]
            xs = [p["proxy"][s] for p in have]
            ys = [100 * p["success"][s] for p in have]
            ax.scatter(xs, ys, s=22, color="tab:blue")
            for p, x, y in zip(have, xs, ys, strict=True):
                ax.annotate(p["name"], (x, y), textcoords="offset points", xytext=(3, 3),
                            fontsize=7)
            c = per[s]["success"]
            ax.set_title(f"{s}: rho {_cell(c)}", fontsize=8)
            over = "task factors" if have and have[0]["proxy_kind"] == "task" \
                else "non-colour factors"
            ax.set_xlabel(f"proxy score under {s}\n(MLP probes, mean over {over})", fontsize=7)
            ax.set_ylabel(f"agent success under {s} (%)", fontsize=7)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{env.split('/')[-1]}: OOD proxy task vs RL agents, one point per encoder",
                     fontsize=9)
        paths.append(save_figure(fig, out / f"proxy_vs_agents_{env.split('/')[-1]}.png"))
    return paths
