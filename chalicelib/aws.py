"""Lazily cached boto3 clients and resources: the one place boto3 meets the environment on the service side.

boto3 is imported on first use so that `import app` stays fast. Endpoints come from boto3's own standard settings
(`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_DEFAULT_REGION`), so moto server or LocalStack need no
code path. Nothing here knows the Service: chalicelib.wiring assembles it from these clients.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from chalicelib import config

_lock = threading.Lock()
MAX_POOL_CONNECTIONS = 64


def _session() -> Any:
    import boto3  # noqa: PLC0415 - lazy: boto3 costs ~0.3 s to import; `import app` and the runner CLI stay fast

    return boto3.session.Session()


@functools.cache
def client(service: str) -> Any:
    """A boto3 client for `service`, created once per process (creation is not thread-safe, hence the lock)."""
    from botocore.config import Config  # noqa: PLC0415 - lazy: botocore comes with boto3 (see _session)

    # S3 presigned links must be SigV4: SigV2 is retired in newer regions and capped at 7 days everywhere.
    config_ = _config().merge(Config(signature_version="s3v4")) if service == "s3" else _config()
    with _lock:
        return _session().client(service, config=config_)


@functools.cache
def resource(service: str) -> Any:
    with _lock:
        return _session().resource(service, config=_config())


def _config() -> Any:
    """chalice local serves requests in threads that share these clients: more than botocore's 10 pooled connections
    (past 10 it drops connections and reconnects per call). A Lambda serves one request at a time either way."""
    from botocore.config import Config  # noqa: PLC0415 - lazy: botocore comes with boto3 (see _session)

    return Config(max_pool_connections=MAX_POOL_CONNECTIONS)


def runs_table() -> Any:
    """The runs table (DynamoDB Table resource) named by the process's settings."""
    return resource("dynamodb").Table(config.settings().runs_table)


def reset() -> None:
    """Forget the boto3 clients and resources (tests that switch endpoints; chalicelib.wiring.reset calls this)."""
    client.cache_clear()
    resource.cache_clear()
