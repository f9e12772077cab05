"""The HTTP API contract through chalice.test.Client, against moto: POST /run and GET /runs/{run_id}."""

from __future__ import annotations

import json

import pytest
from chalice import IAMAuthorizer

from chalicelib import aws, wiring
from chalicelib.runs import RunStore, Status
from tests.api_calls import EMAIL, TITANIC, call, executions, post_run
from tests.moto_env import (
    BUCKET,
    cached_client,
    reset_service,
)

pytestmark = pytest.mark.aws


@pytest.fixture
def client(app_over_moto):
    return app_over_moto()


def store():
    return RunStore(aws.runs_table())


def test_post_run_admits_a_queued_run_and_starts_its_execution(client):
    response = post_run(client, headers={"host": "api.example.test"})
    assert response.status_code == 202
    body = response.json_body
    assert body["status"] == "QUEUED"
    assert body["status_url"] == f"http://api.example.test/runs/{body['run_id']}"
    [execution] = executions()
    assert execution["name"] == body["run_id"]
    sfn = cached_client("stepfunctions")
    started = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert started == {
        "run_id": body["run_id"],
        "url": TITANIC,
        "email": EMAIL,
        "slug": "titanic",
        "network": {
            "AwsvpcConfiguration": {
                "Subnets": ["subnet-aaa", "subnet-bbb"],
                "SecurityGroups": ["sg-123"],
                "AssignPublicIp": "ENABLED",
            }
        },
    }
    run = store().get(body["run_id"])
    assert run.execution_arn == execution["executionArn"]


def test_post_run_accepts_the_fields_as_a_json_body(client):
    response = client.http.post(
        "/run",
        headers={"content-type": "application/json"},
        body=json.dumps({"url": "https://www.kaggle.com/c/titanic/data", "email": EMAIL}),
    )
    assert response.status_code == 202
    assert store().get(response.json_body["run_id"]).url == TITANIC


def test_same_idempotency_key_returns_the_same_run_and_starts_nothing_new(client):
    first = post_run(client, headers={"Idempotency-Key": "retry-me"})
    second = post_run(client, headers={"Idempotency-Key": "retry-me"})
    assert first.status_code == second.status_code == 202
    assert first.json_body["run_id"] == second.json_body["run_id"]
    assert len(executions()) == 1
    assert store().in_flight() == 1


def test_different_idempotency_keys_make_different_runs(client):
    first = post_run(client, headers={"Idempotency-Key": "a"})
    second = post_run(client, headers={"Idempotency-Key": "b"})
    assert first.json_body["run_id"] != second.json_body["run_id"]


def api_gateway_post(key: str, identity: dict) -> dict:
    """POST /run as API Gateway hands it to the Lambda behind IAM authorization, the verified identity in context."""
    status, body, _headers = call(
        "POST", "/run", identity, query={"url": TITANIC, "email": EMAIL}, headers={"idempotency-key": key}
    )
    assert status == 202, body
    return body


def test_an_idempotency_key_is_scoped_to_the_iam_caller_that_sent_it(client):
    alice = {"userArn": "arn:aws:iam::123456789012:user/alice", "caller": "AIDAALICE"}
    mallory = {"userArn": "arn:aws:iam::123456789012:user/mallory", "caller": "AIDAMALLORY"}
    first = api_gateway_post("same-key", alice)
    assert api_gateway_post("same-key", alice)["run_id"] == first["run_id"]  # a retry is still safe
    other = api_gateway_post("same-key", mallory)
    assert other["run_id"] != first["run_id"]  # knowing alice's key does not give mallory her run
    assert len(executions()) == 2 and store().in_flight() == 2
    assert store().get(first["run_id"]).idempotency_caller == alice["userArn"]


def test_the_local_stage_is_one_caller(client, monkeypatch):
    monkeypatch.setenv("KAGENT_STAGE", "local")
    wiring.reset(clients=False)
    alice = api_gateway_post("local-key", {"userArn": "arn:aws:iam::123456789012:user/alice"})
    assert api_gateway_post("local-key", {})["run_id"] == alice["run_id"]


def test_oversized_idempotency_key_is_a_400(client):
    response = post_run(client, headers={"Idempotency-Key": "k" * 300})
    assert response.status_code == 400
    assert response.json_body["field"] == "Idempotency-Key"


def test_over_max_running_is_429_with_retry_after(client):
    assert post_run(client).status_code == 202
    assert post_run(client).status_code == 202
    refused = post_run(client)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "retry" in refused.json_body["error"]
    assert len(executions()) == 2


def test_max_running_comes_from_the_environment(client, monkeypatch):
    monkeypatch.setenv("KAGENT_MAX_RUNNING", "3")
    reset_service()
    assert [post_run(client).status_code for _ in range(4)] == [202, 202, 202, 429]


def test_a_run_whose_workflow_cannot_start_fails_and_gives_its_slot_back(client, monkeypatch):
    monkeypatch.setenv("KAGENT_STATE_MACHINE_ARN", "")
    reset_service()
    response = post_run(client)
    assert response.status_code == 503
    run = store().get(response.json_body["run_id"])
    assert run.status is Status.FAILED and "KAGENT_STATE_MACHINE_ARN" in run.error
    assert store().in_flight() == 0


def test_get_run_shows_status_timestamps_and_a_masked_email(client):
    run_id = post_run(client).json_body["run_id"]
    response = client.http.get(f"/runs/{run_id}")
    assert response.status_code == 200
    body = response.json_body
    assert body["status"] == "QUEUED" and body["slug"] == "titanic"
    assert body["email"] == "a***@example.com"
    assert EMAIL not in json.dumps(body)
    assert set(body["timestamps"]) == {"QUEUED"}
    assert body["submission_url"] is None


def test_get_run_of_a_succeeded_run_has_a_short_lived_presigned_link(client):
    run_id = post_run(client).json_body["run_id"]
    runs = store()
    runs.record(run_id, s3_key=f"{run_id}/submission.csv", cv_score=0.81, metric="accuracy")
    runs.transition(run_id, Status.PLANNED, plan_summary="binary task scored by accuracy")
    runs.transition(run_id, Status.VALIDATED)
    runs.transition(run_id, Status.SUCCEEDED)
    body = client.http.get(f"/runs/{run_id}").json_body
    assert body["status"] == "SUCCEEDED"
    assert body["cv_score"] == pytest.approx(0.81) and body["metric"] == "accuracy"
    assert body["plan_summary"].startswith("binary")
    assert f"{BUCKET}" in body["submission_url"] and f"{run_id}/submission.csv" in body["submission_url"]
    assert "Expires=" in body["submission_url"] or "X-Amz-Expires=900" in body["submission_url"]
    assert set(body["timestamps"]) == {"QUEUED", "PLANNED", "VALIDATED", "SUCCEEDED"}


def test_routes_require_iam_authorization_when_deployed():
    from app import app  # noqa: PLC0415

    for path, methods in app.routes.items():
        for entry in methods.values():
            assert isinstance(entry.authorizer, IAMAuthorizer), path
