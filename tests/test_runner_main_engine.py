"""The entrypoint with the real engine (runner.pipeline): Kaggle (fake) → S3 cache → train → artifacts in S3 (moto)."""

from __future__ import annotations

import csv
import io
import random

import boto3
import pytest

from chalicelib.plan import heuristic_plan
from chalicelib.run_report import RunReport
from chalicelib.runs import RunStore, Status
from chalicelib.vocabulary import SAMPLE_FILE
from runner import runner_main
from tests.moto_env import BUCKET, REGION
from tests.test_runner_main import cloud, kaggle, planned_run, task_env  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.aws]


def small_competition(rows: int = 160, seed: int = 0) -> dict[str, bytes]:
    """A learnable binary task: y is 1 when a + b is large, c is noise."""
    rng = random.Random(seed)

    def table(ids: range, with_target: bool) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "a", "b", "c", "y"] if with_target else ["id", "a", "b", "c"])
        for i in ids:
            a, b, c = rng.random(), rng.random(), rng.choice(["red", "green", "blue"])
            row = [i, f"{a:.4f}", f"{b:.4f}", c]
            writer.writerow([*row, int(a + b > 1.0)] if with_target else row)
        return out.getvalue().encode()

    test_ids = range(rows + 1, rows + 41)
    sample = "id,y\n" + "".join(f"{i},0\n" for i in test_ids)
    return {
        "train.csv": table(range(1, rows + 1), True),
        "test.csv": table(test_ids, False),
        "sample_submission.csv": sample.encode(),
    }


def test_the_real_engine_trains_and_every_artifact_lands_in_s3(cloud, kaggle) -> None:  # noqa: F811
    kaggle.add_competition("tiny", small_competition())
    run = planned_run(cloud)

    code = runner_main.main(env=task_env(run, kaggle, KAGENT_RUN_TIME_BUDGET_S="10"))

    after = RunStore(cloud).get(run.run_id)
    assert after is not None
    assert code == 0, after.error
    assert after.status is Status.RUNNING
    assert after.metric == "accuracy" and after.cv_score is not None and after.cv_score > 0.7
    s3 = boto3.client("s3", region_name=REGION)
    get = lambda name: s3.get_object(Bucket=BUCKET, Key=f"{run.run_id}/{name}")["Body"].read().decode()  # noqa: E731
    submission = list(csv.reader(io.StringIO(get("submission.csv"))))
    assert submission[0] == ["id", "y"] and len(submission) == 41
    assert RunReport.from_json(get("result.json")).succeeded
    assert get(SAMPLE_FILE).startswith("id,y")
    logs = get("logs.txt")
    assert "downloaded from Kaggle" in logs and "wrote" in logs  # the task's lines and the engine's, in one file
    assert "codegen mode" in get("gpt_code_trace.txt")


def test_a_plan_without_a_metric_leaves_it_to_the_engine_to_infer(cloud, kaggle) -> None:  # noqa: F811
    kaggle.add_competition("tiny", small_competition(rows=100, seed=1))
    run = planned_run(cloud)
    plan = heuristic_plan("tiny", None)  # no Kaggle metadata: the Plan step stores metric None
    assert plan.metric is None
    RunStore(cloud).record(run.run_id, plan=plan.as_dict())

    code = runner_main.main(env=task_env(run, kaggle, KAGENT_RUN_TIME_BUDGET_S="10"))

    after = RunStore(cloud).get(run.run_id)
    assert after is not None
    assert code == 0, after.error
    assert after.metric == "accuracy"
    s3 = boto3.client("s3", region_name=REGION)
    result = RunReport.from_json(s3.get_object(Bucket=BUCKET, Key=f"{run.run_id}/result.json")["Body"].read())
    assert result.metric_source == "inferred"
