"""Calls to the HTTP API as tests make them, and what callers send: the Kaggle URL and address a good request carries,
the verified IAM identities API Gateway hands the Lambda, the URLs and addresses POST /run must refuse."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tests.moto_env import cached_client

TITANIC = "https://www.kaggle.com/competitions/titanic"
EMAIL = "alice@example.com"
ALICE = {"userArn": "arn:aws:iam::123456789012:user/alice", "caller": "AIDAALICE"}
MALLORY = {"userArn": "arn:aws:iam::123456789012:user/mallory", "caller": "AIDAMALLORY"}

BAD_URLS = [
    "http://www.kaggle.com/competitions/titanic",
    "ftp://www.kaggle.com/competitions/titanic",
    "www.kaggle.com/competitions/titanic",
    "https://kaggle.com.evil.example/competitions/titanic",
    "https://evil.example/competitions/titanic",
    "https://www.kaggle.com:8443/competitions/titanic",
    "https://user@www.kaggle.com/competitions/titanic",
    "https://www.kaggle.com/datasets/someone/titanic",
    "https://www.kaggle.com/code/someone/titanic",
    "https://www.kaggle.com/competitions",
    "https://www.kaggle.com/competitions/",
    "https://www.kaggle.com/",
    "https://www.kaggle.com/c/-titanic",
    "https://www.kaggle.com/c/titanic-",
    "https://www.kaggle.com/c/tita--nic",
    "https://www.kaggle.com/c/tit_anic",
    "https://www.kaggle.com/c/tit%20anic",
    "https://www.kaggle.com/c/" + "a" * 101,
    "https://www.kaggle.com/c/titanic" + "/x" * 1100,
    "https://www.kaggle.com/c/titanic extra",
    "https://www.kaggle.com/c/tita\nnic",
    "https://www.kaggle.com/c/titanic\x00",
    "not a url",
]

BAD_EMAILS = [
    "plain",
    "@example.com",
    "me@",
    "me@example",
    "me@@example.com",
    "me@exa mple.com",
    "me @example.com",
    "me@example.c",
    "me@example.123",
    "me@-example.com",
    "me@example..com",
    ".me@example.com",
    "m..e@example.com",
    "me,you@example.com",
    "me@example.com\r\nBcc: x@example.com",
    "a" * 65 + "@example.com",
    "me@" + "a" * 250 + ".com",
]


def call(
    method: str,
    path: str,
    identity: dict[str, str],
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One request as API Gateway delivers it to the API handler; (status, JSON body, headers)."""
    from app import app  # noqa: PLC0415

    resource = "/runs/{run_id}" if path.startswith("/runs/") else path
    params = {"run_id": path.rsplit("/", 1)[1]} if resource == "/runs/{run_id}" else None
    event = {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})},
        "multiValueHeaders": {},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "stage": "api",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "identity": {"sourceIp": "203.0.113.9", **identity},
        },
        "body": None,
        "isBase64Encoded": False,
    }
    response = app(event, None)
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})


def post_run(client, url=TITANIC, email=EMAIL, headers=None):
    return client.http.post(f"/run?url={quote(url, safe='')}&email={quote(email, safe='')}", headers=headers or {})


def executions() -> list[dict[str, Any]]:
    sfn = cached_client("stepfunctions")
    machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return list(sfn.list_executions(stateMachineArn=machine)["executions"])
