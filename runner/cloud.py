"""Glue for the Fargate runner: the task's environment, JSON-lines logging, and artifact upload to S3.

Artifacts of a run live under `s3://<bucket>/<run_id>/` (the layout is chalicelib.vocabulary's: RUN_ARTIFACTS, and
SAMPLE_FILE, the competition's sample submission copied there for ValidateOutput, whatever the competition called it).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from chalicelib.config import ConfigError, Settings, load_settings
from chalicelib.vocabulary import artifact_key, run_prefix
from runner.kaggle_client import KaggleCredentials

# Set per task by the state machine's container overrides (the rest of the settings come from chalicelib.config).
RUN_ID = "RUN_ID"
URL = "URL"
EMAIL = "EMAIL"


@dataclass(frozen=True)
class TaskEnv:
    """Everything the task reads from its environment, read once at start-up (secrets are dropped later)."""

    run_id: str
    url: str
    email: str
    settings: Settings
    kaggle: KaggleCredentials = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TaskEnv:
        missing = [name for name in (RUN_ID, URL) if not env.get(name, "").strip()]
        if missing:
            raise ConfigError(f"the runner task needs {' and '.join(missing)} in its environment")
        return cls(
            run_id=env[RUN_ID].strip(),
            url=env[URL].strip(),
            email=env.get(EMAIL, "").strip(),
            settings=load_settings(env),
            kaggle=KaggleCredentials.from_env(env),
        )


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskLog:
    """The Fargate task's log callable: JSON lines on stdout (CloudWatch) and plain timestamped lines appended to a
    file (uploaded as the run's logs.txt). The engine's own logs.txt is written by runner.pipeline.RunLog."""

    def __init__(
        self,
        run_id: str,
        stream: TextIO | None = None,
        file: Path | None = None,
        clock: Callable[[], str] = utc_timestamp,
    ) -> None:
        self._run_id = run_id
        self._stream = stream if stream is not None else sys.stdout
        self._file = file
        self._clock = clock
        self._lock = threading.Lock()

    def __call__(self, message: str, level: str = "info", **fields: Any) -> None:
        now = self._clock()
        record = {"time": now, "level": level, "run_id": self._run_id, "message": message, **fields}
        with self._lock:
            self._stream.write(json.dumps(record, default=str) + "\n")
            self._stream.flush()
            if self._file is not None:
                self._file.parent.mkdir(parents=True, exist_ok=True)
                with self._file.open("a", encoding="utf-8") as handle:
                    handle.write(f"{now} {level.upper()} {message}\n")

    def error(self, message: str, **fields: Any) -> None:
        self(message, level="error", **fields)


class ArtifactStore:
    """Uploads a run's files to `s3://<bucket>/<run_id>/<name>`."""

    def __init__(self, s3: Any, bucket: str, run_id: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._run_id = run_id

    @property
    def prefix(self) -> str:
        return run_prefix(self._run_id)

    def key(self, name: str) -> str:
        return artifact_key(self._run_id, name)

    def upload(self, path: Path, name: str | None = None) -> str:
        key = self.key(name or path.name)
        content_type = {
            ".csv": "text/csv",
            ".json": "application/json",
            ".txt": "text/plain",
            ".html": "text/html; charset=utf-8",
            ".png": "image/png",
        }.get(path.suffix)
        extra = {"ContentType": content_type} if content_type else None
        self._s3.upload_file(str(path), self._bucket, key, ExtraArgs=extra)
        return key

    def upload_present(
        self, files: Iterable[tuple[Path, str]], log: Callable[..., None] | None = None
    ) -> dict[str, str]:
        """Upload each (path, name) that exists; one failed upload does not stop the others. Returns name → key."""
        keys: dict[str, str] = {}
        for path, name in files:
            if not path.is_file():
                continue
            try:
                keys[name] = self.upload(path, name)
            except Exception as error:
                if log is not None:
                    log(f"could not upload {name}: {type(error).__name__}: {error}", level="error")
        return keys
