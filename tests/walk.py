"""The walk of one command through sparseshift's files (a measuring tool, not a test).

:func:`walk` runs a command's Python entry (``sparseshift.experiments.cli.main``) under
:func:`sys.setprofile` and records the files of sparseshift modules that Python function calls
enter, from the command's ``run`` until it returns. A *stop* is each time the walk enters a file
other than the current one (by a call or by a return to a caller); a *return* is a stop into a
file the walk already visited. Calls into other libraries are transparent (a sparseshift function
that SB3 or a dataclass ``__init__`` calls is a stop of the file it is in).

Left out, with everything below them:

* what a training loop does: SB3's ``learn()`` (callbacks, rollouts, updates) and every call made
  from the per-step ``for step in ...`` loop of ``representations/train.py`` (a loop revisits its
  files by design);
* the envs' own internals (reset, step, render; :data:`ENV_INTERNALS`) and the config/io helper
  modules of every stage (:data:`HELPERS`): utilities, not stops on the path;
* module bodies run by an import (``<module>``), so the walk does not depend on what an earlier
  call imported already;
* a call whose whole chain of call sites (every caller's code and line, this function's code) was
  walked before: the next turn of any other loop (layers built in a loop, frames encoded one by
  one to measure latent statistics, a comprehension), which visits what its first turn visited.
  ``loops=True`` keeps them (the raw walk).

A learner's own modules (:data:`LEARNER_INTERNALS`: its layers, its loss, the Learner base) and a
dataset's reader (:data:`DATA_INTERNALS`: file layout, schema, sampling) are one stop each time the
path calls into them; what they call is not recorded (like the envs' step and render, they are the
subject of the path, not a leg of it).

Besides stops and returns, :attr:`Walk.calls_back` counts the stops made by a *call* into a file
visited before (a return to a caller is the walk unwinding; a call back is the path going back).

``python tests/walk.py [train-agent|train-rep] [--json] [--loops]`` prints the walk of a tiny run
of either command or both (a tmp folder; train-rep on a tiny dataset that ``sparseshift collect``
writes first), with ``--json`` as one JSON object. :func:`measure` runs it in a fresh interpreter
(what the tests use, so that nothing an earlier test cached changes it).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The package's subpackages (the root also holds .venv/ and tests/, which are not sparseshift).
PACKAGES = ("agents", "envs", "experiments", "representations")
#: Config/io helper modules: utilities every stage calls, not stops on the path.
HELPERS = ("envs/infra/config.py", "envs/infra/io.py", "envs/infra/errors.py")
#: The envs' own internals (what reset, step and render run) and their palettes and factors.
ENV_INTERNALS = ("envs/grid/", "envs/trifinger/", "envs/core/base.py", "envs/core/gl.py",
                 "envs/shifts/colours.py", "envs/core/factors.py", "envs/shifts/nuisance.py",
                 "envs/shifts/nuisances.py", "envs/shifts/frame_scene.py",
                 "envs/shifts/lenses.py", "envs/shifts/mujoco_scene.py",
                 "envs/shifts/runtime.py")
#: A learner's own modules: a call into one is a stop, what it calls is not recorded.
LEARNER_INTERNALS = ("representations/base.py", "representations/nets.py",
                     "representations/vae.py", "representations/weak.py",
                     "representations/slots.py", "representations/nwm.py",
                     "representations/waves.py")
#: A dataset's reader: a call into one is a stop, what it calls is not recorded.
DATA_INTERNALS = ("envs/data/dataset.py", "envs/data/schema.py", "envs/data/layout.py",
                  "envs/data/sampler.py")
#: The file of the representation training loop: calls from its per-step loop are left out.
REP_TRAIN = "representations/train.py"
#: A function of another library whose calls are all left out: SB3's training loop.
SB3_LEARN = ("stable_baselines3/", "learn")

TINY_AGENT = ("--env", "sparseshift/ColourGrid-v0", "--encoder", "random", "--steps", "128",
              "--hp", "n_envs=2", "--hp", "n_steps=64", "--hp", "batch_size=64",
              "--hp", "n_epochs=1", "--eval-every", "128", "--eval-episodes", "2",
              "--checkpoint-every", "128", "--no-tensorboard", "--threads", "1")
TINY_DATA = ("--env", "sparseshift/ColourGrid-v0", "--kind", "pairs", "--n", "24", "--quiet")
TINY_REP = ("--learner", "beta_vae", "--steps", "2", "--batch", "4", "--quiet",
            "--no-tensorboard", "--threads", "1", "--device", "cpu",
            "--model", "channels=4,4,8,8", "--model", "hidden=16", "--latent-dim", "4")


@dataclass
class Walk:
    """The files a command's walk stopped at, in order, and its counts."""

    command: str
    rc: int
    files: list[str] = field(default_factory=list)
    #: per stop: "call" (entered by a call) or "return" (back in a caller)
    kinds: list[str] = field(default_factory=list)

    @property
    def stops(self) -> int:
        return len(self.files)

    @property
    def returns(self) -> int:
        seen: set[str] = set()
        n = 0
        for f in self.files:
            n += f in seen
            seen.add(f)
        return n

    @property
    def calls_back(self) -> int:
        seen: set[str] = set()
        n = 0
        for f, kind in zip(self.files, self.kinds, strict=True):
            n += kind == "call" and f in seen
            seen.add(f)
        return n

    @property
    def distinct(self) -> int:
        return len(set(self.files))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "stops": self.stops, "returns": self.returns,
                "calls_back": self.calls_back, "distinct": self.distinct}

    def summary(self) -> str:
        return (f"{self.command}: {self.stops} stops, {self.returns} returns "
                f"({self.calls_back} by a call), {self.distinct} distinct files")

    def text(self) -> str:
        lines = [f"{self.summary()} (exit status {self.rc})"]
        lines += [f"  {i:3d} {'->' if k == 'call' else '<-'} {f}"
                  for i, (f, k) in enumerate(zip(self.files, self.kinds, strict=True), 1)]
        return "\n".join(lines)


def _loop_lines(path: Path) -> list[tuple[int, int]]:
    """The line ranges of the per-step loops (``for step in ...``) in ``path``."""
    tree = ast.parse(path.read_text())
    return [(node.lineno, node.end_lineno or node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.For) and isinstance(node.target, ast.Name)
            and node.target.id == "step"]


class _Recorder:
    """The profile function: a stack of (file, left out) per Python frame."""

    def __init__(self, command_file: str, loops: bool = False) -> None:
        self.command_file = command_file
        self.keep_loops = loops
        self.loops = _loop_lines(ROOT / REP_TRAIN)
        self.files: list[str] = []
        self.kinds: list[str] = []
        # per frame: (current sparseshift file, nothing below is recorded, call-site chain)
        self.stack: list[tuple[str | None, bool, int]] = []
        self.walked: set[int] = set()
        self.started = False
        self.done = False
        self._rel: dict[CodeType, str | None] = {}

    def rel(self, code: CodeType) -> str | None:
        """The file of ``code`` relative to the package root; None outside sparseshift."""
        try:
            return self._rel[code]
        except KeyError:
            pass
        rel: str | None = None
        try:
            p = Path(code.co_filename).resolve().relative_to(ROOT)
        except ValueError:
            p = None
        if p is not None and p.parts and (p.parts[0] in PACKAGES or str(p) == "__init__.py"):
            rel = p.as_posix()
        self._rel[code] = rel
        return rel

    def left_out(self, frame: FrameType, rel: str | None) -> bool:
        code = frame.f_code
        if code.co_name == "<module>":
            return True
        if rel is None:
            return (code.co_name == SB3_LEARN[1]
                    and SB3_LEARN[0] in code.co_filename.replace("\\", "/"))
        if rel in HELPERS or any(rel.startswith(p) for p in ENV_INTERNALS):
            return True
        caller = frame.f_back
        if caller is not None and self.rel(caller.f_code) == REP_TRAIN:
            line = caller.f_lineno
            return any(lo <= line <= hi for lo, hi in self.loops)
        return False

    def stop(self, rel: str | None, kind: str) -> None:
        if rel is not None and (not self.files or self.files[-1] != rel):
            self.files.append(rel)
            self.kinds.append(kind)

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if self.done or event not in ("call", "return"):
            return
        if event == "call":
            rel = self.rel(frame.f_code)
            if not self.started:
                if rel == self.command_file and frame.f_code.co_name == "run":
                    self.started = True
                    self.stack = [(rel, False, 0)]
                    self.stop(rel, "call")
                return
            current, out, chain = self.stack[-1]
            if out:
                self.stack.append((current, True, 0))
                return
            caller = frame.f_back
            line = caller.f_lineno if caller is not None else 0
            chain = hash((chain, id(caller.f_code) if caller else 0, line, id(frame.f_code)))
            if self.left_out(frame, rel) or (chain in self.walked and not self.keep_loops):
                self.stack.append((current, True, chain))
                return
            self.walked.add(chain)
            mine = rel if rel is not None else current
            opaque = rel is not None and (rel in LEARNER_INTERNALS or rel in DATA_INTERNALS)
            # an opaque frame is current itself (a stop), nothing below it is recorded
            self.stack.append((mine, opaque, chain))
            if mine != current:
                self.stop(mine, "call")
            return
        if not self.started:
            return
        left, _, _ = self.stack.pop()
        if not self.stack:
            self.done = True
            return
        current, out, _ = self.stack[-1]
        if not out and current != left:
            self.stop(current, "return")


def walk(argv: Sequence[str], loops: bool = False) -> Walk:
    """Run ``sparseshift ARGV`` in this process and record its walk (``argv[0]``: the command;
    ``loops``: keep the further turns of loops, see the module docstring)."""
    from sparseshift.experiments.cli import main

    command = argv[0]
    recorder = _Recorder(f"experiments/commands/{command.replace('-', '_')}.py", loops)
    previous: Callable[..., Any] | None = sys.getprofile()
    sys.setprofile(recorder)
    try:
        rc = main(list(argv))
    finally:
        sys.setprofile(previous)
    return Walk(command, rc, recorder.files, recorder.kinds)


def tiny_walk(command: str, tmp: Path, loops: bool = False) -> Walk:
    """The walk of a tiny run of ``train-agent`` or ``train-rep`` into the folder ``tmp``."""
    from sparseshift.experiments.cli import main

    if command == "train-agent":
        return walk(["train-agent", *TINY_AGENT, "--out", str(tmp / "agent")], loops)
    if command == "train-rep":
        data = tmp / "pairs.h5"
        rc = main(["collect", *TINY_DATA, "--out", str(data)])
        if rc:
            raise RuntimeError(f"sparseshift collect failed (exit status {rc})")
        return walk(["train-rep", *TINY_REP, "--data", str(data), "--out", str(tmp / "rep")],
                    loops)
    raise ValueError(f"no tiny walk of {command!r}; train-agent or train-rep")


def measure(command: str, loops: bool = False, timeout: float = 300.0) -> Walk:
    """:func:`tiny_walk` of ``command`` in a fresh interpreter (nothing cached by this one)."""
    flags = ["--json", *(["--loops"] if loops else [])]
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), command, *flags],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"walk of {command} failed:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Walk(data["command"], data["rc"], data["files"], data["kinds"])


def _main(argv: Sequence[str]) -> int:
    import contextlib
    import io

    commands = [a for a in argv if not a.startswith("--")] or ["train-agent", "train-rep"]
    for command in commands:
        with tempfile.TemporaryDirectory() as tmp:
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                result = tiny_walk(command, Path(tmp), "--loops" in argv)
        print(json.dumps(result.to_json()) if "--json" in argv else result.text())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
