"""What the step Lambdas receive and find: the execution input the state machine hands them, and the artifacts
runner_main leaves under <run_id>/ in S3 on success (a titanic sample submission, a good and a bad submission)."""

from __future__ import annotations

import json

from chalicelib.runs import Run, RunStore, Status
from tests.moto_env import BUCKET, cached_client

SAMPLE = "PassengerId,Survived\n892,0\n893,1\n894,0\n"
GOOD = "PassengerId,Survived\n892,1\n893,0\n894,1\n"
BAD = "PassengerId,Survival\n892,1\n893,yes\n"


def execution_input(run: Run) -> dict:
    return {"run_id": run.run_id, "url": run.url, "email": run.email, "slug": run.slug, "network": {}}


def put(key: str, text: str) -> None:
    cached_client("s3").put_object(Bucket=BUCKET, Key=key, Body=text.encode())


def runner_finished(store: RunStore, run: Run, submission: str = GOOD, cv: float = 0.79) -> None:
    """What runner_main leaves behind on success: artifacts under <run_id>/ and their keys on the run."""
    store.transition(run.run_id, Status.RUNNING)
    put(f"{run.run_id}/submission.csv", submission)
    put(f"{run.run_id}/sample_submission.csv", SAMPLE)
    put(f"{run.run_id}/result.json", json.dumps({"status": "succeeded", "cv_score": cv, "metric": "accuracy"}))
    store.record(
        run.run_id,
        s3_key=f"{run.run_id}/submission.csv",
        sample_key=f"{run.run_id}/sample_submission.csv",
        result_key=f"{run.run_id}/result.json",
    )
