"""Start a run's workflow: a Step Functions execution named by run_id, or the local executor (KAGENT_EXECUTOR=local,
chalicelib.local_executor; chalicelib.wiring picks one).

The execution input is the contract between the app, statemachine.asl.json and the local executor:
`{"run_id", "url", "email", "slug", "network": {"AwsvpcConfiguration": {"Subnets", "SecurityGroups", ...}}}`.
`network` goes verbatim into RunTraining's `NetworkConfiguration`, and Step Functions wants every key of a service
integration's Parameters in PascalCase, nested ones included (the ECS API's own camelCase is refused there).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from chalicelib.config import Settings
from chalicelib.runs import Run
from chalicelib.vocabulary import execution_arn

# Starts a workflow for the run with this execution input; returns the execution's id (an ARN for Step Functions).
Executor = Callable[[Run, dict[str, Any]], str]


class OrchestrationError(RuntimeError):
    """The workflow could not be started (the message says why)."""


def execution_input(run: Run, settings: Settings) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "url": run.url,
        "email": run.email,
        "slug": run.slug,
        "network": {
            "AwsvpcConfiguration": {
                "Subnets": list(settings.subnets),
                "SecurityGroups": [settings.security_group] if settings.security_group else [],
                "AssignPublicIp": "ENABLED",
            }
        },
    }


def local_state_machine_name(settings: Settings) -> str:
    """The state machine the local executor plays when no real one is configured (Terraform's name, plus -runs)."""
    return f"{settings.app_name}-{settings.stage}-runs"


def is_own_state_machine(machine_arn: object, settings: Settings) -> bool:
    """Whether an execution of `machine_arn` is one of this stage's runs: the configured state machine, or, with the
    local executor and none configured, the one the local executor plays. Never a missing or foreign ARN."""
    if not isinstance(machine_arn, str) or not machine_arn:
        return False
    if settings.state_machine_arn:
        return machine_arn == settings.state_machine_arn
    if settings.executor != "local":
        return False
    return machine_arn.startswith("arn:aws:states:") and machine_arn.endswith(
        f":stateMachine:{local_state_machine_name(settings)}"
    )


def stepfunctions_executor(sfn_client: Any, state_machine_arn: str) -> Executor:
    """Start the execution named by run_id; a second start of the same run returns the same execution."""
    if not state_machine_arn:
        raise OrchestrationError("KAGENT_STATE_MACHINE_ARN is not set: the app cannot start the workflow")

    def start(run: Run, payload: dict[str, Any]) -> str:
        try:
            answer = sfn_client.start_execution(
                stateMachineArn=state_machine_arn, name=run.run_id, input=json.dumps(payload, sort_keys=True)
            )
        except sfn_client.exceptions.ExecutionAlreadyExists:
            return execution_arn(state_machine_arn, run.run_id)
        return str(answer["executionArn"])

    return start


# DescribeExecution's answer for an execution ARN ({"status", "error", "cause", ...}), or None when it does not exist.
ExecutionDescriber = Callable[[str], "dict[str, Any] | None"]


def describe_execution(sfn_client: Any, arn: str) -> dict[str, Any] | None:
    try:
        return dict(sfn_client.describe_execution(executionArn=arn))
    except sfn_client.exceptions.ExecutionDoesNotExist:
        return None


def start(run: Run, settings: Settings, executor: Executor) -> str:
    """Start `run`'s workflow with the execution input built from `settings`; returns the execution id. The executor
    (Step Functions or the local one) is chosen by chalicelib.wiring."""
    return executor(run, execution_input(run, settings))


# StopExecution for DELETE /runs/{id}: the execution's ARN; an execution that does not exist (or ended) is no error.
ExecutionStopper = Callable[[str], None]


def stop_execution(sfn_client: Any, arn: str, cause: str) -> None:
    # An execution that never started, or is already gone, is no error: the sweeper gives the slot back either way.
    with contextlib.suppress(sfn_client.exceptions.ExecutionDoesNotExist):
        sfn_client.stop_execution(executionArn=arn, error="Cancelled", cause=cause)
