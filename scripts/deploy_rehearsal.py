"""`make deploy-rehearsal`: the README's deploy, run end to end against a local AWS emulator, offline.

    python scripts/deploy_rehearsal.py [--stage dev] [--region eu-west-1] [--keep]

A moto server on 127.0.0.1 (with scripts/moto_additions.py), then, in a throwaway copy of the project (never the real
terraform/ state or .chalice/config.json), the README's "Deploy to AWS" commands in order:

    terraform -chdir=terraform init                  (-plugin-dir=/opt/tf-plugins when the mirror exists)
    terraform -chdir=terraform apply ...             -> plan -detailed-exitcode must be empty (the drift check)
    SSM parameters under `terraform output -raw ssm_parameter_prefix`, the image pushed under the commit tag
    .venv/bin/python scripts/recordresources.py      -> .venv/bin/chalice deploy --stage <stage>
    the wiring check (below), then chalice delete + terraform destroy, after which the emulator must hold nothing.

Where the README runs a tool the machine may lack, the rehearsal does the same through boto3 and says so: the
`aws ssm put-parameter` loop, and the image push (an image manifest put under the tag; no Docker). The remote-state
step is left out (local state in the copy). Terraform reaches the emulator through AWS_ENDPOINT_URL and one override
file (s3_use_path_style); Chalice through AWS_ENDPOINT_URL. What moto cannot show (SigV4, real SES, Fargate) is
scripts/smoke.py's job on a real stage.

The wiring check reads what Terraform output, what Chalice deployed (.chalice/deployed/<stage>.json) and the emulator:
every Lambda the state machine names exists, in Terraform's region, with the role the generated config gave Chalice,
a role Terraform made that Lambda may assume; the task definition's image, roles, log group and secrets exist; every
function's environment names resources that exist. Any mismatch fails the rehearsal with one line per problem.
Exit codes: 0 passed (or skipped: no terraform binary), 1 a step or the wiring check failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

from chalicelib.vocabulary import SSM_SECRET_NAMES  # noqa: E402

HOST = "127.0.0.1"
PLUGIN_DIR = Path(os.environ.get("KAGENT_TF_PLUGIN_DIR", "/opt/tf-plugins"))
SECRETS = SSM_SECRET_NAMES  # the SSM parameters a deploy reads (chalicelib.vocabulary)
ACCOUNT = "123456789012"  # moto's
STEP_TIMEOUT_S = 600
# The emulator wiring, the only file the rehearsal adds to the copy: moto serves buckets by path, not by host name.
OVERRIDE_TF = 'provider "aws" {\n  s3_use_path_style = true\n}\n'
# What a user's own deploys leave in the working tree: the copy starts as a fresh clone would.
NOT_COPIED = (".chalice/deployed/", ".chalice/deployments/", "terraform/.terraform/")
# Ways to break the copy on purpose (tests/test_deploy_rehearsal.py): the rehearsal must then fail.
BREAKS: dict[str, str] = {
    "lambda-name": "Terraform names the step Lambdas after another app than the one Chalice deploys",
    "role": "the Lambda role output points at the runner's task role",
    "region": "chalice deploy runs with another AWS_DEFAULT_REGION than Terraform's region",
    "ssm-path": "the task definition reads its secrets from another SSM path than the README writes",
}


class RehearsalError(Exception):
    """A step failed; the message names the step and why."""


# --- the wiring check -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """What the check compares: Terraform's outputs, the stage Chalice was given, and what Chalice deployed."""

    outputs: Mapping[str, Any]  # `terraform output -json` values
    chalice_stage: Mapping[str, Any]  # .chalice/config.json stages[<stage>]
    deployed: Sequence[Mapping[str, Any]]  # .chalice/deployed/<stage>.json resources


def role_arns(value: Any) -> set[str]:
    """Every IAM role ARN in an output value (a string, or maps/lists of them: one role per function still counts)."""
    if isinstance(value, str):
        return {value} if ":iam::" in value and ":role/" in value else set()
    if isinstance(value, Mapping):
        return set().union(*(role_arns(item) for item in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(role_arns(item) for item in value)) if value else set()
    return set()


def chalice_role(stage: Mapping[str, Any], function: str) -> str | None:
    """The role the generated config hands Chalice for one function (per-function, else the stage's)."""
    per_function = stage.get("lambda_functions", {}).get(function, {})
    role = per_function.get("iam_role_arn") or stage.get("iam_role_arn")
    return role if isinstance(role, str) else None


def arn_region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


def state_machine_lambdas(definition: str) -> list[str]:
    """The Lambda ARNs a state machine definition invokes (Task states, directly or through lambda:invoke)."""
    found: list[str] = []

    def walk(states: Mapping[str, Any]) -> None:
        for state in states.values():
            resource = state.get("Resource", "")
            if resource.startswith("arn:") and ":lambda:" in resource and ":function:" in resource:
                found.append(resource)
            function = state.get("Parameters", {}).get("FunctionName")
            if isinstance(function, str) and ":function:" in function:
                found.append(function)
            for branch in state.get("Branches", []):
                walk(branch.get("States", {}))
            if "Iterator" in state:
                walk(state["Iterator"].get("States", {}))

    walk(json.loads(definition).get("States", {}))
    return found


def trusts(role: Mapping[str, Any], service: str) -> bool:
    document = role.get("AssumeRolePolicyDocument", {})
    if isinstance(document, str):
        document = json.loads(document)
    for statement in document.get("Statement", []):
        principal = statement.get("Principal", {}).get("Service", [])
        principals = [principal] if isinstance(principal, str) else principal
        if statement.get("Effect") == "Allow" and service in principals:
            return True
    return False


Clients = Callable[[str], Any]  # service name -> boto3 client in Terraform's region


def check_wiring(deployment: Deployment, client: Clients) -> list[str]:
    """Every mismatch between Terraform, Chalice and the emulator, one line each; empty when the wiring holds."""
    problems: list[str] = []
    problems += check_region(deployment)
    problems += check_functions(deployment, client)
    problems += check_state_machine(deployment, client)
    problems += check_task_definition(deployment, client)
    problems += check_environment(deployment, client)
    return problems


def deployed_functions(deployment: Deployment) -> dict[str, str]:
    return {
        item["name"]: item["lambda_arn"]
        for item in deployment.deployed
        if item.get("resource_type") == "lambda_function"
    }


def check_region(deployment: Deployment) -> list[str]:
    region = deployment.outputs.get("region", "")
    return [
        f"region: Chalice deployed {name} to {arn_region(arn)}, Terraform made the stage in {region}"
        for name, arn in deployed_functions(deployment).items()
        if arn_region(arn) != region
    ]


def check_functions(deployment: Deployment, client: Clients) -> list[str]:
    problems: list[str] = []
    terraform_roles = role_arns(dict(deployment.outputs))
    lam, iam = client("lambda"), client("iam")
    for name, arn in deployed_functions(deployment).items():
        try:
            role = lam.get_function_configuration(FunctionName=arn)["Role"]
        except lam.exceptions.ResourceNotFoundException:
            problems.append(f"lambda: Chalice recorded {arn} but no such function exists in {client_region(lam)}")
            continue
        expected = chalice_role(deployment.chalice_stage, name)
        if role != expected:
            problems.append(f"role: {name} runs as {role}, the generated config gave Chalice {expected}")
        if role not in terraform_roles:
            problems.append(f"role: {name} runs as {role}, which is no role Terraform output")
        try:
            found = iam.get_role(RoleName=role.rsplit("/", 1)[-1])["Role"]
        except iam.exceptions.NoSuchEntityException:
            problems.append(f"role: {role} of {name} does not exist")
            continue
        if not trusts(found, "lambda.amazonaws.com"):
            problems.append(f"role: {role} of {name} cannot be assumed by Lambda")
    return problems


def check_state_machine(deployment: Deployment, client: Clients) -> list[str]:
    sfn, lam = client("stepfunctions"), client("lambda")
    arn = deployment.outputs.get("state_machine_arn", "")
    try:
        definition = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    except Exception as exc:
        return [f"state machine: {arn} cannot be read ({type(exc).__name__})"]
    problems: list[str] = []
    deployed = set(deployed_functions(deployment).values())
    for function in state_machine_lambdas(definition):
        if function not in deployed:
            problems.append(f"lambda name: the state machine invokes {function}, which Chalice did not deploy")
        try:
            lam.get_function_configuration(FunctionName=function)
        except lam.exceptions.ResourceNotFoundException:
            problems.append(f"lambda name: the state machine invokes {function}, which does not exist")
    return problems


def check_task_definition(deployment: Deployment, client: Clients) -> list[str]:
    ecs, ecr, iam, logs, ssm = (client(name) for name in ("ecs", "ecr", "iam", "logs", "ssm"))
    region = deployment.outputs.get("region", "")
    arn = deployment.outputs.get("ecs_task_definition_arn", "")
    try:
        task = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    except Exception as exc:
        return [f"task definition: {arn} cannot be read ({type(exc).__name__})"]
    problems: list[str] = []
    for key in ("executionRoleArn", "taskRoleArn"):
        role = task.get(key, "")
        try:
            found = iam.get_role(RoleName=role.rsplit("/", 1)[-1])["Role"]
            if not trusts(found, "ecs-tasks.amazonaws.com"):
                problems.append(f"task definition: {key} {role} cannot be assumed by ECS tasks")
        except iam.exceptions.NoSuchEntityException:
            problems.append(f"task definition: {key} {role} does not exist")
    container = task["containerDefinitions"][0]
    problems += check_image(container["image"], ecr)
    options = container.get("logConfiguration", {}).get("options", {})
    group = options.get("awslogs-group", "")
    if not logs.describe_log_groups(logGroupNamePrefix=group).get("logGroups"):
        problems.append(f"task definition: log group {group} does not exist")
    if options.get("awslogs-region") != region:
        problems.append(f"region: the runner logs to {options.get('awslogs-region')}, the stage is in {region}")
    for secret in container.get("secrets", []):
        value_from = secret["valueFrom"]
        name = value_from.split(":parameter", 1)[-1]
        if arn_region(value_from) != region:
            problems.append(f"region: secret {secret['name']} is read from {arn_region(value_from)}, not {region}")
        try:
            ssm.get_parameter(Name=name)
        except ssm.exceptions.ParameterNotFound:
            problems.append(f"ssm path: the runner reads {secret['name']} from {name}, which does not exist")
    return problems


def check_image(image: str, ecr: Any) -> list[str]:
    repository_uri, _, tag = image.rpartition(":") if "@" not in image else (image.split("@", maxsplit=1)[0], "", "")
    repository = repository_uri.split("/", 1)[-1]
    try:
        images = ecr.describe_images(repositoryName=repository)["imageDetails"]
    except ecr.exceptions.RepositoryNotFoundException:
        return [f"task definition: image repository {repository} does not exist"]
    if tag and not any(tag in item.get("imageTags", []) for item in images):
        return [f"task definition: image {image} was never pushed"]
    return []


def check_environment(deployment: Deployment, client: Clients) -> list[str]:
    """Every function's environment names resources that exist, and the SSM prefix the runner reads."""
    lam = client("lambda")
    problems: list[str] = []
    for name, arn in deployed_functions(deployment).items():
        try:
            env = lam.get_function_configuration(FunctionName=arn).get("Environment", {}).get("Variables", {})
        except lam.exceptions.ResourceNotFoundException:
            continue  # reported by check_functions
        problems += [f"environment of {name}: {problem}" for problem in environment_problems(env, client)]
    return problems


def environment_problems(env: Mapping[str, str], client: Clients) -> list[str]:
    checks: dict[str, Callable[[str], Any]] = {
        "KAGENT_RUNS_TABLE": lambda v: client("dynamodb").describe_table(TableName=v),
        "KAGENT_ARTIFACTS_BUCKET": lambda v: client("s3").head_bucket(Bucket=v),
        "KAGENT_STATE_MACHINE_ARN": lambda v: client("stepfunctions").describe_state_machine(stateMachineArn=v),
        "KAGENT_TASK_DEFINITION": lambda v: client("ecs").describe_task_definition(taskDefinition=v),
        "KAGENT_SUBNETS": lambda v: client("ec2").describe_subnets(SubnetIds=v.split(",")),
        "KAGENT_SECURITY_GROUP": lambda v: client("ec2").describe_security_groups(GroupIds=[v]),
        "KAGENT_SSM_PREFIX": lambda v: [client("ssm").get_parameter(Name=f"{v}/{secret}") for secret in SECRETS],
    }
    problems = []
    for key, check in checks.items():
        value = env.get(key, "")
        if not value:
            problems.append(f"{key} is empty")
            continue
        try:
            check(value)
        except Exception as exc:
            label = "ssm path" if key == "KAGENT_SSM_PREFIX" else key
            problems.append(f"{label}: {key}={value} names nothing that exists ({type(exc).__name__})")
    clusters = client("ecs").describe_clusters(clusters=[env.get("KAGENT_ECS_CLUSTER", "")]).get("clusters", [])
    if not any(cluster.get("status") == "ACTIVE" for cluster in clusters):
        problems.append(f"KAGENT_ECS_CLUSTER={env.get('KAGENT_ECS_CLUSTER')} names no active cluster")
    if env.get("KAGENT_SES_SENDER") not in client("ses").list_identities().get("Identities", []):
        problems.append(f"KAGENT_SES_SENDER={env.get('KAGENT_SES_SENDER')} is no SES identity")
    return problems


def client_region(client: Any) -> str:
    return str(client.meta.region_name)


def leftovers(client: Clients, stage: str) -> list[str]:
    """What chalice delete + terraform destroy left behind (the emulator started empty)."""
    checks: dict[str, Callable[[], list[str]]] = {
        "Lambda functions": lambda: [f["FunctionName"] for f in client("lambda").list_functions()["Functions"]],
        "REST APIs": lambda: [a["name"] for a in client("apigateway").get_rest_apis()["items"]],
        "IAM roles": lambda: [r["RoleName"] for r in client("iam").list_roles()["Roles"]],
        "tables": lambda: client("dynamodb").list_tables()["TableNames"],
        "buckets": lambda: [b["Name"] for b in client("s3").list_buckets()["Buckets"]],
        "repositories": lambda: [r["repositoryName"] for r in client("ecr").describe_repositories()["repositories"]],
        "active clusters": lambda: [
            c["clusterName"]
            for c in client("ecs").describe_clusters(clusters=client("ecs").list_clusters()["clusterArns"])["clusters"]
            if c["status"] == "ACTIVE"
        ],
        "state machines": lambda: [m["name"] for m in client("stepfunctions").list_state_machines()["stateMachines"]],
        "log groups": lambda: [g["logGroupName"] for g in client("logs").describe_log_groups()["logGroups"]],
        "event rules": lambda: [r["Name"] for r in client("events").list_rules()["Rules"]],
        "SNS topics": lambda: [t["TopicArn"] for t in client("sns").list_topics()["Topics"]],
        "alarms": lambda: [a["AlarmName"] for a in client("cloudwatch").describe_alarms()["MetricAlarms"]],
        "SES identities": lambda: client("ses").list_identities()["Identities"],
        "SSM parameters": lambda: [p["Name"] for p in client("ssm").describe_parameters()["Parameters"]],
        "security groups": lambda: [
            g["GroupName"]
            for g in client("ec2").describe_security_groups()["SecurityGroups"]
            if g["GroupName"] != "default"
        ],
    }
    return [f"{kind} left: {', '.join(sorted(found))}" for kind, check in checks.items() if (found := check())]


# --- the rehearsal ----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def emulator() -> Iterator[str]:
    """A moto server on loopback, with the additions; its endpoint URL."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - lazy: heavy; only the rehearsal needs it

    from scripts import moto_additions  # noqa: PLC0415

    moto_additions.apply()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.stop()


def project_files(repo: Path) -> list[str]:
    """The files a fresh clone of the working tree holds: tracked and new, never ignored ones (state, venvs)."""
    done = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RehearsalError(f"git ls-files failed in {repo}: the rehearsal copies a git working tree")
    names = done.stdout.decode().split("\0")
    return [name for name in names if name and (repo / name).is_file() and not name.startswith(NOT_COPIED)]


def make_copy(repo: Path, into: Path) -> Path:
    copy = into / "project"
    for name in project_files(repo):
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)
    (copy / ".venv").symlink_to((repo / ".venv").resolve())  # the README's .venv/bin/python and .venv/bin/chalice
    (copy / "terraform" / "rehearsal_override.tf").write_text(OVERRIDE_TF, encoding="utf-8")
    return copy


def apply_break(copy: Path, name: str, env: dict[str, str], region: str) -> None:
    """Break the copy on purpose (the proof that the rehearsal notices)."""
    if name == "lambda-name":
        tfvars = copy / "terraform" / "terraform.tfvars"
        tfvars.write_text(tfvars.read_text(encoding="utf-8") + 'chalice_app_name = "kagentx"\n', encoding="utf-8")
    elif name == "role":
        edit(
            copy / "terraform" / "outputs.tf",
            "value       = aws_iam_role.lambda.arn",
            "value = aws_iam_role.runner_task.arn",
        )
    elif name == "region":
        env["AWS_DEFAULT_REGION"] = "us-west-2" if region != "us-west-2" else "us-east-1"
        env["KAGENT_REHEARSAL_TF_REGION"] = region
    elif name == "ssm-path":
        edit(copy / "terraform" / "naming.tf", "parameter${local.ssm_parameter_prefix}/", "parameter/elsewhere/")
    else:
        raise RehearsalError(f"unknown break {name!r}: one of {', '.join(BREAKS)}")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise RehearsalError(
            f"cannot break {path.name}: {old!r} is not in it any more (update scripts/deploy_rehearsal.py)"
        )
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@dataclass
class Runner:
    copy: Path
    env: dict[str, str]
    log: Callable[[str], None]

    def sh(self, command: str, step: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        """One README command line, run by bash in the copy."""
        self.log(f"$ {command}")
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.copy,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )
        if done.returncode not in ok:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RehearsalError(f"{step}: `{command}` exited {done.returncode}\n{tail}")
        return done


def rehearsal_env(endpoint: str, region: str, stage: str, tag: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "TF_")) and key not in {"KAGENT_STAGE"}
    }
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "STAGE": stage,
            "TAG": tag,
            "TF_IN_AUTOMATION": "1",
            "TF_CLI_CONFIG_FILE": os.devnull,
            "TF_CLI_ARGS_apply": "-auto-approve -input=false -no-color",
            "TF_CLI_ARGS_destroy": "-auto-approve -input=false -no-color",
            "TF_CLI_ARGS_plan": "-input=false -no-color",
            "TF_CLI_ARGS_init": "-input=false -no-color" + (f" -plugin-dir={PLUGIN_DIR}" if has_mirror() else ""),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    return env


# The README's commands, in its order ("Deploy to AWS"); tests/test_deploy_rehearsal.py checks each is in the README.
TF_VARS = "-var stage=$STAGE -var region=$AWS_DEFAULT_REGION -var runner_image_tag=$TAG"
README_COMMANDS = {
    "tfvars": "cp terraform/terraform.tfvars.example terraform/terraform.tfvars",
    "init": "terraform -chdir=terraform init",
    "apply": f"terraform -chdir=terraform apply {TF_VARS}",
    "drift": f"terraform -chdir=terraform plan -detailed-exitcode {TF_VARS}",
    "prefix": "PREFIX=$(terraform -chdir=terraform output -raw ssm_parameter_prefix)",
    "ecr": "ECR=$(terraform -chdir=terraform output -raw ecr_repository_url)",
    "record": ".venv/bin/python scripts/recordresources.py",
    "deploy": ".venv/bin/chalice deploy --stage $STAGE",
    "throttle": ".venv/bin/python scripts/api_throttling.py --stage $STAGE",
    "delete": ".venv/bin/chalice delete --stage $STAGE",
    "empty": f"terraform -chdir=terraform apply {TF_VARS} -var allow_destroy_with_data=true",
    "destroy": f"terraform -chdir=terraform destroy {TF_VARS} -var allow_destroy_with_data=true",
    "forget": ".venv/bin/python scripts/recordresources.py --forget $STAGE",
}


def rehearse(stage: str, region: str, workdir: Path, broken: str | None, log: Callable[[str], None]) -> list[str]:
    """The whole rehearsal; returns the wiring and teardown problems (empty = passed). Steps raise RehearsalError."""
    import boto3  # noqa: PLC0415 - lazy: boto3 only when the rehearsal runs

    tag = "rehearsal0001"
    with emulator() as endpoint:
        copy = make_copy(REPO, workdir)
        env = rehearsal_env(endpoint, region, stage, tag)
        # The copy shares this checkout's .venv, whose editable install (make install) points at this checkout: the
        # copy's own packages come first, as a clone's do in its own .venv.
        env["PYTHONPATH"] = str(copy)
        run = Runner(copy, env, log)
        run.sh(README_COMMANDS["tfvars"], "terraform.tfvars")
        if broken:
            log(f"breaking on purpose: {BREAKS[broken]}")
            apply_break(copy, broken, env, region)
        tf_region = env.pop("KAGENT_REHEARSAL_TF_REGION", region)
        tf_env = {**env, "AWS_DEFAULT_REGION": tf_region}
        tf = Runner(copy, tf_env, log)

        def client(service: str) -> Any:
            return boto3.client(
                service,
                region_name=tf_region,
                endpoint_url=endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
            )

        started = time.monotonic()
        tf.sh(README_COMMANDS["init"], "terraform init")
        tf.sh(README_COMMANDS["apply"], "terraform apply")
        log(f"  applied in {time.monotonic() - started:.0f} s")
        tf.sh(README_COMMANDS["drift"], "drift check (a second plan must be empty)", ok=(0,))
        prefix = tf.sh(f"{README_COMMANDS['prefix']} && echo $PREFIX", "ssm prefix").stdout.strip()
        log(f"  (README: aws ssm put-parameter loop) boto3 puts {', '.join(SECRETS)} under {prefix}")
        for secret in SECRETS:
            client("ssm").put_parameter(
                Name=f"{prefix}/{secret}", Value="rehearsal", Type="SecureString", Overwrite=True
            )
        repository = tf.sh(f"{README_COMMANDS['ecr']} && echo $ECR", "ecr url").stdout.strip().split("/", 1)[-1]
        log(f"  (README: docker buildx ... --push) boto3 puts an image manifest as {repository}:{tag}")
        push_image(client("ecr"), repository, tag)
        run.sh(README_COMMANDS["record"], "recordresources.py")
        run.sh(README_COMMANDS["deploy"], "chalice deploy")
        run.sh(README_COMMANDS["throttle"], "api_throttling.py")
        deployment = read_deployment(copy, stage, tf_env)
        problems = check_wiring(deployment, client)
        if problems:
            return problems
        log("  wiring holds: the Lambdas exist with their roles; the task definition and environment resolve")
        run.sh(README_COMMANDS["delete"], "chalice delete")
        tf.sh(README_COMMANDS["empty"], "terraform apply allow_destroy_with_data")
        tf.sh(README_COMMANDS["destroy"], "terraform destroy")
        log("  (README: aws ssm delete-parameter loop) boto3 deletes the three parameters")
        client("ssm").delete_parameters(Names=[f"{prefix}/{secret}" for secret in SECRETS])
        run.sh(README_COMMANDS["forget"], "recordresources.py --forget")
        return leftovers(client, stage)


def push_image(ecr: Any, repository: str, tag: str) -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:" + "0" * 64,
        },
        "layers": [],
    }
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)


def read_deployment(copy: Path, stage: str, env: Mapping[str, str]) -> Deployment:
    outputs_text = subprocess.run(
        ["terraform", "-chdir=terraform", "output", "-json"],
        cwd=copy,
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    outputs = {name: entry["value"] for name, entry in json.loads(outputs_text).items()}
    config = json.loads((copy / ".chalice" / "config.json").read_text(encoding="utf-8"))
    deployed = json.loads((copy / ".chalice" / "deployed" / f"{stage}.json").read_text(encoding="utf-8"))
    return Deployment(outputs=outputs, chalice_stage=config["stages"][stage], deployed=deployed["resources"])


def has_mirror() -> bool:
    return (PLUGIN_DIR / "registry.terraform.io").is_dir()


def registry_unreachable(failure: str) -> bool:
    """terraform init failed for want of the provider (no mirror here, no registry reachable): an absence, not a bug."""
    lowered = failure.lower()
    return (
        not has_mirror()
        and failure.startswith("terraform init")
        and any(sign in lowered for sign in ("failed to query", "could not connect", "registry.terraform.io"))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rehearse the README's deploy against a local AWS emulator.")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--region", default="eu-west-1")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway copy (its path is printed)")
    parser.add_argument("--break", dest="broken", choices=sorted(BREAKS), help="break one name on purpose: must fail")
    args = parser.parse_args(argv)
    if shutil.which("terraform") is None:
        print("deploy-rehearsal: skipped: no terraform binary on PATH (install Terraform >= 1.7 to rehearse)")
        return 0
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="kagent-rehearsal-"))
    try:
        problems = rehearse(args.stage, args.region, workdir, args.broken, lambda line: print(line, flush=True))
    except RehearsalError as exc:
        if registry_unreachable(str(exc)):
            print(f"deploy-rehearsal: skipped: no provider mirror at {PLUGIN_DIR} and the registry is unreachable")
            return 0
        print(f"deploy-rehearsal: FAILED at {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"the copy is kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for problem in problems:
        print(f"deploy-rehearsal: {problem}", file=sys.stderr)
    if problems:
        print(f"deploy-rehearsal: FAILED ({len(problems)} problems)", file=sys.stderr)
        return 1
    print(f"deploy-rehearsal: passed in {time.monotonic() - started:.0f} s (stage {args.stage}, region {args.region})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
