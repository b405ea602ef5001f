"""Robustness summaries, curves, figures and tables on synthetic evaluations (no episodes run):
relative robustness numbers computed by hand, the figure's panels and size, the markdown table,
the TensorBoard scalars, and the shift grammar as evaluate's config and parse_shifts see it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparseshift.agents.config import EvaluateConfig
from sparseshift.agents.envs import parse_shifts
from sparseshift.agents.evaluate import format_table, scalar_summaries
from sparseshift.agents.robustness import CurvePoint, curves, relative_robustness, robustness_of
from sparseshift.agents.robustness_plot import (
    PANEL_H,
    PANEL_W,
    agent_figure,
    plot_robustness,
    robustness_markdown,
    split_points,
)
from sparseshift.agents.stats import bootstrap_ci, success_interval
from sparseshift.agents.video import file_stem
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.shifts.registry import COLOUR_SPLITS, default_registry

GRID = "sparseshift/ColourGrid-v0"
REACH = "sparseshift/TriFingerReach-v0"

#: Five shared episodes: IN 4/5; lighting:1 3/5, lighting:2 2/5; ood2 4/5.
SUCCESSES: dict[str, list[bool]] = {
    "in": [True, True, True, True, False],
    "lighting:1": [True, True, True, False, False],
    "lighting:2": [True, True, False, False, False],
    "ood2": [True, True, True, True, False],
}


def synthetic(successes: dict[str, list[bool]] = SUCCESSES) -> dict[str, Any]:
    """An eval.json as evaluate writes it, from per-episode successes (return = success)."""
    reg = default_registry()
    shifts, defs = {}, {}
    for label, s in successes.items():
        rets = [float(x) for x in s]
        shifts[label] = {"success": success_interval(rets).to_json(),
                         "return": bootstrap_ci(rets, 0, 200).to_json(),
                         "successes": list(s), "returns": rets}
        defs[label] = reg.resolve(label).record()
    result: dict[str, Any] = {"agent": "/tmp/agent", "env_id": REACH, "encoder": "state",
                              "train_seed": 1, "params": {"policy": "deterministic"},
                              "shifts": shifts, "shift_defs": defs}
    result["robustness"] = robustness_of(result, seed=0, resamples=500)
    return result


def test_relative_robustness_matches_a_hand_computation() -> None:
    rob = synthetic()["robustness"]
    # lighting: (3/5 / 4/5 + 2/5 / 4/5) / 2 = (0.75 + 0.5) / 2 = 0.625; ood2: 1.0
    assert rob["shifts"]["lighting"]["mean"] == pytest.approx(0.625)
    assert rob["shifts"]["lighting"]["labels"] == ["lighting:1", "lighting:2"]
    assert rob["shifts"]["ood2"]["mean"] == pytest.approx(1.0)
    assert rob["mean"] == pytest.approx((0.625 + 1.0) / 2)
    assert rob["n_episodes"] == 5
    assert rob["ci_low"] <= rob["mean"] <= rob["ci_high"]
    assert rob["ci_high"] - rob["ci_low"] > 0.05  # five episodes: a wide interval
    # seeded: the same interval again
    assert robustness_of(synthetic(), seed=0, resamples=500) == rob


def test_relative_robustness_undefined_without_in_or_with_in_success_zero() -> None:
    zero = {**SUCCESSES, "in": [False] * 5}
    assert synthetic(zero)["robustness"] is None
    no_in = {k: v for k, v in SUCCESSES.items() if k != "in"}
    assert synthetic(no_in)["robustness"] is None
    assert relative_robustness({"in": [True, True]}, {}) is None  # no shift to compare
    with pytest.raises(ValueError, match="same episodes"):
        relative_robustness({"in": [True, True], "x": [True]}, {"x": ["x"]})


def test_curves_anchor_at_in_and_split_points_keep_colour_splits() -> None:
    result = synthetic()
    c = curves(result)
    assert list(c) == ["lighting"]
    pts = c["lighting"]
    assert [(p.severity, p.label) for p in pts] == [(0.0, "in"), (1.0, "lighting:1"),
                                                   (2.0, "lighting:2")]
    assert [p.success for p in pts] == pytest.approx([0.8, 0.6, 0.4])
    assert all(p.success_low <= p.success <= p.success_high for p in pts)
    assert list(split_points(result)) == ["in", "ood2"]


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_plot_robustness_one_panel_column_per_shift_one_line_per_encoder(tmp_path: Path) -> None:
    def pts(scale: float) -> list[CurvePoint]:
        return [CurvePoint(float(s), f"noise:{s}" if s else "in", scale * (1 - s / 6),
                           max(0.0, scale * (1 - s / 6) - 0.1), min(1.0, scale * (1 - s / 6) + 0.1),
                           -s, -s - 1, -s + 1) for s in range(6)]

    split = {"in": CurvePoint(0, "in", 0.9, 0.8, 1.0, 0, -1, 1),
             "ood2": CurvePoint(0, "ood2", 0.5, 0.3, 0.7, -2, -3, -1)}
    out = plot_robustness({"beta_vae": {"noise": pts(1.0), "blur": pts(0.8)},
                           "slots": {"noise": pts(0.6)}}, tmp_path / "r.png",
                          splits_by_encoder={"beta_vae": split, "slots": split},
                          title="two encoders", notes=["note"])
    w, h = _png_size(out)
    assert w == 3 * PANEL_W  # noise, blur, colour splits
    assert h >= 2 * PANEL_H  # a success row and a return row
    assert out.stat().st_size > 20_000  # drawn, not blank
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_robustness({}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_agent_figure_and_table_of_one_evaluation(tmp_path: Path) -> None:
    result = synthetic()
    png = agent_figure(result, tmp_path / "robustness.png")
    assert png is not None
    w, h = _png_size(png)
    assert w == 2 * PANEL_W and h > 2 * PANEL_H  # lighting and the colour splits
    only_splits = synthetic({k: v for k, v in SUCCESSES.items() if k in COLOUR_SPLITS})
    splits_png = agent_figure(only_splits, tmp_path / "splits.png")  # the colour splits panel
    assert splits_png is not None and _png_size(splits_png)[0] == 2 * PANEL_W

    md = robustness_markdown({**result, "robustness_figure": str(png)})
    rows: dict[str, str] = {}
    for line in md.splitlines():  # the first table: one row per label
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].strip("| "), line)
    assert "| 1 | 0.600 |" in rows["lighting:1"] and rows["lighting:1"].endswith("| 0.750 |")
    assert rows["lighting:2"].endswith("| 0.500 |")
    assert "mean relative robustness 0.812 [" in md
    assert "| lighting | 0.625 |" in md
    assert default_registry().resolve("lighting:2").record()["sha256"][:16] in md
    assert "Figure: robustness.png" in md

    table = format_table(result)
    assert [ln.split()[0] for ln in table.splitlines()[1:5]] == list(SUCCESSES)
    line = next(ln for ln in table.splitlines() if ln.startswith("mean relative robustness"))
    assert "0.812 [" in line and "over 2 shift(s)" in line
    assert "undefined (IN success is 0)" in format_table(
        synthetic({**SUCCESSES, "in": [False] * 5}))


def test_scalar_summaries_are_the_numbers_of_the_table() -> None:
    result = synthetic()
    s = scalar_summaries(result)
    assert s["success_rate/lighting:2"] == pytest.approx(0.4)
    assert s["relative_success/lighting:1"] == pytest.approx(0.75)
    assert s["relative_robustness/mean"] == pytest.approx(0.8125)
    assert s["relative_robustness/lighting"] == pytest.approx(0.625)
    assert s["mean_return/ood2"] == pytest.approx(0.8)


# -- the grammar as evaluate sees it --------------------------------------------------------------

def test_evaluate_config_checks_the_grammar_when_made() -> None:
    assert EvaluateConfig().shifts == COLOUR_SPLITS
    assert EvaluateConfig(shifts=("in", "lighting:1-5", "real@2.5")).shifts[1] == "lighting:1-5"
    for bad, needle in (("lighting:0", "integer 1-5"), ("real:0.5", "integer 1-5"),
                        ("noise@9", "[0, 5]"), ("in,in", "listed twice"), ("a b", "bad shift")):
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
            EvaluateConfig(shifts=tuple(bad.split(",")))


def test_parse_shifts_labels_severities_and_env_support() -> None:
    got = parse_shifts("in,noise:1-2,blur@2.5,ood2,real", REACH)
    assert [(s.label, s.severity, s.colours) for s in got] == [
        ("in", None, "in"), ("noise:1", 1.0, "in"), ("noise:2", 2.0, "in"),
        ("blur@2.5", 2.5, "in"), ("ood2", None, "ood2"), ("real", 3.0, "in")]
    assert got[0].env_shift() is None and got[4].env_shift() is None
    noise2 = got[2].env_shift()
    assert noise2 is not None and noise2.label == "noise:2"
    assert [(n.name, s) for n, s in noise2.components] == [("noise", 2.0)]
    assert [s.label for s in parse_shifts(("noise:1-2", "texture"), GRID)] == [
        "noise:1", "noise:2", "texture"]
    for spec, needle in (("in,real", "real.*lights.*ColourGrid"), ("lighting:2", "lights"),
                         ("in,ood3", "ood3"), ("noise,noise:3", "listed twice")):
        with pytest.raises(ConfigError, match=needle):
            parse_shifts(spec, GRID)


def test_file_stems_are_one_to_one_and_portable() -> None:
    labels = ["in", "lighting:3", "lighting@2.5", "lighting@0", "lighting", "my-shift_2:4"]
    stems = [file_stem(lb) for lb in labels]
    assert len(set(stems)) == len(stems)
    assert all(not set(s) & set(':@<>"|?*\\/') for s in stems)
    assert file_stem("noise@2.5") == "noise+2.5"
    assert np.all([s.startswith(lb.split(":")[0].split("@")[0]) for s, lb in zip(
        stems, labels, strict=True)])
