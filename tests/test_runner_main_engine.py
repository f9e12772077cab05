"""The entrypoint with the real engine (runner.pipeline): Kaggle (fake) → S3 cache → train → artifacts in S3 (moto)."""

from __future__ import annotations

import csv
import io

import boto3
import pytest

from chalicelib.plan import heuristic_plan
from chalicelib.run_report import RunReport
from chalicelib.runs import RunStore, Status
from chalicelib.vocabulary import SAMPLE_FILE
from runner import runner_main
from tests.competitions import small_competition
from tests.moto_env import BUCKET, REGION
from tests.runner_task import planned_run, task_env

pytestmark = [pytest.mark.slow, pytest.mark.aws]


def test_the_real_engine_trains_and_every_artifact_lands_in_s3(cloud, kaggle) -> None:
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


def test_a_plan_without_a_metric_leaves_it_to_the_engine_to_infer(cloud, kaggle) -> None:
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
