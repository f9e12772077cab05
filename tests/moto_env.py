"""Shared moto set-up for the service tests: fake credentials, a region, and the resources Terraform would create."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

REGION = "us-east-1"
TABLE = "kagent-test-runs"
BUCKET = "kagent-test-artifacts"
SENDER = "kagent@example.com"


def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def create_runs_table(name: str = TABLE) -> Any:
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    table = dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    return table


def create_bucket(name: str = BUCKET) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=name)


def verify_sender(address: str = SENDER) -> None:
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=address)


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
