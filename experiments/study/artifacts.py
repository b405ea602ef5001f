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

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.infra.io import MapOf, check_schema, inside, read_json, write_json_atomic

DONE = "DONE.json"


#: What every stage result holds: its artifact (``stage/key``) and the files it made, relative
#: to that folder; a stage's own entries are its own.
RESULT_SCHEMA: dict[str, Any] = {"artifact": str, "files?": MapOf(str), "seconds?": float}


def check_result(root: Path, result: Any, where: str) -> dict[str, Path]:
    """Check a stage result (:data:`RESULT_SCHEMA`): its ``artifact`` is a folder of ``root``
    and each of its ``files`` a path inside that folder (no absolute paths, ``..`` or symbolic
    links out of it). Returns the files as paths. One-line :class:`ConfigError` naming
    ``where`` and the field."""
    check_schema(result, RESULT_SCHEMA, where, "result")
    base = inside(root, result["artifact"], where, "result.artifact")
    return {name: inside(base, rel, where, f"result.files.{name}")
            for name, rel in result.get("files", {}).items()}


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
        """The result recorded in the marker of a finished stage, read through the gate of
        :mod:`sparseshift.envs.infra.io` and checked (:func:`check_result`: its own artifact, files
        inside it); a damaged marker is a one-line error naming the folder to remove."""
        data = read_json(self.path / DONE, "stage marker")
        result = data.get("result")
        if not isinstance(result, dict) or "artifact" not in result:
            raise ConfigError(f"{self.path / DONE} is damaged; remove {self.path} to redo "
                              "that stage")
        try:
            check_result(self.root, result, str(self.path / DONE))
        except ConfigError as exc:
            raise ConfigError(f"{exc}; remove {self.path} to redo that stage") from None
        if result["artifact"] != f"{self.stage}/{self.key}":
            raise ConfigError(f"{self.path / DONE} is the marker of {result['artifact']!r}, not "
                              f"of {self.stage}/{self.key}; remove {self.path} to redo that "
                              "stage")
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
