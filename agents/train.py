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
                        :mod:`sparseshift.agents.policy_io`), package versions, the run's
                        identity, and ``training.segments``: the first training and each
                        ``--continue`` (steps from/to, dates, versions, the steps it resumed at)
    policy.safetensors  the final policy weights (what sparseshift loads; never a pickle)
    training_state.safetensors
                        the whole training state at the last rollout boundary saved (every
                        ``checkpoint_every`` env steps and at the end): an interrupted run
                        resumes from it exactly, ``--continue`` goes on from it
                        (:mod:`sparseshift.agents.resume`)
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
the same machine and library versions give identical weights on the CPU, and so does a run that
was interrupted (kill -9 included) and resumed: everything the rest of training depends on is in
``training_state.safetensors`` (:mod:`sparseshift.agents.resume`). Continuing a finished agent by
N steps gives the weights of a run trained from scratch for its steps + N (the learning rate and
clip range are constants, so nothing depends on the total).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
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
from sparseshift.agents.envs import make_env, make_vec_env, measure_stats, training_shifts
from sparseshift.agents.extractors import DeepSetsExtractor
from sparseshift.agents.heartbeat import HeartbeatCallback, latest_eval
from sparseshift.agents.policy_io import POLICY_FILE, SB3_EXPORT, describe_policy, save_policy
from sparseshift.agents.resume import (
    STATE_FILE,
    TrainingState,
    read_state,
    restore,
    save_state,
    training_logger,
)
from sparseshift.agents.rollout import run_episodes
from sparseshift.agents.standardize import LatentStats
from sparseshift.agents.stats import bootstrap_ci
from sparseshift.envs.data.config import check_env_kwargs
from sparseshift.envs.infra.config import check_int
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.heartbeat import HEARTBEAT_FILE
from sparseshift.envs.infra.io import (
    Choice,
    check_schema,
    output_dir,
    output_lock,
    package_versions,
    read_json,
    strict_json,
    write_json_atomic,
)
from sparseshift.envs.shifts.registry import ResolvedShift
from sparseshift.representations.base import Learner
from sparseshift.representations.plugins import Plugins
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


def identity(config: AgentConfig, encoder: ResolvedEncoder, hp: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """What must match for an existing output directory to be reused (``hp``: the config's
    resolved hyperparameters, when the caller has them)."""
    cfg = {k: v for k, v in config.to_json().items() if k not in RUNTIME_FIELDS}
    if cfg.get("collector") == "sync":  # the collector of every agent before it was a field
        del cfg["collector"]
    kind = encoder.description.get("kind")
    if kind in ("checkpoint", "exported", "module"):
        cfg["encoder"] = kind  # the fingerprint says which; the path may move
    if hp is None:
        hp = config.resolved_hyperparams()
    ident: dict[str, Any] = {"config": cfg, "hyperparams": hp,
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
        from sparseshift.agents.pipeline import PipelinedPPO

        ppo = PipelinedPPO if config.collector == "pipelined" else PPO
        return ppo(policy, env, seed=config.seed, device=device, verbose=0,
                   policy_kwargs=policy_kwargs, **{k: hp[k] for k in PPO_KEYS})
    return SAC(policy, env, seed=config.seed, device=device, verbose=0,
               policy_kwargs=policy_kwargs, **{k: hp[k] for k in SAC_KEYS})


def planned_steps(config: AgentConfig, hp: dict[str, Any], steps: int | None = None
                  ) -> tuple[int, int]:
    """``(env steps training will run, the unit they come in)``: SB3 stops after the first whole
    unit that reaches ``steps`` (default ``config.steps``; a continuation's target): a rollout
    of ``n_envs x n_steps`` for PPO, ``n_envs x train_freq`` for SAC."""
    asked = config.steps if steps is None else steps
    n_envs = int(hp["n_envs"])
    per_env = int(hp["n_steps"]) if config.algo == "ppo" else int(hp.get("train_freq", 1))
    unit = n_envs * max(per_env, 1)
    return -(-asked // unit) * unit, unit


def steps_note(config: AgentConfig, hp: dict[str, Any], steps: int | None = None) -> str:
    """What training will run, said before it starts: ``"384 env steps (--steps 300 rounded up:
    PPO trains in whole rollouts of 2 envs x 64 steps = 128)"``."""
    asked = config.steps if steps is None else steps
    total, unit = planned_steps(config, hp, asked)
    if total == asked:
        return f"{total:,} env steps"
    how = (f"PPO trains in whole rollouts of {hp['n_envs']} envs x {hp['n_steps']} steps = "
           f"{unit:,}" if config.algo == "ppo" else
           f"SAC collects {hp['n_envs']} envs x train_freq {hp.get('train_freq', 1)} = {unit:,} "
           "steps at a time")
    what = "--steps" if steps is None or steps == config.steps else "the target"
    return f"{total:,} env steps ({what} {asked:,} rounded up: {how})"


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
        self.bar = tqdm(total=self.total, initial=int(self.model.num_timesteps), unit="step",
                        desc=self.desc, dynamic_ncols=True, smoothing=0.1)

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
    """Every ``every`` env steps: ``episodes`` episodes under ``shift`` (the run's periodic
    evaluation shift, the IN colours: :func:`~sparseshift.agents.envs.training_shifts`), logged
    as ``eval/mean_return``, ``eval/success_rate`` (and 95% bootstrap CIs) and kept in
    :attr:`history`. The same episode seeds are used at every evaluation."""

    def __init__(self, config: AgentConfig, encoder: ResolvedEncoder, every: int,
                 episodes: int, stats: LatentStats | None, shift: ResolvedShift) -> None:
        super().__init__()
        self.stats, self.shift = stats, shift
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

    def state(self) -> dict[str, Any]:
        """What a saved training state records of this callback: the next evaluation step and
        the history so far."""
        return {"next": self._next, "history": self.history}

    def load_state(self, state: dict[str, Any], where: str) -> None:
        check_schema(state, {"next": int, "history": [{"step": int, "return": dict,
                                                       "success": dict}]}, where, "state.eval")
        self._next, self.history = state["next"], list(state["history"])

    def evaluate(self) -> dict[str, Any]:
        from sparseshift.agents.encoding import FrozenEncoder

        if not self._envs:
            self._envs = [make_env(self.config, self.shift)
                          for _ in range(min(EVAL_ENVS, self.episodes))]
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
        diff = _identity_diff(previous, ident)
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
                encoder: nn.Module | Learner | None = None,
                continue_steps: int | None = None) -> Path:
    """Train ``config`` into ``out_dir`` and return it (see the module docstring).

    ``encoder`` (Python) is your own frozen encoder, any ``torch.nn.Module`` mapping frames to
    ``[B, D]`` latents (:func:`sparseshift.representations.external.as_encoder`);
    ``config.encoder`` is then its label. ``plugins`` allows modules that a recorded file names
    (:class:`~sparseshift.representations.external.Plugins`); a factory the config names is
    allowed because the user named it.

    A finished run of the same config (same encoder fingerprint) in ``out_dir`` is returned as it
    is; an unfinished one resumes exactly from its saved training state
    (:mod:`sparseshift.agents.resume`; from scratch when it has none yet); another config is a
    :class:`ConfigError`. ``continue_steps`` trains the finished agent of ``config`` in
    ``out_dir`` that many env steps further (rounded up to whole rollouts), recorded as a segment
    in ``agent.json`` (``training.segments``): the result is identical to training from scratch
    for the agent's steps plus ``continue_steps``; an interrupted continuation resumes when called
    again with the same ``continue_steps``.
    ``out_dir`` is locked while training. ``progress`` shows a :class:`ProgressBar` on stderr.
    An encoder trained on another env's frames gets an
    :class:`~sparseshift.agents.encoders.EncoderEnvWarning` naming both envs.
    """
    if continue_steps is not None:
        continue_steps = check_int("--continue", continue_steps, 1, MAX_CONTINUE_STEPS)
    out = output_dir(out_dir, AGENT_FILE)
    with output_lock(out):
        return _train_agent(config, out, progress, plugins, encoder, continue_steps)


#: Most env steps one ``--continue`` adds.
MAX_CONTINUE_STEPS = 10**10
_RESUMED = {"step": int, "date": str, "versions": dict}
#: One training segment of ``agent.json``'s ``training.segments``: the first training
#: (``train``, from 0) or a continuation (``continue``, ``added`` steps from ``from``).
SEGMENT_SCHEMA: dict[str, Any] = {
    "kind": Choice("train", "continue"), "from": int, "target": int, "added?": (int, None),
    "steps": (int, None), "started": str, "finished": (str, None), "resumed": [_RESUMED],
    "versions": dict, "final_eval?": (dict, None),
}


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_segment(kind: str, start: int, target: int, added: int | None = None
                ) -> dict[str, Any]:
    """An open training segment (:data:`SEGMENT_SCHEMA`) that starts now."""
    return {"kind": kind, "from": start, "target": target, "added": added, "steps": None,
            "started": now_iso(), "finished": None, "resumed": [],
            "versions": package_versions()}


def training_segments(agent: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """``agent.json``'s training segments, checked (agents trained before they were recorded:
    none)."""
    training = agent.get("training")
    if training is None:
        return []
    check_schema(training, {"segments": [SEGMENT_SCHEMA]}, where, "training")
    segments: list[dict[str, Any]] = training["segments"]
    return segments


def _identity_diff(previous: Any, ident: dict[str, Any]) -> list[str]:
    prev: dict[str, Any] = previous if isinstance(previous, dict) else {}
    cfg = prev.get("config")
    prev_cfg: dict[str, Any] = cfg if isinstance(cfg, dict) else {}
    diff = sorted(k for k in ident["config"] if prev_cfg.get(k) != ident["config"][k])
    for k in ("hyperparams", "encoder_fingerprint", "view"):
        if prev.get(k) != ident.get(k) and k not in diff:
            diff.append(k)
    return diff


def _continue_plan(out: Path, ident: dict[str, Any], finished: bool, steps: int
                   ) -> tuple[dict[str, Any], TrainingState, int]:
    """(agent.json, the saved state, the target step count) of ``--continue steps``; an open
    continuation of the same ``steps`` resumes, anything else that cannot continue is one
    line."""
    if not finished:
        if (out / AGENT_FILE).is_file():
            raise ConfigError(f"{out} holds an unfinished training run: run the same command "
                              "without --continue to finish it first")
        raise ConfigError(f"--continue trains a finished agent further, and {out} holds none: "
                          "train it first (the same command without --continue)")
    where = str(out / AGENT_FILE)
    agent = read_json(out / AGENT_FILE, "agent file")
    segments = training_segments(agent, where)
    state = read_state(out / STATE_FILE)
    if state is None or not segments:
        raise ConfigError(f"{out} holds no saved training state (agents trained before "
                          "sparseshift recorded one, or its training_state.safetensors was "
                          "deleted): it cannot be continued exactly; train a new agent")
    _check_state(state, ident)
    last = segments[-1]
    if last["finished"] is None and last["kind"] == "train":
        # killed after DONE.json was written, before the segment was closed: it is finished
        last.update(steps=state.steps, finished=now_iso())
    if last["finished"] is None:
        if not isinstance(last.get("added"), int):
            raise ConfigError(f"{where}: its last training segment is an open continuation "
                              "without its number of steps; train into a new --out")
        if last["added"] != steps:
            raise ConfigError(f"{out} is being continued by {last['added']:,} steps (stopped at "
                              f"step {state.steps:,} of {last['target']:,}): run it again with "
                              f"--continue {last['added']} to finish that first")
        return agent, state, int(last["target"])
    done = int(read_json(out / DONE_FILE, "training record", schema=DONE_SCHEMA)
               ["result"]["steps"])
    if state.steps != done:
        raise ConfigError(f"{out / STATE_FILE} is from step {state.steps:,}, but the agent was "
                          f"trained for {done:,} steps: it cannot be continued exactly")
    segments.append(new_segment("continue", done, done + steps, steps))
    return agent, state, done + steps


def _check_state(state: TrainingState, ident: dict[str, Any]) -> None:
    """Refuse (one line) a saved state of another config than ``ident``."""
    if state.meta["identity"] != ident:
        diff = _identity_diff(state.meta["identity"], ident)
        raise ConfigError(f"{state.path} holds the training state of another config (differs "
                          f"in: {', '.join(diff) or 'format'}); resume with the arguments it "
                          "was started with, or use a new --out")


def _recorded_stats(agent: dict[str, Any], learner: Learner) -> LatentStats | None:
    """The latent statistics ``agent.json`` recorded (what the interrupted run trained with)."""
    observation = agent.get("observation")
    record = observation.get("standardize") if isinstance(observation, dict) else None
    if record is None:
        return None
    return LatentStats.from_json(record, int(learner.latent_shape[-1]))


def _remove_stale(out: Path) -> None:
    """A fresh start: remove the files an earlier, unfinished run of this folder wrote."""
    for stale in ("checkpoints", "logs", MODEL_FILE, SB3_EXPORT, "agent.zip", EVALUATIONS_FILE,
                  STATE_FILE):
        p = out / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


class TrainingStateCheckpoints(BaseCallback):
    """At the first rollout boundary after every ``every`` env steps: ``save()`` (the whole
    training state, :func:`sparseshift.agents.resume.save_state`)."""

    def __init__(self, every: int, save: Callable[[], None]) -> None:
        super().__init__()
        self.every, self.save, self._next = every, save, every

    def _on_training_start(self) -> None:
        self._next = (int(self.model.num_timesteps) // self.every + 1) * self.every

    def _on_rollout_start(self) -> None:
        steps = int(self.model.num_timesteps)
        if steps >= self._next:
            self._next = (steps // self.every + 1) * self.every
            self.save()

    def _on_step(self) -> bool:
        return True


def _train_agent(config: AgentConfig, out: Path, progress: bool = False,
                 plugins: Plugins | None = None,
                 module: nn.Module | Learner | None = None,
                 continue_steps: int | None = None) -> Path:
    """One direction: resolve the config, then the encoder (once: everything below uses this
    object), see what ``out`` holds, build (shifts, statistics, envs, the agent record, the
    model), train, write."""
    # the config, resolved once
    check_env_kwargs(config.env_id, config.env_kwargs)
    hp = config.resolved_hyperparams()
    n_envs = int(hp["n_envs"])
    # the encoder, resolved once
    encoder = load_encoder(config.encoder, config.image_size, config.seed, env_id=config.env_id,
                           plugins=plugins, weights=config.encoder_weights, module=module)
    if encoder.learner is not None:
        encoder.learner.to(resolve_device(config.device))
    # what out holds: this agent finished (nothing to do), a state to resume or continue from
    ident = identity(config, encoder, hp)
    finished = _check_existing(out, ident)
    agent: dict[str, Any] | None = None
    state: TrainingState | None = None
    target = config.steps
    if continue_steps is not None:
        agent, state, target = _continue_plan(out, ident, finished, continue_steps)
    elif finished:
        return out
    elif (out / AGENT_FILE).is_file():
        state = read_state(out / STATE_FILE)
        if state is not None:
            _check_state(state, ident)
            agent = read_json(out / AGENT_FILE, "agent file")
            recorded = training_segments(agent, str(out / AGENT_FILE))
            if recorded:
                target = int(recorded[-1]["target"])
            else:
                state = agent = None  # a state without its segment record: start afresh
    if state is None:
        _remove_stale(out)
    # build: shifts, latent statistics, envs, the agent record, the model and its callbacks
    planned = planned_steps(config, hp, target)[0]
    shifts = training_shifts(config)
    with torch_run(config.torch_threads):
        stats = None
        if encoder.learner is not None:
            stats = _recorded_stats(agent, encoder.learner) if agent is not None else None
            if stats is None:
                stats = measure_stats(encoder.learner, config, config.seed)
        env = make_vec_env(config, n_envs, encoder.learner, stats)
        obs_info: dict[str, Any] = {"space": str(env.observation_space)}
        if stats is not None:
            obs_info["standardize"] = stats.to_json()
        set_shape = None
        enc_state = getattr(env, "encoder", None)
        if enc_state is not None:
            set_shape = enc_state.set_shape
            obs_info.update(latent_shape=list(enc_state.latent_shape),
                            proprio_dim=enc_state.proprio_dim, stateful=enc_state.stateful)
        if agent is None:
            agent = _jsonable({
                "format": FORMAT, "format_version": FORMAT_VERSION, "identity": ident,
                "config": config.to_json(), "env": {
                    "id": config.env_id, "family": config.family,
                    "kwargs": config.env_kwargs_for(config.colours),
                },
                "shifts": shifts.records(),
                "encoder": portable(encoder.description, out), "algo": config.algo,
                "hyperparams": hp,
                "seed": config.seed, "observation": obs_info, "versions": package_versions(),
                "training": {"segments": [new_segment("train", 0, config.steps)]},
            })
        segment = agent["training"]["segments"][-1]
        if state is not None and state.steps > segment["from"]:
            segment["resumed"].append({"step": state.steps, "date": now_iso(),
                                       "versions": package_versions()})
        write_json_atomic(out / AGENT_FILE, agent)
        model = build_model(config, hp, env, set_shape)
        logger_state = state.meta["logger"] if state is not None else {}
        model.set_logger(training_logger(out / "logs", config.tensorboard,
                                         state.steps if state is not None else None,
                                         logger_state.get("csv_rows")))
        callbacks: list[BaseCallback] = []
        checkpoints = None
        if config.checkpoint_every:
            checkpoints = PolicyCheckpoints(out / "checkpoints",
                                            max(config.checkpoint_every, n_envs))
            callbacks.append(checkpoints)
        evaluator = None
        if shifts.periodic_eval is not None:  # config.eval_every is set
            evaluator = PeriodicEval(config, encoder, config.eval_every, config.eval_episodes,
                                     stats, shifts.periodic_eval)
            callbacks.append(evaluator)
        seconds_before = 0.0
        if state is not None:
            try:
                restore(model, env, state)
                seconds_before = _load_callbacks(state, checkpoints, evaluator)
            except BaseException:
                env.close()
                raise
        t0 = time.perf_counter()

        def save_training_state() -> None:
            extra = {"seconds": seconds_before + time.perf_counter() - t0,
                     "checkpoints_next": checkpoints._next if checkpoints else None,
                     "eval": evaluator.state() if evaluator else None}
            save_state(out / STATE_FILE, model, env, ident, strict_json(extra))

        if config.checkpoint_every:
            callbacks.append(TrainingStateCheckpoints(max(config.checkpoint_every, n_envs),
                                                      save_training_state))
        heartbeat = HeartbeatCallback(out / HEARTBEAT_FILE, planned,
                                      latest=latest_eval(evaluator))
        callbacks.append(heartbeat)
        bar = None
        if progress:
            header = (f"training {config.algo} on {config.env_id} with encoder {config.encoder}:"
                      f" {steps_note(config, hp, target)}")
            if continue_steps is not None:
                header += (f"; continuing from step {segment['from']:,} by "
                           f"{continue_steps:,} steps")
            if state is not None and state.steps > segment["from"]:
                header += f"; resuming at step {state.steps:,}"
            bar = ProgressBar(planned, evaluator, f"{config.algo} on {encoder_label(config)}",
                              header)
            callbacks.append(bar)
        # train
        try:
            remaining = target - int(model.num_timesteps)
            if state is None or remaining > 0:
                model.learn(total_timesteps=remaining, callback=CallbackList(callbacks),
                            reset_num_timesteps=state is None)
                save_training_state()  # what --continue starts from (before the final eval)
            if evaluator is not None and (not evaluator.history
                                          or evaluator.history[-1]["step"] != model.num_timesteps):
                evaluator.num_timesteps = model.num_timesteps
                if getattr(evaluator, "model", None) is None:
                    evaluator.init_callback(model)
                evaluator.evaluate()
            if heartbeat.heartbeat is not None:
                heartbeat.report()  # with the final evaluation
        finally:
            if bar is not None:
                bar.close()
            env.close()
            if evaluator is not None:
                evaluator.close()
            model.logger.close()
        # write
        seconds = seconds_before + time.perf_counter() - t0
        policy_name, policy_kwargs = policy_setup(config, hp, set_shape)
        digest = save_policy(model, out / POLICY_FILE)
        model.save(str(out / SB3_EXPORT))
        history = evaluator.history if evaluator is not None else []
        segment.update(steps=int(model.num_timesteps),
                       final_eval=history[-1] if history else None)
        agent["policy"] = {**describe_policy(config.algo, policy_name, policy_kwargs, model),
                           "file": POLICY_FILE, "digest": digest}
        write_json_atomic(out / AGENT_FILE, agent)
    write_json_atomic(out / EVALUATIONS_FILE, history)
    write_json_atomic(out / DONE_FILE, {"result": {
        "steps": int(model.num_timesteps), "seconds": seconds,
        "steps_per_second": model.num_timesteps / max(seconds, 1e-9),
        "final_eval": history[-1] if history else None,
        "segments": len(agent["training"]["segments"]),
    }})
    # the segment is closed last: killed before this, the same command finishes it again
    # (a continuation resumes from its final state; a first training is closed by --continue)
    segment["finished"] = now_iso()
    write_json_atomic(out / AGENT_FILE, agent)
    return out


def _load_callbacks(state: TrainingState, checkpoints: PolicyCheckpoints | None,
                    evaluator: PeriodicEval | None) -> float:
    """Restore the callbacks' counters from a saved state; return the training seconds it
    records."""
    where = str(state.path)
    extra = check_schema(state.extra, {"seconds": float, "checkpoints_next": (int, None),
                                       "eval": (dict, None)}, where, "state.extra")
    if checkpoints is not None and extra["checkpoints_next"] is not None:
        checkpoints._next = extra["checkpoints_next"]
    if evaluator is not None and extra["eval"] is not None:
        evaluator.load_state(extra["eval"], where)
    return float(extra["seconds"])
