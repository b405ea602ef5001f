"""Content-addressed artifacts for studies.

Every stage output lives in ``<root>/<stage>/<key>/`` where ``key`` is a hash of the stage's
resolved config *and the keys of its inputs*, so changing anything upstream changes every key
downstream, and rerunning a study skips exactly the work that is already done. A stage directory
counts as complete only when its ``DONE.json`` marker exists; the marker is written last and
atomically (temp file + rename), so an interrupted stage is redone, never read half-written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseshift.envs.errors import ConfigError
from sparseshift.envs.io import read_json, write_json_atomic

DONE = "DONE.json"


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for hashing configs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_key(stage: str, config: Mapping[str, Any], inputs: Mapping[str, str] | None = None
               ) -> str:
    """12-hex-digit key of a stage from its config and the keys of its inputs."""
    payload = canonical_json({"stage": stage, "config": config, "inputs": dict(inputs or {})})
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Artifact:
    """One stage output directory, keyed by config hash."""

    root: Path
    stage: str
    key: str

    @property
    def path(self) -> Path:
        return self.root / self.stage / self.key

    @property
    def done(self) -> bool:
        return (self.path / DONE).is_file()

    def result(self) -> dict[str, Any]:
        """The result recorded in the marker of a finished stage (a damaged marker is a
        one-line error naming the folder to remove)."""
        data = read_json(self.path / DONE, "stage marker")
        result = data.get("result")
        if not isinstance(result, dict) or "artifact" not in result:
            raise ConfigError(f"{self.path / DONE} is damaged; remove {self.path} to redo "
                              "that stage")
        return dict(result)

    def prepare(self, config: Mapping[str, Any]) -> Path:
        """Create the directory and record the resolved config (kept across resumes)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / "stage_config.json", {"stage": self.stage,
                                                            "key": self.key,
                                                            "config": dict(config)})
        return self.path

    def finish(self, result: Mapping[str, Any]) -> None:
        """Mark the stage complete with its result (atomic; the last thing a stage writes)."""
        write_json_atomic(self.path / DONE, {"stage": self.stage, "key": self.key,
                                             "result": dict(result)})

    def reset(self) -> None:
        """Remove an incomplete stage directory (never a complete one)."""
        if self.path.exists() and not self.done:
            shutil.rmtree(self.path)
