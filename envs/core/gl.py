"""Headless OpenGL backend selection for MuJoCo rendering.

MuJoCo picks its GL backend from ``MUJOCO_GL`` when ``mujoco`` is first imported, so
:func:`select_backend` must run before that import; :mod:`sparseshift.envs.trifinger` calls it
when it is first imported (where MuJoCo is first needed). EGL is the
default (fast, headless). If the EGL library is missing but OSMesa is present we fall back to it and
say so once on stderr. If rendering then fails, :func:`gl_error` gives one line naming the fix.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

INSTALL_HINT = (
    "no working OpenGL backend for MuJoCo; install EGL (apt-get install libegl1 libgl1-mesa-dri) "
    "and use MUJOCO_GL=egl, or install OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=osmesa"
)


class RenderBackendError(RuntimeError):
    """No OpenGL backend could create a rendering context."""


def select_backend() -> str:
    """Set ``MUJOCO_GL`` (and PyOpenGL's platform) before mujoco is imported; return the backend."""
    chosen = os.environ.get("MUJOCO_GL")
    if not chosen:
        chosen = "egl"
        if ctypes.util.find_library("EGL") is None and ctypes.util.find_library("OSMesa"):
            chosen = "osmesa"
            print(
                "sparseshift: libEGL not found, falling back to MUJOCO_GL=osmesa (slower); "
                "install libegl1 for EGL",
                file=sys.stderr,
            )
        os.environ["MUJOCO_GL"] = chosen
    if chosen in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen


def gl_error(exc: BaseException) -> RenderBackendError:
    """Wrap a context-creation failure into the one-line error that names the fix."""
    backend = os.environ.get("MUJOCO_GL", "?")
    return RenderBackendError(f"{INSTALL_HINT} (MUJOCO_GL={backend} failed: {exc})")
