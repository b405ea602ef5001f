"""Train an SB3 agent (PPO or SAC) on frozen-encoder features, pixels or ground-truth state.

Stable-Baselines3 (Raffin et al. 2021, JMLR) PPO (Schulman et al. 2017) and SAC (Haarnoja et al.
2018) with the defaults of :mod:`sparseshift.agents.config`. For a frozen encoder the envs are
wrapped in
:class:`sparseshift.agents.wrapper.EncodedVecEnv` (encode once per env step, in one batch) and the
policy is an
MLP, or a DeepSets extractor (Zaheer et al. 2017) for slot latents. This is the frozen-encoder
protocol of Dittadi et al. (ICLR 2021) and Traeuble, Dittadi et al. (ICLR 2022).

Output directory::

    agent.json          resolved config: env id + kwargs, encoder (path relative to this folder,
                        config, fingerprint), the latent statistics the policy's view is
                        standardised with (:mod:`sparseshift.agents.standardize`), algo,
                        hyperparameters, seed, the policy's
                        description (spaces, policy kwargs, weights digest: see
                        :mod:`sparseshift.agents.policy_io`), package versions, the run's identity
    policy.safetensors  the final policy weights (what sparseshift loads; never a pickle)
    agent.sb3.zip       the same model as a plain SB3 zip, an export for users who trust it
                        (SB3's load unpickles; sparseshift never reads this file)
    checkpoints/        periodic policy weights (policy_<steps>.safetensors)
    logs/               progress.csv and TensorBoard events (rollout/*, train/*, eval/*)
    evaluations.json    periodic evaluations on IN colours (agent.json ``shifts`` records the
                        definitions of the training colours and of periodic evaluation)
    DONE.json           written last (atomically): the run finished

Determinism: envs run in one process (DummyVecEnv) and reset with seeds ``seed + i``; SB3 seeds
Python, NumPy and torch from ``seed`` (its global RNGs, unavoidable) and the action space; torch
runs with ``torch_threads`` threads and deterministic algorithms. Two runs with the same config on
the same machine and library versions give identical weights on the CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from torch import nn

from sparseshift.agents.config import (
    BASELINES,
    RUNTIME_FIELDS,
    SEED_RANGE,
    TRAIN_EVAL_SEED_BASE,
    AgentConfig,
    is_deterministic,
)
from sparseshift.agents.encoders import ResolvedEncoder, load_encoder
from sparseshift.agents.envs import make_env, make_vec_env, train_shifts
from sparseshift.agents.extractors import DeepSetsExtractor
from sparseshift.agents.heartbeat import HeartbeatCallback, latest_eval
from sparseshift.agents.policy_io import POLICY_FILE, SB3_EXPORT, describe_policy, save_policy
from sparseshift.agents.rollout import run_episodes
from sparseshift.agents.standardize import LatentStats, measure_stats
from sparseshift.agents.stats import bootstrap_ci
from sparseshift.envs.data.config import check_env_kwargs
from sparseshift.envs.errors import ConfigError
from sparseshift.envs.heartbeat import HEARTBEAT_FILE
from sparseshift.envs.io import (
    output_dir,
    output_lock,
    package_versions,
    read_json,
    strict_json,
    write_json_atomic,
)
from sparseshift.envs.shifts.registry import COLOUR_SPLITS, ResolvedShift, default_registry
from sparseshift.representations.base import Learner
from sparseshift.representations.external import Plugins
from sparseshift.representations.runtime import resolve_device, torch_run

FORMAT = "sparseshift-agent"
#: 2: policy weights in safetensors described in agent.json (1: an SB3 zip, never loaded now).
#: 3: frozen latents standardised with statistics recorded in ``observation.standardize``
#: (format 2 agents, trained on raw latents, still load and evaluate as they were trained).
FORMAT_VERSION = 3
READABLE_VERSIONS: tuple[int, ...] = (2, 3)
AGENT_FILE = "agent.json"
MODEL_FILE = POLICY_FILE
DONE_FILE = "DONE.json"
EVALUATIONS_FILE = "evaluations.json"
#: Parallel envs of the periodic evaluation.
EVAL_ENVS = 4
NATURE_CNN_MIN_SIZE = 36
#: The shift periodic evaluation during training runs under: the IN colours.
PERIODIC_EVAL_SHIFT = COLOUR_SPLITS[0]


def periodic_eval_shift() -> ResolvedShift:
    """The resolved shift of periodic evaluation (:data:`PERIODIC_EVAL_SHIFT`)."""
    return default_registry().resolve(PERIODIC_EVAL_SHIFT)


def shift_records(config: AgentConfig) -> dict[str, Any]:
    """What ``agent.json`` records of shifts: the definitions the training envs ran under
    (``train``: one record per colour split of ``config.colours``, each as
    :meth:`~sparseshift.envs.shifts.registry.ResolvedShift.record` gives it, definition and
    SHA-256 included) and the one periodic evaluation used (``periodic_eval``; None when it is
    off)."""
    return strict_json({
        "train": [s.record() for s in train_shifts(config)],
        "periodic_eval": periodic_eval_shift().record() if config.eval_every else None,
    })


def episode_seeds(base: int, seed: int, n: int) -> list[int]:
    """``n`` distinct episode seeds in ``[base, base + SEED_RANGE)`` drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return [base + int(v) for v in rng.choice(SEED_RANGE, size=n, replace=False)]


def encoder_label(config: AgentConfig) -> str:
    """A short name of the agent's encoder for progress bars: the baseline's name, else the last
    part of its folder or ``module:factory`` spec."""
    if config.encoder in BASELINES:
        return config.encoder
    text = config.encoder.rstrip("/")
    return text.rsplit("/", 1)[-1] or text


def portable(desc: dict[str, Any], out: Path) -> dict[str, Any]:
    """An encoder description whose path is relative to the agent folder ``out`` (so the two can
    move together)."""
    if not desc.get("path"):
        return desc
    return {**desc, "path": os.path.relpath(Path(desc["path"]).resolve(), out.resolve())}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def identity(config: AgentConfig, encoder: ResolvedEncoder) -> dict[str, Any]:
    """What must match for an existing output directory to be reused."""
    cfg = {k: v for k, v in config.to_json().items() if k not in RUNTIME_FIELDS}
    kind = encoder.description.get("kind")
    if kind in ("checkpoint", "exported", "module"):
        cfg["encoder"] = kind  # the fingerprint says which; the path may move
    ident: dict[str, Any] = {"config": cfg, "hyperparams": config.resolved_hyperparams(),
                             "encoder_fingerprint": encoder.fingerprint}
    if encoder.learner is not None:
        # the policy's view of the latents (format 3: standardised); an agent of format 2,
        # trained on raw latents, is another agent
        ident["view"] = "standardised"
    return _jsonable(ident)


def policy_setup(config: AgentConfig, hp: dict[str, Any], set_shape: tuple[int, int] | None
                 ) -> tuple[str, dict[str, Any]]:
    """SB3 policy name and ``policy_kwargs`` for the encoder kind."""
    arch = [int(u) for u in hp["net_arch"]]
    kwargs: dict[str, Any] = {"net_arch": dict(pi=arch, vf=arch) if config.algo == "ppo" else arch}
    if "log_std_init" in hp:  # Gaussian policies (continuous actions) only
        kwargs["log_std_init"] = float(hp["log_std_init"])
    if config.encoder == "pixels":
        if config.image_size < NATURE_CNN_MIN_SIZE:
            m = NATURE_CNN_MIN_SIZE
            raise ConfigError(f"the pixels baseline (NatureCNN) needs images >= {m}x{m}, "
                              f"got {config.image_size}")
        return "MultiInputPolicy", kwargs
    if set_shape is not None:
        kwargs["features_extractor_class"] = DeepSetsExtractor
        kwargs["features_extractor_kwargs"] = {
            "n_slots": set_shape[0], "slot_dim": set_shape[1],
            "hidden": int(hp["deepsets_hidden"]), "set_features": int(hp["deepsets_set_features"]),
            "proprio_features": int(hp["deepsets_proprio_features"]),
            "pooling": str(hp["deepsets_pooling"]),
        }
    return "MlpPolicy", kwargs


PPO_KEYS = ("n_steps", "batch_size", "n_epochs", "learning_rate", "gamma", "gae_lambda",
            "clip_range", "ent_coef", "vf_coef", "max_grad_norm")
SAC_KEYS = ("buffer_size", "batch_size", "learning_rate", "learning_starts", "tau", "gamma",
            "train_freq", "gradient_steps", "ent_coef")


def build_model(config: AgentConfig, hp: dict[str, Any], env: Any,
                set_shape: tuple[int, int] | None) -> BaseAlgorithm:
    from stable_baselines3 import PPO, SAC

    policy, policy_kwargs = policy_setup(config, hp, set_shape)
    device = resolve_device(config.policy_device)
    if config.algo == "ppo":
        return PPO(policy, env, seed=config.seed, device=device, verbose=0,
                   policy_kwargs=policy_kwargs, **{k: hp[k] for k in PPO_KEYS})
    return SAC(policy, env, seed=config.seed, device=device, verbose=0,
               policy_kwargs=policy_kwargs, **{k: hp[k] for k in SAC_KEYS})


def planned_steps(config: AgentConfig, hp: dict[str, Any]) -> tuple[int, int]:
    """``(env steps training will run, the unit they come in)``: SB3 stops after the first whole
    unit that reaches ``config.steps``: a rollout of ``n_envs x n_steps`` for PPO, ``n_envs x
    train_freq`` for SAC."""
    n_envs = int(hp["n_envs"])
    per_env = int(hp["n_steps"]) if config.algo == "ppo" else int(hp.get("train_freq", 1))
    unit = n_envs * max(per_env, 1)
    return -(-config.steps // unit) * unit, unit


def steps_note(config: AgentConfig, hp: dict[str, Any]) -> str:
    """What training will run, said before it starts: ``"384 env steps (--steps 300 rounded up:
    PPO trains in whole rollouts of 2 envs x 64 steps = 128)"``."""
    steps, unit = planned_steps(config, hp)
    if steps == config.steps:
        return f"{steps:,} env steps"
    how = (f"PPO trains in whole rollouts of {hp['n_envs']} envs x {hp['n_steps']} steps = "
           f"{unit:,}" if config.algo == "ppo" else
           f"SAC collects {hp['n_envs']} envs x train_freq {hp.get('train_freq', 1)} = {unit:,} "
           "steps at a time")
    return f"{steps:,} env steps (--steps {config.steps:,} rounded up: {how})"


class ProgressBar(BaseCallback):
    """A tqdm bar (``tqdm.auto``: text in a terminal, a widget in notebooks) over env steps:
    steps, steps/s and the last periodic evaluation on IN colours. ``header`` is written on
    stderr when training starts (after everything was checked), before the bar."""

    def __init__(self, total: int, evaluator: PeriodicEval | None, desc: str,
                 header: str = "") -> None:
        super().__init__()
        self.total, self.evaluator, self.desc, self.header = total, evaluator, desc, header
        self.bar: Any = None
        self._shown = 0

    def _on_training_start(self) -> None:
        import sys

        from tqdm.auto import tqdm

        if self.header:
            tqdm.write(self.header, file=sys.stderr)
        self.bar = tqdm(total=self.total, unit="step", desc=self.desc, dynamic_ncols=True,
                        smoothing=0.1)

    def _on_step(self) -> bool:
        if self.bar is None:
            return True
        self.bar.update(self.num_timesteps - self.bar.n)
        history = self.evaluator.history if self.evaluator is not None else []
        if len(history) != self._shown:
            self._shown = len(history)
            last = history[-1]
            self.bar.set_postfix_str(f"eval@{last['step']}: return {last['return']['mean']:.3g}, "
                                     f"success {last['success']['mean']:.2f}")
        return True

    def _on_training_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.num_timesteps - self.bar.n)
            self.bar.close()
            self.bar = None


class PolicyCheckpoints(BaseCallback):
    """Every ``every`` env steps: ``checkpoints/policy_<steps>.safetensors`` (weights only)."""

    def __init__(self, directory: Path, every: int) -> None:
        super().__init__()
        self.directory, self.every, self._next = directory, every, every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.every
            save_policy(self.model, self.directory / f"policy_{self.num_timesteps}.safetensors")
        return True


class PeriodicEval(BaseCallback):
    """Every ``every`` env steps: ``episodes`` episodes on IN colours, logged as
    ``eval/mean_return``, ``eval/success_rate`` (and 95% bootstrap CIs) and kept in
    :attr:`history`. The same episode seeds are used at every evaluation."""

    def __init__(self, config: AgentConfig, encoder: ResolvedEncoder, every: int,
                 episodes: int, stats: LatentStats | None = None) -> None:
        super().__init__()
        self.stats = stats
        self.config, self.every, self.episodes = config, every, episodes
        self.seeds = episode_seeds(TRAIN_EVAL_SEED_BASE, config.seed, episodes)
        self.encoder = encoder
        self.history: list[dict[str, Any]] = []
        self._next = every
        self._envs: list[Any] = []

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.every
            self.evaluate()
        return True

    def evaluate(self) -> dict[str, Any]:
        from sparseshift.agents.encoding import FrozenEncoder

        if not self._envs:
            shift = periodic_eval_shift()
            self._envs = [make_env(self.config, shift) for _ in range(min(EVAL_ENVS,
                                                                          self.episodes))]
        learner = self.encoder.learner
        enc = (FrozenEncoder(learner, self._envs[0].observation_space, self.stats) if learner
               else None)
        model = self.model
        det = is_deterministic(self.config.eval_policy, self.config.family)

        def policy(obs: Any) -> np.ndarray:
            return model.predict(obs, deterministic=det)[0]

        eps = run_episodes(self._envs, policy, self.seeds, enc, torch_seed=self.config.seed)
        returns = [e.ret for e in eps]
        success = [float(e.success) for e in eps]
        row: dict[str, Any] = {
            "step": int(self.num_timesteps),
            "return": bootstrap_ci(returns, self.config.seed).to_json(),
            "success": bootstrap_ci(success, self.config.seed).to_json(),
        }
        self.history.append(row)
        self.logger.record("eval/mean_return", row["return"]["mean"])
        self.logger.record("eval/success_rate", row["success"]["mean"])
        self.logger.record("eval/return_ci_low", row["return"]["ci_low"])
        self.logger.record("eval/return_ci_high", row["return"]["ci_high"])
        self.logger.dump(self.num_timesteps)
        return row

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []


def _check_existing(out: Path, ident: dict[str, Any]) -> bool:
    """True if ``out`` holds a finished run of ``ident``; ConfigError if it holds another run."""
    path = out / AGENT_FILE
    if not path.is_file():
        return False
    previous = read_json(path, "agent file").get("identity")  # through the gate: one line
    if previous != ident:
        prev: dict[str, Any] = previous if isinstance(previous, dict) else {}
        cfg = prev.get("config")
        prev_cfg: dict[str, Any] = cfg if isinstance(cfg, dict) else {}
        diff = sorted(k for k in ident["config"] if prev_cfg.get(k) != ident["config"][k])
        for k in ("hyperparams", "encoder_fingerprint"):
            if prev.get(k) != ident[k] and k not in diff:
                diff.append(k)
        raise ConfigError(
            f"{out} holds an agent with a different config (differs in: "
            f"{', '.join(diff) or 'format'}); use a new --out directory or the same config"
        )
    if not (out / DONE_FILE).is_file():
        return False
    try:  # what the command reports from it, checked here: one line, never a traceback
        read_json(out / DONE_FILE, "training record", schema=DONE_SCHEMA)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; train into a new --out") from None
    return True


_MEAN = {"mean": float}
#: What ``DONE.json`` of a finished agent holds (what train-agent reports from it).
DONE_SCHEMA: dict[str, Any] = {"result": {
    "steps": int, "seconds": float, "steps_per_second": float,
    "final_eval?": (None, {"step": int, "return": _MEAN, "success": _MEAN}),
}}


def train_agent(config: AgentConfig, out_dir: str | os.PathLike[str], progress: bool = False, *,
                plugins: Plugins | None = None,
                encoder: nn.Module | Learner | None = None) -> Path:
    """Train ``config`` into ``out_dir`` and return it (see the module docstring).

    ``encoder`` (Python) is your own frozen encoder, any ``torch.nn.Module`` mapping frames to
    ``[B, D]`` latents (:func:`sparseshift.representations.external.as_encoder`);
    ``config.encoder`` is then its label. ``plugins`` allows modules that a recorded file names
    (:class:`~sparseshift.representations.external.Plugins`); a factory the config names is
    allowed because the user named it.

    A finished run of the same config (same encoder fingerprint) in ``out_dir`` is returned as it
    is; an unfinished one is restarted from scratch; another config is a :class:`ConfigError`.
    ``out_dir`` is locked while training. ``progress`` shows a :class:`ProgressBar` on stderr.
    An encoder trained on another env's frames gets an
    :class:`~sparseshift.agents.encoders.EncoderEnvWarning` naming both envs.
    """
    out = output_dir(out_dir, AGENT_FILE)
    with output_lock(out):
        return _train_agent(config, out, progress, plugins, encoder)


def _train_agent(config: AgentConfig, out: Path, progress: bool = False,
                 plugins: Plugins | None = None,
                 module: nn.Module | Learner | None = None) -> Path:
    check_env_kwargs(config.env_id, config.env_kwargs)
    encoder = load_encoder(config.encoder, config.image_size, config.seed, env_id=config.env_id,
                           plugins=plugins, weights=config.encoder_weights, module=module)
    if encoder.learner is not None:
        encoder.learner.to(resolve_device(config.device))
    ident = identity(config, encoder)
    if _check_existing(out, ident):
        return out
    for stale in ("checkpoints", "logs", MODEL_FILE, SB3_EXPORT, "agent.zip", EVALUATIONS_FILE):
        p = out / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    hp = config.resolved_hyperparams()
    with torch_run(config.torch_threads):
        stats = (measure_stats(encoder.learner, config, config.seed)
                 if encoder.learner is not None else None)
        env = make_vec_env(config, int(hp["n_envs"]), encoder.learner, stats)
        obs_info: dict[str, Any] = {"space": str(env.observation_space)}
        if stats is not None:
            obs_info["standardize"] = stats.to_json()
        set_shape = None
        enc_state = getattr(env, "encoder", None)
        if enc_state is not None:
            set_shape = enc_state.set_shape
            obs_info.update(latent_shape=list(enc_state.latent_shape),
                            proprio_dim=enc_state.proprio_dim, stateful=enc_state.stateful)
        write_json_atomic(out / AGENT_FILE, _jsonable({
            "format": FORMAT, "format_version": FORMAT_VERSION, "identity": ident,
            "config": config.to_json(), "env": {
                "id": config.env_id, "family": config.family,
                "kwargs": config.env_kwargs_for(config.colours),
            },
            "shifts": shift_records(config),
            "encoder": portable(encoder.description, out), "algo": config.algo,
            "hyperparams": hp,
            "seed": config.seed, "observation": obs_info, "versions": package_versions(),
        }))
        model = build_model(config, hp, env, set_shape)
        formats = ["csv", "tensorboard"] if config.tensorboard else ["csv"]
        model.set_logger(configure(str(out / "logs"), formats))
        callbacks: list[BaseCallback] = []
        n_envs = int(hp["n_envs"])
        if config.checkpoint_every:
            callbacks.append(PolicyCheckpoints(out / "checkpoints",
                                               max(config.checkpoint_every, n_envs)))
        evaluator = None
        if config.eval_every:
            evaluator = PeriodicEval(config, encoder, config.eval_every, config.eval_episodes,
                                     stats)
            callbacks.append(evaluator)
        heartbeat = HeartbeatCallback(out / HEARTBEAT_FILE, planned_steps(config, hp)[0],
                                      latest=latest_eval(evaluator))
        callbacks.append(heartbeat)
        bar = None
        if progress:
            total = planned_steps(config, hp)[0]
            header = (f"training {config.algo} on {config.env_id} with encoder {config.encoder}:"
                      f" {steps_note(config, hp)}")
            bar = ProgressBar(total, evaluator, f"{config.algo} on {encoder_label(config)}",
                              header)
            callbacks.append(bar)
        t0 = time.perf_counter()
        try:
            model.learn(total_timesteps=config.steps, callback=CallbackList(callbacks))
            if evaluator is not None and (not evaluator.history
                                          or evaluator.history[-1]["step"] != model.num_timesteps):
                evaluator.num_timesteps = model.num_timesteps
                evaluator.evaluate()
            heartbeat.report()  # with the final evaluation
        finally:
            if bar is not None:
                bar.close()
            env.close()
            if evaluator is not None:
                evaluator.close()
        seconds = time.perf_counter() - t0
        policy_name, policy_kwargs = policy_setup(config, hp, set_shape)
        digest = save_policy(model, out / POLICY_FILE)
        model.save(str(out / SB3_EXPORT))
        agent = json.loads((out / AGENT_FILE).read_text())
        agent["policy"] = {**describe_policy(config.algo, policy_name, policy_kwargs, model),
                           "file": POLICY_FILE, "digest": digest}
        write_json_atomic(out / AGENT_FILE, agent)
    history = evaluator.history if evaluator is not None else []
    write_json_atomic(out / EVALUATIONS_FILE, history)
    write_json_atomic(out / DONE_FILE, {"result": {
        "steps": int(model.num_timesteps), "seconds": seconds,
        "steps_per_second": model.num_timesteps / max(seconds, 1e-9),
        "final_eval": history[-1] if history else None,
    }})
    return out
