"""Terraform read as data with python-hcl2 (`tf_local`, `tf_resource`, `tf_data`, `tf_output`, ...) and the
`terraform output -json` of a deployed stack that scripts/recordresources.py turns into .chalice/config.json."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import hcl2

from scripts import recordresources
from tests.sources import REPO

TERRAFORM = REPO / "terraform"


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals ('"runner"'); expressions come as '${...}'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@functools.cache
def terraform_files() -> dict[str, dict[str, Any]]:
    parsed = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open(encoding="utf-8") as source:
            parsed[path.name] = hcl2.load(source)
    return parsed


def tf_blocks(kind: str) -> Iterator[dict[str, Any]]:
    for parsed in terraform_files().values():
        yield from parsed.get(kind, [])


def tf_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in tf_blocks("locals"):
        merged.update(block)
    return merged


def tf_local(name: str) -> Any:
    found = tf_locals()
    assert name in found, f"terraform: local.{name} is not defined"
    return found[name]


def tf_resource(kind: str, name: str) -> dict[str, Any]:
    for block in tf_blocks("resource"):
        for found_kind, named in block.items():
            for found_name, body in named.items():
                if unquote(found_kind) == kind and unquote(found_name) == name:
                    return body
    raise AssertionError(f"terraform: resource {kind}.{name} is not defined")


def tf_data(kind: str, name: str) -> dict[str, Any]:
    for block in tf_blocks("data"):
        for found_kind, named in block.items():
            for found_name, body in named.items():
                if unquote(found_kind) == kind and unquote(found_name) == name:
                    return body
    raise AssertionError(f"terraform: data {kind}.{name} is not defined")


def tf_output(name: str) -> Any:
    for block in tf_blocks("output"):
        for found_name, body in block.items():
            if unquote(found_name) == name:
                return body["value"]
    raise AssertionError(f"terraform: output {name} is not defined")


FAKE_OUTPUTS = {
    "stage": {"value": "dev", "type": "string", "sensitive": False},
    "chalice_environment": {
        "value": {"KAGENT_STAGE": "dev", "KAGENT_OUTBOX": ""},
        "type": "object",
        "sensitive": False,
    },
    "lambda_role_arn": {
        "value": "arn:aws:iam::123456789012:role/kagent-dev-lambda",
        "type": "string",
        "sensitive": False,
    },
    "chalice_access_environment": {"value": {"KAGENT_ALLOWED_RECIPIENTS": "example.com"}},
    "lambda_function_role_arns": {
        "value": {
            name: f"arn:aws:iam::123456789012:role/kagent-dev-{name}"
            for name in [recordresources.API_HANDLER, *recordresources.LAMBDA_FUNCTIONS]
        }
    },
    "api_limits": {"value": {"throttling_rate_limit": 100, "throttling_burst_limit": 200, "reserved_concurrency": 20}},
}
