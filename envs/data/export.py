"""Export a video dataset to the formats robot-learning users share: LeRobotDataset and Minari.

Both are optional extras (``pip install 'sparseshift[lerobot]'`` / ``'sparseshift[minari]'``) and
are written through the library's own API, so the result is whatever the installed version writes
(LeRobotDataset v3.0 with ``lerobot`` 0.4; Minari's HDF5 storage with ``minari`` 0.5):

* **LeRobot** (:func:`export_lerobot`): ``LeRobotDataset.create`` + ``add_frame`` per row +
  ``save_episode`` per episode (+ ``finalize``). Features: ``observation.image`` (the frame, stored
  as lossless PNG, or with ``video=True`` as LeRobot's encoded video), ``observation.state`` (the
  policy's vector observation: ``obs/state`` or ``obs/proprio``; format 3), ``observation.
  environment_state`` (the ground-truth factors, named), ``action``, ``next.reward``, ``next.done``
  (terminated) and ``next.truncated``. LeRobotDataset has no place for the observation after an
  episode's last step, so final observations are not exported (Minari keeps them).
* **Minari** (:func:`export_minari`): ``minari.create_dataset_from_buffers`` with one
  ``EpisodeBuffer`` per episode (then ``update_dataset_from_buffer`` for the rest, a bounded
  number of frames at a time): observations exactly as the policy saw them (T + 1 per episode,
  the last one the final observation, so it needs format 3), actions, rewards, terminations,
  truncations, and the factors as ``infos["factors"]`` (T + 1 rows). Frames are stored losslessly
  (``jpeg_encoding=False``). The env's spec is recorded, so ``recover_environment()`` works where
  sparseshift is installed.

Intervention-pairs datasets export to neither: both formats hold episodes of (observation,
action, reward), and a pair has no action, reward or episode.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseshift.envs.data.dataset import Dataset, open_dataset
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import temp_name

FORMATS: tuple[str, ...] = ("lerobot", "minari")
#: The extra that installs each format's library.
EXTRAS: dict[str, str] = {"lerobot": "lerobot", "minari": "minari"}
#: What to install for each format (the pyproject extras of the same name hold the same).
REQUIREMENTS: dict[str, str] = {"lerobot": "lerobot>=0.4", "minari": "minari>=0.5"}
#: Frames held in memory at once while exporting (episodes are handed over in groups).
FRAMES_PER_BATCH = 4096

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote: ``path`` (the LeRobot root, or the Minari dataset folder) holding
    the dataset ``name`` with ``episodes`` episodes and ``frames`` steps."""

    format: str
    path: Path
    name: str
    episodes: int
    frames: int
    load: str  # a Python line that loads the result


def _library(fmt: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"--format {fmt} needs the optional {EXTRAS[fmt]!r} package ({exc}); "
                          f"install it into this environment with: pip install "
                          f"'{REQUIREMENTS[fmt]}' (from a sparseshift checkout: pip install -e "
                          f"'.[{EXTRAS[fmt]}]')") from None


def episode_ranges(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(first row, last row) of every episode of a video dataset, in order."""
    starts = np.flatnonzero(ds.take("episode_starts", np.arange(len(ds))))
    ends = ds.episode_ends()
    if len(starts) != len(ends) or (len(starts) and (
            starts[0] != 0 or (ends < starts).any() or (starts[1:] != ends[:-1] + 1).any())):
        raise ConfigError(f"{ds.path}: episode starts and ends do not pair up; file is damaged")
    return starts, ends


def _batches(starts: np.ndarray, ends: np.ndarray) -> Iterator[tuple[int, int]]:
    """Groups of episodes [a, b) of about :data:`FRAMES_PER_BATCH` frames."""
    a = 0
    while a < len(starts):
        b = a + 1
        while b < len(starts) and ends[b] - starts[a] < FRAMES_PER_BATCH:
            b += 1
        yield a, b
        a = b


def _env_info(ds: Dataset) -> tuple[Any, Any, int, Any]:
    """(observation space, action space, frames per second, env spec) of the dataset's env."""
    from sparseshift.envs.registry import make

    try:
        env = make(ds.env_id, **dict(ds.attrs["env_kwargs"]))
    except (ImportError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot build {ds.env_id} to read its spaces ({exc})") from None
    try:
        fps = int(env.metadata.get("render_fps") or 10)
        return env.observation_space, env.action_space, fps, env.spec
    finally:
        env.close()


def _need_video(ds: Dataset, fmt: str) -> None:
    if ds.kind != "video":
        raise ConfigError(f"--format {fmt} holds episodes of (observation, action, reward); "
                          f"{ds.path} holds intervention pairs, which have none: export a video "
                          "dataset (pairs load in PyTorch with sparseshift.envs.data."
                          "InterventionPairDataset)")


def _fresh(path: Path, what: str) -> None:
    if path.exists():
        raise ConfigError(f"{path} already exists; choose another {what} or remove it")


# ------------------------------------------------------------------------------ LeRobot
def _lerobot_class() -> Any:
    for module in ("lerobot.datasets.lerobot_dataset", "lerobot.common.datasets.lerobot_dataset"):
        try:
            return importlib.import_module(module).LeRobotDataset
        except ImportError:
            continue
    _library("lerobot", "lerobot.datasets.lerobot_dataset")  # the error, naming the extra
    raise AssertionError


def lerobot_features(ds: Dataset, action_space: Any, video: bool = False) -> dict[str, Any]:
    """The LeRobot feature spec of a video dataset (see the module docstring)."""
    import gymnasium as gym

    s = ds.image_size
    feats: dict[str, Any] = {
        "observation.image": {"dtype": "video" if video else "image", "shape": (s, s, 3),
                              "names": ["height", "width", "channels"]},
    }
    state = _state_key(ds)
    if state is not None:
        shape = tuple(ds.shapes[f"obs/{state}"][1:])
        feats["observation.state"] = {"dtype": "float32", "shape": shape,
                                      "names": [f"{state}_{i}" for i in range(int(np.prod(shape)))]}
    names = [f.name for f in ds.factor_spec.factors]
    feats["observation.environment_state"] = {"dtype": "float32", "shape": (len(names),),
                                              "names": names}
    if isinstance(action_space, gym.spaces.Box):
        shape = tuple(int(d) for d in action_space.shape)
        feats["action"] = {"dtype": "float32", "shape": shape,
                           "names": [f"a{i}" for i in range(int(np.prod(shape)))]}
    else:
        feats["action"] = {"dtype": "int64", "shape": (1,), "names": ["action"]}
    feats["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
    feats["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
    feats["next.truncated"] = {"dtype": "bool", "shape": (1,), "names": None}
    return feats


def _state_key(ds: Dataset) -> str | None:
    """The stored vector observation LeRobot calls ``observation.state`` (one key only)."""
    keys = [k for k in ds.obs_keys if len(ds.shapes[f"obs/{k}"]) == 2]
    if "state" in keys:
        return "state"
    if "proprio" in keys:
        return "proprio"
    return keys[0] if len(keys) == 1 else None


def export_lerobot(ds: Dataset, out: Path, name: str | None = None, task: str | None = None,
                   video: bool = False, progress: Progress | None = None) -> ExportResult:
    """Write ``ds`` (video) as a LeRobotDataset at root ``out`` (a new folder)."""
    check_export(ds, "lerobot", out, name, task, video)
    cls = _lerobot_class()
    repo_id = name or _default_name(ds, "lerobot")
    _, action_space, fps, _ = _env_info(ds)
    feats = lerobot_features(ds, action_space, video)
    text = task or f"{ds.env_id} ({_policy_text(ds)} policy)"
    starts, ends = episode_ranges(ds)
    state = _state_key(ds)
    out.parent.mkdir(parents=True, exist_ok=True)
    # LeRobot creates its root itself, so it gets a fresh folder inside a staging folder made
    # here with a new random name (mkdir fails on any existing name): only that staging folder,
    # which this call created, is ever removed.
    staging = temp_name(out, ".staging")
    staging.mkdir(mode=0o700)
    tmp = staging / out.name
    bars = _quiet_datasets()
    try:
        kwargs: dict[str, Any] = {"root": tmp, "use_videos": video}
        if "image_writer_threads" in inspect.signature(cls.create).parameters:
            kwargs["image_writer_threads"] = 0
        lr = cls.create(repo_id, fps, feats, **kwargs)
        for a, b in _batches(starts, ends):
            rows = np.arange(starts[a], ends[b - 1] + 1)
            frames = ds.take("frames", rows)
            factors = ds.take("factors", rows)
            actions = ds.take("actions", rows)
            rewards = ds.take("rewards", rows)
            term, trunc = ds.take("terminated", rows), ds.take("truncated", rows)
            obs = ds.take(f"obs/{state}", rows) if state else None
            for e in range(a, b):
                for r in range(int(starts[e]), int(ends[e]) + 1):
                    i = r - int(rows[0])
                    act = actions[i]
                    frame: dict[str, Any] = {
                        "observation.image": frames[i],
                        "observation.environment_state": factors[i],
                        "action": (act.astype(np.float32) if act.ndim
                                   else np.array([act], np.int64)),
                        "next.reward": np.array([rewards[i]], np.float32),
                        "next.done": np.array([term[i]], bool),
                        "next.truncated": np.array([trunc[i]], bool),
                        "task": text,
                    }
                    if obs is not None:
                        frame["observation.state"] = obs[i].astype(np.float32).reshape(-1)
                    lr.add_frame(frame)
                lr.save_episode()
                if progress is not None:
                    progress(int(ends[e] - starts[e]) + 1)
        if hasattr(lr, "finalize"):
            lr.finalize()
        os.replace(tmp, out)
    finally:
        bars()
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult("lerobot", out, repo_id, len(starts), len(ds),
                        f"LeRobotDataset({repo_id!r}, root={str(out)!r})")


def _quiet_datasets() -> Callable[[], None]:
    """Silence the Hugging Face ``datasets`` progress bars LeRobot triggers (the export has its
    own); returns the function that restores them."""
    try:
        import datasets
    except ImportError:
        return lambda: None
    if not datasets.is_progress_bar_enabled():
        return lambda: None
    datasets.disable_progress_bars()
    restore: Callable[[], None] = datasets.enable_progress_bars
    return restore


# ------------------------------------------------------------------------------ Minari
def export_minari(ds: Dataset, out: Path, name: str | None = None,
                  progress: Progress | None = None) -> ExportResult:
    """Write ``ds`` (format-3 video) as the Minari dataset ``name`` in the Minari root ``out``
    (``MINARI_DATASETS_PATH``; it may hold other datasets)."""
    target = check_export(ds, "minari", out, name)
    minari = _library("minari", "minari")
    episode_buffer = _library("minari", "minari.data_collector").EpisodeBuffer
    dataset_id = name or _default_name(ds, "minari")
    obs_space, action_space, _, spec = _env_info(ds)
    starts, ends = episode_ranges(ds)
    create = minari.create_dataset_from_buffers
    extra: dict[str, Any] = {}
    if "jpeg_encoding" in inspect.signature(create).parameters:
        extra["jpeg_encoding"] = False  # lossless frames
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(out)
    ours = not target.exists()  # a failed export removes the dataset folder only if it made it
    try:
        out.mkdir(parents=True, exist_ok=True)
        result: Any = None
        for a, b in _batches(starts, ends):
            buffers = [_episode(ds, episode_buffer, int(starts[e]), int(ends[e]), e)
                       for e in range(a, b)]
            if result is None:
                with warnings.catch_warnings():  # minari asks for author and code links
                    warnings.filterwarnings("ignore", message="`(author|code_permalink)",
                                            category=UserWarning)
                    result = create(dataset_id, buffers, env=spec, eval_env=spec,
                                    action_space=action_space, observation_space=obs_space,
                                    algorithm_name=_policy_text(ds),
                                    description=f"sparseshift {ds.kind} dataset {ds.path.name} "
                                    f"(fingerprint {ds.fingerprint[:16]}) of {ds.env_id}",
                                    **extra)
            else:
                result.update_dataset_from_buffer(buffers)
            if progress is not None:
                progress(int(ends[b - 1] - starts[a]) + 1)
    except BaseException:
        if ours and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before
    return ExportResult("minari", target, dataset_id, len(starts), len(ds),
                        f"MINARI_DATASETS_PATH={out} minari.load_dataset({dataset_id!r})")


def _episode(ds: Dataset, buffer_cls: Any, first: int, last: int, index: int) -> Any:
    """One Minari EpisodeBuffer: rows ``first..last`` and the episode's final observation."""
    rows = np.arange(first, last + 1)
    final = np.array([index])

    def join(a: Any, b: Any) -> Any:
        if isinstance(a, dict):
            return {k: join(a[k], b[k]) for k in a}
        return np.concatenate([a, b])

    obs = join(ds.observations(rows), ds.observations(final, final=True))
    factors = np.concatenate([ds.take("factors", rows), ds.take("final/factors", final)])
    return buffer_cls(id=index, observations=obs, actions=ds.take("actions", rows),
                      rewards=ds.take("rewards", rows).astype(np.float64),
                      terminations=ds.take("terminated", rows),
                      truncations=ds.take("truncated", rows), infos={"factors": factors})


# ------------------------------------------------------------------------------ both
def _slug(text: str) -> str:
    return re.sub(r"[^\w-]+", "-", text).strip("-_") or "dataset"


def _policy_text(ds: Dataset) -> str:
    policy = ds.attrs["collector"].get("policy") or {}
    return str(policy.get("type", "unknown"))


def check_export(ds: Dataset, fmt: str, out: str | Path, name: str | None = None,
                 task: str | None = None, video: bool = False) -> Path:
    """Raise the one-line ConfigError an export of ``ds`` would (unknown format, options of the
    other format, a pairs dataset, a format-2 file for Minari, a missing library, a bad name, an
    existing output) before anything is written; return the folder the export will write."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "lerobot" and (task is not None or video):
        raise ConfigError("--task and --video apply to --format lerobot only")
    _need_video(ds, fmt)
    root = Path(out).resolve()
    if fmt == "lerobot":
        _lerobot_class()
        repo_id = name or _default_name(ds, fmt)
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
            raise ConfigError(f"--name {repo_id!r} is not a LeRobot repo id (owner/name)")
        _fresh(root, "--out")
        return root
    if ds.version < 3:
        raise ConfigError(f"--format minari needs every episode's final observation, which "
                          f"datasets of format 3 store; {ds.path} is format {ds.version}: "
                          "collect it again")
    _library("minari", "minari")
    dataset_id = name or _default_name(ds, fmt)
    if not re.fullmatch(r"(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+", dataset_id):
        raise ConfigError(f"--name {dataset_id!r} is not a Minari dataset id "
                          "((namespace/)name-vN)")
    _fresh(root / dataset_id, "--name or --out")
    return root / dataset_id


def _default_name(ds: Dataset, fmt: str) -> str:
    slug = _slug(ds.path.stem)
    return f"sparseshift/{slug}" if fmt == "lerobot" else f"sparseshift/{slug}-v0"


def export(data: str | Path | Dataset, fmt: str, out: str | Path, name: str | None = None,
           task: str | None = None, video: bool = False,
           progress: Progress | None = None) -> ExportResult:
    """Export the sparseshift dataset ``data`` (a path or an open dataset) as ``fmt``
    (``lerobot`` or ``minari``) to ``out``; ConfigError (one line, see :func:`check_export`)
    before anything is written if it cannot."""
    ds = data if isinstance(data, Dataset) else open_dataset(data)
    check_export(ds, fmt, out, name, task, video)
    root = Path(out).resolve()
    if fmt == "lerobot":
        return export_lerobot(ds, root, name, task, video, progress)
    return export_minari(ds, root, name, progress)
