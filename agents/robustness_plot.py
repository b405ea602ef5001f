"""Robustness figures and tables: success and return against shift severity, with intervals.

:func:`plot_robustness` draws one column of panels per graded shift (a nuisance, a composition
such as ``real``, or a user's shift): success rate against severity on top (the Clopper-Pearson
exact 95% interval as a band and error bars), mean return below (its percentile-bootstrap 95%
interval), severity 0 being the IN result. Each encoder is one line, so the same function draws
one agent (``sparseshift evaluate``) or a study's encoders side by side. Colour splits, which have
no severity, get a panel of their own with labelled points. :func:`agent_figure` and
:func:`robustness_markdown` are what ``evaluate`` writes (``robustness.png``, ``robustness.md``)
from an ``eval.json``.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state) and
written atomically.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparseshift.agents.robustness import IN, CurvePoint, curves
from sparseshift.envs.shifts.registry import COLOUR_SPLITS

#: Graded-shift panels per row of the figure (each with its success and return panels).
MAX_COLUMNS = 4
#: Size of one panel (pixels at :data:`DPI`).
PANEL_W, PANEL_H, DPI = 330, 250, 100
SUCCESS_CI = "Clopper-Pearson exact 95%"
RETURN_CI = "percentile-bootstrap 95%"
INTERVAL_NOTE = (f"bands and bars: 95% intervals over episodes (success: {SUCCESS_CI}; "
                 f"return: {RETURN_CI})")


def split_points(result: Mapping[str, Any]) -> dict[str, CurvePoint]:
    """The colour-split results of an ``eval.json`` (labels without a severity, IN included),
    as points (severity 0)."""
    defs = result.get("shift_defs", {})
    out: dict[str, CurvePoint] = {}
    for label, r in result["shifts"].items():
        d = defs.get(label)
        if d is not None and d.get("severity") is not None:
            continue
        s, ret = r["success"], r["return"]
        out[label] = CurvePoint(0.0, label, s["mean"], s["ci_low"], s["ci_high"], ret["mean"],
                                ret["ci_low"], ret["ci_high"])
    order = {c: i for i, c in enumerate(COLOUR_SPLITS)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _band(ax: Any, xs: list[float], mid: list[float], lo: list[float], hi: list[float],
          colour: Any, label: str | None, marker: str) -> None:
    yerr = [[max(0.0, m - a) for m, a in zip(mid, lo, strict=True)],
            [max(0.0, b - m) for m, b in zip(mid, hi, strict=True)]]
    ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, linewidth=0)
    ax.errorbar(xs, mid, yerr=yerr, color=colour, marker=marker, markersize=4, capsize=3,
                linewidth=1.5, label=label)


def _finite(values: Sequence[float]) -> list[float]:
    return [v if v is not None and math.isfinite(v) else float("nan") for v in values]


def plot_robustness(curves_by_encoder: Mapping[str, Mapping[str, Sequence[CurvePoint]]],
                    out_png: str | os.PathLike[str], *,
                    splits_by_encoder: Mapping[str, Mapping[str, CurvePoint]] | None = None,
                    title: str | None = None, notes: Sequence[str] = ()) -> Path:
    """Write ``out_png``: per graded shift a success panel and a return panel against severity
    (0 = IN), one line per encoder (``curves_by_encoder``: encoder -> shift name -> points, as
    :func:`sparseshift.agents.robustness.curves` returns), intervals as bands and error bars; the
    colour splits of ``splits_by_encoder`` (encoder -> label -> point) in a panel of their own.
    ``notes`` are lines under the title (e.g. each encoder's mean relative robustness)."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    from sparseshift.envs.infra.io import atomic_write_bytes
    from sparseshift.representations.viz import figure_png, new_figure

    encoders = list(curves_by_encoder)
    splits = {e: dict(v) for e, v in (splits_by_encoder or {}).items() if v}
    for e in splits:
        if e not in encoders:
            encoders.append(e)
    names: list[str] = []
    for per in curves_by_encoder.values():
        names.extend(n for n in per if n not in names)
    panels: list[str | None] = [*names]
    if splits:
        panels.append(None)  # the colour splits
    if not panels:
        raise ValueError("nothing to plot: no graded shift and no colour split")
    cols = min(MAX_COLUMNS, len(panels))
    rows = -(-len(panels) // cols)
    width = PANEL_W * max(cols, 2)
    chars = max(40, int(width / 7.5))  # characters of 8-10 pt text per line of the figure
    head_lines = [*textwrap.wrap(title or "robustness: success and return against shift "
                                 "severity", chars),
                  *(w for n in (*notes, INTERVAL_NOTE) for w in textwrap.wrap(n, chars))]
    legend_cols = max(1, min(len(encoders), width // 220))
    head = 45 + 14 * len(head_lines)
    legend_h = 70 + 18 * (-(-len(encoders) // legend_cols))
    fig = new_figure(width, 2 * PANEL_H * rows + head + legend_h, DPI)
    grid = fig.add_gridspec(2 * rows, cols, left=60 / fig.bbox.width, right=0.98,
                            top=1 - head / fig.bbox.height,
                            bottom=legend_h / fig.bbox.height, hspace=0.55, wspace=0.35)
    cmap = colormaps["tab10"]
    colour = {e: cmap(i % 10) for i, e in enumerate(encoders)}
    markers = "osD^vP*Xh<>"
    marker = {e: markers[i % len(markers)] for i, e in enumerate(encoders)}
    for k, name in enumerate(panels):
        r, c = divmod(k, cols)
        ax_s = fig.add_subplot(grid[2 * r, c])
        ax_r = fig.add_subplot(grid[2 * r + 1, c])
        if name is None:
            _split_panels(ax_s, ax_r, splits, colour, marker, len(encoders))
            continue
        for e in encoders:
            pts = list(curves_by_encoder.get(e, {}).get(name, ()))
            if not pts:
                continue
            xs = [p.severity for p in pts]
            _band(ax_s, xs, [p.success for p in pts], [p.success_low for p in pts],
                  [p.success_high for p in pts], colour[e], None, marker[e])
            _band(ax_r, xs, _finite([p.ret for p in pts]), _finite([p.ret_low for p in pts]),
                  _finite([p.ret_high for p in pts]), colour[e], None, marker[e])
        for ax in (ax_s, ax_r):
            ax.set_xlabel("severity (0 = IN)", fontsize=8)
            ax.set_xlim(-0.25, 5.25)
            ax.set_xticks(range(6))
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        ax_s.set_ylim(-0.03, 1.03)
        ax_s.set_ylabel("success rate", fontsize=8)
        ax_r.set_ylabel("mean return", fontsize=8)
        ax_s.set_title(f"{name}: success", fontsize=9)
        ax_r.set_title(f"{name}: return", fontsize=9)
    handles = [Line2D([], [], color=colour[e], marker=marker[e], label=e) for e in encoders]
    fig.legend(handles=handles, loc="lower center", ncol=legend_cols, fontsize=8,
               frameon=False, title="encoder (band and bars: 95% interval)", title_fontsize=8)
    fig.suptitle(head_lines[0], fontsize=10, y=1 - 6 / fig.bbox.height, va="top")
    if len(head_lines) > 1:
        fig.text(0.5, 1 - 26 / fig.bbox.height, "\n".join(head_lines[1:]), ha="center",
                 va="top", fontsize=8)
    return atomic_write_bytes(Path(out_png), figure_png(fig))


def _split_panels(ax_s: Any, ax_r: Any, splits: Mapping[str, Mapping[str, CurvePoint]],
                  colour: Mapping[str, Any], marker: Mapping[str, str], n_encoders: int) -> None:
    """The colour splits: categorical x (``in``, ``ood1``, ``ood2``), a labelled point per
    encoder and split with its interval."""
    labels: list[str] = []
    for per in splits.values():
        labels.extend(lb for lb in per if lb not in labels)
    width = 0.6 / max(1, n_encoders)
    for i, (e, per) in enumerate(splits.items()):
        off = (i - (len(splits) - 1) / 2) * width
        for ax, get in ((ax_s, lambda p: (p.success, p.success_low, p.success_high)),
                        (ax_r, lambda p: (p.ret, p.ret_low, p.ret_high))):
            for j, lb in enumerate(labels):
                p = per.get(lb)
                if p is None:
                    continue
                m, lo, hi = _finite(get(p))
                ax.errorbar([j + off], [m], yerr=[[max(0.0, m - lo)], [max(0.0, hi - m)]],
                            color=colour[e], marker=marker[e], markersize=5, capsize=3)
                if math.isfinite(m):
                    ax.annotate(f"{m:.2f}", (j + off, m), textcoords="offset points",
                                xytext=(4, 3), fontsize=6, color=colour[e])
    for ax in (ax_s, ax_r):
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_xlabel("colour split (no severity)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    ax_s.set_ylim(-0.03, 1.03)
    ax_s.set_ylabel("success rate", fontsize=8)
    ax_r.set_ylabel("mean return", fontsize=8)
    ax_s.set_title("colour splits: success", fontsize=9)
    ax_r.set_title("colour splits: return", fontsize=9)


def _robustness_note(rob: Mapping[str, Any] | None) -> str:
    if rob is None:
        return "mean relative robustness: undefined (needs 'in' with success > 0 and a shift)"
    return (f"mean relative robustness {_num(rob['mean'])} [{_num(rob['ci_low'])}, "
            f"{_num(rob['ci_high'])}] (success under shift / success IN; paired bootstrap over "
            f"{rob['n_episodes']} episodes)")


def _num(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else \
        format(float(v), fmt)


def agent_label(result: Mapping[str, Any]) -> str:
    """How an evaluated agent is named in a figure legend: its encoder (the folder or factory
    name, else its kind) and training seed."""
    name = result.get("encoder_name") or result.get("encoder", "agent")
    return f"{name} (train seed {result.get('train_seed', '?')})"


def agent_figure(result: Mapping[str, Any], out_png: str | os.PathLike[str]) -> Path | None:
    """:func:`plot_robustness` of one ``eval.json``: a curve per graded shift and its colour
    splits as a panel (an evaluation of colour splits alone gets that panel only). None, and
    nothing written, when there is nothing to draw."""
    curve = curves(result)
    name = agent_label(result)
    splits = split_points(result)
    if curve and set(splits) <= {IN}:  # IN alone is already every curve's severity 0
        splits = {}
    if not curve and not splits:
        return None
    env = str(result.get("env_id", ""))
    n = next(iter(result["shifts"].values()))["return"]["n"]
    return plot_robustness({name: curve}, out_png, splits_by_encoder={name: splits},
                           title=f"robustness of {Path(str(result.get('agent', 'agent'))).name} "
                                 f"on {env} ({n} episodes per shift)",
                           notes=[_robustness_note(result.get("robustness"))])


def robustness_markdown(result: Mapping[str, Any]) -> str:
    """A markdown report of one ``eval.json``: a row per shift label (severity, success and
    return with their intervals, success relative to IN), the mean relative robustness with its
    interval, per shift, and the definitions evaluated (with their SHA-256)."""
    shifts, defs = result["shifts"], result.get("shift_defs", {})
    base = shifts.get(IN, {}).get("success", {}).get("mean")
    agent = Path(str(result.get("agent", "agent"))).name
    n = next(iter(shifts.values()))["return"]["n"]
    lines = [f"# Robustness of {agent}", "",
             f"env {result.get('env_id', '?')}, encoder {result.get('encoder', '?')}, "
             f"train seed {result.get('train_seed', '?')}; {n} episodes per shift, the same "
             f"episode seeds for every shift; actions "
             f"{result.get('params', {}).get('policy', '?')}.", "",
             f"| shift | severity | success | 95% CI ({SUCCESS_CI.split(' 95%')[0]}) | "
             f"mean return | 95% CI (bootstrap) | success / IN success |",
             "|---|---|---|---|---|---|---|"]
    for label, r in shifts.items():
        sev = defs.get(label, {}).get("severity")
        s, ret = r["success"], r["return"]
        rel = "n/a" if not base else _num(s["mean"] / base)
        lines.append(f"| {label} | {'-' if sev is None else format(float(sev), 'g')} | "
                     f"{_num(s['mean'])} | [{_num(s['ci_low'])}, {_num(s['ci_high'])}] | "
                     f"{_num(ret['mean'])} | [{_num(ret['ci_low'])}, {_num(ret['ci_high'])}] | "
                     f"{rel} |")
    rob = result.get("robustness")
    lines += ["", _robustness_note(rob) + ".", ""]
    if rob is not None:
        lines += ["| shift | relative robustness | 95% CI | labels averaged |", "|---|---|---|---|"]
        for name, v in rob["shifts"].items():
            lines.append(f"| {name} | {_num(v['mean'])} | [{_num(v['ci_low'])}, "
                         f"{_num(v['ci_high'])}] | {', '.join(v['labels'])} |")
        lines += ["", f"Method: {rob.get('method', '')}.", ""]
    if defs:
        lines += ["## Shift definitions", "",
                  "| label | kind | colours | nuisances (effective severity) | sha256 |",
                  "|---|---|---|---|---|"]
        for label, d in defs.items():
            eff = ", ".join(f"{k} {float(v):g}" for k, v in d.get("effective", {}).items()) or "-"
            lines.append(f"| {label} | {d.get('kind', '?')} | {d.get('colours', '?')} | {eff} | "
                         f"`{str(d.get('sha256', ''))[:16]}` |")
        files = {d["name"]: d["definition"]["source"] for d in defs.values()
                 if isinstance(d.get("definition"), dict) and "source" in d["definition"]}
        for name, source in files.items():
            lines += ["", f"User shift `{name}` (file text, verbatim):", "", "```",
                      source.rstrip("\n"), "```"]
    figure = result.get("robustness_figure")
    if figure:
        lines += ["", f"Figure: {Path(str(figure)).name} (success and return against severity, "
                      "95% intervals)."]
    return "\n".join(lines) + "\n"
