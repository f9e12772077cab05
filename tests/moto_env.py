"""Shared moto set-up for the service tests: fake credentials, a region, and the resources Terraform would create."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

REGION = "us-east-1"
TABLE = "kagent-test-runs"
BUCKET = "kagent-test-artifacts"
SENDER = "kagent@example.com"
ALLOWED_RECIPIENTS = "example.com,x.org"  # a deployed stage emails only allowed recipients (chalicelib/recipients.py)


def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def cached_client(service: str) -> Any:
    """Clients made once per test process and endpoint: moto's in-process mock intercepts them in every mock context,
    and creating them is slow. Keyed on AWS_ENDPOINT_URL so a test against moto server gets clients that go there."""
    return _client(service, os.environ.get("AWS_ENDPOINT_URL", ""))


@functools.cache
def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint or None)


def _dynamodb() -> Any:
    return _dynamodb_for(os.environ.get("AWS_ENDPOINT_URL", ""))


@functools.cache
def _dynamodb_for(endpoint: str) -> Any:
    return boto3.resource("dynamodb", region_name=REGION, endpoint_url=endpoint or None)


def create_runs_table(name: str = TABLE) -> Any:
    from chalicelib.runs import table_spec  # noqa: PLC0415

    return _dynamodb().create_table(**table_spec(name))


def create_bucket(name: str = BUCKET) -> None:
    cached_client("s3").create_bucket(Bucket=name)


def verify_sender(address: str = SENDER) -> None:
    cached_client("ses").verify_email_identity(EmailAddress=address)


@contextmanager
def serialized_dynamodb() -> Iterator[None]:
    """Make moto's DynamoDB backend atomic per call, as DynamoDB is.

    moto applies a transaction by checking and writing item by item and, on a failed condition, restores a deep copy of
    the whole table taken at the start — under threads that loses other threads' writes. DynamoDB itself serializes
    conditional writes and transactions per item; one lock around each backend write models that, so concurrency tests
    exercise our conditions rather than moto's races.
    """
    import threading  # noqa: PLC0415

    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415

    lock = threading.RLock()
    names = ("transact_write_items", "update_item", "put_item", "delete_item", "get_item")
    originals = {name: getattr(DynamoDBBackend, name) for name in names}

    def locked(original: Any) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(self, *args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(DynamoDBBackend, name, locked(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)


STATE_MACHINE_NAME = "kagent-test-runs"
SERVICE_ENV_NAMES = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL")


def service_environment(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    """The KAGENT_* environment a deployed stage gets, pointing at the moto resources created here."""
    from chalicelib import config  # noqa: PLC0415

    fake_credentials(monkeypatch)
    for name in SERVICE_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    values = {
        config.STAGE: "test",
        config.RUNS_TABLE: TABLE,
        config.ARTIFACTS_BUCKET: BUCKET,
        config.SES_SENDER: SENDER,
        config.MAX_RUNNING: "2",
        config.SUBNETS: "subnet-aaa,subnet-bbb",
        config.SECURITY_GROUP: "sg-123",
        config.EXECUTOR: "stepfunctions",
        config.OUTBOX: "",
        config.STATE_MACHINE_ARN: f"arn:aws:states:{REGION}:123456789012:stateMachine:{STATE_MACHINE_NAME}",
        config.ALLOWED_RECIPIENTS: ALLOWED_RECIPIENTS,
    }
    values.update(overrides)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def create_state_machine(definition: str = "", name: str = STATE_MACHINE_NAME) -> str:
    """A state machine in moto (by default a one-state Pass machine: it records executions, runs nothing real)."""
    import json  # noqa: PLC0415

    body = definition or json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    sfn = cached_client("stepfunctions")
    role = "arn:aws:iam::123456789012:role/kagent-test-state-machine"
    return str(sfn.create_state_machine(name=name, definition=body, roleArn=role)["stateMachineArn"])


def sent_emails() -> list[Any]:
    """What moto's SES accepted (messages with source, destinations, subject, body)."""
    from moto.core import DEFAULT_ACCOUNT_ID  # noqa: PLC0415
    from moto.ses.models import ses_backends  # noqa: PLC0415

    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def reset_service() -> None:
    """`chalicelib.wiring.reset`, keeping its boto3 clients (slow to make) unless one is bound to another endpoint:
    a test against moto server leaves clients that point at its (stopped) server."""
    from chalicelib import aws, wiring  # noqa: PLC0415

    endpoints = [aws.client(name).meta.endpoint_url for name in ("s3", "ses", "stepfunctions", "ecs")]
    endpoints.append(aws.resource("dynamodb").meta.client.meta.endpoint_url)
    wiring.reset(clients=not all(url.endswith(".amazonaws.com") for url in endpoints))


@contextmanager
def app_client(project_dir: Any, *, state_machine: bool = True, sender: bool = True) -> Iterator[Any]:
    """The real Chalice app in `chalice.test.Client`, over moto resources as Terraform would create them.

    Call inside `mock_aws()` after `service_environment(...)`; the service is reset before and after."""
    from chalice.test import Client  # noqa: PLC0415

    create_runs_table()
    create_bucket()
    if sender:
        verify_sender()
    if state_machine:
        create_state_machine()
    reset_service()
    from app import app  # noqa: PLC0415

    try:
        with Client(app, project_dir=str(project_dir)) as client:
            yield client
    finally:
        reset_service()


@contextmanager
def app_over_moto(
    monkeypatch: pytest.MonkeyPatch, project_dir: Any, *, state_machine: bool = True, sender: bool = True, **env: str
) -> Iterator[Any]:
    """`service_environment(**env)`, moto and `app_client` in one: the real app over moto until the block ends.
    Function-scoped tests get it as the `app_over_moto` fixture (tests/conftest.py)."""
    from moto import mock_aws  # noqa: PLC0415

    service_environment(monkeypatch, **env)
    with mock_aws(), app_client(project_dir, state_machine=state_machine, sender=sender) as client:
        yield client
