"""The OOD proxy task's task score (issue 20): envs declare the factors their task needs from the
image, the proxy scores exactly those beside the all-factor headline, the study passes its proxy
settings (num_train included) through, and the study report correlates the task score."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sparseshift.envs.core.factors import Factor, FactorSpec
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.registry import task_factors
from sparseshift.representations.config import EvalConfig, ProxyConfig
from sparseshift.representations.proxy import ProxySet, proxy_scores, proxy_set

OBJECT_REACH = "sparseshift/TriFingerObjectReach-v0"


# ---------------------------------------------------------------- declarations
def test_object_reach_declares_the_cube_position() -> None:
    from sparseshift.envs.trifinger.objectreach import TriFingerObjectReachEnv

    assert TriFingerObjectReachEnv.task_factors == ("cube.x", "cube.y")
    assert task_factors(OBJECT_REACH) == ("cube.x", "cube.y")
    spec = TriFingerObjectReachEnv.FACTOR_SPEC
    for name in ("cube.x", "cube.y"):  # variable in ObjectReach
        f = spec.factors[spec.index(name)]
        assert f.kind == "continuous" and f.high - f.low > 0.1


def test_other_envs_declare_what_is_clear() -> None:
    assert task_factors("sparseshift/TriFingerPush-v0") == ("cube.x", "cube.y")
    assert task_factors("sparseshift/TriFingerReach-v0") == ()  # solvable from proprioception
    grid = task_factors("sparseshift/ColourGrid-v0")
    assert grid == tuple(f"object{i}.{c}" for i in range(3) for c in ("x", "y", "shape"))
    assert "agent.x" not in grid  # the agent's position is proprioception
    assert task_factors("sparseshift/ColourGridOne-v0") == ()  # no agent, no task
    assert task_factors("sparseshift/MiniGrid-DoorKey-8x8-v0") == ()


# ---------------------------------------------------------------- the task score
def _frames(n: int) -> np.ndarray:
    """Frames that carry their own row index (so a fake encoder can look its latents up)."""
    fr = np.zeros((n, 2, 2, 3), np.uint8)
    fr[:, 0, 0, 0] = np.arange(n) % 256
    fr[:, 0, 0, 1] = np.arange(n) // 256
    return fr


def _index(frames: np.ndarray) -> np.ndarray:
    return frames[:, 0, 0, 0].astype(int) + 256 * frames[:, 0, 0, 1].astype(int)


def _object_reach_set(n_train: int = 400, n_test: int = 200, seed: int = 0) -> ProxySet:
    from sparseshift.envs.trifinger.objectreach import TriFingerObjectReachEnv

    spec = TriFingerObjectReachEnv.FACTOR_SPEC
    rng = np.random.default_rng(seed)
    lo, hi = np.array(spec.low, np.float64), np.array(spec.high, np.float64)
    names = ("train", "in", "ood1", "ood2", "real")
    frames, factors = {}, {}
    for k in names:
        n = n_train if k == "train" else n_test
        frames[k] = _frames(n)
        factors[k] = rng.uniform(lo, hi, (n, len(spec))).astype(np.float32)
    return ProxySet(OBJECT_REACH, spec, frames, factors)


def _encoder(data: ProxySet, latents: Any) -> Any:
    """encode(frames) -> latents(factors of those frames), per split (frames are compared by
    identity: each split's array is its own object)."""
    by_id = {id(data.frames[k]): latents(data.factors[k].astype(np.float64)) for k in data.frames}
    return lambda frames: by_id[id(frames)][_index(frames)]


def test_task_score_is_about_1_when_latents_are_the_cube_position() -> None:
    data = _object_reach_set()
    cube = [data.factor_spec.index("cube.x"), data.factor_spec.index("cube.y")]
    res = proxy_scores(_encoder(data, lambda f: f[:, cube]), data)
    assert res["task_factors"] == ["cube.x", "cube.y"]
    s = res["summary"]
    for probe in ("linear", "mlp"):
        for split in ("in", "ood1", "ood2", "real"):
            assert s[f"proxy_{probe}_{split}_task"] > 0.95
            # the all-factor score also averages the joints and the yaw, which these latents lack
            assert s[f"proxy_{probe}_{split}"] < 0.6
    # the existing keys are kept
    assert {"groups", "summary", "splits", "n_train", "n_test"} <= set(res)
    # per factor: R^2 of each factor; the task score is the mean over exactly the task factors
    f = res["factors"]
    assert set(f) >= {"cube.x", "cube.y", "cube.yaw", "finger0.upper"}
    assert f["finger0.upper"]["linear"]["in"] < 0.1
    want = np.mean([max(0.0, f[n]["mlp"]["ood2"]) for n in ("cube.x", "cube.y")])
    assert s["proxy_mlp_ood2_task"] == pytest.approx(want)


def test_task_score_is_about_0_for_noise() -> None:
    data = _object_reach_set()
    rng = np.random.default_rng(1)
    res = proxy_scores(_encoder(data, lambda f: rng.normal(size=(len(f), 6))), data)
    for key, v in res["summary"].items():
        if key.endswith("_task"):
            assert v < 0.05, key


def test_task_factors_given_explicitly_and_unknown_ones() -> None:
    data = _object_reach_set(200, 100)
    yaw = data.factor_spec.index("cube.yaw")
    res = proxy_scores(_encoder(data, lambda f: f[:, [yaw]]), data, task=("cube.yaw",))
    assert res["task_factors"] == ["cube.yaw"] and res["summary"]["proxy_linear_in_task"] > 0.9
    none = proxy_scores(_encoder(data, lambda f: f[:, [yaw]]), data, task=())
    assert not [k for k in none["summary"] if k.endswith("_task")]
    with pytest.raises(ConfigError, match="not factors"):
        proxy_scores(_encoder(data, lambda f: f[:, [yaw]]), data, task=("cube.z",))


def test_discrete_groups_score_every_factor() -> None:
    """A position group (x, y) is one classifier over the cells, scored per factor: latents that
    hold x only get x right and y at chance."""
    cells = tuple(float(v) for v in range(6))
    spec = FactorSpec((Factor("thing.x", "discrete", 0.0, 5.0, cells, group="thing_pos"),
                       Factor("thing.y", "discrete", 0.0, 5.0, cells, group="thing_pos")))
    rng = np.random.default_rng(0)
    frames = {k: _frames(n) for k, n in (("train", 600), ("in", 300))}
    factors = {k: rng.integers(0, 6, (len(v), 2)).astype(np.float32) for k, v in frames.items()}
    data = ProxySet("sparseshift/ColourGrid-v0", spec, frames, factors)
    res = proxy_scores(_encoder(data, lambda f: np.eye(6)[f[:, 0].astype(int)]), data,
                       task=("thing.y",))
    f = res["factors"]
    assert f["thing.x"]["linear"]["in"] > 0.95
    assert f["thing.y"]["linear"]["in"] < 0.4
    assert res["groups"]["thing_pos"]["linear"]["in"] == pytest.approx(
        (f["thing.x"]["linear"]["in"] + f["thing.y"]["linear"]["in"]) / 2)
    assert res["summary"]["proxy_linear_in_task"] == pytest.approx(f["thing.y"]["linear"]["in"])
    # a factor constant in training has no classifier and no score; the group keeps the others
    factors["train"][:, 1] = 2.0
    res = proxy_scores(_encoder(data, lambda f: np.eye(6)[f[:, 0].astype(int)]), data,
                       task=("thing.y",))
    assert res["factors"]["thing.y"]["mlp"]["in"] is None
    assert res["groups"]["thing_pos"]["linear"]["in"] == res["factors"]["thing.x"]["linear"]["in"]
    assert "proxy_linear_in_task" not in res["summary"]


# ---------------------------------------------------------------- settings reach the proxy
def test_proxy_config_respects_num_train_num_test_seed_and_splits() -> None:
    cfg = EvalConfig(num_train=128, num_test=64, seed=3, proxy_splits=("ood1", "in"))
    assert ProxyConfig.of(cfg) == ProxyConfig(128, 64, 3, ("ood1", "in"))
    assert ProxyConfig.of(EvalConfig()) == ProxyConfig(2000, 500, 0, None)  # capped defaults
    assert ProxyConfig.of(EvalConfig(num_train=5, num_test=3)).n_train == 10  # floor
    with pytest.raises(ConfigError, match="proxy split"):
        EvalConfig(proxy_splits=("in", "sideways"))


def test_the_study_passes_its_proxy_settings_to_the_proxy_stage() -> None:
    from sparseshift.experiments.study.presets import SMOKE
    from sparseshift.experiments.study.runner import build

    def proxy_tasks(study: Any) -> list[Any]:
        runs = build(study)
        erep = [r.eval_rep_task for r in runs if r.eval_rep_task is not None]
        assert erep and all(t.config == study.metrics for t in erep)
        return [d for t in erep for d in t.deps if d.stage == "proxy_data"]

    (task, *_) = proxy_tasks(SMOKE)
    assert task.config == ProxyConfig(min(2000, SMOKE.metrics.num_train),
                                      min(500, SMOKE.metrics.num_test), SMOKE.metrics.seed,
                                      SMOKE.metrics.proxy_splits)
    study = SMOKE.replace(metrics=SMOKE.metrics.replace(
        num_train=300, proxy_test=40, seed=5, proxy_splits=("in", "ood2")))
    (task, *_) = proxy_tasks(study)
    assert task.config == ProxyConfig(300, 40, 5, ("in", "ood2"))


def test_eval_rep_flags_reach_the_proxy_config() -> None:
    import argparse

    from sparseshift.experiments.commands import eval_rep

    parser = argparse.ArgumentParser()
    eval_rep.add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval-rep", "RUN", "--data", "D", "--num-train", "300",
                              "--proxy-train", "1000", "--proxy-test", "50", "--seed", "2",
                              "--proxy-splits", "in,ood1"])
    assert ProxyConfig.of(eval_rep.build(args)) == ProxyConfig(300, 50, 2, ("in", "ood1"))


def test_given_frames_are_cut_to_the_config() -> None:
    data = _object_reach_set(50, 30)
    cut = proxy_set(ProxyConfig(20, 10, 0, ("in", "real")), OBJECT_REACH, None, data)
    assert set(cut.frames) == {"train", "in", "real"}
    assert len(cut.frames["train"]) == 20 and len(cut.factors["real"]) == 10
    np.testing.assert_array_equal(cut.factors["in"], data.factors["in"][:10])
    all_env = proxy_set(ProxyConfig(50, 30), OBJECT_REACH, None, data)
    assert all_env.splits == ("in", "ood1", "ood2", "real")
    with pytest.raises(ConfigError, match="render it again"):
        proxy_set(ProxyConfig(60, 10), OBJECT_REACH, None, data)


def test_splits_an_env_lacks_are_left_out() -> None:
    from sparseshift.representations.proxy import env_splits

    def labels(env: str, splits: Any) -> tuple[str, ...]:
        return tuple(r.label for r in env_splits(env, splits))

    assert labels("sparseshift/ColourGrid-v0", ("in", "real")) == ("in",)
    assert labels(OBJECT_REACH, ("real", "in")) == ("real", "in")  # the order given
    with pytest.raises(ConfigError, match="none of the proxy splits"):
        env_splits("sparseshift/ColourGrid-v0", ("real",))


def test_rendered_frames_follow_the_config() -> None:
    cfg = ProxyConfig(12, 10, 4, ("ood2",))
    data = proxy_set(cfg, "sparseshift/ColourGrid-v0", {"colours": "in"})
    assert data.splits == ("ood2",) and len(data.frames["train"]) == 12
    assert len(data.frames["ood2"]) == 10


# ---------------------------------------------------------------- the report
def _rows(task: bool) -> list[dict[str, Any]]:
    """Three encoders: the all-factor proxy ranks them against success, the task proxy with it."""
    rows = []
    for i, (all_score, task_score, success) in enumerate(((0.9, 0.1, 0.0), (0.5, 0.5, 0.5),
                                                          (0.1, 0.9, 1.0))):
        for shift in ("in", "ood2"):
            metrics = {f"proxy_mlp_{shift}": all_score}
            if task:
                metrics[f"proxy_mlp_{shift}_task"] = task_score
            rows.append({"env_id": OBJECT_REACH, "kind": "learned", "encoder": f"enc{i}",
                         "encoder_seed": 0, "shift": shift, "success": success,
                         "return": success, "metrics": metrics})
    return rows


def test_report_uses_the_task_score() -> None:
    from sparseshift.experiments.study.proxy_report import (
        encoder_points,
        markdown,
        proxy_correlations,
    )

    rows = _rows(task=True)
    pts = encoder_points(rows, OBJECT_REACH)
    assert [p["proxy"]["in"] for p in pts] == [0.1, 0.5, 0.9]
    assert [p["proxy_all"]["in"] for p in pts] == [0.9, 0.5, 0.1]
    assert {p["proxy_kind"] for p in pts} == {"task"}
    corr = proxy_correlations(rows)
    assert corr[OBJECT_REACH]["in"]["success"]["rho"] == pytest.approx(1.0)
    md = markdown(rows, corr)
    assert "| task proxy in | task proxy ood2 | all-factor proxy in |" in md
    assert "rho(task proxy, success)" in md
    assert "| enc0/s0 | 0.10 | 0.10 | 0.90 | 0.90 | 0% | 0% |" in md


def test_report_falls_back_to_the_all_factor_score() -> None:
    from sparseshift.experiments.study.proxy_report import (
        encoder_points,
        markdown,
        proxy_correlations,
    )

    rows = _rows(task=False)
    assert {p["proxy_kind"] for p in encoder_points(rows, OBJECT_REACH)} == {"all"}
    corr = proxy_correlations(rows)
    assert corr[OBJECT_REACH]["in"]["success"]["rho"] == pytest.approx(-1.0)
    md = markdown(rows, corr)
    assert "| encoder | proxy in | proxy ood2 | success in |" in md and "task proxy" not in md
    # an env where only some encoders have a task score uses the all-factor one for all
    mixed = _rows(task=True)
    del mixed[0]["metrics"]["proxy_mlp_in_task"]
    assert {p["proxy_kind"] for p in encoder_points(mixed, OBJECT_REACH)} == {"all"}


def test_scatter_plots_the_task_score(tmp_path: Any) -> None:
    from sparseshift.experiments.study.proxy_report import proxy_correlations, scatter

    rows = _rows(task=True)
    (png,) = scatter(rows, proxy_correlations(rows), tmp_path)
    assert png.exists()
