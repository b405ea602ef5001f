"""Stage functions of a study: each reads only the artifact of the stage before it.

Signature ``fn(config, inputs, out_dir) -> result``: ``config`` is the stage's JSON config (its
hash is the artifact key), ``inputs`` the results of the stages it depends on, ``out_dir`` its
artifact folder. Paths never enter configs (they come through ``inputs``), so keys do not depend
on where a study lives. Every stage pins torch to one thread, so a stage gives bitwise the same
result in process and on a Ray worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: Label suffix of a plan's video collection (for sequence learners), see the runner.
VIDEO = "/video"


def _is_video(input_name: str) -> bool:
    return input_name.startswith("collect:") and input_name.endswith(VIDEO)


def _only(inputs: Mapping[str, dict[str, Any]], stage: str, video: bool = False
          ) -> dict[str, Any]:
    """The one input of ``stage`` (for ``collect``: the pairs dataset, or with ``video`` the
    video dataset that sequence learners train on)."""
    found = [v for k, v in inputs.items() if k.split(":", 1)[0] == stage
             and (stage != "collect" or _is_video(k) == video)]
    if len(found) != 1:
        raise RuntimeError(f"expected one {stage!r} input, got {sorted(inputs)}")
    return found[0]


def collect_stage(config: Mapping[str, Any], inputs: Mapping[str, dict[str, Any]], out: Path
                  ) -> dict[str, Any]:
    """Collect a dataset (``sparseshift collect``)."""
    from sparseshift.envs.data.collect import collect
    from sparseshift.envs.data.config import CollectConfig

    cfg = CollectConfig(**dict(config))
    res = collect(cfg, out / "data.h5", workers=1, progress=False)
    return {"data": str(res.path), "fingerprint": res.fingerprint, "n": cfg.n}


def train_rep_stage(config: Mapping[str, Any], inputs: Mapping[str, dict[str, Any]], out: Path
                    ) -> dict[str, Any]:
    """Train a representation learner on the collected dataset (``sparseshift train-rep``)."""
    from sparseshift.representations.train import TrainConfig, train

    data = _only(inputs, "collect", video=any(map(_is_video, inputs)))["data"]
    cfg = dict(config)
    cfg["model"] = dict(cfg.get("model", {}))
    if isinstance(cfg.get("gap"), list):
        cfg["gap"] = tuple(cfg["gap"])
    with one_thread():
        res = train(TrainConfig(**cfg, progress=False), data, out / "rep")
    return {"rep": str(res.out_dir), "step": res.step,
            "final_losses": {k: float(v) for k, v in res.losses.items()}}


def eval_rep_stage(config: Mapping[str, Any], inputs: Mapping[str, dict[str, Any]], out: Path
                   ) -> dict[str, Any]:
    """Disentanglement metrics and probes of a trained encoder (``sparseshift eval-rep``)."""
    from sparseshift.representations.evaluate import EvalConfig, evaluate

    data = _only(inputs, "collect")["data"]
    rep = _only(inputs, "rep")["rep"]
    video = [v["data"] for k, v in inputs.items() if _is_video(k)]
    with one_thread():
        metrics = evaluate(rep, data, EvalConfig(**dict(config)), out=out / "metrics.json",
                           traversal_png=out / "traversal.png")
        if video:
            waves = _waves(rep, video[0], out / "waves", int(config["seed"]))
            metrics = {**metrics, "summary": {**metrics.get("summary", {}), **waves}}
    return {"metrics": metrics}


def _waves(rep: str, video: str, out: Path, seed: int) -> dict[str, float]:
    """Travelling-wave coherence and forecast error of a Neural Wave Machine on its video
    (``sparseshift eval-rep --waves``), as flat metrics for the report."""
    import numpy as np

    from sparseshift.representations.checkpoint import load_learner
    from sparseshift.representations.waves import analyse_waves

    res = analyse_waves(load_learner(rep), video, out, n_sequences=16, free_steps=32, seed=seed)
    coh = res["coherence"]
    return {"wave_coherence_driven": float(coh["driven"]),
            "wave_coherence_free": float(coh["free"]),
            "wave_coherence_free_shuffled": float(coh["free_shuffled"]),
            "forecast_mse": float(np.mean(res["forecast_mse"])),
            "forecast_copy_last_mse": float(np.mean(res["copy_last_mse"]))}


def train_agent_stage(config: Mapping[str, Any], inputs: Mapping[str, dict[str, Any]], out: Path
                      ) -> dict[str, Any]:
    """Train an agent on IN colours from a frozen encoder or a baseline (``sparseshift
    train-agent``)."""
    from sparseshift.agents.config import AgentConfig
    from sparseshift.agents.train import train_agent

    cfg = dict(config)
    if cfg["encoder"] == "learned":
        cfg["encoder"] = _only(inputs, "rep")["rep"]
    cfg["hyperparams"] = tuple(tuple(x) for x in cfg.get("hyperparams", ()))
    cfg["env_kwargs"] = tuple(tuple(x) for x in cfg.get("env_kwargs", ()))
    agent = train_agent(AgentConfig(**cfg, tensorboard=True, torch_threads=1), out / "agent")
    return {"agent": str(agent)}


def eval_agent_stage(config: Mapping[str, Any], inputs: Mapping[str, dict[str, Any]], out: Path
                     ) -> dict[str, Any]:
    """Evaluate an agent per shift with bootstrap CIs (``sparseshift evaluate``)."""
    from sparseshift.agents.evaluate import evaluate

    agent = _only(inputs, "agent")["agent"]
    res = evaluate(agent, list(config["shifts"]), int(config["episodes"]), int(config["seed"]))
    shifts = {
        s: {"return": v["return"], "success": v["success"], "mean_length": v["mean_length"]}
        for s, v in res["shifts"].items()
    }
    return {"shifts": shifts}
