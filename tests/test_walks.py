"""The walks of ``train-agent`` and ``train-rep`` through the package stay short and forward.

Each command runs once, tiny, in a fresh interpreter under :mod:`tests.walk` (what counts as a
stop and a return is defined there). The bounds are the figures measured when the paths were
made to read in one direction (issue 24, "Shorter paths"): a change that sends a path back and
forth again (a second lookup of the learner, a helper that calls back into the module that called
it) raises them and fails here. Lower figures are welcome: lower the bound with them.

Measured before the change (``python tests/walk.py``): train-agent 143 stops, 118 returns, 25
files; train-rep 91 stops, 79 returns, 12 files, its learner looked up 8 times on the walk (and
127 stops, 114 returns at 80b010b, before the learner table imported plainly). After: train-agent
133 stops, 108 returns; train-rep 49 stops, 37 returns, the learner looked up once. The
pipelined collector then added two (resume asks ``policy_io.algo_name`` what algorithm a model
is): train-agent 135 stops, 110 returns. Moving ``env_class`` from the env base (an env
internal, not counted) to the env registry, where it belongs, made checking the env kwargs one
stop of its own: train-agent 137 stops, 112 returns.
"""

from __future__ import annotations

import pytest

from tests.walk import Walk, measure

#: Most returns (stops into a file the walk visited before) of each walk.
MAX_RETURNS = {"train-agent": 112, "train-rep": 37}
#: The module each command trains in.
TRAINING = {"train-agent": "agents/train.py", "train-rep": "representations/train.py"}


@pytest.fixture(scope="module")
def walks() -> dict[str, Walk]:
    """Each command's walk, measured once for this module (lazily, by :func:`walk_of`)."""
    return {}


def walk_of(walks: dict[str, Walk], command: str) -> Walk:
    if command not in walks:
        walks[command] = measure(command, timeout=120)
    return walks[command]


@pytest.mark.parametrize("command", sorted(MAX_RETURNS))
def test_the_walk_returns_no_more_than_it_did(walks: dict[str, Walk], command: str) -> None:
    walk = walk_of(walks, command)
    assert walk.rc == 0
    assert walk.returns <= MAX_RETURNS[command], walk.text()


@pytest.mark.parametrize("command", sorted(MAX_RETURNS))
def test_the_walk_goes_from_the_command_into_training_once(walks: dict[str, Walk],
                                                          command: str) -> None:
    walk = walk_of(walks, command)
    entry = f"experiments/commands/{command.replace('-', '_')}.py"
    assert walk.files[0] == entry and walk.files[-1] == entry, walk.text()
    entered = [f for f, kind in zip(walk.files, walk.kinds, strict=True)
               if f == TRAINING[command] and kind == "call"]
    assert len(entered) == 1, walk.text()  # nothing it calls calls back into it


def test_train_rep_resolves_its_learner_once(walks: dict[str, Walk]) -> None:
    walk = walk_of(walks, "train-rep")
    # the command looks the learner up (it parses --model); the config and training use that class
    assert walk.files.count("representations/registry.py") == 1, walk.text()
    assert walk.files.index("representations/registry.py") < walk.files.index(TRAINING["train-rep"])
