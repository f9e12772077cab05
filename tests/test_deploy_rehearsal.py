"""The deploy rehearsal (scripts/deploy_rehearsal.py): its moto additions, its wiring check, and that it fails when a
name is broken on purpose.

Fast tests (in make test): the moto additions against a real moto server; the README holds every command the rehearsal
runs; the wiring check, in moto, finds a broken Lambda name, role, region and SSM path, and passes the right wiring
(also with one role per function). The `rehearsal` test runs the whole rehearsal with a Lambda name broken in the
Terraform copy and must see it fail (minutes: `make deploy-rehearsal`, its own CI step, runs it after the clean one).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from scripts import deploy_rehearsal as rehearsal
from scripts import moto_additions

REPO = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
ACCOUNT = "123456789012"
STAGE = "dev"
LAMBDA_TRUST = {
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
}
ECS_TRUST = {
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]
}


def readme_deploy_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = text.index("<!-- section:deploy -->"), text.index("<!-- /section:deploy -->")
    return text[start:end]


# --- the README is what is rehearsed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", sorted(rehearsal.README_COMMANDS))
def test_every_command_the_rehearsal_runs_is_in_the_readme_deploy_section(step: str) -> None:
    command = rehearsal.README_COMMANDS[step]
    assert command in readme_deploy_section(), f"README deploy section lacks the rehearsed command: {command}"


def terraform_variables() -> dict[str, Any]:
    import hcl2  # noqa: PLC0415

    found: dict[str, Any] = {}
    for path in sorted((REPO / "terraform").glob("*.tf")):
        with path.open(encoding="utf-8") as source:
            for block in hcl2.load(source).get("variable", []):
                for name, body in block.items():
                    found[name.strip('"')] = body
    return found


def test_the_configuration_reference_lists_every_terraform_variable_with_its_default() -> None:
    section = readme_deploy_section()
    table = section[section.index("### Configuration reference") :]
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `([a-z0-9_]+)` \| ([^|]+) \|", table, flags=re.MULTILINE)
    }
    variables = terraform_variables()
    assert not set(variables) - set(rows), f"README configuration reference lacks {sorted(set(variables) - set(rows))}"
    assert not set(rows) - set(variables), (
        f"README lists variables Terraform lacks: {sorted(set(rows) - set(variables))}"
    )
    for name, body in variables.items():
        shown = rows[name].strip()
        if "default" not in body:
            assert shown == "(required)", f"{name} has no default: the README must say (required)"
            continue
        default = body["default"]
        expected = json.dumps(default) if isinstance(default, list | bool) else str(default).strip('"')
        expected = "false" if default is False else "true" if default is True else expected
        assert shown.strip("`") in {expected, f'"{expected}"'} or (expected == "" and shown == '`""`'), (
            f"README gives {name} the default {shown}, Terraform {default!r}"
        )


def test_the_readme_exports_the_region_botocore_reads() -> None:
    section = readme_deploy_section()
    assert "export STAGE=dev AWS_DEFAULT_REGION=" in section
    assert "$AWS_REGION" not in section, "botocore (chalice, aws) ignores AWS_REGION: the README must not rely on it"


# --- the moto additions ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    with rehearsal.emulator() as endpoint:
        yield endpoint


def server_client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def test_moto_validates_a_state_machine_definition_from_the_definition(moto_server: str) -> None:
    sfn = server_client(moto_server, "stepfunctions")
    good = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    bad = json.dumps({"StartAt": "B", "States": {"A": {"Type": "Pass", "End": True}}})
    assert sfn.validate_state_machine_definition(definition=good)["result"] == "OK"
    answer = sfn.validate_state_machine_definition(definition=bad)
    assert answer["result"] == "FAIL" and "StartAt 'B'" in answer["diagnostics"][0]["message"]
    assert sfn.validate_state_machine_definition(definition="{")["result"] == "FAIL"


def test_moto_lists_state_machine_versions_from_its_records(moto_server: str) -> None:
    sfn = server_client(moto_server, "stepfunctions")
    definition = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    role = f"arn:aws:iam::{ACCOUNT}:role/sfn"
    arn = sfn.create_state_machine(name="versions", definition=definition, roleArn=role, publish=True)[
        "stateMachineArn"
    ]
    versions = sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]
    assert [v["stateMachineVersionArn"] for v in versions] == [f"{arn}:1"]


def test_moto_imports_chalices_swagger_2_document(moto_server: str) -> None:
    swagger = {
        "swagger": "2.0",
        "info": {"title": "kagent", "version": "1.0"},
        "paths": {"/run": {"post": {"responses": {"200": {"description": "ok"}}}}},
    }
    api = server_client(moto_server, "apigateway").import_rest_api(body=json.dumps(swagger).encode())
    resources = server_client(moto_server, "apigateway").get_resources(restApiId=api["id"])["items"]
    assert api["name"] == "kagent" and "/run" in {item["path"] for item in resources}
    assert moto_additions.as_openapi3(swagger)["openapi"] == "3.0.1"
    assert moto_additions.as_openapi3(swagger)["info"]["description"] == ""


# --- the wiring check, in moto ---------------------------------------------------------------------------------------


def function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


class World:
    """A small deployed stage in moto: two roles, the plan Lambda, a state machine invoking it, the SSM parameters."""

    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}
        iam = self.client("iam")
        self.lambda_role = iam.create_role(
            RoleName="kagent-dev-lambda", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST)
        )["Role"]["Arn"]
        self.task_role = iam.create_role(
            RoleName="kagent-dev-runner-task", AssumeRolePolicyDocument=json.dumps(ECS_TRUST)
        )["Role"]["Arn"]
        for secret in rehearsal.SECRETS:
            self.client("ssm").put_parameter(Name=f"/kagent/dev/{secret}", Value="x", Type="SecureString")

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(service, region_name=REGION)
        return self.clients[service]

    def function(self, name: str, role: str) -> str:
        created = self.client("lambda").create_function(
            FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler", Code={"ZipFile": function_zip()}
        )
        return str(created["FunctionArn"])

    def state_machine(self, invokes: str) -> str:
        definition = {"StartAt": "Plan", "States": {"Plan": {"Type": "Task", "Resource": invokes, "End": True}}}
        created = self.client("stepfunctions").create_state_machine(
            name="kagent-dev", definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT}:role/kagent-dev-sm"
        )
        return str(created["stateMachineArn"])

    def deployment(self, function_arn: str, machine: str, chalice_stage: dict[str, Any] | None = None) -> Any:
        outputs = {"region": REGION, "state_machine_arn": machine, "lambda_role_arn": self.lambda_role, "stage": STAGE}
        deployed = [{"name": "plan", "resource_type": "lambda_function", "lambda_arn": function_arn}]
        stage = chalice_stage if chalice_stage is not None else {"iam_role_arn": self.lambda_role}
        return rehearsal.Deployment(outputs=outputs, chalice_stage=stage, deployed=deployed)

    def check(self, deployment: Any) -> list[str]:
        return [
            *rehearsal.check_region(deployment),
            *rehearsal.check_functions(deployment, self.client),
            *rehearsal.check_state_machine(deployment, self.client),
        ]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield World()


@pytest.mark.aws
def test_the_right_wiring_passes(world: World) -> None:
    plan = world.function("kagent-dev-plan", world.lambda_role)
    assert world.check(world.deployment(plan, world.state_machine(plan))) == []


@pytest.mark.aws
def test_a_role_per_function_passes_when_each_function_runs_as_its_own(world: World) -> None:
    per_function = world.client("iam").create_role(
        RoleName="kagent-dev-plan", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST)
    )["Role"]["Arn"]
    plan = world.function("kagent-dev-plan", per_function)
    deployment = world.deployment(
        plan, world.state_machine(plan), {"lambda_functions": {"plan": {"iam_role_arn": per_function}}}
    )
    deployment = rehearsal.Deployment(
        outputs={**deployment.outputs, "lambda_role_arns": {"plan": per_function}},
        chalice_stage=deployment.chalice_stage,
        deployed=deployment.deployed,
    )
    assert world.check(deployment) == []


@pytest.mark.aws
def test_a_broken_lambda_name_fails(world: World) -> None:
    plan = world.function("kagent-dev-plan", world.lambda_role)
    machine = world.state_machine(plan.replace("kagent-dev-plan", "kagentx-dev-plan"))
    problems = world.check(world.deployment(plan, machine))
    assert any(p.startswith("lambda name:") and "kagentx-dev-plan, which does not exist" in p for p in problems), (
        problems
    )


@pytest.mark.aws
def test_a_broken_role_fails(world: World) -> None:
    plan = world.function("kagent-dev-plan", world.task_role)
    problems = world.check(world.deployment(plan, world.state_machine(plan)))
    assert f"role: plan runs as {world.task_role}, the generated config gave Chalice {world.lambda_role}" in problems
    assert f"role: {world.task_role} of plan cannot be assumed by Lambda" in problems


@pytest.mark.aws
def test_a_role_terraform_never_made_fails(world: World) -> None:
    stray = world.client("iam").create_role(RoleName="by-hand", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    stray_arn = stray["Role"]["Arn"]
    plan = world.function("kagent-dev-plan", stray_arn)
    problems = world.check(world.deployment(plan, world.state_machine(plan), {"iam_role_arn": stray_arn}))
    assert problems == [f"role: plan runs as {stray_arn}, which is no role Terraform output"]


@pytest.mark.aws
def test_a_broken_region_fails(world: World) -> None:
    plan = world.function("kagent-dev-plan", world.lambda_role)
    elsewhere = plan.replace(f":{REGION}:", ":us-west-2:")
    problems = world.check(world.deployment(elsewhere, world.state_machine(plan)))
    assert f"region: Chalice deployed plan to us-west-2, Terraform made the stage in {REGION}" in problems


@pytest.mark.aws
def test_a_broken_ssm_path_fails(world: World) -> None:
    problems = rehearsal.environment_problems({"KAGENT_SSM_PREFIX": "/kagent/prod"}, world.client)
    assert any(p.startswith("ssm path: KAGENT_SSM_PREFIX=/kagent/prod names nothing") for p in problems), problems
    assert not any(
        p.startswith("ssm path")
        for p in rehearsal.environment_problems({"KAGENT_SSM_PREFIX": "/kagent/dev"}, world.client)
    )


@pytest.mark.aws
def test_a_runner_secret_on_another_path_fails(world: World) -> None:
    ecs = world.client("ecs")
    secrets = [
        {"name": s, "valueFrom": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/elsewhere/{s}"} for s in rehearsal.SECRETS
    ]
    world.client("logs").create_log_group(logGroupName="/aws/ecs/kagent-dev")
    world.client("ecr").create_repository(repositoryName="kagent-dev-runner")
    rehearsal.push_image(world.client("ecr"), "kagent-dev-runner", "abc")
    task = ecs.register_task_definition(
        family="kagent-dev-runner",
        executionRoleArn=world.task_role,
        taskRoleArn=world.task_role,
        containerDefinitions=[
            {
                "name": "runner",
                "memory": 512,
                "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/kagent-dev-runner:abc",
                "secrets": secrets,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": "/aws/ecs/kagent-dev", "awslogs-region": REGION},
                },
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    deployment = rehearsal.Deployment(
        outputs={"region": REGION, "ecs_task_definition_arn": task}, chalice_stage={}, deployed=[]
    )
    problems = rehearsal.check_task_definition(deployment, world.client)
    assert [p for p in problems if p.startswith("ssm path:")] == [
        f"ssm path: the runner reads {s} from /elsewhere/{s}, which does not exist" for s in rehearsal.SECRETS
    ]
    assert len(problems) == 3, problems  # roles, image, log group and region are right


def test_role_arns_are_found_in_any_output_shape() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/x"
    assert rehearsal.role_arns({"a": role, "b": {"plan": role + "p"}, "c": [role + "c"], "d": 3}) == {
        role,
        role + "p",
        role + "c",
    }
    assert (
        rehearsal.chalice_role({"iam_role_arn": "s", "lambda_functions": {"plan": {"iam_role_arn": "f"}}}, "plan")
        == "f"
    )
    assert rehearsal.chalice_role({"iam_role_arn": "s", "lambda_functions": {}}, "sweep") == "s"


# --- the whole rehearsal, broken on purpose --------------------------------------------------------------------------


@pytest.mark.rehearsal
@pytest.mark.slow
def test_the_rehearsal_fails_when_terraform_and_chalice_disagree_on_a_lambda_name() -> None:
    """Terraform names the step Lambdas after app `kagentx`, Chalice deploys `kagent`: the check must catch it."""
    done = subprocess.run(
        [sys.executable, "scripts/deploy_rehearsal.py", "--break", "lambda-name"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if "skipped:" in done.stdout:
        pytest.skip(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(
        r"lambda name: the state machine invokes \S+:function:kagentx-dev-plan, which does not exist", done.stderr
    )
    assert "deploy-rehearsal: FAILED" in done.stderr


# --- recordresources.py refuses a region Chalice would not deploy to -----------------------------------------------


LAMBDA_ROLE_NAMES = ["api_handler", "plan", "validate_output", "mark_succeeded", "mark_failed", "reconcile", "sweep"]


def outputs_json(region: str) -> str:
    return json.dumps(
        {
            "stage": {"value": STAGE},
            "region": {"value": region},
            "chalice_environment": {"value": {"KAGENT_STAGE": STAGE}},
            "lambda_role_arn": {"value": f"arn:aws:iam::{ACCOUNT}:role/kagent-dev-lambda"},
            "chalice_access_environment": {"value": {"KAGENT_ALLOWED_RECIPIENTS": "example.com"}},
            "lambda_function_role_arns": {
                "value": {name: f"arn:aws:iam::{ACCOUNT}:role/kagent-dev-{name}" for name in LAMBDA_ROLE_NAMES}
            },
            "api_limits": {
                "value": {"throttling_rate_limit": 100, "throttling_burst_limit": 200, "reserved_concurrency": 20}
            },
        }
    )


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"AWS_DEFAULT_REGION": REGION}, 0, ""),
        (
            {"AWS_DEFAULT_REGION": "us-east-1"},
            2,
            f"chalice deploy would use region us-east-1 but Terraform made stage 'dev' in {REGION}: "
            f"export AWS_DEFAULT_REGION={REGION}",
        ),
        (
            {"AWS_REGION": REGION},
            2,
            f"no region for chalice deploy: export AWS_DEFAULT_REGION={REGION} (botocore does not read AWS_REGION)",
        ),
    ],
)
def test_recordresources_refuses_a_region_chalice_would_not_deploy_to(
    tmp_path: Path, env: dict[str, str], code: int, message: str
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(outputs_json(REGION))
    config = tmp_path / "config.json"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "scripts/recordresources.py", "--outputs", str(outputs), "--config", str(config)],
        cwd=REPO,
        env={**clean, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == code, done.stderr
    if code:
        assert done.stderr.strip().splitlines() == [f"recordresources: {message}"]
        assert not config.exists(), "a refused region must not write the config"
    else:
        assert json.loads(config.read_text())["stages"][STAGE]["iam_role_arn"].endswith("role/kagent-dev-lambda")


def test_the_copy_leaves_out_what_a_users_own_deploy_left(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".chalice" / "deployed").mkdir(parents=True)
    (repo / "terraform").mkdir()
    (repo / ".chalice" / "deployed" / "dev.json").write_text("{}")
    (repo / ".chalice" / "config.json").write_text("{}")
    (repo / "terraform" / "main.tf").write_text("")
    (repo / ".gitignore").write_text("terraform/*.tfstate\n")
    (repo / "terraform" / "terraform.tfstate").write_text("{}")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert sorted(rehearsal.project_files(repo)) == [".chalice/config.json", ".gitignore", "terraform/main.tf"]
