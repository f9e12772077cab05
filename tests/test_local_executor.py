"""The local executor follows a state machine definition: paths, Parameters, Retry, Catch, Fail — and the real one."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

import app as app_module
from chalicelib import asl
from chalicelib import local_executor as lx
from chalicelib.config import Settings

LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:"


def fake_dispatch(handlers: dict[str, Callable[[Any], Any]]) -> tuple[asl.TaskDispatch, list[tuple[str, Any]]]:
    calls: list[tuple[str, Any]] = []

    def dispatch(resource: str, parameters: Any, timeout_s: float | None) -> Any:
        calls.append((resource, parameters))
        return handlers[resource](parameters)

    return dispatch, calls


def fails(error: str, cause: str = "") -> Callable[[Any], Any]:
    def handler(_: Any) -> Any:
        raise asl.StatesError(error, cause)

    return handler


def test_result_path_puts_the_task_result_beside_the_input() -> None:
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Task", "Resource": "a", "ResultPath": "$.out.a", "End": True}},
    }
    dispatch, calls = fake_dispatch({"a": lambda event: {"n": event["x"] + 1}})
    execution = asl.run_definition(definition, {"x": 1}, dispatch)
    assert execution.status == "SUCCEEDED"
    assert execution.output == {"x": 1, "out": {"a": {"n": 2}}}
    assert calls == [("a", {"x": 1})]


def test_result_path_null_keeps_the_input_and_default_replaces_it() -> None:
    definition = {
        "StartAt": "Keep",
        "States": {
            "Keep": {"Type": "Task", "Resource": "a", "ResultPath": None, "Next": "Replace"},
            "Replace": {"Type": "Task", "Resource": "a", "End": True},
        },
    }
    dispatch, _ = fake_dispatch({"a": lambda event: "result"})
    assert asl.run_definition(definition, {"x": 1}, dispatch).output == "result"
    definition["States"]["Keep"]["End"] = True
    del definition["States"]["Keep"]["Next"]
    assert asl.run_definition(definition, {"x": 1}, dispatch).output == {"x": 1}


def test_parameters_take_dollar_keys_from_the_input_at_any_depth() -> None:
    definition = {
        "StartAt": "A",
        "States": {
            "A": {
                "Type": "Task",
                "Resource": "a",
                "InputPath": "$.inner",
                "Parameters": {
                    "Literal": "L",
                    "Id.$": "$.id",
                    "List": [{"Name": "RUN_ID", "Value.$": "$.id"}, {"Name": "FIRST", "Value.$": "$.items[0]"}],
                },
                "ResultPath": "$.got",
                "OutputPath": "$.got",
                "End": True,
            }
        },
    }
    dispatch, calls = fake_dispatch({"a": lambda event: event})
    execution = asl.run_definition(definition, {"inner": {"id": "r1", "items": ["p", "q"]}}, dispatch)
    pairs = [{"Name": "RUN_ID", "Value": "r1"}, {"Name": "FIRST", "Value": "p"}]
    expected = {"Literal": "L", "Id": "r1", "List": pairs}
    assert calls == [("a", expected)]
    assert execution.output == expected


def test_a_missing_path_fails_the_execution_and_is_not_caught() -> None:
    definition = {
        "StartAt": "A",
        "States": {
            "A": {
                "Type": "Task",
                "Resource": "a",
                "Parameters": {"x.$": "$.missing"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "B"}],
                "End": True,
            },
            "B": {"Type": "Succeed"},
        },
    }
    dispatch, calls = fake_dispatch({"a": lambda event: event})
    execution = asl.run_definition(definition, {}, dispatch)
    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")
    assert "$.missing" in execution.cause
    assert calls == []


def test_catch_hands_error_and_cause_to_the_next_state_at_its_result_path() -> None:
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": "work",
                "Catch": [
                    {"ErrorEquals": ["Other"], "Next": "Wrong"},
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handle"},
                ],
                "Next": "Wrong",
            },
            "Handle": {"Type": "Task", "Resource": "handle", "ResultPath": "$.outcome", "Next": "Failed"},
            "Wrong": {"Type": "Succeed"},
            "Failed": {"Type": "Fail", "Error": "RunFailed", "Cause": "see the run"},
        },
    }
    dispatch, calls = fake_dispatch({"work": fails("TrainingFailed", "no submission"), "handle": lambda e: "handled"})
    execution = asl.run_definition(definition, {"run_id": "r1"}, dispatch)
    assert calls[1] == ("handle", {"run_id": "r1", "error": {"Error": "TrainingFailed", "Cause": "no submission"}})
    assert (execution.status, execution.error, execution.cause) == ("FAILED", "RunFailed", "see the run")
    assert execution.visited == ["Work", "Handle", "Failed"]


def test_an_uncaught_task_error_fails_the_execution_with_that_error() -> None:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "a", "End": True}}}
    dispatch, _ = fake_dispatch({"a": fails("Boom", "it broke")})
    execution = asl.run_definition(definition, {}, dispatch)
    assert (execution.status, execution.error, execution.cause) == ("FAILED", "Boom", "it broke")


def test_retry_waits_with_backoff_then_succeeds_or_gives_up_after_max_attempts() -> None:
    retry = [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 2, "MaxAttempts": 2, "BackoffRate": 3.0}]
    definition = {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "a", "Retry": retry, "End": True}}}
    attempts: list[int] = []

    def flaky_until(succeed_on: int) -> Callable[[Any], Any]:
        def handler(_: Any) -> Any:
            attempts.append(1)
            if len(attempts) < succeed_on:
                raise asl.StatesError("Flaky")
            return "ok"

        return handler

    slept: list[float] = []
    dispatch, _ = fake_dispatch({"a": flaky_until(3)})
    execution = asl.run_definition(definition, {}, dispatch, sleep=slept.append)
    assert (execution.status, execution.output, slept) == ("SUCCEEDED", "ok", [2.0, 6.0])

    attempts.clear()
    slept.clear()
    dispatch, _ = fake_dispatch({"a": flaky_until(10)})
    execution = asl.run_definition(definition, {}, dispatch, sleep=slept.append)
    assert (execution.status, execution.error, len(attempts)) == ("FAILED", "Flaky", 3)


def test_full_jitter_scales_the_delay_and_task_failed_does_not_match_timeouts() -> None:
    assert asl._retry_delay({"IntervalSeconds": 4, "JitterStrategy": "FULL"}, 1, lambda: 0.25) == 2.0
    assert asl._retry_delay({"IntervalSeconds": 4, "MaxDelaySeconds": 5}, 3, lambda: 1.0) == 5.0
    assert asl._matches("Anything", ["States.TaskFailed"])
    assert not asl._matches("States.Timeout", ["States.TaskFailed"])
    assert asl._matches("States.Timeout", ["States.ALL"])


def test_an_execution_past_its_timeout_ends_timed_out() -> None:
    definition = {
        "StartAt": "A",
        "TimeoutSeconds": 10,
        "States": {"A": {"Type": "Task", "Resource": "a", "Next": "B"}, "B": {"Type": "Succeed"}},
    }
    now = [0.0]

    def slow(_: Any) -> Any:
        now[0] += 11
        return {}

    dispatch, _ = fake_dispatch({"a": slow})
    execution = asl.run_definition(definition, {}, dispatch, clock=lambda: now[0])
    assert (execution.status, execution.error, execution.visited) == ("TIMED_OUT", "States.Timeout", ["A"])


@pytest.mark.parametrize(
    ("state", "complaint"),
    [
        ({"Type": "Choice", "Choices": [], "Default": "A"}, "Type 'Choice'.*branch in a step handler instead"),
        ({"Type": "Map", "ItemProcessor": {}, "End": True}, "state A: Type 'Map'.*loop in a step handler"),
        ({"Type": "Parallel", "Branches": [], "End": True}, "Type 'Parallel'"),
        ({"Type": "Wait", "Seconds": 1, "End": True}, "Type 'Wait'"),
        ({"Type": "Sleep", "End": True}, "Type 'Sleep' is not followed locally"),
        ({"Type": "Task", "Resource": "a", "ResultSelector": {}, "Credentials": {}, "End": True}, "Credentials"),
        ({"Type": "Task", "Resource": "a", "Next": "Nowhere"}, "'Nowhere' is not a state"),
        ({"Type": "Task", "Resource": "a"}, "needs Next or End"),
    ],
)
def test_a_definition_using_what_is_not_followed_locally_is_refused_up_front(
    state: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(asl.DefinitionError, match=complaint):
        asl.check_definition({"StartAt": "A", "States": {"A": state}})


def test_intrinsic_functions_and_the_context_object_are_refused() -> None:
    with pytest.raises(asl.DefinitionError, match="reference paths"):
        asl.apply_template({"x.$": "States.Format('{}', $.a)"}, {"a": 1})
    with pytest.raises(asl.DefinitionError, match="context object"):
        asl.get_path({}, "$$.Execution.Id")


def test_a_lambda_exception_becomes_its_class_name_with_lambdas_json_cause() -> None:
    class SubmissionInvalid(Exception):
        pass

    def handler(event: Any, context: Any) -> Any:
        raise SubmissionInvalid("submission.csv failed validation: 3 rows missing")

    with pytest.raises(asl.StatesError) as raised:
        lx.lambda_dispatch(handler)({"run_id": "r1"})
    assert raised.value.error == "SubmissionInvalid"
    cause = json.loads(raised.value.cause)
    assert cause["errorMessage"] == "submission.csv failed validation: 3 rows missing"
    assert cause["errorType"] == "SubmissionInvalid"


def test_lambda_results_go_through_json_like_a_real_invocation() -> None:
    invoke = lx.lambda_dispatch(lambda event, context: {"echo": event, "tuple": (1, 2)})
    assert invoke({"a": [1]}) == {"echo": {"a": [1]}, "tuple": [1, 2]}


# -- the real definition -----------------------------------------------------------------------------------------------


def local_settings() -> Settings:
    return Settings(stage="local", app_name="kagent", executor="local")


def test_every_lambda_the_real_definition_invokes_is_one_of_the_apps_handlers() -> None:
    definition = lx.rendered_definition(local_settings())
    handlers = lx.handlers_by_arn(app_module.step_handlers(), local_settings())
    resources = {state["Resource"] for state in definition["States"].values() if state["Type"] == "Task"}
    lambdas = {resource for resource in resources if resource != lx.ECS_RUN_TASK_SYNC}
    assert lambdas, "the definition invokes no Lambda"
    assert lambdas <= set(handlers)
    assert handlers[f"{LAMBDA}kagent-local-plan"] is app_module.plan
    assert handlers[f"{LAMBDA}kagent-local-reconcile"] is app_module.reconcile


def run_real_definition(training: Callable[[Any, float | None], Any]) -> tuple[asl.Execution, list[tuple[str, Any]]]:
    calls: list[tuple[str, Any]] = []

    def step(name: str, result: Any) -> lx.Handler:
        def handler(event: Any, context: Any) -> Any:
            calls.append((name, event))
            return result

        return handler

    handlers = {
        f"{LAMBDA}kagent-local-{name}": step(name, {"done": name})
        for name in ("plan", "validate_output", "mark_succeeded", "mark_failed")
    }

    def ecs(parameters: Any, timeout_s: float | None) -> Any:
        calls.append(("ecs", parameters))
        return training(parameters, timeout_s)

    payload = {"run_id": "r1", "url": "u", "email": "e@x.org", "slug": "s", "network": {"awsvpcConfiguration": {}}}
    definition = lx.rendered_definition(local_settings())
    return asl.run_definition(definition, payload, lx.task_dispatch(handlers, ecs), sleep=lambda s: None), calls


def test_the_real_definition_runs_plan_training_validation_and_success_in_order() -> None:
    execution, calls = run_real_definition(lambda parameters, timeout: {"Containers": [{"ExitCode": 0}]})
    assert execution.status == "SUCCEEDED"
    assert [name for name, _ in calls] == ["plan", "ecs", "validate_output", "mark_succeeded"]
    environment = calls[1][1]["Overrides"]["ContainerOverrides"][0]["Environment"]
    assert lx.container_environment(calls[1][1], "runner") == {"RUN_ID": "r1", "URL": "u", "EMAIL": "e@x.org"}
    assert environment[0] == {"Name": "RUN_ID", "Value": "r1"}
    validate_event = calls[2][1]
    assert validate_event["plan"] == {"done": "plan"}
    assert validate_event["training"] == {"Containers": [{"ExitCode": 0}]}


def test_a_failed_training_task_goes_to_mark_failed_with_the_error_then_fails_the_execution() -> None:
    def training(parameters: Any, timeout: float | None) -> Any:
        raise asl.StatesError("States.TaskFailed", '{"StoppedReason": "Essential container in task exited"}')

    execution, calls = run_real_definition(training)
    assert [name for name, _ in calls] == ["plan", "ecs", "mark_failed"]
    assert calls[2][1]["error"]["Error"] == "States.TaskFailed"
    assert (execution.status, execution.error) == ("FAILED", "RunFailed")


# -- the runner subprocess ---------------------------------------------------------------------------------------------


def ecs_parameters(**environment: str) -> dict[str, Any]:
    pairs = [{"Name": name, "Value": value} for name, value in environment.items()]
    return {"Overrides": {"ContainerOverrides": [{"Name": "runner", "Environment": pairs}]}}


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_the_runner_gets_the_stage_environment_plus_the_container_overrides() -> None:
    check = "import os, sys; sys.exit(0 if (os.environ['RUN_ID'], os.environ['KAGENT_STAGE']) == ('r1', 'loc') else 5)"
    description = lx.run_runner(
        ecs_parameters(RUN_ID="r1"), 30, base_env={"KAGENT_STAGE": "loc", "RUN_ID": "old"}, command=python(check)
    )
    assert description["Containers"][0] == {"Name": "runner", "ExitCode": 0, "LastStatus": "STOPPED"}


def test_a_non_zero_runner_exit_is_a_task_failure_carrying_the_task_description() -> None:
    with pytest.raises(asl.StatesError) as raised:
        lx.run_runner(ecs_parameters(RUN_ID="r1"), 30, base_env={}, command=python("raise SystemExit(3)"))
    assert raised.value.error == "States.TaskFailed"
    assert json.loads(raised.value.cause)["Containers"][0]["ExitCode"] == 3


def test_a_runner_past_its_timeout_is_stopped_and_times_the_task_out() -> None:
    with pytest.raises(asl.StatesError) as raised:
        lx.run_runner(ecs_parameters(RUN_ID="r1"), 0.5, base_env={}, command=python("import time; time.sleep(60)"))
    assert raised.value.error == "States.Timeout"


def test_a_template_or_path_that_is_not_followed_is_refused_before_anything_runs() -> None:
    parameters = {"Nested": [{"Value.$": "States.Format('{}', $.a)"}]}
    intrinsic = {"Type": "Pass", "Parameters": parameters, "End": True}
    with pytest.raises(asl.DefinitionError, match=r"state A: .*reference paths"):
        asl.check_definition({"StartAt": "A", "States": {"A": intrinsic}})
    context = {"Type": "Pass", "InputPath": "$$.Execution", "End": True}
    with pytest.raises(asl.DefinitionError, match=r"state A: .*context object"):
        asl.check_definition({"StartAt": "A", "States": {"A": context}})
