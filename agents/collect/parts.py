"""Making parts with one env, and adding finished parts to the final file in index order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sparseshift.agents.collect.policies import policy_factory
from sparseshift.agents.collect.store import Assembler, part_path, tmp_name, write_part
from sparseshift.envs.data.config import Resolved, make_env
from sparseshift.envs.data.generate import Progress, pairs_part, video_part


def write_part_or_nothing(path: Path, arrays: dict[str, np.ndarray], part_rows: int) -> None:
    """:func:`~sparseshift.agents.collect.store.write_part`, leaving nothing behind when it fails
    (a full disk included): its temporary file (this process's, named exactly) is removed."""
    try:
        write_part(path, arrays, part_rows)
    except BaseException:
        tmp = tmp_name(path)
        if not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
        raise


class PartMaker:
    """Builds and writes the parts of one run with one env (one per collecting process).

    :meth:`write` compresses and writes in this process; the collecting process can hand its
    parts to a writer process instead (:class:`sparseshift.agents.collect.writer.Writer`; a writer
    *thread* was tried and lost, because every compressed chunk must re-acquire the GIL from the
    stepping thread).
    """

    def __init__(self, run: Resolved) -> None:
        self.run = run
        self.env: gym.Env[Any, Any] = make_env(run)
        self.factory = (policy_factory(run.policy, self.env, run.device)
                        if run.config.kind == "video" else None)
        s = int(run.config.image_size)
        # one frame buffer reused for every part: a fresh one page-faults on every frame
        self._frames = np.empty((run.config.part_rows, s, s, 3), np.uint8) if self.factory else None

    def make(self, index: int, progress: Progress,
             buffers: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The arrays of part ``index`` (frames rendered into ``buffers`` when given)."""
        if self.factory is not None:
            frames = buffers["frames"] if buffers else self._frames
            return video_part(self.run, self.env, self.factory, index, progress, frames)
        return pairs_part(self.run, self.env, index, progress, buffers)

    def write(self, directory: Path, index: int, progress: Progress) -> None:
        """Generate part ``index`` and write it atomically (nothing is left if that fails)."""
        arrays = self.make(index, progress)
        write_part_or_nothing(part_path(directory, index), arrays, self.run.config.part_rows)

    def close(self) -> None:
        """Close the env."""
        self.env.close()


class InOrder:
    """Adds finished parts to an :class:`~sparseshift.agents.collect.store.Assembler` in index
    order, as soon as each one and all before it are on disk."""

    def __init__(self, asm: Assembler, directory: Path) -> None:
        self.asm, self.directory = asm, directory
        self.ready: set[int] = set()

    def done(self, index: int) -> None:
        """Part ``index`` is on disk."""
        self.ready.add(index)

    def drain(self) -> None:
        """Add every part that is next in order and on disk."""
        while self.asm.added in self.ready:
            self.ready.discard(self.asm.added)
            self.asm.add(part_path(self.directory, self.asm.added))
