"""Videos of evaluation episodes: mp4 through ``cv2.VideoWriter`` (``mp4v``), GIF as a fallback.

Frames are the env's observation-camera frames (``render_frame()``, with the evaluated shift
applied), upscaled with nearest-neighbour so small 64x64 frames stay legible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparseshift.envs.errors import ConfigError
from sparseshift.envs.io import atomic_output


class _NoVideoWriter(Exception):
    """OpenCV could not open an mp4 writer."""


def _upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1) if scale > 1 else frame


def write_video(frames: Sequence[np.ndarray], path: Path, fps: int = 10, scale: int = 4) -> Path:
    """Write RGB uint8 frames to ``path`` (``.mp4`` or ``.gif``) atomically; returns the path.

    If OpenCV cannot open an mp4 writer, a GIF is written next to it instead (``.gif`` suffix).
    """
    if not frames:
        raise ConfigError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    up = [_upscale(np.asarray(f, dtype=np.uint8), scale) for f in frames]
    h, w = up[0].shape[:2]
    if path.suffix == ".mp4":
        import cv2

        try:
            with atomic_output(path, ".mp4") as tmp:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), float(fps),
                                         (w, h))
                if not writer.isOpened():
                    raise _NoVideoWriter
                for f in up:
                    writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
                writer.release()
            return path
        except _NoVideoWriter:
            path = path.with_suffix(".gif")
    if path.suffix != ".gif":
        raise ConfigError(f"video path must end in .mp4 or .gif, got {path.name}")
    from PIL import Image

    images = [Image.fromarray(f) for f in up]
    with atomic_output(path, ".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / fps), loop=0)
    return path
