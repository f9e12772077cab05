"""The Fargate entrypoint's world for tests: the competition the shared `kaggle` fixture serves, a stored plan, a run
admitted and planned in the runs table, the task's environment, a fake engine that writes what the real one writes,
and readers of what the run left in S3 and DynamoDB."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3

from chalicelib.runs import Run, RunStore, Status
from tests.fake_kaggle import TINY_COMPETITION, TINY_SAMPLE, FakeKaggle
from tests.moto_env import BUCKET, REGION, TABLE

COMPETITION, SAMPLE = TINY_COMPETITION, TINY_SAMPLE  # what the shared `kaggle` fixture serves as `tiny`
PLAN = {"task_type": "binary", "metric": "accuracy", "target_hints": ["y"], "approach": "gbm", "source": "heuristic"}


@dataclass(frozen=True)
class Request:
    url: str
    slug: str
    email: str = "me@example.com"


class FakeEngine:
    """Writes what run_pipeline writes (submission, trace, result.json); `fail`, `raise_`, `sigterm` misbehave."""

    def __init__(self, fail: str | None = None, raise_: Exception | None = None, sigterm: bool = False) -> None:
        self.fail, self.raise_, self.sigterm = fail, raise_, sigterm
        self.calls: list[Any] = []

    def __call__(self, files, out: Path, options, log) -> Any:
        self.calls.append(options)
        out.mkdir(parents=True, exist_ok=True)
        log("engine: training")
        (out / "gpt_code_trace.txt").write_text("candidate 1: template\n")
        if self.sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # interrupted by the handler
        if self.raise_ is not None:
            raise self.raise_
        if self.fail:
            (out / "result.json").write_text(json.dumps({"status": "failed", "reason": self.fail}))
            return SimpleNamespace(status="failed", reason=self.fail, exit_code=1, result={})
        (out / "submission.csv").write_bytes(files.sample.read_bytes())
        result = {"status": "succeeded", "cv_score": 0.75, "metric": "accuracy"}
        (out / "result.json").write_text(json.dumps(result))
        return SimpleNamespace(status="succeeded", reason="", exit_code=0, result=result)


def planned_run(table: Any, slug: str = "tiny") -> Run:
    store = RunStore(table)
    run = store.admit(Request(f"https://www.kaggle.com/competitions/{slug}", slug), max_running=5)
    assert store.transition(run.run_id, Status.PLANNED, plan=PLAN)
    return run


def task_env(run: Run, kaggle: FakeKaggle | None = None, **extra: str) -> dict[str, str]:
    env = {
        "RUN_ID": run.run_id,
        "URL": run.url,
        "EMAIL": run.email,
        "KAGENT_RUNS_TABLE": TABLE,
        "KAGENT_ARTIFACTS_BUCKET": BUCKET,
        "KAGENT_RUN_TIME_BUDGET_S": "30",
        **extra,
    }
    if kaggle is not None:
        env |= {"KAGGLE_USERNAME": kaggle.username, "KAGGLE_KEY": kaggle.key}
    return env


def keys_of(run_id: str) -> set[str]:
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix=f"{run_id}/")
    return {item["Key"].split("/", 1)[1] for item in listing.get("Contents", [])}


def stored(table: Any, run_id: str) -> Run:
    run = RunStore(table).get(run_id)
    assert run is not None
    return run
