"""One IAM role per Lambda, proved from both ends: the AWS calls each handler really makes against its role's policy.

Every handler of app.py runs through `chalice.test.Client` (the API handler as API Gateway invokes it) over moto, along
the paths that touch AWS: admission, listing, reading, cancelling; Plan with its SSM credentials; ValidateOutput;
MarkSucceeded; MarkFailed; the reconciler; the sweeper. A botocore hook on the session chalicelib/aws.py makes its
clients from (`before-parameter-build`, which presigning emits too, where `before-call` is not) records each call as an
IAM action on a resource. The policies come from terraform/iam_lambda_role.tf, parsed with python-hcl2. The check fails
if a function makes a call its role does not allow (or one a Deny refuses), or if its role allows an action its
function never makes. The last tests break one side on purpose and watch the check say so.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import aws, config, wiring
from chalicelib.run_request import RunRequest
from chalicelib.runs import CALLER_INDEX, SLOT_INDEX, RunStore, Status
from chalicelib.service import Service
from runner.datasource import CACHE_PREFIX
from tests.api_calls import ALICE, call
from tests.hcl import tf_data, tf_local, tf_resource, unquote
from tests.moto_env import BUCKET, app_client, cached_client, service_environment
from tests.sources import app_lambdas

pytestmark = pytest.mark.aws

API_HANDLER = "api_handler"
FUNCTIONS = (API_HANDLER, "plan", "validate_output", "mark_succeeded", "mark_failed", "reconcile", "sweep")
# Actions a role must hold although its function never calls them, and why.
NEEDED_WITHOUT_A_CALL = {
    "s3:ListBucket": "without it a missing object answers 403 instead of 404 (NoSuchKey)",
}
# Calls whose IAM action is not service:Operation.
IAM_ACTION = {"s3:HeadObject": "s3:GetObject", "s3:ListObjectsV2": "s3:ListBucket"}
TRANSACTION_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
# Resource expressions of the Lambda policies -> the calls' targets they match (fnmatch patterns). An expression the
# check does not know fails it: teach it here rather than let a resource go unchecked.
RESOURCE_TARGETS = {
    "${aws_dynamodb_table.runs.arn}": "table",
    "${aws_dynamodb_table.runs.arn}/index/${local.runs_slot_index}": f"index/{SLOT_INDEX}",
    "${aws_dynamodb_table.runs.arn}/index/${local.runs_caller_index}": f"index/{CALLER_INDEX}",
    "${aws_s3_bucket.artifacts.arn}": "bucket",
    "${local.run_artifact_objects}": "object/*",
    "${local.data_cache_objects}": f"object/{CACHE_PREFIX}/*",
    "${aws_sfn_state_machine.runs.arn}": "stateMachine",
    "${local.run_executions_arn}": "execution",
    "${local.ses_identities_arn}": "identity",
    "${values(local.runner_secret_arns)}": "parameter",
    "*": "*",
}


@dataclass(frozen=True)
class Call:
    action: str  # the IAM action, e.g. dynamodb:UpdateItem
    target: str  # what it acts on: table, index/<name>, object/<key>, bucket, execution, stateMachine, ...


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    targets: tuple[str, ...]


class CallRecorder:
    """Records, per function, the AWS calls made while that function runs (botocore's before-parameter-build)."""

    def __init__(self) -> None:
        self.calls: dict[str, set[Call]] = {name: set() for name in FUNCTIONS}
        self.current: str | None = None

    @contextmanager
    def function(self, name: str) -> Iterator[None]:
        self.current = name
        try:
            yield
        finally:
            self.current = None

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.current is None:  # the test's own set-up
            return
        self.calls[self.current].update(calls_of(model.service_model.signing_name, model.name, params))


def calls_of(service: str, operation: str, params: dict[str, Any]) -> list[Call]:
    if operation == "TransactWriteItems":
        return [Call(TRANSACTION_ACTIONS[kind], "table") for item in params["TransactItems"] for kind in item]
    action = IAM_ACTION.get(f"{service}:{operation}", f"{service}:{operation}")
    if service == "dynamodb":
        target = f"index/{params['IndexName']}" if params.get("IndexName") else "table"
    elif service == "s3":
        target = f"object/{params['Key']}" if "Key" in params else "bucket"
    elif service == "states":
        target = "stateMachine" if operation == "StartExecution" else "execution"
    else:
        target = {"ses": "identity", "ssm": "parameter"}.get(service, "*")
    return [Call(action, target)]


# -- the policies ------------------------------------------------------------------------------------------------------


def policy_document_of(function: str) -> str:
    """The aws_iam_policy_document each function's role carries, as Terraform wires it."""
    if function == API_HANDLER:
        expression = tf_resource("aws_iam_role_policy", "lambda")["policy"]
    else:
        expression = tf_local("lambda_function_policies")[function]
    name = unquote(expression).removeprefix("${data.aws_iam_policy_document.").removesuffix(".json}")
    assert name.isidentifier(), f"terraform: {function}'s role policy is not a policy document: {expression}"
    return name


def policies() -> dict[str, list[Statement]]:
    parsed = {}
    for function in FUNCTIONS:
        statements = []
        for statement in tf_data("aws_iam_policy_document", policy_document_of(function))["statement"]:
            resources = statement["resources"]
            resources = [resources] if isinstance(resources, str) else resources
            actions = tuple(unquote(a) for a in statement["actions"])
            if all(a.startswith("logs:") for a in actions):
                expected = '${local.lambda_log_streams["' + function + '"]}'
                assert [unquote(r) for r in resources] == [expected], f"{function} writes another function's logs"
                continue
            unknown = [unquote(r) for r in resources if unquote(r) not in RESOURCE_TARGETS]
            assert not unknown, f"the check does not know the resource(s) {unknown}: add them to RESOURCE_TARGETS"
            targets = tuple(RESOURCE_TARGETS[unquote(r)] for r in resources)
            statements.append(Statement(unquote(statement.get("effect", '"Allow"')), actions, targets))
        parsed[function] = statements
    return parsed


def _matches(statement: Statement, call_: Call) -> bool:
    return any(fnmatch.fnmatchcase(call_.action, a) for a in statement.actions) and any(
        fnmatch.fnmatchcase(call_.target, t) for t in statement.targets
    )


def problems(calls: dict[str, set[Call]], roles: dict[str, list[Statement]]) -> list[str]:
    """Everything wrong between what each function calls and what its role allows (empty when they agree)."""
    found = []
    for function in FUNCTIONS:
        statements, made = roles[function], calls[function]
        for call_ in sorted(made, key=lambda c: (c.action, c.target)):
            allowed = any(s.effect == "Allow" and _matches(s, call_) for s in statements)
            denied = any(s.effect == "Deny" and _matches(s, call_) for s in statements)
            if not allowed or denied:
                found.append(f"{function} calls {call_.action} on {call_.target}, which its role does not allow")
        used = {c.action for c in made}
        for statement in statements:
            for action in statement.actions:
                if statement.effect == "Allow" and action not in used and action not in NEEDED_WITHOUT_A_CALL:
                    found.append(f"{function}'s role allows {action}, which {function} never calls")
    return found


# -- the tour: every handler along the paths that touch AWS ----------------------------------------------------------


def request(email: str = "alice@example.com") -> RunRequest:
    return RunRequest(url="https://www.kaggle.com/competitions/titanic", slug="titanic", email=email)


def steps(run_id: str) -> dict[str, Any]:
    return {"run_id": run_id, "url": request().url, "email": "alice@example.com", "slug": "titanic", "network": {}}


def put(key: str, text: str) -> None:
    cached_client("s3").put_object(Bucket=BUCKET, Key=key, Body=text.encode())


def tour(client: Client, recorder: CallRecorder) -> None:
    store = RunStore(aws.runs_table())
    with recorder.function(API_HANDLER):
        kept = call(
            "POST", "/run", ALICE, {"url": request().url, "email": "alice@example.com"}, {"idempotency-key": "k"}
        )
        call("POST", "/run", ALICE, {"url": request().url, "email": "alice@example.com"}, {"idempotency-key": "k"})
        cancelled = call("POST", "/run", ALICE, {"url": request().url, "email": "alice@example.com"})
        call("GET", "/runs", ALICE)
        call("DELETE", f"/runs/{cancelled[1]['run_id']}", ALICE)
    good, bad = kept[1]["run_id"], cancelled[1]["run_id"]
    with recorder.function("plan"):
        client.lambda_.invoke("plan", steps(good))
    store.transition(good, Status.RUNNING)
    put(f"{good}/submission.csv", "PassengerId,Survived\n892,1\n")
    put(f"{good}/sample_submission.csv", "PassengerId,Survived\n892,0\n")
    put(f"{good}/result.json", json.dumps({"cv_score": 0.8, "metric": "accuracy"}))
    with recorder.function("validate_output"):
        client.lambda_.invoke("validate_output", steps(good))
    with recorder.function("mark_succeeded"):
        client.lambda_.invoke("mark_succeeded", steps(good))  # no chart uploaded: a plain email
    with recorder.function(API_HANDLER):
        assert "submission.csv" in call("GET", f"/runs/{good}", ALICE)[1]["submission_url"]
    charted = store.admit(request(), 10, caller=ALICE["userArn"]).run_id
    store.transition(charted, Status.RUNNING)
    for name in ("submission.csv", "sample_submission.csv"):
        put(f"{charted}/{name}", "PassengerId,Survived\n892,1\n")
    put(f"{charted}/result.json", json.dumps({"cv_score": 0.8, "metric": "accuracy"}))
    put(f"{charted}/cv_chart.png", "\x89PNG chart")
    put(f"{charted}/report.html", "<html>report</html>")
    store.record(charted, chart_key=f"{charted}/cv_chart.png", report_key=f"{charted}/report.html")
    with recorder.function("validate_output"):
        client.lambda_.invoke("validate_output", steps(charted))
    with recorder.function("mark_succeeded"):
        client.lambda_.invoke("mark_succeeded", steps(charted))  # the chart inline: raw MIME
    with recorder.function(API_HANDLER):
        assert call("GET", f"/runs/{charted}", ALICE)[1]["links"]["report_url"]
    failing = store.admit(request(), 10, caller=ALICE["userArn"])
    with recorder.function("mark_failed"):
        client.lambda_.invoke("mark_failed", steps(failing.run_id) | {"error": {"Error": "States.Timeout"}})
    machine = config.settings().state_machine_arn
    aborted = {"stateMachineArn": machine, "name": bad, "status": "ABORTED"}
    with recorder.function("reconcile"):
        event = client.events.generate_cw_event("aws.states", "Step Functions Execution Status Change", aborted, [])
        client.lambda_.invoke("reconcile", event)
    lost = store.admit(request(), 10, caller=ALICE["userArn"])  # its execution ends; the reconciler misses it
    sfn = cached_client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=machine, name=lost.run_id, input="{}")["executionArn"]
    sfn.stop_execution(executionArn=arn)
    with recorder.function("sweep"):
        client.lambda_.invoke("sweep", client.events.generate_cw_event("aws.events", "Scheduled Event", {}, []))
    assert store.get(lost.run_id).status is Status.FAILED and store.in_flight() == 0


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Client, CallRecorder]]:
    """moto with every resource, the app, and a recorder hooked into every client chalicelib.aws makes."""
    recorder = CallRecorder()
    original = aws._session

    def recording_session() -> Any:
        session = original()
        session.events.register("before-parameter-build", recorder.record)
        return session

    with pytest.MonkeyPatch.context() as monkeypatch:
        service_environment(
            monkeypatch, KAGENT_MAX_RUNNING="10", KAGENT_SES_SANDBOX="true", KAGENT_SSM_PREFIX="/kagent/test"
        )
        monkeypatch.setattr(aws, "_session", recording_session)
        with mock_aws(), app_client(tmp_path_factory.mktemp("app")) as client:
            wiring.reset()  # clients from the recording session from here on
            cached_client("ses").verify_email_identity(EmailAddress="alice@example.com")
            yield client, recorder
        wiring.reset()


@pytest.fixture(scope="module")
def recorded(world) -> dict[str, set[Call]]:
    client, recorder = world
    tour(client, recorder)
    return copy.deepcopy(recorder.calls)


# -- the checks ------------------------------------------------------------------------------------------------------


def test_every_function_of_app_py_has_its_own_role_and_policy():
    assert set(app_lambdas()) | {API_HANDLER} == set(FUNCTIONS) == set(tf_local("lambda_functions"))
    documents = {function: policy_document_of(function) for function in FUNCTIONS}
    assert len(set(documents.values())) == len(FUNCTIONS), f"functions share a policy: {documents}"
    assert set(tf_local("lambda_function_policies")) == set(FUNCTIONS) - {API_HANDLER}
    assert unquote(tf_resource("aws_iam_role_policy", "lambda_function")["role"]) == (
        "${aws_iam_role.lambda_function[each.key].id}"
    )


def test_the_tour_reaches_every_function(recorded):
    silent = [function for function in FUNCTIONS if not recorded[function]]
    assert not silent, f"the tour made no AWS call in {silent}: it no longer exercises them"


def test_each_role_allows_exactly_the_calls_its_function_makes(recorded):
    assert problems(recorded, policies()) == []


@pytest.mark.parametrize(
    ("function", "must", "must_not"),
    [
        (API_HANDLER, {"states:StartExecution", "dynamodb:PutItem"}, {"ses:SendEmail", "ssm:GetParameters"}),
        ("plan", {"ssm:GetParameters"}, {"ses:SendEmail", "s3:GetObject", "states:StartExecution"}),
        ("validate_output", {"s3:GetObject"}, {"ses:SendEmail", "ssm:GetParameters"}),
        ("mark_succeeded", {"ses:SendEmail"}, {"ssm:GetParameters", "states:StartExecution"}),
        ("mark_failed", {"ses:SendEmail"}, {"s3:GetObject", "ssm:GetParameters"}),
        ("sweep", {"states:DescribeExecution", "dynamodb:Query"}, {"ssm:GetParameters", "dynamodb:PutItem"}),
    ],
)
def test_the_issues_boundaries_hold(recorded, function, must, must_not):
    allowed = {a for s in policies()[function] if s.effect == "Allow" for a in s.actions}
    assert must <= allowed and not must_not & allowed, (function, allowed)


def test_only_plan_reads_secrets_and_only_the_finishing_functions_send_email():
    roles = policies()
    readers = {f for f, statements in roles.items() if any("ssm:GetParameters" in s.actions for s in statements)}
    senders = {f for f, statements in roles.items() if any("ses:SendEmail" in s.actions for s in statements)}
    assert readers == {"plan"}
    assert senders == {"mark_succeeded", "mark_failed", "reconcile", "sweep"}


# -- the check catches what it is for: each side broken on purpose -----------------------------------------------------


def test_a_handler_that_gains_a_call_its_role_does_not_allow_fails_the_check(world, recorded, monkeypatch):
    client, recorder = world
    original = Service.plan

    def plan_and_peek(self: Service, event: Any) -> Any:
        aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=CACHE_PREFIX)  # a new call in Plan
        return original(self, event)

    monkeypatch.setattr(Service, "plan", plan_and_peek)
    run = RunStore(aws.runs_table()).admit(request(), 10, caller=ALICE["userArn"])
    with recorder.function("plan"):
        client.lambda_.invoke("plan", steps(run.run_id))
    found = problems(recorder.calls, policies())
    assert found == ["plan calls s3:ListBucket on bucket, which its role does not allow"]
    recorder.calls["plan"] = set(recorded["plan"])


def test_a_call_into_the_data_cache_is_refused_by_the_deny(recorded):
    calls = copy.deepcopy(recorded)
    calls["validate_output"].add(Call("s3:GetObject", f"object/{CACHE_PREFIX}/titanic/train.csv"))
    assert problems(calls, policies()) == [
        f"validate_output calls s3:GetObject on object/{CACHE_PREFIX}/titanic/train.csv, which its role does not allow"
    ]


def test_a_role_that_allows_a_service_its_function_never_calls_fails_the_check(recorded):
    roles = policies()
    roles["mark_failed"].append(Statement("Allow", ("states:StartExecution",), ("stateMachine",)))
    assert problems(recorded, roles) == [
        "mark_failed's role allows states:StartExecution, which mark_failed never calls"
    ]


def test_a_role_that_loses_a_grant_its_function_needs_fails_the_check(recorded):
    roles = policies()
    roles[API_HANDLER] = [s for s in roles[API_HANDLER] if "states:StopExecution" not in s.actions]
    assert problems(recorded, roles) == [
        "api_handler calls states:StopExecution on execution, which its role does not allow"
    ]
