"""Run the real statemachine.asl.json in moto's Step Functions interpreter, in-process.

The rendered definition runs unchanged. Around it, the harness plays the parts AWS would:

- Lambda tasks: moto's Lambda without Docker echoes its input; here each invocation is dispatched by function name
  (`kagent-<stage>-<name>`) to a Python callable — the real step handlers of app.py, or a fake — and a raised exception
  becomes a Lambda function error (`errorType` = the class name), as on AWS.
- The ECS task: when RunTraining starts a task, `runner(env)` plays the container (env = the container overrides:
  RUN_ID, URL, EMAIL) and returns its exit code; the task is then stopped with that exit code, so `.sync` completes.
- Workaround for getmoto/moto#10076 (open): moto's interpreter hands the PascalCase ASL Parameters (`Cluster`,
  `NetworkConfiguration.AwsvpcConfiguration.Subnets`, ...) to boto3 unchanged and leaves boto3's camelCase answers as
  they are; LocalStack, where the interpreter comes from, converts both ways using the botocore shapes. The two
  `_normalise_*` methods below restore that conversion for the ECS integration only. Remove them when moto fixes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto import mock_aws

from chalicelib.statemachine import load_definition, placeholder_values, render
from tests.moto_env import REGION, cached_client

ACCOUNT = "123456789012"
APP = "kagent"
STAGE = "test"
CLUSTER = "kagent-test-runner"
TASK_FAMILY = "kagent-test-runner"
MOTO_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}

Handler = Callable[[dict[str, Any]], Any]
Runner = Callable[[dict[str, str]], int]


@dataclass
class Harness:
    lambdas: dict[str, Handler]
    runner: Runner
    state_machine_arn: str = ""
    invocations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    task_envs: list[dict[str, str]] = field(default_factory=list)

    def start(self, name: str, execution_input: Mapping[str, Any]) -> str:
        sfn = cached_client("stepfunctions")
        answer = sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(execution_input)
        )
        return str(answer["executionArn"])

    def wait(self, execution_arn: str, timeout_s: float = 60.0) -> dict[str, Any]:
        sfn = cached_client("stepfunctions")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return dict(described)
            time.sleep(0.05)
        raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout_s} s")

    def states_entered(self, execution_arn: str) -> list[str]:
        sfn = cached_client("stepfunctions")
        events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]

    # -- the parts AWS plays -------------------------------------------------------------------------------------------

    def invoke(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        name = function_name.rsplit(":", 1)[-1].removeprefix(f"{APP}-{STAGE}-")
        event = json.loads(body) if body else {}
        self.invocations.append((name, event))
        try:
            return json.dumps(self.lambdas[name](event)).encode()
        except Exception as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": []}
            return json.dumps(payload).encode()

    def run_container(self, ecs_backend: Any, cluster: str, task: Any) -> None:
        overrides = task.overrides.get("containerOverrides") or [{}]
        env = {item["name"]: item["value"] for item in overrides[0].get("environment") or []}
        self.task_envs.append(env)
        exit_code = self.runner(env)
        for container in task.containers:
            container.exitCode = exit_code
        ecs_backend.stop_task(cluster, task.task_arn, f"Essential container in task exited (exit code {exit_code})")


def _operation(service: Any, boto_service_name: str | None, service_action_name: str | None) -> Any:
    import botocore.session  # noqa: PLC0415

    model = botocore.session.get_session().get_service_model(service._get_boto_service_name(boto_service_name))
    action = service._get_boto_service_action(service_action_name)
    name = next(n for n in model.operation_names if service._get_boto_service_action(n) == action)
    return model.operation_model(name)


def _normalise_parameters(self: Any, parameters: dict, boto_service_name: Any = None, service_action_name: Any = None):
    shape = _operation(self, boto_service_name, service_action_name).input_shape
    if shape is not None:
        self._to_boto_request(parameters, shape)


def _normalise_response(self: Any, response: Any, boto_service_name: Any = None, service_action_name: Any = None):
    shape = _operation(self, boto_service_name, service_action_name).output_shape
    if shape is not None:
        self._from_boto_response(response, shape)


@contextmanager
def _patched(target: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, replacement)
    try:
        yield
    finally:
        setattr(target, name, original)


def _create_ecs(ecs: Any) -> tuple[str, str]:
    cluster = ecs.create_cluster(clusterName=CLUSTER)["cluster"]["clusterArn"]
    task_definition = ecs.register_task_definition(
        family=TASK_FAMILY,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="4096",
        containerDefinitions=[
            {"name": "runner", "image": "kagent-runner:test", "essential": True, "cpu": 1024, "memory": 4096}
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    return cluster, task_definition


def network(ec2: Any) -> dict[str, Any]:
    """A VPC, subnet and security group in moto, as the execution input's `network` (ECS needs real ones)."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto's ECS task ENI wants a DNS name
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="kagent-runner", Description="runner", VpcId=vpc)["GroupId"]
    return {"AwsvpcConfiguration": {"Subnets": [subnet], "SecurityGroups": [group], "AssignPublicIp": "ENABLED"}}


def rendered_definition(cluster_arn: str, task_definition_arn: str) -> str:
    values = placeholder_values(
        REGION, ACCOUNT, APP, STAGE, ecs_cluster_arn=cluster_arn, task_definition_arn=task_definition_arn
    )
    return render(load_definition(), values)


@contextmanager
def state_machine(lambdas: dict[str, Handler], runner: Runner) -> Iterator[Harness]:
    """Inside: moto (executing state machines), the real definition deployed, Lambdas and the runner dispatched."""
    from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: PLC0415
    from moto.ecs.models import EC2ContainerServiceBackend  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (  # noqa: PLC0415
        StateTaskServiceEcs,
    )

    harness = Harness(lambdas=lambdas, runner=runner)
    original_run_task = EC2ContainerServiceBackend.run_task

    def invoke(self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any) -> bytes:
        return harness.invoke(function_name, body, response_headers)

    def run_task(self: Any, cluster_str: str, *args: Any, **kwargs: Any) -> Any:
        tasks = original_run_task(self, cluster_str, *args, **kwargs)
        for task in tasks:
            harness.run_container(self, cluster_str, task)
        return tasks

    with (
        mock_aws(config=MOTO_CONFIG),
        _patched(LambdaSimpleBackend, "invoke", invoke),
        _patched(EC2ContainerServiceBackend, "run_task", run_task),
        _patched(StateTaskServiceEcs, "_normalise_parameters", _normalise_parameters),
        _patched(StateTaskServiceEcs, "_normalise_response", _normalise_response),
    ):
        cluster, task_definition = _create_ecs(cached_client("ecs"))
        sfn = cached_client("stepfunctions")
        harness.state_machine_arn = sfn.create_state_machine(
            name=f"{APP}-{STAGE}-runs",
            definition=rendered_definition(cluster, task_definition),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/{APP}-{STAGE}-state-machine",
        )["stateMachineArn"]
        yield harness
