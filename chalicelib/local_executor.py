"""Run `statemachine.asl.json` on this machine (KAGENT_EXECUTOR=local): a development tool, not a Step Functions engine.

It follows the definition as written, read and rendered afresh for every run (editing the file changes the next local
run): Task, Pass, Succeed and Fail states; Next/End; InputPath, Parameters (with `.$` keys), ResultSelector, ResultPath
and OutputPath with plain `$.a.b[0]` paths; Retry (ErrorEquals, IntervalSeconds, MaxAttempts, BackoffRate,
MaxDelaySeconds, JitterStrategy) and Catch. Lambda tasks call the app's own step functions in-process, the ECS task
`arn:aws:states:::ecs:runTask.sync` runs `python -m runner.runner_main` as a subprocess with the Fargate environment
contract (this process's environment, i.e. the stage's settings, plus the container overrides RUN_ID, URL, EMAIL).
A task's TimeoutSeconds is enforced for the runner subprocess only; Lambdas run to completion. An execution that ends
badly is handed to the app's reconcile handler, as EventBridge does in the cloud. The moto-interpreter tests keep
checking the real semantics; anything else in a definition is refused up front with a DefinitionError.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib import orchestrator
from chalicelib.config import Settings
from chalicelib.runs import Run
from chalicelib.statemachine import RUNNER_CONTAINER_NAME, load_definition, placeholder_values, render
from chalicelib.vocabulary import execution_arn

REPO = Path(__file__).resolve().parent.parent
REGION_FALLBACK = "us-east-1"
ACCOUNT = "123456789012"  # the emulator's account (moto's default)
ECS_RUN_TASK_SYNC = "arn:aws:states:::ecs:runTask.sync"
ECS_STOP_TIMEOUT_S = 30.0  # Fargate sends SIGKILL this long after SIGTERM
RUNNER_COMMAND = (sys.executable, "-m", "runner.runner_main")
SUPPORTED_STATES = {"Task", "Pass", "Succeed", "Fail"}
SUPPORTED_FIELDS = {
    "Type", "Comment", "Next", "End", "Resource", "TimeoutSeconds", "InputPath", "Parameters", "ResultSelector",
    "ResultPath", "OutputPath", "Retry", "Catch", "Result", "Error", "Cause",
}  # fmt: skip
_PATH_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")

# The runner tasks running now, by RUN_ID: DELETE /runs/{id} stops one (stop below), as StopExecution stops its task.
_runner_tasks: dict[str, subprocess.Popen[bytes]] = {}
_runner_tasks_lock = threading.Lock()

log = logging.getLogger("kagent.local_executor")
log.setLevel(logging.INFO)  # under Chalice's app logger, which shows only errors; here each state is the point


class DefinitionError(ValueError):
    """The definition uses something the local executor does not follow; the message names the state and field."""


class StatesError(Exception):
    """A Step Functions error: `error` is the name Retry/Catch match on, `cause` its text."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


# (Resource, parameters, timeout in seconds or None) -> the task's result; raises StatesError when the task fails.
TaskDispatch = Callable[[str, Any, float | None], Any]


@dataclass
class Execution:
    """How an execution ended: SUCCEEDED with `output`, or FAILED/TIMED_OUT with `error` and `cause`."""

    status: str = "RUNNING"
    output: Any = None
    error: str = ""
    cause: str = ""
    visited: list[str] = field(default_factory=list)


# -- paths -------------------------------------------------------------------------------------------------------------


def _steps(path: str) -> list[str | int]:
    if not path.startswith("$"):
        raise DefinitionError(f"path {path!r}: only paths starting with '$' are followed locally")
    if path.startswith("$$"):
        raise DefinitionError(f"path {path!r}: the context object is not followed locally")
    rest, steps, position = path[1:], [], 0
    while position < len(rest):
        match = _PATH_STEP.match(rest, position)
        if match is None:
            raise DefinitionError(f"path {path!r}: only $.field and [index] steps are followed locally")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    return steps


def get_path(data: Any, path: str) -> Any:
    """The value at a reference path; a missing field is the runtime error States.Runtime, as in Step Functions."""
    value = data
    for step in _steps(path):
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise StatesError("States.Runtime", f"the path {path!r} matches nothing in the input") from None
    return value


def set_path(data: Any, path: str | None, value: Any) -> Any:
    """ResultPath: `$` replaces, None keeps the input, `$.a.b` puts `value` there in a copy of the input."""
    if path is None:
        return data
    steps = _steps(path)
    if not steps:
        return value
    result = copy.deepcopy(data)
    target = result
    for step in steps[:-1]:
        if not isinstance(step, str) or not isinstance(target, dict):
            raise StatesError("States.ResultPathMatchFailure", f"cannot apply ResultPath {path!r} to the input")
        target = target.setdefault(step, {})
    last = steps[-1]
    if not isinstance(last, str) or not isinstance(target, dict):
        raise StatesError("States.ResultPathMatchFailure", f"cannot apply ResultPath {path!r} to the input")
    target[last] = value
    return result


def apply_template(template: Any, data: Any) -> Any:
    """Parameters/ResultSelector: keys ending in `.$` take the value at their path in `data`; the rest is literal."""
    if isinstance(template, Mapping):
        result: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                if not isinstance(value, str) or value.startswith("States."):
                    raise DefinitionError(f"{key}: only reference paths are followed locally, got {value!r}")
                result[key[:-2]] = get_path(data, value)
            else:
                result[key] = apply_template(value, data)
        return result
    if isinstance(template, list):
        return [apply_template(item, data) for item in template]
    return template


def _optional_path(state: Mapping[str, Any], name: str) -> str | None:
    """A path field: absent means `$`, JSON null means None."""
    return state.get(name, "$")


# -- the interpreter ---------------------------------------------------------------------------------------------------


def check_definition(definition: Mapping[str, Any]) -> None:
    """Refuse, before anything runs, a definition with states or fields this executor does not follow."""
    states = definition.get("States")
    if not isinstance(states, Mapping) or definition.get("StartAt") not in states:
        raise DefinitionError("the definition needs States and a StartAt naming one of them")
    for name, state in states.items():
        kind = state.get("Type")
        if kind not in SUPPORTED_STATES:
            raise DefinitionError(f"state {name}: Type {kind!r} is not followed locally ({sorted(SUPPORTED_STATES)})")
        unknown = set(state) - SUPPORTED_FIELDS
        if unknown:
            raise DefinitionError(f"state {name}: field(s) {sorted(unknown)} are not followed locally")
        targets = [state.get("Next")] + [catcher.get("Next") for catcher in state.get("Catch", [])]
        for target in targets:
            if target is not None and target not in states:
                raise DefinitionError(f"state {name}: Next {target!r} is not a state")
        if kind in ("Task", "Pass") and "Next" not in state and not state.get("End"):
            raise DefinitionError(f"state {name}: needs Next or End")
        try:
            _check_paths(state)
        except DefinitionError as error:
            raise DefinitionError(f"state {name}: {error}") from None


def _check_paths(state: Mapping[str, Any]) -> None:
    """Every path and `.$` value the state holds must be one this executor follows."""
    paths = [state.get(name) for name in ("InputPath", "ResultPath", "OutputPath")]
    paths += [catcher.get("ResultPath") for catcher in state.get("Catch", [])]
    for path in paths:
        if isinstance(path, str):
            _steps(path)
    for template in (state.get("Parameters"), state.get("ResultSelector")):
        apply_template(template, _AnyInput())


class _AnyInput(dict[str, Any]):
    """An input in which every path exists: lets apply_template check a template's paths without data."""

    def __getitem__(self, key: Any) -> Any:
        return self


def _matches(error: str, names: list[str]) -> bool:
    if error == "States.Runtime":  # as in Step Functions: not retried, not caught, the execution fails
        return False
    if "States.ALL" in names or error in names:
        return True
    return "States.TaskFailed" in names and error != "States.Timeout"


def _retry_delay(retrier: Mapping[str, Any], attempt: int, rng: Callable[[], float]) -> float:
    delay = float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** attempt
    if "MaxDelaySeconds" in retrier:
        delay = min(delay, float(retrier["MaxDelaySeconds"]))
    if retrier.get("JitterStrategy") == "FULL":
        delay *= rng()
    return delay


def _run_task(
    name: str, state: Mapping[str, Any], data: Any, dispatch: TaskDispatch, *, sleep: Callable[[float], None], rng: Any
) -> Any:
    """A Task's effective result, retried as its Retry says; the last error is raised."""
    effective = get_path(data, path) if (path := _optional_path(state, "InputPath")) is not None else {}
    if "Parameters" in state:
        effective = apply_template(state["Parameters"], effective)
    timeout = float(state["TimeoutSeconds"]) if "TimeoutSeconds" in state else None
    attempts: dict[int, int] = {}
    while True:
        try:
            result = dispatch(str(state["Resource"]), effective, timeout)
            break
        except StatesError as error:
            for index, retrier in enumerate(state.get("Retry", [])):
                if _matches(error.error, list(retrier.get("ErrorEquals", []))):
                    done = attempts.get(index, 0)
                    if done >= int(retrier.get("MaxAttempts", 3)):
                        raise
                    attempts[index] = done + 1
                    delay = _retry_delay(retrier, done, rng)
                    log.info("state %s: %s, retry %d in %.1f s", name, error.error, done + 1, delay)
                    sleep(delay)
                    break
            else:
                raise
    if "ResultSelector" in state:
        result = apply_template(state["ResultSelector"], result)
    return result


def _state_output(state: Mapping[str, Any], data: Any, result: Any) -> Any:
    merged = set_path(data, state.get("ResultPath", "$"), result)
    path = _optional_path(state, "OutputPath")
    return get_path(merged, path) if path is not None else {}


def run_definition(
    definition: Mapping[str, Any],
    execution_input: Any,
    dispatch: TaskDispatch,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
    clock: Callable[[], float] = time.monotonic,
) -> Execution:
    """Follow `definition` from StartAt with `execution_input`; returns how the execution ended (never raises
    StatesError: an uncaught error fails the execution, as in Step Functions)."""
    check_definition(definition)
    states: Mapping[str, Mapping[str, Any]] = definition["States"]
    deadline = clock() + float(definition["TimeoutSeconds"]) if "TimeoutSeconds" in definition else None
    execution = Execution()
    name, data = str(definition["StartAt"]), execution_input
    while True:
        if deadline is not None and clock() > deadline:
            return _ended(execution, "TIMED_OUT", "States.Timeout", "the execution's TimeoutSeconds passed")
        state = states[name]
        execution.visited.append(name)
        kind = state["Type"]
        if kind == "Fail":
            return _ended(execution, "FAILED", str(state.get("Error", "")), str(state.get("Cause", "")))
        if kind == "Succeed":
            path = _optional_path(state, "OutputPath")
            execution.status, execution.output = "SUCCEEDED", get_path(data, path) if path is not None else {}
            return execution
        try:
            data, next_name = _step(name, state, data, dispatch, sleep=sleep, rng=rng)
        except StatesError as error:
            catcher = next((c for c in state.get("Catch", []) if _matches(error.error, c.get("ErrorEquals", []))), None)
            if catcher is None or kind != "Task":
                return _ended(execution, "FAILED", error.error, error.cause)
            log.info("state %s: caught %s, going to %s", name, error.error, catcher["Next"])
            try:
                data = set_path(data, catcher.get("ResultPath", "$"), {"Error": error.error, "Cause": error.cause})
            except StatesError as bad_path:
                return _ended(execution, "FAILED", bad_path.error, bad_path.cause)
            next_name = catcher["Next"]
        if next_name is None:
            execution.status, execution.output = "SUCCEEDED", data
            return execution
        name = next_name


def _step(
    name: str, state: Mapping[str, Any], data: Any, dispatch: TaskDispatch, *, sleep: Any, rng: Any
) -> tuple[Any, str | None]:
    if state["Type"] == "Pass":
        effective = get_path(data, path) if (path := _optional_path(state, "InputPath")) is not None else {}
        if "Parameters" in state:
            effective = apply_template(state["Parameters"], effective)
        result = state.get("Result", effective)
    else:
        log.info("state %s: %s", name, state["Resource"])
        result = _run_task(name, state, data, dispatch, sleep=sleep, rng=rng)
    return _state_output(state, data, result), (None if state.get("End") else state["Next"])


def _ended(execution: Execution, status: str, error: str, cause: str) -> Execution:
    execution.status, execution.error, execution.cause = status, error, cause
    return execution


# -- dispatching tasks: the app's Lambdas in-process, the runner as a subprocess -------------------------------------


Handler = Callable[[Any, Any], Any]


def lambda_dispatch(handler: Handler) -> Callable[[Any], Any]:
    """Call a Lambda handler as Lambda would: JSON in and out; an exception becomes the error named by its class,
    with Lambda's JSON cause (`errorMessage`, `errorType`, `stackTrace`)."""

    def invoke(payload: Any) -> Any:
        event = json.loads(json.dumps(payload))
        try:
            result = handler(event, None)
            return json.loads(json.dumps(result))
        except Exception as error:
            cause = {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "stackTrace": traceback.format_tb(error.__traceback__)[-5:],
            }
            raise StatesError(type(error).__name__, json.dumps(cause)) from error

    return invoke


def container_environment(parameters: Mapping[str, Any], container: str) -> dict[str, str]:
    """The Environment of the named container's overrides in runTask parameters."""
    overrides = (parameters.get("Overrides") or {}).get("ContainerOverrides") or []
    for override in overrides:
        if override.get("Name") == container:
            return {str(item["Name"]): str(item["Value"]) for item in override.get("Environment") or []}
    raise StatesError("ECS.InvalidParameterException", f"no container override for container {container!r}")


def run_runner(
    parameters: Mapping[str, Any],
    timeout_s: float | None,
    *,
    base_env: Mapping[str, str],
    command: tuple[str, ...] = RUNNER_COMMAND,
    cwd: Path = REPO,
    container: str = RUNNER_CONTAINER_NAME,
) -> dict[str, Any]:
    """The runTask.sync task: the runner subprocess; returns ECS's description of the stopped task (the parts the
    service reads), or raises States.TaskFailed (non-zero exit, the description as cause) or States.Timeout."""
    env = {**base_env, **container_environment(parameters, container)}
    started = time.time()
    # Same process group as the app: stopping the local stack (a signal to the group) stops the runner too.
    process = subprocess.Popen(list(command), cwd=cwd, env=env)
    run_id = env.get("RUN_ID", "?")
    with _runner_tasks_lock:
        _runner_tasks[run_id] = process
    try:
        exit_code = process.wait(timeout=timeout_s)
        stopped_reason = "Essential container in task exited"
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=ECS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise StatesError(
            "States.Timeout", f"the runner task ran longer than its TimeoutSeconds ({timeout_s:g} s)"
        ) from None
    finally:
        with _runner_tasks_lock:
            if _runner_tasks.get(run_id) is process:
                del _runner_tasks[run_id]
    log.info("run %s: runner task exited with code %s after %.2f s", run_id, exit_code, time.time() - started)
    description = {
        "LastStatus": "STOPPED",
        "StopCode": "EssentialContainerExited",
        "StoppedReason": stopped_reason,
        "StartedAt": started,
        "StoppedAt": time.time(),
        "Containers": [{"Name": container, "ExitCode": exit_code, "LastStatus": "STOPPED"}],
    }
    if exit_code != 0:
        raise StatesError("States.TaskFailed", json.dumps(description))
    return description


def stop(run_id: str) -> bool:
    """The local stage's StopExecution: SIGTERM to the run's runner task, as ECS sends when a stopped execution stops
    its task (the runner records its outcome and exits; the state machine then reaches MarkFailed). False when the
    run has no runner task running (not started yet, or over): its next step sees the run ended anyway."""
    with _runner_tasks_lock:
        process = _runner_tasks.get(run_id)
    if process is None or process.poll() is not None:
        return False
    process.send_signal(signal.SIGTERM)
    return True


def task_dispatch(lambdas: Mapping[str, Handler], ecs: Callable[[Any, float | None], Any]) -> TaskDispatch:
    """Route a Task's Resource: a known Lambda ARN to its handler, runTask.sync to `ecs`."""
    invokers = {arn: lambda_dispatch(handler) for arn, handler in lambdas.items()}

    def dispatch(resource: str, parameters: Any, timeout_s: float | None) -> Any:
        if resource == ECS_RUN_TASK_SYNC:
            return ecs(parameters, timeout_s)
        if resource in invokers:
            return invokers[resource](parameters)
        raise StatesError("States.Runtime", f"the local executor has no handler for Resource {resource!r}")

    return dispatch


# -- wiring to the app (the local stage's chalice process) -------------------------------------------------------------


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or REGION_FALLBACK


def rendered_definition(settings: Settings) -> dict[str, Any]:
    """statemachine.asl.json as it is on disk now, rendered with the names Terraform would pass."""
    values = placeholder_values(
        region(),
        ACCOUNT,
        settings.app_name,
        settings.stage,
        ecs_cluster_arn=f"arn:aws:ecs:{region()}:{ACCOUNT}:cluster/{settings.app_name}-{settings.stage}",
        task_definition_arn=f"arn:aws:ecs:{region()}:{ACCOUNT}:task-definition/{settings.app_name}-{settings.stage}-runner",
    )
    definition: dict[str, Any] = json.loads(render(load_definition(), values))
    check_definition(definition)
    return definition


def app_handlers(app_module: Any, settings: Settings) -> dict[str, Handler]:
    """The app's Lambda functions and event handlers by the ARN Chalice would deploy them under."""
    chalice_app = app_module.app
    registered = [*chalice_app.pure_lambda_functions, *chalice_app.event_sources]
    handlers: dict[str, Handler] = {}
    for function in registered:
        handler = getattr(app_module, function.handler_string.rpartition(".")[2])
        arn = f"arn:aws:lambda:{region()}:{ACCOUNT}:function:{settings.app_name}-{settings.stage}-{function.name}"
        handlers[arn] = handler
    return handlers


def state_machine_arn(settings: Settings) -> str:
    """The machine the local executor's executions belong to: the configured one, else a local stand-in. The
    reconciler accepts events of this stage's machine only (chalicelib.orchestrator.is_own_state_machine)."""
    name = orchestrator.local_state_machine_name(settings)
    return settings.state_machine_arn or f"arn:aws:states:{region()}:{ACCOUNT}:stateMachine:{name}"


def reconcile_event(run_id: str, execution: Execution, machine_arn: str) -> dict[str, Any]:
    """The EventBridge event Step Functions emits when an execution ends badly."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": [execution_arn(machine_arn, run_id)],
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "region": region(),
        "account": ACCOUNT,
        "detail": {
            "name": run_id,
            "status": execution.status,
            "stateMachineArn": machine_arn,
            "error": execution.error,
            "cause": execution.cause,
        },
    }


def _execute(
    run_id: str,
    *,
    definition: Mapping[str, Any],
    payload: dict[str, Any],
    handlers: dict[str, Handler],
    reconcile: Handler | None,
    machine_arn: str,
) -> Execution:
    def ecs(parameters: Any, timeout_s: float | None) -> dict[str, Any]:
        return run_runner(parameters, timeout_s, base_env=dict(os.environ))

    try:
        execution = run_definition(definition, payload, task_dispatch(handlers, ecs))
    except Exception as error:  # a bug here must not leave the run holding its slot
        log.exception("run %s: the local executor failed", run_id)
        execution = _ended(Execution(), "FAILED", "States.Runtime", f"local executor: {type(error).__name__}: {error}")
    log.info("run %s: execution %s after %s", run_id, execution.status, " -> ".join(execution.visited))
    if execution.status != "SUCCEEDED" and reconcile is not None:
        try:
            reconcile(reconcile_event(run_id, execution, machine_arn), None)
        except Exception:
            log.exception("run %s: reconcile failed", run_id)
    return execution


def start(run: Run, payload: dict[str, Any], settings: Settings) -> str:
    """The orchestrator's local executor: check the definition now (a bad one is the caller's error), then follow it
    in a background thread of this process; returns the execution's ARN-like id at once."""
    definition = rendered_definition(settings)
    app_module = importlib.import_module("app")
    handlers = app_handlers(app_module, settings)
    machine = state_machine_arn(settings)
    reconcile = next((h for arn, h in handlers.items() if arn.endswith(f"-{settings.stage}-reconcile")), None)
    thread = threading.Thread(
        target=_execute,
        args=(run.run_id,),
        kwargs={
            "definition": definition,
            "payload": payload,
            "handlers": handlers,
            "reconcile": reconcile,
            "machine_arn": machine,
        },
        name=f"kagent-run-{run.run_id[:8]}",
        daemon=True,
    )
    thread.start()
    return execution_arn(machine, run.run_id)
