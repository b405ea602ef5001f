"""sparseshift environments: MuJoCo TriFinger and grid worlds with ground-truth factors.

Importing this package selects the headless GL backend (``MUJOCO_GL=egl`` unless set) before MuJoCo
is imported anywhere, and registers every env id with gymnasium under ``sparseshift/``.
"""

from envs.gl import select_backend

select_backend()

from envs.registry import ENV_IDS, register_envs  # noqa: E402

register_envs()

__all__ = ["ENV_IDS", "register_envs"]
