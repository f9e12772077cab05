"""Issue 12's wiring: Terraform's access variables and outputs reach the app and Chalice, and the runner's task role
cannot touch the slot counter or write outside its run prefixes and the data cache.

Terraform is read with python-hcl2 (tests/hcl.py); the generated config is read back with Chalice's own `Config`, so a
key Chalice would not see fails here; the API Gateway throttling is applied to moto.
"""

from __future__ import annotations

import fnmatch
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from chalice.config import Config
from moto import mock_aws

from chalicelib import runs
from chalicelib.config import ConfigError, load_settings
from runner.datasource import CACHE_PREFIX
from scripts import api_throttling, recordresources
from tests.hcl import (
    FAKE_OUTPUTS,
    tf_blocks,
    tf_data,
    tf_local,
    tf_output,
    tf_resource,
    unquote,
)
from tests.moto_env import REGION, fake_credentials


def variable(name: str) -> dict[str, Any]:
    for block in tf_blocks("variable"):
        for found, body in block.items():
            if unquote(found) == name:
                return body
    raise AssertionError(f"terraform: variable {name} is not defined")


# -- Terraform -> the app's environment -------------------------------------------------------------------------------


def test_the_access_variables_are_typed_validated_and_defaulted_as_the_issue_says():
    assert variable("api_throttling_rate_limit")["default"] == 100
    assert variable("api_throttling_burst_limit")["default"] == 200
    for name in (
        "allowed_recipients",
        "runs_per_caller_per_day",
        "api_reserved_concurrency",
        "api_throttling_rate_limit",
    ):
        assert variable(name).get("validation"), f"terraform variable {name} is not validated"
    assert variable("ses_sandbox")["default"] is True  # a new account's SES is in the sandbox


def test_an_empty_allowlist_falls_back_to_the_sender_not_to_everybody():
    expression = tf_local("allowed_recipients")
    assert "[lower(var.ses_from_email)]" in expression and "length(var.allowed_recipients) > 0" in expression
    environment = tf_output("chalice_access_environment")
    assert environment["KAGENT_ALLOWED_RECIPIENTS"] == '${join(",", local.allowed_recipients)}'


def test_the_caller_index_is_the_one_the_run_store_queries():
    table = tf_resource("aws_dynamodb_table", "runs")
    [index] = [i for i in table["global_secondary_index"] if i["name"] == "${local.runs_caller_index}"]
    assert unquote(tf_local("runs_caller_index")) == runs.CALLER_INDEX
    assert (unquote(index["hash_key"]), unquote(index["range_key"])) == ("caller", "queued_at")
    assert [unquote(a) for a in tf_local("runs_caller_index_attributes")] == list(runs.CALLER_INDEX_ATTRIBUTES)
    [local_index] = [i for i in runs.table_spec("t")["GlobalSecondaryIndexes"] if i["IndexName"] == runs.CALLER_INDEX]
    assert local_index["Projection"]["NonKeyAttributes"] == list(runs.CALLER_INDEX_ATTRIBUTES)
    [ttl] = table["ttl"]
    assert unquote(ttl["attribute_name"]) == "expires_at" and ttl["enabled"] is True


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"KAGENT_ALLOWED_RECIPIENTS": "a b@example.com"}, "KAGENT_ALLOWED_RECIPIENTS"),
        ({"KAGENT_ALLOWED_RECIPIENTS": "localhost"}, "KAGENT_ALLOWED_RECIPIENTS"),
        ({"KAGENT_SES_SANDBOX": "yes"}, "KAGENT_SES_SANDBOX must be true or false"),
        ({"KAGENT_RUNS_PER_CALLER_PER_DAY": "0"}, "KAGENT_RUNS_PER_CALLER_PER_DAY must be at least 1"),
    ],
)
def test_malformed_access_settings_are_named(environment, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environment)


def test_access_settings_are_read_case_insensitively():
    settings = load_settings(
        {"KAGENT_ALLOWED_RECIPIENTS": " Ann@Example.com, @Team.Example.org ,", "KAGENT_SES_SANDBOX": "TRUE"}
    )
    assert settings.allowed_recipients == ("ann@example.com", "team.example.org") and settings.ses_sandbox


# -- the generated config, as Chalice reads it ------------------------------------------------------------------------


@pytest.fixture
def generated(tmp_path: Path) -> dict[str, Any]:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(FAKE_OUTPUTS), encoding="utf-8")
    config = tmp_path / ".chalice" / "config.json"
    assert recordresources.main(["--outputs", str(outputs), "--config", str(config)]) == 0
    return dict(json.loads(config.read_text(encoding="utf-8")))


def test_chalice_gives_each_function_its_own_role_and_the_api_handler_its_concurrency(generated):
    for function in [recordresources.API_HANDLER, *recordresources.LAMBDA_FUNCTIONS]:
        seen = Config(chalice_stage="dev", function_name=function, config_from_disk=generated)
        assert seen.manage_iam_role is False
        assert seen.iam_role_arn == f"arn:aws:iam::123456789012:role/kagent-dev-{function}"
    api = Config(chalice_stage="dev", function_name=recordresources.API_HANDLER, config_from_disk=generated)
    assert api.reserved_concurrency == 20
    plan = Config(chalice_stage="dev", function_name="plan", config_from_disk=generated)
    assert plan.reserved_concurrency is None and plan.lambda_timeout == 120
    assert generated["stages"]["dev"][recordresources.THROTTLING_KEY] == {"rate_limit": 100.0, "burst_limit": 200}


def test_zero_reserved_concurrency_reserves_nothing():
    outputs = dict(FAKE_OUTPUTS)
    outputs["api_limits"] = {
        "value": {"throttling_rate_limit": 5, "throttling_burst_limit": 10, "reserved_concurrency": 0}
    }
    stage = recordresources.build_config(None, outputs)["stages"]["dev"]
    assert "reserved_concurrency" not in stage["lambda_functions"][recordresources.API_HANDLER]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lambda_function_role_arns": None}, "terraform outputs lack lambda_function_role_arns"),
        ({"lambda_function_role_arns": {"value": {"plan": "arn:aws:iam::1:role/p"}}}, "must name a role for"),
        ({"api_limits": {"value": {"throttling_rate_limit": 100}}}, "api_limits must give numbers"),
        ({"chalice_access_environment": {"value": {"KAGENT_SES_SANDBOX": True}}}, "must map names to strings"),
    ],
)
def test_unusable_access_outputs_are_refused_with_a_one_line_reason(change, message):
    outputs = {k: v for k, v in {**FAKE_OUTPUTS, **change}.items() if v is not None}
    with pytest.raises(recordresources.RecordError, match=message):
        recordresources.build_config(None, outputs)


# -- API Gateway throttling after chalice deploy ----------------------------------------------------------------------


def test_the_stage_throttling_reaches_api_gateway(generated, tmp_path, monkeypatch, capsys):
    fake_credentials(monkeypatch)
    config = tmp_path / ".chalice" / "config.json"
    config.write_text(json.dumps(generated), encoding="utf-8")
    with mock_aws():
        import boto3  # noqa: PLC0415

        apigateway = boto3.client("apigateway", region_name=REGION)
        api_id = apigateway.create_rest_api(name="kagent")["id"]
        root = apigateway.get_resources(restApiId=api_id)["items"][0]["id"]
        apigateway.put_method(restApiId=api_id, resourceId=root, httpMethod="GET", authorizationType="AWS_IAM")
        apigateway.put_integration(restApiId=api_id, resourceId=root, httpMethod="GET", type="MOCK")
        apigateway.create_deployment(restApiId=api_id, stageName="api")
        deployed = {"resources": [{"name": "rest_api", "resource_type": "rest_api", "rest_api_id": api_id}]}
        (config.parent / "deployed").mkdir()
        (config.parent / "deployed" / "dev.json").write_text(json.dumps(deployed), encoding="utf-8")
        assert api_throttling.main(["--stage", "dev", "--config", str(config)], apigateway=apigateway) == 0
        settings = apigateway.get_stage(restApiId=api_id, stageName="api")["methodSettings"]["*/*"]
    assert (settings["throttlingRateLimit"], settings["throttlingBurstLimit"]) == (100.0, 200)
    assert "100 requests/s, bursts of 200" in capsys.readouterr().out


def test_throttling_without_a_deployment_says_what_to_run(generated, tmp_path, capsys):
    config = tmp_path / ".chalice" / "config.json"
    config.write_text(json.dumps(generated), encoding="utf-8")
    assert api_throttling.main(["--stage", "dev", "--config", str(config)], apigateway=object()) == 2
    assert "chalice deploy" in capsys.readouterr().err
    assert api_throttling.main(["--stage", "prod", "--config", str(config)], apigateway=object()) == 2
    assert "recordresources.py" in capsys.readouterr().err


# -- the runner's task role -------------------------------------------------------------------------------------------


def runner_statements() -> list[dict[str, Any]]:
    return list(tf_data("aws_iam_policy_document", "runner_task")["statement"])


def resolve(resource: str) -> str:
    """A runner-task resource as an object-key pattern (the bucket ARN stripped, locals substituted)."""
    text = unquote(resource)
    for name in ("run_id_pattern", "cache_prefix"):
        text = text.replace("${local." + name + "}", unquote(tf_local(name)))
    return text.removeprefix("${aws_s3_bucket.artifacts.arn}/")


def runner_may_put(key: str) -> bool:
    for statement in runner_statements():
        allows = (
            "s3:PutObject" in [unquote(a) for a in statement["actions"]]
            and unquote(statement.get("effect", "Allow")) != "Deny"
        )
        if allows and any(fnmatch.fnmatchcase(key, resolve(r)) for r in statement["resources"]):
            return True
    return False


def test_the_runner_writes_its_run_prefix_and_the_data_cache_only():
    run_id = str(uuid.uuid4())
    assert runner_may_put(f"{run_id}/submission.csv") and runner_may_put(f"{run_id}/logs.txt")
    assert runner_may_put(f"{CACHE_PREFIX}/titanic/titanic.zip")
    for key in ("index.html", "evil/payload.csv", f"{run_id}x/submission.csv", "not-a-run-id-at-all-0000000000000/x"):
        assert not runner_may_put(key), key
    assert runs.is_run_id(run_id) and len(unquote(tf_local("run_id_pattern"))) == len(run_id)


def test_the_runner_may_not_write_the_slot_counter_or_the_quota_items():
    [deny] = [s for s in runner_statements() if unquote(s.get("effect", "Allow")) == "Deny"]
    assert {"dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"} <= {unquote(a) for a in deny["actions"]}
    [condition] = deny["condition"]
    assert (unquote(condition["test"]), unquote(condition["variable"])) == (
        "ForAnyValue:StringLike",
        "dynamodb:LeadingKeys",
    )
    patterns = [unquote(v) for v in condition["values"]]
    for key in (runs.SLOTS_KEY, runs.quota_key("arn:aws:iam::1:user/a", runs.utc_now())):
        assert any(fnmatch.fnmatchcase(key, p) for p in patterns), key
    assert not any(fnmatch.fnmatchcase(str(uuid.uuid4()), p) for p in patterns)  # its own run item stays writable
