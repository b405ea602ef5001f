"""sparseshift: visual representations from weakly supervised video, and agents under colour shifts.

The repository's top-level folders are this package's subpackages (``pyproject.toml`` maps them):
:mod:`sparseshift.envs`, :mod:`sparseshift.representations`, :mod:`sparseshift.agents`,
:mod:`sparseshift.experiments` and :mod:`sparseshift.assets`.

Importing :mod:`sparseshift` (or any of its modules) registers the env ids with gymnasium under
``sparseshift/``, by string entry point: no env module, MuJoCo or MiniGrid is imported, no
environment variable is set and nothing is printed. The headless GL backend is chosen where MuJoCo
is first needed (:mod:`sparseshift.envs.trifinger`). So ``gymnasium.make("sparseshift/...")`` works
after ``import sparseshift``, and gymnasium's module prefix works as well:
``gymnasium.make("sparseshift:sparseshift/ColourGrid-v0")``.
"""

from sparseshift.envs.registry import ENV_IDS, register_envs

register_envs()

__all__ = ["ENV_IDS", "register_envs"]
