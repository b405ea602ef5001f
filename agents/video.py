"""Videos of evaluation episodes: H.264 mp4, a GIF thumbnail of each, side by side across shifts,
and TensorBoard.

* Frames are what the env's public ``annotated_frame()`` returns (:func:`annotated`): the
  observation-camera frame with the evaluated shift applied and the task's goal visible
  (TriFinger's translucent green goal markers, which the policy's observations never show), plus
  the boxes of targets to outline (ColourGrid's object of the target shape, MiniGrid's goal
  square), drawn black and white. They are upscaled with nearest-neighbour (64x64 frames stay
  legible) under a caption strip: shift label (``lighting:3``, ``real``), episode, step, return
  so far and, at the end, success.
* ``.mp4``: H.264 (``libx264``, ``yuv420p``, ``+faststart``) through PyAV, which browsers, VS Code
  and GitHub play, at the env's ``metadata["render_fps"]`` (TriFinger 25, grid worlds 10).
* ``.gif``: the same episode at half the resolution and at most :data:`THUMB_MAX_FPS` frames per
  second, in real time (an animated thumbnail for reports).
* :func:`side_by_side_frames`: the episodes of one seed under every shift next to each other
  (a finished episode holds its last frame).
* :func:`log_tensorboard`: each thumbnail as an animated image summary (what
  ``SummaryWriter.add_video`` writes, without its moviepy dependency).

:class:`EpisodeRecorder` records without changing what the policy sees or does: an annotated frame
draws no randomness from the env or its shift, so evaluations with and without ``--video`` are
identical.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import atomic_output, atomic_write_bytes

#: Upscaling of the mp4 frames (64x64 -> 256x256) and of the GIF thumbnails (-> 128x128).
VIDEO_SCALE = 4
THUMB_SCALE = 2
#: Thumbnails keep at most this many frames per second (every k-th frame, the last always kept).
THUMB_MAX_FPS = 12.5
#: Caption strip height per unit of scale (pixels).
CAPTION_H = 5
#: Gutter between side-by-side panels (pixels).
GUTTER = 4
DEFAULT_FPS = 10

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels (end exclusive)


@dataclass
class RecordedFrame:
    """One frame of a recorded episode: the image, target boxes to outline and what its caption
    says (shift label, episode, step, return so far, ``success``/``failure`` at the end)."""

    image: np.ndarray
    boxes: list[Box] = field(default_factory=list)
    label: str = ""
    episode: int = 0
    t: int = 0
    ret: float = 0.0
    outcome: str = ""

    def caption(self, short: bool = False) -> str:
        """The caption; ``short`` for thumbnails (``"ood1 t12 R -0.35 fail"``)."""
        if short:
            end = {"success": " ok", "failure": " fail"}.get(self.outcome, "")
            return f"{self.label} t{self.t} R {self.ret:.2f}{end}"
        text = f"{self.label} ep {self.episode}  t {self.t}  return {self.ret:.2f}"
        return f"{text}  {self.outcome}" if self.outcome else text


def render_fps(env: gym.Env[Any, Any]) -> int:
    """The env's ``metadata["render_fps"]`` (its control rate), :data:`DEFAULT_FPS` if unset."""
    fps = env.unwrapped.metadata.get("render_fps") or env.metadata.get("render_fps")
    return round(float(fps)) if fps else DEFAULT_FPS


# -- goals and targets ---------------------------------------------------------------------------

def annotated(env: gym.Env[Any, Any]) -> tuple[np.ndarray, list[Box], str | None]:
    """The env's current frame as its ``annotated_frame()`` gives it (public API of
    :class:`~sparseshift.envs.core.base.FactorEnv`): the observation-camera image with the evaluated
    shift applied and the goal visible (TriFinger's goal markers), the boxes of the targets to
    outline (grid worlds) and the env's shift label. It draws no randomness the policy's next
    observation would get. Envs without it give their plain ``render()`` frame."""
    u: Any = env.unwrapped
    if hasattr(u, "annotated_frame"):
        a = u.annotated_frame()
        boxes = [(int(b.x0), int(b.y0), int(b.x1), int(b.y1)) for b in a.boxes]
        return np.asarray(a.image, dtype=np.uint8).copy(), boxes, a.shift
    frame = u.render_frame() if hasattr(u, "render_frame") else env.render()
    return np.asarray(frame, dtype=np.uint8).copy(), [], None


def grid_target_boxes(u: Any) -> list[Box]:
    """Pixel boxes ``(x0, y0, x1, y1)`` (end exclusive) of the targets an env annotates (grid
    worlds: the cell the agent must reach); ``[]`` for envs that annotate none."""
    if not hasattr(u, "annotated_frame"):
        return []
    return [(int(b.x0), int(b.y0), int(b.x1), int(b.y1)) for b in u.annotated_frame().boxes]


# -- recording -----------------------------------------------------------------------------------

class EpisodeRecorder(gym.Wrapper[Any, Any, Any, Any]):
    """Records the episodes whose reset seed is in ``record`` (seed -> episode index) and calls
    ``on_episode_end`` when any episode ends; forwards everything else unchanged.

    ``frames[k]`` holds episode ``k``'s :class:`RecordedFrame` list (the reset frame, then one per
    step), captioned ``"<label> ep <k>  t <step>  return <sum>"`` (:meth:`RecordedFrame.caption`);
    the last frame also says ``success`` or ``failure``.
    """

    def __init__(self, env: gym.Env[Any, Any], record: Mapping[int, int] | None = None,
                 label: str = "", on_episode_end: Callable[[], None] | None = None) -> None:
        super().__init__(env)
        self.record = dict(record or {})
        self.label = label
        self.on_episode_end = on_episode_end
        self.frames: dict[int, list[RecordedFrame]] = {}
        self._current: list[RecordedFrame] | None = None
        self._episode = -1
        self._t, self._ret = 0, 0.0

    def _grab(self, outcome: str = "") -> None:
        if self._current is None:
            return
        image, boxes, shift = annotated(self.env)
        self._current.append(RecordedFrame(image, boxes, self.label or shift or "",
                                           self._episode, self._t, self._ret, outcome))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        k = self.record.get(int(seed)) if seed is not None else None
        self._t, self._ret = 0, 0.0
        self._current = None
        if k is not None:
            self._episode = k
            self._current = self.frames[k] = []
            self._grab()
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, term, trunc, info = self.env.step(action)
        self._t += 1
        self._ret += float(reward)
        if term or trunc:
            self._grab("success" if info.get("is_success") else "failure")
            self._current = None
            if self.on_episode_end is not None:
                self.on_episode_end()
        else:
            self._grab()
        return obs, reward, term, trunc, info



# -- composing frames ----------------------------------------------------------------------------

def _upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1) if scale > 1 else frame


def _outline(img: np.ndarray, box: Box, scale: int) -> None:
    """A black-and-white double outline (visible on any colour) around ``box``, drawn inside it."""
    x0, y0, x1, y1 = (v * scale for v in box)
    w = max(1, scale // 2)
    for colour, inset in (((0, 0, 0), 0), ((255, 255, 255), w)):
        cv2.rectangle(img, (x0 + inset, y0 + inset), (x1 - 1 - inset, y1 - 1 - inset), colour, w)


def panel(frame: RecordedFrame, scale: int) -> np.ndarray:
    """The upscaled frame with its target outlines, under a white caption strip."""
    from sparseshift.representations.viz import caption_strip

    img = np.ascontiguousarray(_upscale(np.asarray(frame.image, dtype=np.uint8), scale))
    for box in frame.boxes:
        _outline(img, box, scale)
    cap = CAPTION_H * scale + 4
    text = frame.caption(short=img.shape[1] < 200)
    strip = caption_strip(img.shape[1], [(3, text)], cap, size=max(9, cap - 8))
    return np.concatenate([strip, img], axis=0)


def episode_frames(frames: Sequence[RecordedFrame], scale: int) -> list[np.ndarray]:
    """The :func:`panel` of every frame of one episode."""
    return [panel(f, scale) for f in frames]


def side_by_side_frames(episodes: Sequence[Sequence[RecordedFrame]], scale: int
                        ) -> list[np.ndarray]:
    """Panels of several episodes (one per shift) next to each other, frame by frame; an episode
    that ended earlier holds its last frame."""
    episodes = [e for e in episodes if e]
    if not episodes:
        raise ConfigError("no frames to put side by side")
    n = max(len(e) for e in episodes)
    out = []
    for t in range(n):
        tiles = [panel(e[min(t, len(e) - 1)], scale) for e in episodes]
        h = max(p.shape[0] for p in tiles)
        row: list[np.ndarray] = []
        for i, p in enumerate(tiles):
            if i:
                row.append(np.full((h, GUTTER, 3), 255, np.uint8))
            row.append(p)
        out.append(np.concatenate(row, axis=1))
    return out


# -- writing -------------------------------------------------------------------------------------

def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even width and height (yuv420p needs both even)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
    return frame


def write_mp4(frames: Sequence[np.ndarray], path: Path, fps: int) -> Path:
    """H.264 mp4 (``libx264``, ``yuv420p``, ``+faststart``) of RGB uint8 frames, written
    atomically with PyAV. ConfigError when PyAV (``pip install av``) is missing."""
    try:
        import av
    except ImportError:
        raise ConfigError("mp4 videos need PyAV: pip install av") from None
    if not frames:
        raise ConfigError("no frames to write")
    first = _even(np.asarray(frames[0], dtype=np.uint8))
    h, w = first.shape[:2]
    with atomic_output(path, ".mp4") as tmp:
        with av.open(str(tmp), mode="w", format="mp4",
                     options={"movflags": "+faststart"}) as container:
            stream: Any = container.add_stream("libx264", rate=int(fps))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "18"}
            for f in frames:
                img = _even(np.asarray(f, dtype=np.uint8))
                if img.shape != first.shape:
                    raise ConfigError("all frames of a video must have the same size")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def gif_bytes(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """A looping animated GIF of RGB uint8 frames."""
    from PIL import Image

    if not frames:
        raise ConfigError("no frames to write")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, round(1000 / fps)), loop=0, optimize=False)
    return buf.getvalue()


def write_gif(frames: Sequence[np.ndarray], path: Path, fps: float) -> Path:
    """:func:`gif_bytes` written atomically."""
    return atomic_write_bytes(path, gif_bytes(frames, fps))


def write_video(frames: Sequence[np.ndarray], path: Path, fps: int = DEFAULT_FPS,
                scale: int = VIDEO_SCALE) -> Path:
    """Write RGB uint8 frames to ``path`` (``.mp4``: H.264; ``.gif``), nearest-neighbour
    upscaled by ``scale``; returns the path."""
    up = [_upscale(np.asarray(f, dtype=np.uint8), scale) for f in frames]
    if path.suffix == ".mp4":
        return write_mp4(up, path, fps)
    if path.suffix == ".gif":
        return write_gif(up, path, fps)
    raise ConfigError(f"video path must end in .mp4 or .gif, got {path.name}")


@dataclass(frozen=True)
class WrittenVideo:
    """An mp4 and its GIF thumbnail."""

    mp4: Path
    gif: Path


def write_episode(frames: Sequence[RecordedFrame] | list[np.ndarray], stem: Path, fps: int,
                  compose: Callable[[int], list[np.ndarray]] | None = None) -> WrittenVideo:
    """``<stem>.mp4`` at :data:`VIDEO_SCALE` and its thumbnail ``<stem>.gif`` at
    :data:`THUMB_SCALE` (``compose(scale)`` builds the frames; default: :func:`episode_frames`
    of ``frames``)."""
    def build(scale: int) -> list[np.ndarray]:
        if compose is not None:
            return compose(scale)
        return episode_frames(frames, scale)  # type: ignore[arg-type]

    mp4 = write_mp4(build(VIDEO_SCALE), stem.parent / f"{stem.name}.mp4", fps)
    small = build(THUMB_SCALE)
    stride = max(1, int(np.ceil(fps / THUMB_MAX_FPS)))
    kept = small[::stride] + ([small[-1]] if (len(small) - 1) % stride else [])
    gif = write_gif(kept, stem.parent / f"{stem.name}.gif", fps / stride)
    return WrittenVideo(mp4, gif)


def file_stem(label: str) -> str:
    """A shift label as a file-name part that every file system takes: ``lighting:3`` ->
    ``lighting+3``, ``noise@2.5`` -> ``noise+2.5`` (one-to-one: shift names have no ``+``)."""
    return label.replace(":", "+").replace("@", "+")


def log_tensorboard(log_dir: Path, gifs: Mapping[str, Path], step: int,
                    scalars: Mapping[str, float] | None = None) -> Path:
    """Log each GIF as an animated image summary (tag -> file) and each of ``scalars`` (tag ->
    value; non-finite values are left out) at ``step`` into a fresh events file in ``log_dir``
    (older events files there are replaced); returns ``log_dir``."""
    import math

    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard.writer import FileWriter

    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("events.out.tfevents.*"):
        old.unlink()
    writer = FileWriter(str(log_dir))
    try:
        for tag, path in gifs.items():
            data = Path(path).read_bytes()
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
            image = Summary.Image(height=height, width=width, colorspace=3,
                                  encoded_image_string=data)
            writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
        values = [Summary.Value(tag=tag, simple_value=float(v))
                  for tag, v in (scalars or {}).items() if v is not None and math.isfinite(v)]
        if values:
            writer.add_summary(Summary(value=values), step)
        writer.flush()
    finally:
        writer.close()
    return log_dir
