"""Lazily cached boto3 clients and resources: the one place boto3 meets the environment on the service side.

boto3 is imported on first use so that `import app` stays fast. Endpoints come from boto3's own standard settings
(`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_DEFAULT_REGION`), so moto server or LocalStack need no
code path.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from chalicelib.config import Settings, load_settings

_lock = threading.Lock()


@functools.cache
def settings() -> Settings:
    return load_settings()


def _session() -> Any:
    import boto3  # noqa: PLC0415 - lazy: keeps cold imports of app.py fast

    return boto3.session.Session()


@functools.cache
def client(service: str) -> Any:
    """A boto3 client for `service`, created once per process (creation is not thread-safe, hence the lock)."""
    with _lock:
        return _session().client(service)


@functools.cache
def resource(service: str) -> Any:
    with _lock:
        return _session().resource(service)


def runs_table() -> Any:
    return resource("dynamodb").Table(settings().runs_table)


def reset() -> None:
    """Forget cached settings and clients (tests switch environments and moto backends)."""
    settings.cache_clear()
    client.cache_clear()
    resource.cache_clear()
