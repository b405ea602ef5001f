"""Stage functions of a study: each reads only the artifact of the stage before it.

Signature ``fn(config, inputs, out_dir) -> result``: ``config`` is the stage's config object (the
hash of its JSON is the artifact key), ``inputs`` the results of the stages it depends on (their
``files`` as absolute paths, see :func:`sparseshift.experiments.study.graph.execute`), ``out_dir``
its artifact folder. Results name their files relative to ``out_dir``. Paths never enter configs,
so keys do not depend on where a study lives. Every stage pins torch to one thread, so a stage
gives bitwise the same result in process, in a pool worker and on a Ray worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sparseshift.agents.config import AgentConfig, EvaluateConfig
from sparseshift.envs.data.config import CollectConfig
from sparseshift.experiments.study.presets import LEARNED
from sparseshift.representations.config import EvalConfig, ProxyConfig, TrainConfig
from sparseshift.representations.plugins import Plugins

#: Label suffix of a plan's video collection (for sequence learners), see the runner.
VIDEO = "/video"


def is_video(input_name: str) -> bool:
    return input_name.startswith("collect:") and input_name.endswith(VIDEO)


def _only(inputs: Mapping[str, dict[str, Any]], stage: str, video: bool = False
          ) -> dict[str, Any]:
    """The one input of ``stage`` (for ``collect``: the pairs dataset, or with ``video`` the
    video dataset that sequence learners train on)."""
    found = [v for k, v in inputs.items() if k.split(":", 1)[0] == stage
             and (stage != "collect" or is_video(k) == video)]
    if len(found) != 1:
        raise RuntimeError(f"expected one {stage!r} input, got {sorted(inputs)}")
    return found[0]


def _file(inputs: Mapping[str, dict[str, Any]], stage: str, name: str, video: bool = False
          ) -> str:
    return str(_only(inputs, stage, video)["files"][name])


def collect_stage(config: CollectConfig, inputs: Mapping[str, dict[str, Any]], out: Path
                  ) -> dict[str, Any]:
    """Collect a dataset (``sparseshift collect``)."""
    from sparseshift.agents.collect.collect import collect

    res = collect(config, out / "data.h5", workers=1, progress=False)
    return {"files": {"data": "data.h5"}, "fingerprint": res.fingerprint, "n": config.n}


def plugins_of(runtime: Mapping[str, Any] | None) -> Plugins:
    """The modules the user allowed for this study (``runtime["plugins"]``: the study's
    ``--plugin`` flags and the modules of encoders its config names; not hashed)."""
    from sparseshift.representations.plugins import Plugins

    return Plugins.of(*(runtime or {}).get("plugins", ()))


def _device(config: Any, runtime: Mapping[str, Any] | None) -> Any:
    """``config`` with the runtime's device, if the study placed the stage on one."""
    device = (runtime or {}).get("device")
    return config if device is None else config.replace(device=str(device))


def train_rep_stage(config: TrainConfig, inputs: Mapping[str, dict[str, Any]], out: Path,
                    runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train a representation learner on the collected dataset (``sparseshift train-rep``)."""
    from sparseshift.representations.train import train

    data = _file(inputs, "collect", "data", video=any(map(is_video, inputs)))
    res = train(_device(config, runtime).replace(threads=1, progress=False), data, out / "rep")
    return {"files": {"rep": "rep"}, "step": res.step,
            "final_losses": {k: float(v) for k, v in res.losses.items()}}


def proxy_data_stage(config: ProxyConfig, inputs: Mapping[str, dict[str, Any]], out: Path
                     ) -> dict[str, Any]:
    """Render the OOD proxy task's frames from the dataset's env, once for every encoder."""
    from sparseshift.envs.data import open_dataset
    from sparseshift.representations.proxy import proxy_set

    ds = open_dataset(_file(inputs, "collect", "data"))
    try:  # every setting of the config: counts, seed and splits
        data = proxy_set(config, ds.env_id, dict(ds.attrs["env_kwargs"]))
    finally:
        ds.close()
    data.save(out / "proxy.npz")
    return {"files": {"proxy": "proxy.npz"}, "splits": list(data.splits)}


def eval_rep_stage(config: EvalConfig, inputs: Mapping[str, dict[str, Any]], out: Path,
                   runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Disentanglement metrics and probes of a trained encoder (``sparseshift eval-rep``)."""
    config = _device(config, runtime)
    from sparseshift.representations.evaluate import evaluate
    from sparseshift.representations.runtime import torch_run

    data = _file(inputs, "collect", "data")
    rep = _file(inputs, "rep", "rep")
    video = [v["files"]["data"] for k, v in inputs.items() if is_video(k)]
    proxy = [v["files"]["proxy"] for k, v in inputs.items() if k.startswith("proxy_data:")]
    with torch_run(1):
        metrics = evaluate(rep, data, config, out=out / "metrics.json",
                           traversal_png=out / "traversal.png",
                           proxy_data=proxy[0] if proxy else None)
        if video:
            waves = _waves(rep, video[0], out / "waves", config.seed)
            metrics = {**metrics, "summary": {**metrics.get("summary", {}), **waves}}
    return {"metrics": metrics, "files": {"metrics": "metrics.json"}}


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


def train_agent_stage(config: AgentConfig, inputs: Mapping[str, dict[str, Any]], out: Path,
                      runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train an agent on IN colours from a frozen encoder or a baseline (``sparseshift
    train-agent``); the frozen encoder runs on the runtime's device, the policy on the CPU."""
    from sparseshift.agents.train import train_agent

    config = _device(config, runtime)
    if config.encoder == LEARNED:
        config = config.replace(encoder=_file(inputs, "rep", "rep"))
    train_agent(config.replace(tensorboard=True, torch_threads=1), out / "agent",
                plugins=plugins_of(runtime))
    return {"files": {"agent": "agent"}}


def eval_agent_stage(config: EvaluateConfig, inputs: Mapping[str, dict[str, Any]], out: Path,
                     runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate an agent per shift (``sparseshift evaluate``): exact success intervals, return
    bootstrap CIs, per-episode outcomes, the paired shift-vs-IN tests, each shift's definition
    record and the agent's mean relative robustness."""
    from sparseshift.agents.evaluate import run_evaluation
    from sparseshift.envs.infra.heartbeat import HEARTBEAT_FILE

    res = run_evaluation(_file(inputs, "agent", "agent"), config, plugins=plugins_of(runtime),
                         heartbeat=out / HEARTBEAT_FILE)
    keep = ("return", "success", "mean_length", "returns", "successes")
    shifts = {s: {k: v[k] for k in keep} for s, v in res["shifts"].items()}
    return {"shifts": shifts, "paired": res.get("paired", {}),
            "episode_seeds": res["episode_seeds"], "shift_defs": res.get("shift_defs", {}),
            "robustness": res.get("robustness")}
