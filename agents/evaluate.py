"""Evaluate a trained agent under shifts: per-shift return and success with 95% CIs, robustness
curves against severity and the mean relative robustness.

Shifts come from the shift registry (:mod:`sparseshift.envs.shifts.registry`) in the severity
grammar (:mod:`sparseshift.envs.shifts.severity`): the colour splits of the OOD protocol of
Dittadi et al. (ICLR 2021) and Traeuble, Dittadi et al. (ICLR 2022) (``in``: the training colours,
``ood1``: colours the encoder saw in pretraining, the policy did not, ``ood2``: colours neither
saw), graded rendering nuisances (``lighting:1-5``, ``noise@2.5``), compositions (``real``: the
sim-to-real imitation) and user shift files (``dusk.toml:1-5``). Results are keyed by the shift's
label (``in``, ``lighting:3``, ``real``) and reported per shift, never pooled: success with the
Clopper-Pearson exact interval, return with a seeded percentile-bootstrap interval
(:mod:`sparseshift.agents.stats`). ``eval.json`` records every shift's definition verbatim with
its SHA-256 (``shift_defs``) and the mean relative robustness (``robustness``,
:mod:`sparseshift.agents.robustness`); ``robustness.md`` is its table and ``robustness.png`` the
curves of the graded shifts (:mod:`sparseshift.agents.robustness_plot`).

Episode seeds are drawn from ``seed`` in a range disjoint from every training seed
(:data:`sparseshift.agents.config.EVAL_SEED_BASE`) and are the same for every shift, so each
shift is compared with IN on paired episodes (``eval.json["paired"]``): the exact McNemar test of
success and the paired bootstrap of return. Actions are the policy's mode (``deterministic``) or
sampled from a seeded generator (``stochastic``); ``auto`` picks per env family
(:data:`sparseshift.agents.config.AUTO_DETERMINISTIC`). ``eval.json`` in the agent directory is
written atomically; an existing one with the same parameters and the same shift definitions
(a changed user shift file is a new definition) is returned without re-running.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from sparseshift.agents.config import (
    EVAL_SEED_BASE,
    AgentConfig,
    EvaluateConfig,
    check_eval_policy,
    is_deterministic,
)
from sparseshift.agents.encoders import ResolvedEncoder, load_encoder
from sparseshift.agents.encoding import FrozenEncoder
from sparseshift.agents.envs import make_env, parse_shifts
from sparseshift.agents.policy_io import check_policy_description, load_policy
from sparseshift.agents.robustness import IN, robustness_of
from sparseshift.agents.rollout import run_episodes
from sparseshift.agents.standardize import LatentStats
from sparseshift.agents.stats import (
    DEFAULT_RESAMPLES,
    bootstrap_ci,
    mcnemar_exact,
    paired_bootstrap,
    success_interval,
)
from sparseshift.agents.train import (
    AGENT_FILE,
    DONE_FILE,
    FORMAT,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    encoder_label,
    episode_seeds,
)
from sparseshift.agents.video import (
    EpisodeRecorder,
    RecordedFrame,
    file_stem,
    log_tensorboard,
    render_fps,
    side_by_side_frames,
    write_episode,
)
from sparseshift.envs.infra.errors import ConfigError, safe_repr
from sparseshift.envs.infra.heartbeat import Heartbeat
from sparseshift.envs.infra.io import (
    MapOf,
    atomic_write_text,
    check_schema,
    read_json,
    strict_json,
    write_json_atomic,
)
from sparseshift.envs.shifts.registry import ShiftRegistry, registry_with
from sparseshift.representations.base import Learner
from sparseshift.representations.plugins import Plugins
from sparseshift.representations.runtime import resolve_device, torch_run

EVAL_FILE = "eval.json"
#: The robustness table (always) and curves (when a graded shift was evaluated), next to it.
ROBUSTNESS_TABLE = "robustness.md"
ROBUSTNESS_FIGURE = "robustness.png"
EVAL_ENVS = 4
#: Where ``--video`` writes (inside the agent folder) and its TensorBoard run.
VIDEO_DIR = "videos"
VIDEO_LOG_DIR = "logs/evaluate"


#: What the readers of ``agent.json`` use, with its types (the ``config`` is checked by
#: :class:`AgentConfig`, the ``policy`` by :func:`check_policy_description`).
AGENT_SCHEMA: dict[str, Any] = {
    "config": dict, "policy": dict,
    "encoder?": {"kind?": str, "path?": (str, None), "fingerprint?": (str, None),
                 "label?": str, "factory?": str},
    "observation?": {"standardize?": (dict, None)},
    "identity?": dict,
    "shifts?": {"train?": [dict], "periodic_eval?": (dict, None)},
}
_CI = {"mean": float, "ci_low": float, "ci_high": float}
_TEST = {"diff": float, "p_value": float}
#: What a cached ``eval.json`` must hold to be returned as it is (anything else is recomputed).
EVAL_SCHEMA: dict[str, Any] = {
    "params": dict, "train_colours?": str,
    "shifts": MapOf({"return": {**_CI, "n": int}, "success": _CI, "returns?": [float],
                     "successes?": [bool], "mean_length?": float, "videos?": [str],
                     "thumbnails?": [str]}),
    "paired?": MapOf({"success": _TEST, "return": _TEST}),
    "side_by_side?": {"videos?": [str], "thumbnails?": [str]},
    "tensorboard?": (str, None), "video_fps?": int,
    "shift_defs?": MapOf({"label": str, "name": str, "kind": str, "severity": (float, None),
                          "colours": str, "effective": MapOf(float), "definition": dict,
                          "sha256": str}),
    "robustness?": (None, {"mean": float, "ci_low": (float, None), "ci_high": (float, None),
                           "n_episodes": int,
                           "shifts": MapOf({"mean": float, "ci_low": (float, None),
                                            "ci_high": (float, None), "labels": [str]})}),
    "robustness_table?": (str, None), "robustness_figure?": (str, None),
}


def read_agent(agent_dir: Path) -> dict[str, Any]:
    """The ``agent.json`` of a finished agent directory, read through the gate of
    :mod:`sparseshift.envs.infra.io` and checked field by field (:data:`AGENT_SCHEMA`, the config,
    the policy description with its sizes): one-line ConfigError otherwise (not an agent,
    unfinished, unreadable, of another format version, missing its config, or a field of the
    wrong type, naming the file and the field)."""
    path = agent_dir / AGENT_FILE
    if not path.is_file():
        raise ConfigError(f"{agent_dir} is not an agent directory (no {AGENT_FILE})")
    data = read_json(path, "agent file")
    if data.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a sparseshift agent file")
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ConfigError(
            f"{path} has agent format {version!r}; this sparseshift reads format "
            f"{FORMAT_VERSION} (format 1 stored an SB3 zip, which is never unpickled): train the "
            "agent again")
    if not (agent_dir / DONE_FILE).is_file() or not isinstance(data.get("policy"), dict):
        raise ConfigError(f"the agent in {agent_dir} has not finished training")
    if not isinstance(data.get("config"), dict):
        raise ConfigError(f"{path} has no agent config")
    check_schema(data, AGENT_SCHEMA, str(path))
    try:
        AgentConfig.from_json(data["config"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: config: {exc}") from None
    check_policy_description(data["policy"], str(path))
    return data


def load_model(agent_dir: Path, agent: dict[str, Any]) -> Any:
    """The agent's policy, rebuilt from ``agent.json`` and ``policy.safetensors`` (no pickle);
    it has SB3's ``predict(obs, deterministic)``."""
    return load_policy(agent_dir, agent["policy"])


def encoder_spec(agent_dir: Path, agent: dict[str, Any], config: AgentConfig) -> str:
    """Where the agent's encoder is: its recorded path (relative to the agent folder) or the
    baseline name."""
    desc = agent.get("encoder") or {}
    check_schema(desc, AGENT_SCHEMA["encoder?"], str(agent_dir / AGENT_FILE), "encoder")
    path = desc.get("path")
    if not path or desc.get("kind") == "factory":
        return config.encoder
    return str((agent_dir / path) if not Path(path).is_absolute() else Path(path))


def agent_encoder(agent_dir: Path, agent: dict[str, Any], config: AgentConfig,
                  plugins: Plugins | None = None,
                  module: nn.Module | Learner | None = None) -> ResolvedEncoder:
    """The agent's frozen encoder, checked against the fingerprint it recorded. A factory named
    in ``agent.json`` is imported only when ``plugins`` allows it; an encoder that was passed
    from Python must be passed again (``module``)."""
    desc = agent.get("encoder", {})
    if not isinstance(desc, dict):
        raise ConfigError(f"{agent_dir / AGENT_FILE}: encoder must be an object")
    check_schema(desc, AGENT_SCHEMA["encoder?"], str(agent_dir / AGENT_FILE), "encoder")
    kind = desc.get("kind")
    if kind == "module" and module is None:
        raise ConfigError(f"the agent in {agent_dir} was trained on an encoder passed from Python "
                          f"({desc.get('label', 'unnamed')!r}): pass the same module as "
                          "encoder=..., or export it (sparseshift export-encoder) and train "
                          "on the folder")
    weights = None
    if kind == "factory" and desc.get("path"):
        p = Path(str(desc["path"]))
        weights = str(p if p.is_absolute() else agent_dir / p)
    return load_encoder(encoder_spec(agent_dir, agent, config), config.image_size, config.seed,
                        expect_fingerprint=desc.get("fingerprint"), plugins=plugins,
                        weights=weights, module=module,
                        recorded=desc if kind == "factory" else None)


def agent_stats(agent_dir: Path, agent: dict[str, Any], encoder: ResolvedEncoder
                ) -> LatentStats | None:
    """The latent statistics the agent was trained with (None: an agent of format 2, trained on
    raw latents, or one without a frozen encoder)."""
    if encoder.learner is None:
        return None
    observation = agent.get("observation") or {}
    check_schema(observation, AGENT_SCHEMA["observation?"], str(agent_dir / AGENT_FILE),
                 "observation")
    recorded = observation.get("standardize")
    if recorded is None:
        if agent.get("format_version") == FORMAT_VERSION:
            raise ConfigError(f"{agent_dir / AGENT_FILE} records no latent statistics")
        return None
    shape = tuple(int(d) for d in encoder.learner.latent_shape)
    return LatentStats.from_json(recorded, shape[-1])


def evaluate(agent_dir: str | Path, shifts: str | Sequence[str] = IN, episodes: int = 50,
             seed: int = 0, video: int = 0, resamples: int = DEFAULT_RESAMPLES,
             policy: str | None = None, side_by_side: bool = False,
             progress: bool = False, plugins: Plugins | None = None,
             encoder: nn.Module | Learner | None = None,
             registry: ShiftRegistry | None = None) -> dict[str, Any]:
    """:func:`run_evaluation` with the :class:`EvaluateConfig` built from keyword arguments
    (``shifts`` in the severity grammar, e.g. ``"in,ood2,lighting:1-5,real:3"``)."""
    names = tuple(s.strip() for s in shifts.split(",")) if isinstance(shifts, str) else \
        tuple(shifts)
    return run_evaluation(agent_dir, EvaluateConfig(shifts=names, episodes=episodes, seed=seed,
                                                    video=video, resamples=resamples,
                                                    policy=policy),  # type: ignore[arg-type]
                          side_by_side=side_by_side, progress=progress, plugins=plugins,
                          encoder=encoder, registry=registry)


def run_evaluation(agent_dir: str | os.PathLike[str], cfg: EvaluateConfig,
                   side_by_side: bool = False, progress: bool = False,
                   plugins: Plugins | None = None,
                   encoder: nn.Module | Learner | None = None,
                   heartbeat: str | os.PathLike[str] | None = None,
                   registry: ShiftRegistry | None = None) -> dict[str, Any]:
    """Evaluate the agent in ``agent_dir`` as ``cfg`` says; returns (and writes) ``eval.json``.

    ``cfg.shifts`` are resolved in ``registry`` (default: the shipped shifts plus those of the
    ``plugins`` modules and installed entry points; shift files relative to the current
    directory) and checked against the agent's env before anything runs. Results, videos and
    TensorBoard tags are keyed by each shift's label (``in``, ``lighting:3``, ``real``).
    ``eval.json`` gets ``shift_defs`` (label -> the definition verbatim, its SHA-256 and the
    effective nuisance severities) and ``robustness`` (:func:`robustness_of`: the mean relative
    robustness with its paired-bootstrap interval, None without IN or when IN success is 0);
    ``robustness.md`` (the table) and ``robustness.png`` (success and return per shift; curves
    against severity for graded shifts) are written next to it, and every shift's success
    rate, mean return and success relative to IN are logged as TensorBoard scalars in
    ``logs/evaluate`` (``success_rate/<label>``, ``mean_return/<label>``,
    ``relative_success/<label>``, ``relative_robustness/mean`` and per shift name).

    ``cfg.video`` > 0 also writes the first ``video`` episodes of each shift as H.264
    ``videos/<shift>_<k>.mp4`` at the env's ``render_fps``, goals marked, each with an animated
    thumbnail ``videos/<shift>_<k>.gif`` (:mod:`sparseshift.agents.video`; ``<shift>`` is the
    label with ``:`` and ``@`` written ``+``), and logs the thumbnails to TensorBoard in
    ``logs/evaluate`` (tags ``evaluate/<label>/episode_<k>``).
    ``side_by_side`` adds ``videos/side_by_side_<k>.mp4`` / ``.gif``: episode ``k`` under every
    shift next to each other. Recording never changes the results. ``cfg.policy`` (auto /
    deterministic / stochastic) defaults to the agent's ``eval_policy``. ``progress`` shows a
    tqdm bar of the episodes of each shift on stderr. ``plugins`` allows the module of a factory
    the agent recorded; ``encoder`` is the module an agent trained from Python was given.
    ``heartbeat``: a file to report finished episodes to (:mod:`sparseshift.envs.infra.heartbeat`).
    """
    module = encoder
    episodes, seed, video, resamples = cfg.episodes, cfg.seed, cfg.video, cfg.resamples
    out = Path(agent_dir)
    agent = read_agent(out)
    config = AgentConfig.from_json(agent["config"])
    if registry is None:
        registry = registry_with(sorted(plugins.modules) if plugins is not None else ())
    shifts = parse_shifts(list(cfg.shifts), config.env_id, registry)
    labels = [sh.label for sh in shifts]
    defs = {sh.label: strict_json(sh.record()) for sh in shifts}
    mode = check_eval_policy(config.eval_policy if cfg.policy is None else cfg.policy)
    det = is_deterministic(mode, config.family)
    params = {"shifts": labels, "episodes": episodes, "seed": seed, "resamples": resamples,
              "policy": "deterministic" if det else "stochastic"}
    # The policy and the encoder are loaded (and their digests checked) before a cached result
    # is trusted: changed weights must never hide behind an old eval.json.
    desc = agent.get("encoder", {})
    resolved = agent_encoder(out, agent, config, plugins, module)
    stats = agent_stats(out, agent, resolved)
    if resolved.learner is not None:
        resolved.learner.to(resolve_device(cfg.device or config.device))
    model = load_model(out, agent)
    previous = out / EVAL_FILE
    if previous.is_file() and not video:
        old = cached_evaluation(previous, params, defs)
        if old is not None:
            _ensure_reports(out, old)
            return old
    ep_seeds = episode_seeds(EVAL_SEED_BASE, seed, episodes)

    def act(obs: Any) -> np.ndarray:
        return model.predict(obs, deterministic=det)[0]

    record = {s: k for k, s in enumerate(ep_seeds[:video])}
    recorded: dict[str, dict[int, list[RecordedFrame]]] = {}
    fps = 0
    results: dict[str, Any] = {}
    with torch_run(config.torch_threads):
        beat = (Heartbeat(Path(heartbeat), len(shifts) * episodes, "episode")
                if heartbeat is not None else None)
        finished = 0
        for resolved_shift in shifts:
            shift = resolved_shift.label
            bar = _episode_bar(shift, episodes, progress)

            def tick(bar: Any = bar, shift: str = shift) -> None:
                nonlocal finished
                finished += 1
                if bar is not None:
                    bar.update(1)
                if beat is not None:
                    beat.update(finished, f"evaluating {shift}")

            envs = [EpisodeRecorder(make_env(config, resolved_shift), record, shift, tick)
                    for _ in range(min(EVAL_ENVS, episodes))]
            try:
                fps = render_fps(envs[0])
                enc = (FrozenEncoder(resolved.learner, envs[0].observation_space, stats)
                       if resolved.learner is not None else None)
                check_policy_fits(out, model, enc.observation_space if enc is not None
                                  else envs[0].observation_space, envs[0].action_space)
                eps = run_episodes(envs, act, ep_seeds, enc, torch_seed=seed)
            finally:
                for env in envs:
                    env.close()
                if bar is not None:
                    bar.close()
            recorded[shift] = {k: f for env in envs for k, f in env.frames.items()}
            returns = [e.ret for e in eps]
            success = [float(e.success) for e in eps]
            results[shift] = {
                "return": bootstrap_ci(returns, seed, resamples).to_json(),
                "success": success_interval(success).to_json(),
                "mean_length": float(np.mean([e.length for e in eps])),
                "returns": returns,
                "successes": [bool(s) for s in success],
            }
    paired = paired_tests(results, seed, resamples)
    extra, gifs = _write_videos(out, recorded, fps, side_by_side, results)
    result: dict[str, Any] = {
        "agent": str(out.resolve()), "env_id": config.env_id, "algo": config.algo,
        "encoder": desc.get("kind", config.encoder_kind), "encoder_name": encoder_label(config),
        "train_seed": config.seed,
        "train_colours": config.colours, "params": params, "episode_seeds": ep_seeds,
        "shifts": results, "shift_defs": defs, "paired": paired, **extra}
    result["robustness"] = strict_json(robustness_of(result, seed, resamples))
    stale = _own_figure(previous)
    result.update(_write_reports(out, result))
    if stale is not None and result["robustness_figure"] is None and stale.is_file():
        stale.unlink()  # the figure an earlier evaluation wrote no longer matches eval.json
    result["tensorboard"] = str(log_tensorboard(out / VIDEO_LOG_DIR, gifs, _trained_steps(out),
                                                scalar_summaries(result)))
    write_json_atomic(out / EVAL_FILE, result)
    return result


def _own_figure(previous: Path) -> Path | None:
    """The robustness figure an earlier ``eval.json`` in this folder says it wrote (exactly
    ``robustness.png`` next to it), else None."""
    try:
        old = read_json(previous, "evaluation") if previous.is_file() else {}
    except ConfigError:
        return None
    path = previous.parent / ROBUSTNESS_FIGURE
    return path if old.get("robustness_figure") == str(path) else None


def _write_reports(out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """``robustness.png`` (curves of graded shifts, the colour splits' panel) and
    ``robustness.md``; their paths."""
    from sparseshift.agents.robustness_plot import agent_figure, robustness_markdown

    fig = agent_figure(result, out / ROBUSTNESS_FIGURE)
    entries: dict[str, Any] = {"robustness_figure": str(fig) if fig is not None else None}
    table = atomic_write_text(out / ROBUSTNESS_TABLE,
                              robustness_markdown({**result, **entries}))
    entries["robustness_table"] = str(table)
    return entries


def _ensure_reports(out: Path, result: dict[str, Any]) -> None:
    """Redraw the robustness table or figure of a cached evaluation if one was removed."""
    wanted = [result.get("robustness_table"), result.get("robustness_figure")]
    if any(p and not Path(p).is_file() for p in wanted):
        _write_reports(out, result)


def scalar_summaries(result: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of one evaluation: per shift label its success rate, mean return
    and success relative to IN, and the mean relative robustness (with its interval) overall
    and per shift name."""
    out: dict[str, float] = {}
    shifts = result["shifts"]
    base = shifts.get(IN, {}).get("success", {}).get("mean")
    for label, r in shifts.items():
        out[f"success_rate/{label}"] = r["success"]["mean"]
        out[f"mean_return/{label}"] = r["return"]["mean"]
        if base:
            out[f"relative_success/{label}"] = r["success"]["mean"] / base
    rob = result.get("robustness")
    if rob is not None:
        for k in ("mean", "ci_low", "ci_high"):
            if rob.get(k) is not None:
                out[f"relative_robustness/{k}"] = rob[k]
        for name, v in rob["shifts"].items():
            out[f"relative_robustness/{name}"] = v["mean"]
    return out


def _layout(space: Any) -> Any:
    """What a policy needs of a space to act on it: kinds and sizes, not bounds."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):
        return {k: _layout(v) for k, v in space.spaces.items()}
    if isinstance(space, gym.spaces.Discrete):
        return ("Discrete", int(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete):
        return ("MultiDiscrete", tuple(int(n) for n in space.nvec))
    shape = tuple(space.shape or ())
    if len(shape) == 3 and shape[0] == 3 and shape[-1] != 3:
        # SB3 stores an image space channel-first when it transposed it for a CNN policy
        # (VecTransposeImage) and transposes HWC observations back in predict
        shape = (shape[1], shape[2], shape[0])
    return (type(space).__name__, shape)


def check_policy_fits(agent_dir: Path, model: Any, observation_space: Any,
                      action_space: Any) -> None:
    """Refuse (one line) a policy whose spaces do not fit the env its ``agent.json`` config
    makes (a config edited after training), before any episode runs."""
    for what, theirs, ours in (("observation", model.observation_space, observation_space),
                               ("action", model.action_space, action_space)):
        if _layout(theirs) != _layout(ours):
            raise ConfigError(f"{agent_dir / AGENT_FILE}: the policy's {what} space "
                              f"{safe_repr(str(theirs))} does not fit the env its config makes "
                              f"({safe_repr(str(ours))}); was the config edited after training?")


def cached_evaluation(path: Path, params: dict[str, Any],
                      shift_defs: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The evaluation in ``path`` if it was run with ``params`` and the same shift definitions
    (``shift_defs``: label -> record, compared whole, SHA-256 included, so an edited user
    shift file is evaluated again) and is well formed (read through the gate,
    :data:`EVAL_SCHEMA`, one result per shift asked); None otherwise: a damaged, foreign or
    oversized cache is recomputed (and replaced), never trusted or a traceback."""
    try:
        old = read_json(path, "evaluation", schema=EVAL_SCHEMA)
    except ConfigError:
        return None
    if old.get("params") != params or set(old["shifts"]) != set(params["shifts"]):
        return None
    if shift_defs is not None and old.get("shift_defs") != shift_defs:
        return None
    if "robustness" not in old:  # written before robustness summaries
        return None
    if any(s not in old["shifts"] for s in old.get("paired", {})):
        return None
    return old


def paired_tests(results: dict[str, Any], seed: int, resamples: int = DEFAULT_RESAMPLES
                 ) -> dict[str, Any]:
    """Each shift against ``in`` on the shared episode seeds: the exact McNemar test of success
    and the paired bootstrap of return (``diff`` is shift minus IN). Empty without ``in``."""
    base = results.get(IN)
    if base is None:
        return {}
    out: dict[str, Any] = {}
    for shift, r in results.items():
        if shift == IN:
            continue
        out[shift] = {
            "success": mcnemar_exact(base["successes"], r["successes"]).to_json(),
            "return": paired_bootstrap(base["returns"], r["returns"], seed, resamples).to_json(),
        }
    return out


def _episode_bar(shift: str, episodes: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=episodes, desc=f"evaluate {shift}", unit="episode", dynamic_ncols=True)


def _write_videos(out: Path, recorded: dict[str, dict[int, list[RecordedFrame]]], fps: int,
                  side_by_side: bool, results: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write each recorded episode (mp4 + GIF) and the side-by-side videos when asked; add the
    paths to ``results`` and return the top-level entries and the GIFs to log (tag -> file)."""
    gifs: dict[str, Path] = {}
    for shift, episodes in recorded.items():
        written = [write_episode(episodes[k], out / VIDEO_DIR / f"{file_stem(shift)}_{k}", fps)
                   for k in sorted(episodes)]
        if written:
            results[shift]["videos"] = [str(w.mp4) for w in written]
            results[shift]["thumbnails"] = [str(w.gif) for w in written]
            gifs.update({f"evaluate/{shift}/episode_{k}": w.gif
                         for k, w in zip(sorted(episodes), written, strict=True)})
    extra: dict[str, Any] = {}
    ks = sorted({k for eps in recorded.values() for k in eps})
    if side_by_side and ks:
        sbs = []
        for k in ks:
            shown = [recorded[s][k] for s in recorded if k in recorded[s]]
            compose = functools.partial(_side_by_side, shown)
            sbs.append(write_episode([], out / VIDEO_DIR / f"side_by_side_{k}", fps,
                                     compose=compose))
            gifs[f"evaluate/side_by_side/episode_{k}"] = sbs[-1].gif
        extra["side_by_side"] = {"shifts": list(recorded), "videos": [str(w.mp4) for w in sbs],
                                 "thumbnails": [str(w.gif) for w in sbs]}
    if ks:
        extra["video_fps"] = fps
    return extra, gifs


def _side_by_side(episodes: list[list[RecordedFrame]], scale: int) -> list[np.ndarray]:
    return side_by_side_frames(episodes, scale)


def _trained_steps(out: Path) -> int:
    try:
        return int(read_json(out / DONE_FILE, "training record")["result"]["steps"])
    except (ConfigError, KeyError, TypeError, ValueError):
        return 0


def format_p(p: float) -> str:
    """A p-value for tables: ``p=0.0123`` (3 significant digits), ``p<1e-4`` below that."""
    return "p<1e-4" if p < 1e-4 else f"p={p:.3g}"


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table: one row per shift label, mean and 95% CI of return and success, the
    paired tests against IN, and a line with the mean relative robustness and its interval."""
    paired = result.get("paired") or {}
    w = max([5, *(len(str(s)) for s in result["shifts"])])
    lines = [f"{'shift':<{w}} {'return':>9} {'95% CI':>21} {'success':>8} {'95% CI':>15} "
             f"{'n':>5}" + ("  vs in: success diff, McNemar p; return diff, paired bootstrap p"
                            if paired else "")]
    for shift, r in result["shifts"].items():
        ret, suc = r["return"], r["success"]
        line = (f"{shift:<{w}} {ret['mean']:>9.3f} [{ret['ci_low']:>8.3f}, "
                f"{ret['ci_high']:>8.3f}] {suc['mean']:>8.3f} [{suc['ci_low']:.3f}, "
                f"{suc['ci_high']:.3f}] {ret['n']:>5}")
        if shift in paired:
            ps, pr = paired[shift]["success"], paired[shift]["return"]
            line += (f"  {ps['diff']:+.3f}, {format_p(ps['p_value'])}; "
                     f"{pr['diff']:+.3f}, {format_p(pr['p_value'])}")
        lines.append(line)
    if len(result["shifts"]) > 1 or IN not in result["shifts"]:
        lines.append(robustness_line(result))
    colours = result.get("train_colours", IN)
    if colours != IN:
        lines.append(f"note: this agent trained on the {colours} colours, so 'in' (the IN split) "
                     "is not its training distribution")
    policy = result.get("params", {}).get("policy")
    if policy:
        how = "the policy's mode" if policy == "deterministic" else "sampled, seeded"
        lines.append(f"actions: {policy} ({how}); 95% CIs: success Clopper-Pearson exact, return "
                     "percentile bootstrap, over episodes; shifts share the episode seeds "
                     "(paired tests)")
    return "\n".join(lines)


def robustness_line(result: dict[str, Any]) -> str:
    """``mean relative robustness 0.812 [0.650, 0.950] over 3 shifts (...)`` or why there is
    none."""
    rob = result.get("robustness")
    if rob is None:
        why = ("no 'in' result to compare with" if IN not in result["shifts"] else
               "IN success is 0")
        return f"mean relative robustness: undefined ({why})"

    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    return (f"mean relative robustness {num(rob['mean'])} [{num(rob['ci_low'])}, "
            f"{num(rob['ci_high'])}] over {len(rob['shifts'])} shift(s): success under shift / "
            f"success IN, averaged over severities then shifts; 95% paired bootstrap over "
            f"{rob['n_episodes']} episodes")
