"""The entrypoint's issue-14 duties against moto and the fake Kaggle server: live progress on the run item (never after
the run is terminal), report.html and its chart uploaded and linked on the run, the run's cost, and submit=true sending
submission.csv to Kaggle — a refusal is a reason on the run, never a failed run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.run_report import RunReport
from chalicelib.runs import Run, RunStore, Status
from runner import runner_main
from tests.competitions import small_competition
from tests.moto_env import BUCKET, REGION
from tests.runner_task import PLAN, FakeEngine, keys_of, stored, task_env

pytestmark = pytest.mark.aws


@dataclass(frozen=True)
class SubmitRequest:
    url: str
    slug: str
    email: str = "me@example.com"
    submit: bool = True


def planned(table: Any, *, submit: bool) -> Run:
    store = RunStore(table)
    run = store.admit(SubmitRequest("https://www.kaggle.com/competitions/tiny", "tiny", submit=submit), max_running=5)
    assert store.transition(run.run_id, Status.PLANNED, plan=PLAN)
    return run


def s3_bytes(key: str) -> bytes:
    return boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read()


class ProgressEngine(FakeEngine):
    """The fake engine, telling the progress callback what the pipeline tells it; `during` runs mid-training."""

    def __init__(self, during: Any = None) -> None:
        super().__init__()
        self.during = during

    def __call__(self, files, out: Path, request, log) -> Any:
        tell = request.progress
        tell("phase", phase="profiling")
        tell("candidate", index=1, total=2, name="linear")
        tell("scored", name="linear", cv_score=0.75, metric="accuracy", higher_is_better=True)
        if self.during is not None:
            self.during()
        tell("candidate", index=2, total=2, name="lightgbm_gbdt")
        return super().__call__(files, out, request, log)


@pytest.mark.slow
def test_a_real_run_with_submit_reports_costs_links_and_sends_the_submission_to_kaggle(cloud, kaggle) -> None:
    kaggle.add_competition("tiny", small_competition())
    kaggle.score_after_polls = 0  # scored by the first poll
    run = planned(cloud, submit=True)
    env = task_env(
        run, kaggle, KAGENT_RUN_TIME_BUDGET_S="12", KAGENT_TASK_CPU_UNITS="2048", KAGENT_TASK_MEMORY_MIB="4096"
    )

    code = runner_main.main(env=env)

    after = stored(cloud, run.run_id)
    assert code == 0, after.error
    prefix = f"{run.run_id}/"
    assert {"report.html", "cv_chart.png"} <= keys_of(run.run_id)
    assert (after.report_key, after.chart_key, after.logs_key, after.trace_key) == (
        prefix + "report.html",
        prefix + "cv_chart.png",
        prefix + "logs.txt",
        prefix + "gpt_code_trace.txt",
    )
    # live progress: the last phase before the outcome was recorded, with the best CV the run reached
    assert after.progress is not None and after.progress["phase"] == "uploading"
    assert after.progress["best_cv"] == pytest.approx(after.cv_score, rel=1e-3)
    # cost: on the run and in result.json, at the configured task size
    result = RunReport.from_json(s3_bytes(prefix + "result.json"))
    assert after.cost == result.cost
    assert after.cost["vcpu"] == 2.0 and after.cost["memory_gb"] == 4.0
    assert after.cost["vcpu_seconds"] == pytest.approx(2 * after.cost["seconds"], rel=0.01)
    assert after.cost["llm_tokens_in"] == 0 and after.cost["total_usd"] > 0
    # the submission went to Kaggle, named after the run, and its public score came back
    assert after.kaggle_submission is not None
    assert after.kaggle_submission["status"] == "scored", after.kaggle_submission
    assert after.kaggle_submission["public_score"] == pytest.approx(0.87654)
    assert result.kaggle_submission is not None and result.kaggle_submission["status"] == "scored"
    (sent,) = kaggle.submissions
    assert sent["content"] == s3_bytes(prefix + "submission.csv")
    assert run.run_id in sent["description"]
    # the report is the real one: every candidate of result.json is on its leaderboard
    page = s3_bytes(prefix + "report.html").decode()
    for candidate in result.candidates or []:
        assert f"<td>{candidate['name']}</td>" in page
    assert s3_bytes(prefix + "cv_chart.png").startswith(b"\x89PNG")


def test_the_daily_limit_is_a_reason_on_the_run_and_the_submission_is_still_delivered(cloud, kaggle) -> None:
    kaggle.daily_allowance = 0
    run = planned(cloud, submit=True)

    code = runner_main.main(env=task_env(run, kaggle), engine=FakeEngine())

    assert code == 0
    after = stored(cloud, run.run_id)
    assert after.status is Status.RUNNING and after.error is None
    assert after.kaggle_submission is not None
    assert after.kaggle_submission["status"] == "refused"
    assert "daily submission limit" in after.kaggle_submission["reason"]
    assert "submission.csv" in keys_of(run.run_id)


def test_the_rules_refusal_is_a_reason_on_the_run(cloud, kaggle, tmp_path) -> None:
    run = planned(cloud, submit=True)
    kaggle.rules_not_accepted.add("tiny")
    mirror = tmp_path / "mirror" / "tiny"
    mirror.mkdir(parents=True)
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        (mirror / name).write_bytes(
            {"train.csv": b"id,x,y\n1,1,0\n", "test.csv": b"id,x\n5,1\n"}.get(name, b"id,y\n5,0\n")
        )

    code = runner_main.main(env=task_env(run, kaggle, KAGENT_DATA_MIRROR=str(tmp_path / "mirror")), engine=FakeEngine())

    assert code == 0
    submission = stored(cloud, run.run_id).kaggle_submission
    assert submission is not None and submission["status"] == "refused"
    assert "accept the rules at https://www.kaggle.com/c/tiny/rules" in submission["reason"]


def test_without_submit_nothing_is_sent_to_kaggle(cloud, kaggle) -> None:
    run = planned(cloud, submit=False)

    assert runner_main.main(env=task_env(run, kaggle), engine=ProgressEngine()) == 0

    after = stored(cloud, run.run_id)
    assert after.kaggle_submission is None
    assert kaggle.submissions == [] and not any(k.startswith("CreateSubmission") for k in kaggle.api_calls)
    assert after.progress is not None and after.progress["best_cv"] == 0.75 and after.progress["best_model"] == "linear"


def test_progress_is_never_written_after_the_run_became_terminal(cloud, kaggle) -> None:
    run = planned(cloud, submit=False)
    store = RunStore(cloud)
    frozen: dict[str, Any] = {}

    def fail_meanwhile() -> None:  # MarkFailed (or the sweeper) ends the run while the runner still trains
        assert store.fail(run.run_id, "the run timed out")
        frozen["progress"] = store.get(run.run_id).progress  # type: ignore[union-attr]

    runner_main.main(env=task_env(run, kaggle), engine=ProgressEngine(during=fail_meanwhile))

    after = stored(cloud, run.run_id)
    assert after.status is Status.FAILED and after.error == "the run timed out"
    assert after.progress == frozen["progress"]  # candidate 2/2, blending, uploading: none of it landed


def test_report_and_cost_survive_an_engine_without_candidates(cloud, kaggle) -> None:
    run = planned(cloud, submit=False)

    assert runner_main.main(env=task_env(run, kaggle), engine=FakeEngine()) == 0

    after = stored(cloud, run.run_id)
    assert after.report_key == f"{run.run_id}/report.html"
    assert after.cost is not None and after.cost["vcpu"] == 1.0  # the task definition's default size
    assert b"kagent report: tiny" in s3_bytes(after.report_key)


def test_bad_fargate_prices_are_a_configuration_error(cloud, kaggle) -> None:
    run = planned(cloud, submit=False)
    env = task_env(run, kaggle, KAGENT_FARGATE_VCPU_HOUR_USD="cheap")

    assert runner_main.main(env=env, engine=FakeEngine()) == runner_main.EXIT_BAD_INPUT


@pytest.mark.parametrize("interval", ["0.1", "often"])
def test_a_progress_interval_below_a_second_or_not_a_number_is_a_configuration_error(cloud, kaggle, interval) -> None:
    run = planned(cloud, submit=False)
    env = task_env(run, kaggle, KAGENT_PROGRESS_INTERVAL_S=interval)

    assert runner_main.main(env=env, engine=FakeEngine()) == runner_main.EXIT_BAD_INPUT
