"""statemachine.asl.json: its shape, its rendering, asl-validator, and real executions in moto's interpreter."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from chalicelib import aws
from chalicelib.run_request import RunRequest
from chalicelib.runs import RunStore, Status
from chalicelib.statemachine import PLACEHOLDERS, RenderError, load_definition, render
from tests.moto_env import (
    BUCKET,
    cached_client,
    create_bucket,
    create_runs_table,
    reset_service,
    sent_emails,
    service_environment,
    verify_sender,
)
from tests.sfn_harness import network, rendered_definition, state_machine

REPO = Path(__file__).resolve().parent.parent
VALUES = {name: f"arn:aws:test:::{name}" for name in PLACEHOLDERS}
LAMBDA_ERRORS = ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException"]


def definition() -> dict:
    return json.loads(render(load_definition(), VALUES))


def test_the_stored_definition_is_json_with_exactly_the_known_placeholders():
    text = load_definition()
    json.loads(text)
    found = {part.split("}")[0] for part in text.split("${")[1:]}
    assert found == set(PLACEHOLDERS)


def test_render_refuses_missing_placeholders_and_values_that_break_json():
    with pytest.raises(RenderError, match="plan_function_arn"):
        render(load_definition(), {k: v for k, v in VALUES.items() if k != "plan_function_arn"})
    with pytest.raises(RenderError, match="plain string"):
        render(load_definition(), VALUES | {"runner_container_name": 'run"ner'})
    assert "${" not in render(load_definition(), VALUES)


def test_the_workflow_is_plan_training_validation_success_with_every_failure_caught():
    states = definition()["States"]
    assert definition()["StartAt"] == "Plan"
    assert [states[s]["Next"] for s in ("Plan", "RunTraining", "ValidateOutput")] == [
        "RunTraining",
        "ValidateOutput",
        "MarkSucceeded",
    ]
    assert states["MarkSucceeded"]["End"] is True
    for name in ("Plan", "RunTraining", "ValidateOutput", "MarkSucceeded"):
        [catch] = states[name]["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkFailed"}
        assert states[name]["Retry"], name
        assert 0 < states[name]["TimeoutSeconds"] < definition()["TimeoutSeconds"]
    assert states["MarkFailed"]["Next"] == "RunFailed" and states["RunFailed"]["Type"] == "Fail"


def test_lambda_retries_cover_transient_errors_only_and_back_off():
    states = definition()["States"]
    for name in ("Plan", "ValidateOutput", "MarkSucceeded"):
        [retry] = states[name]["Retry"]
        assert set(LAMBDA_ERRORS) <= set(retry["ErrorEquals"]) and "States.ALL" not in retry["ErrorEquals"]
        assert retry["BackoffRate"] > 1 and retry["MaxAttempts"] <= 3


def test_run_training_starts_the_runner_container_with_the_run_and_the_network():
    training = definition()["States"]["RunTraining"]
    assert training["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    parameters = training["Parameters"]
    assert parameters["Cluster"] == VALUES["ecs_cluster_arn"]
    assert parameters["TaskDefinition"] == VALUES["runner_task_definition_arn"]
    assert parameters["LaunchType"] == "FARGATE"
    assert parameters["NetworkConfiguration.$"] == "$.network"
    [override] = parameters["Overrides"]["ContainerOverrides"]
    assert override["Name"] == VALUES["runner_container_name"]
    assert override["Environment"] == [
        {"Name": "RUN_ID", "Value.$": "$.run_id"},
        {"Name": "URL", "Value.$": "$.url"},
        {"Name": "EMAIL", "Value.$": "$.email"},
    ]
    assert {"ECS.AmazonECSException", "AmazonECS.Unknown"} <= set(training["Retry"][0]["ErrorEquals"])


ASL_VALIDATOR = REPO / "node_modules" / ".bin" / "asl-validator"


@pytest.mark.skipif(not ASL_VALIDATOR.exists(), reason="node_modules missing: `make install` runs npm ci")
def test_asl_validator_accepts_the_rendered_definition(tmp_path):
    path = tmp_path / "statemachine.json"
    path.write_text(rendered_definition("arn:aws:ecs:us-east-1:123456789012:cluster/c", "arn:aws:ecs:::td/t:1"))
    node = shutil.which("node")
    assert node, "node is needed to run asl-validator"
    command = [str(ASL_VALIDATOR), "--json-path", str(path)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- executions in moto's interpreter, with the real step handlers ---------------------------------------------------

SAMPLE = "PassengerId,Survived\n892,0\n893,1\n"
REQUEST = RunRequest(url="https://www.kaggle.com/competitions/titanic", slug="titanic", email="bob@example.com")


def real_handlers() -> dict:
    import app  # noqa: PLC0415

    def bind(handler):
        return lambda event: handler(event, None)

    return {name: bind(getattr(app, name)) for name in ("plan", "validate_output", "mark_succeeded", "mark_failed")}


class FakeRunner:
    """Plays runner_main in the container: RUNNING, artifacts under <run_id>/, keys on the run; or records a failure."""

    def __init__(self, submission: str | None = "PassengerId,Survived\n892,1\n893,0\n", fail: str | None = None):
        self.submission = submission
        self.fail = fail

    def __call__(self, env: dict[str, str]) -> int:
        store, s3, run_id = RunStore(aws.runs_table()), cached_client("s3"), env["RUN_ID"]
        store.transition(run_id, Status.RUNNING)
        if self.fail:
            store.fail(run_id, self.fail)
            return 1
        for name, text in (("submission.csv", self.submission), ("sample_submission.csv", SAMPLE)):
            s3.put_object(Bucket=BUCKET, Key=f"{run_id}/{name}", Body=text.encode())
        s3.put_object(Bucket=BUCKET, Key=f"{run_id}/result.json", Body=b'{"cv_score": 0.8, "metric": "accuracy"}')
        store.record(run_id, s3_key=f"{run_id}/submission.csv", sample_key=f"{run_id}/sample_submission.csv")
        return 0


@pytest.fixture
def env(monkeypatch):
    service_environment(monkeypatch)
    reset_service()
    yield
    reset_service()


def run_workflow(runner: FakeRunner, handlers: dict | None = None):
    with state_machine(handlers or real_handlers(), runner) as harness:
        create_runs_table()
        create_bucket()
        verify_sender()
        store = RunStore(aws.runs_table())
        run = store.admit(REQUEST, max_running=2)
        payload = {"run_id": run.run_id, "url": run.url, "email": run.email, "slug": run.slug}
        payload["network"] = network(cached_client("ec2"))
        arn = harness.start(run.run_id, payload)
        described = harness.wait(arn)
        yield harness, store, store.get(run.run_id), described, harness.states_entered(arn)


@pytest.mark.aws
@pytest.mark.slow
def test_success_path_runs_every_step_and_emails_the_link(env):
    for harness, store, run, described, states in run_workflow(FakeRunner()):
        assert described["status"] == "SUCCEEDED"
        assert states == ["Plan", "RunTraining", "ValidateOutput", "MarkSucceeded"]
        assert harness.task_envs == [{"RUN_ID": run.run_id, "URL": REQUEST.url, "EMAIL": REQUEST.email}]
        assert run.status is Status.SUCCEEDED and run.cv_score == pytest.approx(0.8)
        assert set(run.timestamps) == {"QUEUED", "PLANNED", "RUNNING", "VALIDATED", "SUCCEEDED"}
        assert store.in_flight() == 0
        [email] = sent_emails()
        assert email.destinations["ToAddresses"] == [REQUEST.email] and f"{run.run_id}/submission.csv" in email.body


@pytest.mark.aws
@pytest.mark.slow
def test_a_training_failure_ends_failed_with_the_runners_reason(env):
    for _harness, store, run, described, states in run_workflow(FakeRunner(fail="Kaggle is unavailable (HTTP 503)")):
        assert described["status"] == "FAILED"
        assert states == ["Plan", "RunTraining", "ValidateOutput", "MarkFailed", "RunFailed"]
        assert run.status is Status.FAILED and run.error == "Kaggle is unavailable (HTTP 503)"
        assert store.in_flight() == 0
        [email] = sent_emails()
        assert "HTTP 503" in email.body and "Retry in a few minutes" in email.body


@pytest.mark.aws
@pytest.mark.slow
def test_a_validation_failure_ends_failed_listing_the_problems(env):
    for _harness, store, run, described, states in run_workflow(FakeRunner(submission="PassengerId,Label\n892,1\n")):
        assert described["status"] == "FAILED"
        assert states == ["Plan", "RunTraining", "ValidateOutput", "MarkFailed", "RunFailed"]
        assert run.status is Status.FAILED and run.error.startswith("submission.csv failed validation")
        assert "Label" in run.error and store.in_flight() == 0
        [email] = sent_emails()
        assert run.error in email.body


@pytest.mark.aws
@pytest.mark.slow
def test_rules_not_accepted_fails_before_any_task_starts(env):
    from chalicelib.kaggle_meta import PlanRefused  # noqa: PLC0415

    handlers = real_handlers()

    def refusing_plan(event):
        raise PlanRefused("accept the rules at https://www.kaggle.com/c/titanic/rules, then retry")

    for harness, store, run, described, states in run_workflow(FakeRunner(), handlers | {"plan": refusing_plan}):
        assert described["status"] == "FAILED"
        assert states == ["Plan", "MarkFailed", "RunFailed"] and harness.task_envs == []
        assert "https://www.kaggle.com/c/titanic/rules" in run.error and store.in_flight() == 0
