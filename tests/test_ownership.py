"""Trust boundaries of the HTTP API, attacked as another caller would (issue 12): the real Chalice app over moto.

Requests arrive as API Gateway hands them to the Lambda behind IAM authorization: the verified identity in
`requestContext.identity`. Every "cannot" is tried for real: mallory reads, lists and cancels alice's run; replays her
own key with another request; mails an address nobody allowed; starts more runs than her day allows.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from chalice.test import Client

from chalicelib import aws, config, wiring
from chalicelib.runs import QUOTA_KEY_PREFIX, SLOTS_KEY, RunStore, Status
from chalicelib.service import CANCELLED
from tests.api_calls import ALICE, MALLORY, TITANIC, call, executions
from tests.moto_env import cached_client, sent_emails

pytestmark = pytest.mark.aws

SPACESHIP = "https://www.kaggle.com/competitions/spaceship-titanic"
ALICE_EMAIL = "alice@example.com"


def start(identity: dict[str, str], url: str = TITANIC, email: str = ALICE_EMAIL, key: str | None = None) -> Any:
    headers = {"idempotency-key": key} if key else {}
    return call("POST", "/run", identity, {"url": url, "email": email}, headers)


def store() -> RunStore:
    return RunStore(aws.runs_table())


def items() -> list[dict[str, Any]]:
    return list(aws.runs_table().scan(ConsistentRead=True)["Items"])


@pytest.fixture
def client(app_over_moto) -> Client:
    return app_over_moto(KAGENT_MAX_RUNNING="10", KAGENT_RUNS_PER_CALLER_PER_DAY="20")


# -- ownership -------------------------------------------------------------------------------------------------------


def test_another_callers_get_is_the_same_404_as_an_unknown_id(client):
    run_id = start(ALICE)[1]["run_id"]
    assert call("GET", f"/runs/{run_id}", ALICE)[0] == 200
    unknown_id = "0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f"
    mine, unknown = call("GET", f"/runs/{run_id}", MALLORY), call("GET", f"/runs/{unknown_id}", MALLORY)
    assert mine[:2] == (404, {"error": f"no run with id {run_id!r}"})
    assert unknown[:2] == (404, {"error": f"no run with id {unknown_id!r}"})
    assert mine[2] == unknown[2]  # the same headers too


def test_a_succeeded_run_gives_its_download_link_to_its_owner_only(client):
    run_id = start(ALICE)[1]["run_id"]
    runs = store()
    runs.record(run_id, s3_key=f"{run_id}/submission.csv")
    runs.transition(run_id, Status.VALIDATED)
    runs.transition(run_id, Status.SUCCEEDED)
    assert f"{run_id}/submission.csv" in call("GET", f"/runs/{run_id}", ALICE)[1]["submission_url"]
    status, body, _ = call("GET", f"/runs/{run_id}", MALLORY)
    assert status == 404 and "submission" not in json.dumps(body)


def test_a_run_records_the_caller_even_without_an_idempotency_key(client):
    run_id = start(ALICE)[1]["run_id"]
    assert store().get(run_id).caller == ALICE["userArn"]


def test_list_shows_only_the_callers_own_runs_newest_first_page_by_page(client):
    alices = []
    for i in range(5):
        alices.append(start(ALICE, email=f"a{i}@example.com")[1]["run_id"])
        time.sleep(0.002)  # admission times are kept to the millisecond
    start(MALLORY, email="m@example.com")
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        status, body, _ = call("GET", "/runs", ALICE, query)
        assert status == 200 and len(body["runs"]) <= 2
        seen += [run["run_id"] for run in body["runs"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == alices[::-1] and pages >= 3
    first = call("GET", "/runs", ALICE)[1]["runs"][0]
    assert first["status"] == "QUEUED" and first["slug"] == "titanic" and first["created_at"]
    assert "email" not in first
    [mallorys] = call("GET", "/runs", MALLORY)[1]["runs"]
    assert mallorys["run_id"] not in alices


def test_a_cursor_cannot_reach_into_another_callers_runs(client):
    for i in range(3):
        start(ALICE, email=f"a{i}@example.com")
    cursor = call("GET", "/runs", ALICE, {"limit": "1"})[1]["next_cursor"]
    status, body, _ = call("GET", "/runs", MALLORY, {"cursor": cursor})
    assert status == 200 and body["runs"] == []  # the cursor is a position; the caller is always the request's


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "W1sieCJdXQ"}, "cursor"),  # base64 of JSON, but not a position
        ({"cursor": "x" * 500}, "cursor"),
    ],
)
def test_bad_list_parameters_are_a_400_naming_them(client, query, field):
    status, body, _ = call("GET", "/runs", ALICE, query)
    assert status == 400 and body["field"] == field


def test_another_caller_cannot_cancel_a_run(client):
    run_id = start(ALICE)[1]["run_id"]
    status, body, _ = call("DELETE", f"/runs/{run_id}", MALLORY)
    assert status == 404 and "no run" in body["error"]
    assert store().get(run_id).status is Status.QUEUED
    [execution] = executions()
    assert execution["status"] == "RUNNING"


# -- idempotency -----------------------------------------------------------------------------------------------------


def test_a_replayed_key_with_another_request_is_a_409_and_writes_nothing(client):
    first = start(ALICE, key="k-1")
    assert start(ALICE, key="k-1")[1]["run_id"] == first[1]["run_id"]  # a true retry is still the same run
    before = items()
    for changed in ({"url": SPACESHIP}, {"email": "other@example.com"}):
        status, body, _ = start(ALICE, key="k-1", **changed)
        assert status == 409 and body["field"] == "Idempotency-Key"
    assert items() == before and len(executions()) == 1


# -- recipients ------------------------------------------------------------------------------------------------------


def test_a_recipient_outside_the_allowlist_is_a_400_before_any_write(client, monkeypatch):
    monkeypatch.setenv("KAGENT_ALLOWED_RECIPIENTS", "alice@example.com, team.example.org")
    wiring.reset(clients=False)
    for refused in ("bob@example.com", "x@evil.example", "a@sub.team.example.org", "alice@example.com.evil.example"):
        status, body, _ = start(ALICE, email=refused)
        assert (status, body["field"]) == (400, "email"), refused
        assert "does not email" in body["error"]
    assert items() == [] and executions() == []  # not even the slot counter or a quota item
    assert start(ALICE, email="alice@example.com")[0] == 202
    assert start(ALICE, email="Carol@TEAM.example.org")[0] == 202


def test_a_deployed_stage_without_an_allowlist_mails_nobody(client, monkeypatch):
    monkeypatch.setenv("KAGENT_ALLOWED_RECIPIENTS", "")
    wiring.reset(clients=False)
    status, body, _ = start(ALICE)
    assert (status, body["field"]) == (400, "email") and items() == []


def test_in_the_ses_sandbox_only_verified_identities_are_mailed(client, monkeypatch):
    monkeypatch.setenv("KAGENT_SES_SANDBOX", "true")
    wiring.reset(clients=False)
    status, body, _ = start(ALICE, email="unverified@example.com")
    assert (status, body["field"]) == (400, "email") and "sandbox" in body["error"]
    assert items() == []
    ses = cached_client("ses")
    ses.verify_email_identity(EmailAddress="alice@example.com")
    assert start(ALICE, email="alice@example.com")[0] == 202
    ses.verify_domain_identity(Domain="example.com")  # moto verifies at once; the whole domain is now mailable
    assert start(ALICE, email="anyone@example.com")[0] == 202


def test_the_local_stage_still_mails_the_demos_address(client, monkeypatch):
    from scripts.demo import DEMO_EMAIL  # noqa: PLC0415
    from scripts.recordresources import LOCAL_DEFAULTS  # noqa: PLC0415

    for name in ("KAGENT_ALLOWED_RECIPIENTS", "KAGENT_SES_SANDBOX", "KAGENT_RUNS_PER_CALLER_PER_DAY"):
        monkeypatch.setenv(name, LOCAL_DEFAULTS[name])
    monkeypatch.setenv("KAGENT_STAGE", "local")
    wiring.reset(clients=False)
    assert start(ALICE, email=DEMO_EMAIL)[0] == 202


# -- the daily quota -------------------------------------------------------------------------------------------------


def test_the_quota_is_per_caller_and_answers_429_with_retry_after_to_the_next_utc_day(client, monkeypatch):
    monkeypatch.setenv("KAGENT_RUNS_PER_CALLER_PER_DAY", "2")
    monkeypatch.setenv("KAGENT_MAX_RUNNING", "10")
    wiring.reset(clients=False)
    assert [start(ALICE, email=f"a{i}@example.com")[0] for i in range(2)] == [202, 202]
    status, body, headers = start(ALICE, email="a9@example.com")
    assert status == 429 and "today" in body["error"]
    now = datetime.now(UTC)
    to_midnight = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    assert abs(int(headers["Retry-After"]) - to_midnight) <= 5
    assert start(MALLORY, email="m@example.com")[0] == 202  # another caller has its own day
    assert start(ALICE, key="retry", email="a0@example.com")[0] == 429
    assert store().in_flight() == 3 and len(executions()) == 3  # the refused request took no slot
    assert store().runs_today(ALICE["userArn"]) == 2


def test_a_refused_slot_does_not_spend_the_quota(client, monkeypatch):
    monkeypatch.setenv("KAGENT_RUNS_PER_CALLER_PER_DAY", "3")
    monkeypatch.setenv("KAGENT_MAX_RUNNING", "1")
    wiring.reset(clients=False)
    assert start(ALICE)[0] == 202
    status, _, headers = start(ALICE, email="a1@example.com")
    assert status == 429 and int(headers["Retry-After"]) == 60  # the slots' wait, not the day's
    assert store().runs_today(ALICE["userArn"]) == 1


def test_quota_items_expire_and_are_never_listed_as_runs(client):
    start(ALICE)
    [quota] = [item for item in items() if item["run_id"].startswith(QUOTA_KEY_PREFIX)]
    assert int(quota["expires_at"]) > datetime.now(UTC).timestamp() + 86400
    assert {item["run_id"] for item in items()} - {quota["run_id"], SLOTS_KEY} == {
        run["run_id"] for run in call("GET", "/runs", ALICE)[1]["runs"]
    }


# -- cancel ----------------------------------------------------------------------------------------------------------


def reconcile_aborted(client: Client, run_id: str) -> Any:
    machine = config.settings().state_machine_arn
    body = {"stateMachineArn": machine, "name": run_id, "status": "ABORTED"}
    event = client.events.generate_cw_event("aws.states", "Step Functions Execution Status Change", body, [])
    return client.lambda_.invoke("reconcile", event).payload


def test_cancel_ends_a_running_run_once_slot_back_once_one_email(client):
    run_id = start(ALICE)[1]["run_id"]
    store().transition(run_id, Status.RUNNING)
    assert store().in_flight() == 1

    status, body, _ = call("DELETE", f"/runs/{run_id}", ALICE)
    assert status == 202 and body == {"run_id": run_id, "status": "FAILED", "error": CANCELLED}
    run = store().get(run_id)
    assert run.status is Status.FAILED and run.error == CANCELLED
    [execution] = executions()
    assert execution["status"] == "ABORTED"  # StopExecution reached Step Functions
    assert store().in_flight() == 1 and sent_emails() == []  # the task may still run: the slot waits for the end

    assert call("DELETE", f"/runs/{run_id}", ALICE)[0] == 202  # repeating is safe
    reconcile_aborted(client, run_id)  # EventBridge: the execution ended ABORTED
    reconcile_aborted(client, run_id)  # ... delivered twice
    scheduled = client.events.generate_cw_event("aws.events", "Scheduled Event", {}, [])
    client.lambda_.invoke("sweep", scheduled)
    assert store().in_flight() == 0
    [email] = sent_emails()
    assert email.destinations["ToAddresses"] == [ALICE_EMAIL] and CANCELLED in email.body
    assert store().get(run_id).error == CANCELLED
    assert call("GET", f"/runs/{run_id}", ALICE)[1]["error"] == CANCELLED


def test_the_sweeper_frees_a_cancelled_run_whose_reconciler_event_was_lost(client):
    run_id = start(ALICE)[1]["run_id"]
    assert call("DELETE", f"/runs/{run_id}", ALICE)[0] == 202
    scheduled = client.events.generate_cw_event("aws.events", "Scheduled Event", {}, [])
    client.lambda_.invoke("sweep", scheduled)
    client.lambda_.invoke("sweep", scheduled)
    assert store().in_flight() == 0 and len(sent_emails()) == 1


def test_a_run_that_already_ended_cannot_be_cancelled(client):
    run_id = start(ALICE)[1]["run_id"]
    store().fail(run_id, "the runner failed")
    status, body, _ = call("DELETE", f"/runs/{run_id}", ALICE)
    assert status == 409 and "FAILED" in body["error"]
    assert store().get(run_id).error == "the runner failed"


def test_cancel_through_the_test_client_routes(client):
    """The route is wired in app.py (chalice's own router, not only the raw event)."""
    response = client.http.post(f"/run?url={quote(TITANIC, safe='')}&email={quote(ALICE_EMAIL, safe='')}")
    run_id = response.json_body["run_id"]
    assert client.http.delete(f"/runs/{run_id}").status_code == 202
    assert client.http.get("/runs").json_body["runs"][0]["status"] == "FAILED"


def test_in_the_local_stage_cancel_stops_the_runner_task_as_ecs_would():
    from chalicelib import asl  # noqa: PLC0415
    from chalicelib import local_executor as lx  # noqa: PLC0415

    parameters = {
        "Overrides": {"ContainerOverrides": [{"Name": "runner", "Environment": [{"Name": "RUN_ID", "Value": "r-x"}]}]}
    }
    ended: dict[str, Any] = {}

    def task() -> None:
        command = (sys.executable, "-c", "import time; time.sleep(60)")
        try:
            lx.run_runner(parameters, 60, base_env={}, command=command)
        except asl.StatesError as error:
            ended["error"] = error

    thread = threading.Thread(target=task)
    started = time.monotonic()
    thread.start()
    while not lx.stop("r-x"):  # the task registers itself as soon as its process exists
        assert time.monotonic() - started < 10, "the runner task never registered"
        time.sleep(0.05)
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert ended["error"].error == "States.TaskFailed" and '"ExitCode": -15' in ended["error"].cause
    assert lx.stop("r-x") is False  # over: nothing left to stop
