"""The step Lambdas and the reconciler through chalice.test.Client, against moto (DynamoDB, S3, SES)."""

from __future__ import annotations

import json

import pytest

from chalicelib import asl, aws, config, wiring
from chalicelib.kaggle_meta import CompetitionMeta, PlanRefused
from chalicelib.plan import PlanTools
from chalicelib.run_request import RunRequest
from chalicelib.runs import Run, RunStore, Status
from tests.moto_env import (
    BUCKET,
    SENDER,
    reset_service,
    sent_emails,
)
from tests.step_artifacts import BAD, execution_input, runner_finished

pytestmark = pytest.mark.aws

REQUEST = RunRequest(url="https://www.kaggle.com/competitions/titanic", slug="titanic", email="alice@example.com")


@pytest.fixture
def client(app_over_moto):
    return app_over_moto(KAGENT_MAX_RUNNING="3", state_machine=False)


@pytest.fixture
def store(client):
    return RunStore(aws.runs_table())


@pytest.fixture
def run(store) -> Run:
    return store.admit(REQUEST, max_running=3)


def lambda_error(error: Exception) -> dict:
    """What a Catch hands MarkFailed after a Lambda raised `error`."""
    cause = {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": []}
    return {"Error": type(error).__name__, "Cause": json.dumps(cause)}


def emails_to(address: str):
    return [m for m in sent_emails() if address in m.destinations["ToAddresses"]]


# -- Plan ----------------------------------------------------------------------------------------------------------


def test_plan_without_llm_or_kaggle_stores_a_heuristic_plan(client, store, run):
    answer = client.lambda_.invoke("plan", execution_input(run)).payload
    assert answer["source"] == "heuristic"
    stored = store.get(run.run_id)
    assert stored.status is Status.PLANNED
    assert stored.plan["source"] == "heuristic" and stored.plan_summary == answer["summary"]


def test_plan_uses_the_llm_answer_when_it_matches_the_schema(client, store, run):
    seen = []

    def complete(messages):
        seen.append(messages)
        return json.dumps(
            {"task_type": "binary", "metric": "accuracy", "target_hints": ["Survived"], "approach": "LightGBM"}
        )

    wiring.service().plan_tools = lambda: PlanTools(complete=complete)
    answer = client.lambda_.invoke("plan", execution_input(run)).payload
    assert answer["source"] == "llm" and answer["metric"] == "accuracy"
    assert "titanic" in seen[0][-1]["content"]
    assert store.get(run.run_id).plan["target_hints"] == ["Survived"]


def test_plan_uses_kaggle_metadata_for_the_heuristic_metric(client, store, run):
    wiring.service().plan_tools = lambda: PlanTools(
        competition_meta=lambda slug: CompetitionMeta(slug=slug, evaluation_metric="Categorization Accuracy")
    )
    answer = client.lambda_.invoke("plan", execution_input(run)).payload
    assert answer["task_type"] == "binary" and answer["metric"] == "accuracy"


def test_plan_fails_fast_when_kaggle_says_the_rules_are_not_accepted(client, store, run):
    def refuse(slug):
        raise PlanRefused(f"accept the rules at https://www.kaggle.com/c/{slug}/rules, then retry")

    wiring.service().plan_tools = lambda: PlanTools(competition_meta=refuse)
    with pytest.raises(PlanRefused) as caught:
        client.lambda_.invoke("plan", execution_input(run))
    assert store.get(run.run_id).status is Status.QUEUED  # MarkFailed (via Catch) takes it from here
    client.lambda_.invoke("mark_failed", execution_input(run) | {"error": lambda_error(caught.value)})
    failed = store.get(run.run_id)
    assert failed.status is Status.FAILED and "https://www.kaggle.com/c/titanic/rules" in failed.error
    [email] = emails_to(REQUEST.email)
    assert "https://www.kaggle.com/c/titanic/rules" in email.body and "Accept the competition rules" in email.body


def test_plan_of_a_run_that_already_ended_raises_so_the_workflow_stops(client, store, run):
    store.fail(run.run_id, "the runner failed")
    with pytest.raises(Exception, match="the runner failed"):
        client.lambda_.invoke("plan", execution_input(run))


# -- ValidateOutput --------------------------------------------------------------------------------------------------


def test_validate_output_marks_a_good_submission_validated_with_its_score(client, store, run):
    runner_finished(store, run)
    training = {"Containers": [{"Name": "runner", "ExitCode": 0}], "StoppedReason": "Essential container exited"}
    answer = client.lambda_.invoke("validate_output", execution_input(run) | {"training": training}).payload
    assert answer["cv_score"] == pytest.approx(0.79) and answer["metric"] == "accuracy"
    stored = store.get(run.run_id)
    assert stored.status is Status.VALIDATED and stored.cv_score == pytest.approx(0.79)


def test_validate_output_lists_every_problem_of_a_bad_submission(client, store, run):
    runner_finished(store, run, submission=BAD)
    with pytest.raises(Exception, match="failed validation") as caught:
        client.lambda_.invoke("validate_output", execution_input(run))
    assert type(caught.value).__name__ == "SubmissionInvalid"
    message = str(caught.value)
    assert "Survival" in message and "row" in message.lower()
    client.lambda_.invoke("mark_failed", execution_input(run) | {"error": lambda_error(caught.value)})
    failed = store.get(run.run_id)
    assert failed.status is Status.FAILED and failed.error == message
    [email] = emails_to(REQUEST.email)
    assert message in email.body


def test_validate_output_fails_a_nonzero_exit_with_the_runners_reason(client, store, run):
    store.transition(run.run_id, Status.RUNNING)
    training = {"Containers": [{"ExitCode": 1}], "StoppedReason": "Essential container in task exited"}
    with pytest.raises(Exception, match="exited with code 1"):
        client.lambda_.invoke("validate_output", execution_input(run) | {"training": training})


def test_validate_output_without_a_submission_is_a_training_failure(client, store, run):
    store.transition(run.run_id, Status.RUNNING)
    with pytest.raises(Exception, match=r"no submission\.csv") as caught:
        client.lambda_.invoke("validate_output", execution_input(run))
    assert type(caught.value).__name__ == "TrainingFailed"


# -- MarkSucceeded / MarkFailed ------------------------------------------------------------------------------------


def test_mark_succeeded_emails_the_link_and_gives_the_slot_back_once(client, store, run):
    runner_finished(store, run)
    client.lambda_.invoke("validate_output", execution_input(run))
    assert store.in_flight() == 1
    answer = client.lambda_.invoke("mark_succeeded", execution_input(run)).payload
    assert answer == {"status": "SUCCEEDED", "emailed": True}
    assert store.in_flight() == 0
    [email] = emails_to(REQUEST.email)
    assert email.source == SENDER
    assert "titanic" in email.subject and "ready" in email.subject
    assert f"{run.run_id}/submission.csv" in email.body and "X-Amz-Expires=3600" in email.body
    assert "accuracy" in email.body and "0.79" in email.body and "Took:" in email.body
    again = client.lambda_.invoke("mark_succeeded", execution_input(run)).payload
    assert again["emailed"] is False
    assert len(emails_to(REQUEST.email)) == 1 and store.in_flight() == 0


def test_mark_failed_records_the_reason_emails_advice_and_gives_the_slot_back_once(client, store, run):
    error = {"Error": "States.Timeout", "Cause": ""}
    answer = client.lambda_.invoke("mark_failed", execution_input(run) | {"error": error}).payload
    assert answer["status"] == "FAILED" and answer["emailed"] is True
    assert store.in_flight() == 0
    [email] = emails_to(REQUEST.email)
    assert "failed" in email.subject and "timed out" in email.body and "Retry later" in email.body
    client.lambda_.invoke("mark_failed", execution_input(run) | {"error": error})
    assert len(emails_to(REQUEST.email)) == 1 and store.in_flight() == 0


def test_mark_failed_after_the_runner_failed_the_run_keeps_the_runners_reason(client, store, run):
    store.transition(run.run_id, Status.RUNNING)
    store.fail(run.run_id, "Kaggle credentials rejected (401): check KAGGLE_USERNAME/KAGGLE_KEY")
    assert store.in_flight() == 0
    client.lambda_.invoke("mark_failed", execution_input(run) | {"error": {"Error": "RunAlreadyEnded"}})
    [email] = emails_to(REQUEST.email)
    assert "401" in email.body and "Credentials were rejected" in email.body
    assert store.in_flight() == 0


def test_an_ses_refusal_is_recorded_on_the_run_and_the_status_stays_right(client, store, run, monkeypatch):
    monkeypatch.setenv("KAGENT_SES_SENDER", "unverified@example.com")
    reset_service()
    runner_finished(store, run)
    client.lambda_.invoke("validate_output", execution_input(run))
    answer = client.lambda_.invoke("mark_succeeded", execution_input(run)).payload
    assert answer["emailed"] is False
    stored = store.get(run.run_id)
    assert stored.status is Status.SUCCEEDED and "MessageRejected" in stored.email_error
    assert store.in_flight() == 0


def test_the_service_falls_back_to_the_artifact_keys_the_runner_writes():
    """A run without recorded keys is read at <run_id>/<name>, where runner.cloud.ArtifactStore uploads (no runs/)."""
    from chalicelib import service  # noqa: PLC0415
    from chalicelib.vocabulary import RESULT_FILE, SAMPLE_FILE, SUBMISSION_FILE  # noqa: PLC0415
    from runner.cloud import ArtifactStore  # noqa: PLC0415

    run_id = "0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f"
    uploads = ArtifactStore(s3=None, bucket=BUCKET, run_id=run_id)
    assert service.submission_key(run_id) == uploads.key(SUBMISSION_FILE) == f"{run_id}/submission.csv"
    assert service.sample_key(run_id) == uploads.key(SAMPLE_FILE)
    assert service.result_key(run_id) == uploads.key(RESULT_FILE)


# -- Reconciler ----------------------------------------------------------------------------------------------------


def execution_event(client, run_id: str, status: str, **detail) -> dict:
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:kagent-test-runs"
    body = {"executionArn": f"{machine}:{run_id}", "stateMachineArn": machine, "name": run_id, "status": status}
    return client.events.generate_cw_event(
        "aws.states", "Step Functions Execution Status Change", body | detail, [body["executionArn"]]
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("TIMED_OUT", "timed out"),
        ("ABORTED", "aborted"),
        ("FAILED", "workflow failed: States.Runtime"),
    ],
)
def test_reconciler_fails_a_run_whose_execution_ended_and_gives_the_slot_back(client, store, run, status, reason):
    store.transition(run.run_id, Status.RUNNING)
    event = execution_event(client, run.run_id, status, error="States.Runtime", cause="bad path")
    client.lambda_.invoke("reconcile", event)
    stored = store.get(run.run_id)
    assert stored.status is Status.FAILED and reason in stored.error
    assert store.in_flight() == 0
    [email] = emails_to(REQUEST.email)
    assert reason in email.body
    client.lambda_.invoke("reconcile", event)
    assert len(emails_to(REQUEST.email)) == 1 and store.in_flight() == 0


def test_reconciler_leaves_a_run_that_mark_failed_already_finished(client, store, run):
    client.lambda_.invoke("mark_failed", execution_input(run) | {"error": {"Error": "TrainingFailed", "Cause": "x"}})
    client.lambda_.invoke("reconcile", execution_event(client, run.run_id, "FAILED", error="RunFailed"))
    stored = store.get(run.run_id)
    assert stored.error == "TrainingFailed: x"
    assert len(emails_to(REQUEST.email)) == 1


def test_reconciler_ignores_other_state_machines_unknown_runs_and_good_endings(client, store, run):
    other = execution_event(client, run.run_id, "FAILED")
    other["detail"]["stateMachineArn"] = "arn:aws:states:us-east-1:123456789012:stateMachine:someone-else"
    for event in (
        other,
        execution_event(client, run.run_id, "SUCCEEDED"),
        execution_event(client, "0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f", "FAILED"),
    ):
        assert client.lambda_.invoke("reconcile", event).payload == {"ignored": True}
    assert store.get(run.run_id).status is Status.QUEUED and store.in_flight() == 1


def test_reconciler_never_fails_a_run_from_an_event_without_our_state_machine(client, store, run):
    unnamed = execution_event(client, run.run_id, "FAILED")
    del unnamed["detail"]["stateMachineArn"]
    empty = execution_event(client, run.run_id, "ABORTED")
    empty["detail"]["stateMachineArn"] = ""
    for event in (unnamed, empty):
        assert client.lambda_.invoke("reconcile", event).payload == {"ignored": True}
    assert store.get(run.run_id).status is Status.QUEUED and store.in_flight() == 1


def test_a_deployed_stage_without_its_state_machine_arn_reconciles_nothing(client, store, run, monkeypatch):
    monkeypatch.setenv("KAGENT_STATE_MACHINE_ARN", "")
    wiring.reset(clients=False)
    for name in ("kagent-test-runs", "someone-else"):
        event = execution_event(client, run.run_id, "FAILED")
        event["detail"]["stateMachineArn"] = f"arn:aws:states:us-east-1:123456789012:stateMachine:{name}"
        assert client.lambda_.invoke("reconcile", event).payload == {"ignored": True}
    assert store.get(run.run_id).status is Status.QUEUED


def test_the_local_stage_reconciles_the_local_executors_executions_only(client, store, run, monkeypatch):
    from chalicelib import local_executor  # noqa: PLC0415

    monkeypatch.setenv("KAGENT_STAGE", "local")
    monkeypatch.setenv("KAGENT_EXECUTOR", "local")
    monkeypatch.setenv("KAGENT_STATE_MACHINE_ARN", "")
    wiring.reset(clients=False)
    ended = asl.Execution(status="FAILED", error="States.Runtime", cause="bad path")
    machine = local_executor.state_machine_arn(config.settings())
    foreign = local_executor.reconcile_event(run.run_id, ended, machine.replace("kagent-local-runs", "other-runs"))
    assert client.lambda_.invoke("reconcile", foreign).payload == {"ignored": True}
    assert store.get(run.run_id).status is Status.QUEUED
    client.lambda_.invoke("reconcile", local_executor.reconcile_event(run.run_id, ended, machine))
    assert store.get(run.run_id).status is Status.FAILED and store.in_flight() == 0
