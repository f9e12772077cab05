"""Starting a run's workflow: the execution input, Step Functions idempotency, and the local-executor seam."""

from __future__ import annotations

import json

import pytest
from moto import mock_aws

from chalicelib import orchestrator, wiring
from chalicelib.config import Settings
from chalicelib.runs import Run, Status
from tests.moto_env import cached_client, create_state_machine, fake_credentials

RUN = Run(
    run_id="0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f",
    url="https://www.kaggle.com/competitions/titanic",
    slug="titanic",
    email="bob@example.com",
    status=Status.QUEUED,
)
SETTINGS = Settings(subnets=("subnet-1", "subnet-2"), security_group="sg-1")


def test_execution_input_carries_the_run_and_a_pascal_case_network():
    assert orchestrator.execution_input(RUN, SETTINGS) == {
        "run_id": RUN.run_id,
        "url": RUN.url,
        "email": RUN.email,
        "slug": "titanic",
        "network": {
            "AwsvpcConfiguration": {
                "Subnets": ["subnet-1", "subnet-2"],
                "SecurityGroups": ["sg-1"],
                "AssignPublicIp": "ENABLED",
            }
        },
    }


@pytest.mark.aws
def test_starting_the_same_run_twice_names_one_execution(monkeypatch):
    fake_credentials(monkeypatch)
    with mock_aws():
        machine = create_state_machine()
        sfn = cached_client("stepfunctions")
        executor = orchestrator.stepfunctions_executor(sfn, machine)
        first = orchestrator.start(RUN, SETTINGS, executor)
        second = orchestrator.start(RUN, SETTINGS, executor)
        assert first == second == orchestrator.execution_arn(machine, RUN.run_id)
        [execution] = sfn.list_executions(stateMachineArn=machine)["executions"]
        assert execution["name"] == RUN.run_id
        started = json.loads(sfn.describe_execution(executionArn=first)["input"])
        assert started["network"]["AwsvpcConfiguration"]["Subnets"] == ["subnet-1", "subnet-2"]


def test_step_functions_needs_a_state_machine_arn():
    with pytest.raises(orchestrator.OrchestrationError, match="KAGENT_STATE_MACHINE_ARN"):
        orchestrator.stepfunctions_executor(object(), "")


def test_the_local_executor_is_chosen_by_settings_and_called_with_the_execution_input():
    calls = []
    steps = {"plan": lambda event, context: event}

    def local_start(run, payload, settings, handlers):
        calls.append((run.run_id, payload["slug"], settings.executor, handlers))
        return "local:" + run.run_id

    executor = wiring.executor(
        Settings(executor="local"), sfn_client=lambda: pytest.fail("AWS"), steps=lambda: steps, local_start=local_start
    )
    assert orchestrator.start(RUN, Settings(executor="local"), executor) == "local:" + RUN.run_id
    assert calls == [(RUN.run_id, "titanic", "local", steps)]


def test_without_the_apps_step_handlers_the_local_executor_refuses_to_start_saying_why(monkeypatch):
    monkeypatch.setattr(wiring, "_steps", [])  # no handler of app.py has run in this process
    executor = wiring.executor(Settings(executor="local"), sfn_client=lambda: pytest.fail("AWS"))
    with pytest.raises(orchestrator.OrchestrationError, match=r"through app\.py"):
        orchestrator.start(RUN, Settings(executor="local"), executor)


def test_a_missing_state_machine_arn_fails_the_start_not_the_wiring():
    executor = wiring.executor(Settings(executor="stepfunctions"), sfn_client=object)
    with pytest.raises(orchestrator.OrchestrationError, match="KAGENT_STATE_MACHINE_ARN"):
        orchestrator.start(RUN, SETTINGS, executor)
