"""sparseshift environments: MuJoCo TriFinger and grid worlds with ground-truth factors.

The env ids are registered by :mod:`sparseshift` itself (string entry points, nothing heavy is
imported); ``gymnasium.make("sparseshift.envs:sparseshift/TriFingerPush-v0")`` works as well. The
headless GL backend is selected when the MuJoCo envs are first imported
(:mod:`sparseshift.envs.trifinger`), never by importing this package.
"""

from sparseshift.envs.registry import ENV_IDS, make, register_envs

__all__ = ["ENV_IDS", "make", "register_envs"]
