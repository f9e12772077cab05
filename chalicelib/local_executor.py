"""Run `statemachine.asl.json` on this machine (KAGENT_EXECUTOR=local): a development tool, not a Step Functions engine.

The definition is read and rendered afresh for every run (editing the file changes the next local run) and followed
by the interpreter in chalicelib.asl. This module dispatches its Task states: a Lambda task calls the step handler it
was given for that function name, in-process (the caller, chalicelib.wiring, passes the app's handlers: this module
never imports the app); the ECS task `arn:aws:states:::ecs:runTask.sync` runs `python -m runner.runner_main` as a
subprocess with the Fargate environment contract (this process's environment, i.e. the stage's settings, plus the
container overrides RUN_ID, URL, EMAIL). A task's TimeoutSeconds is enforced for the runner subprocess only; Lambdas
run to completion. An execution that ends badly is handed to the `reconcile` handler, as EventBridge does in the cloud.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib import orchestrator
from chalicelib.asl import Execution, StatesError, TaskDispatch, check_definition, run_definition
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
RECONCILE = "reconcile"  # the step handler an execution that ends badly is handed to (EventBridge's rule in the cloud)

log = logging.getLogger("kagent.local_executor")  # the interpreter's logger too (chalicelib.asl), INFO and up

# The runner tasks running now, by RUN_ID: DELETE /runs/{id} stops one (stop below), as StopExecution stops its task.
_runner_tasks: dict[str, subprocess.Popen[bytes]] = {}
_runner_tasks_lock = threading.Lock()

# -- dispatching tasks: the step handlers in-process, the runner as a subprocess -------------------------------------


# A Lambda handler: (event, context) -> result.
Handler = Callable[[Any, Any], Any]
# The step handlers by Lambda function name ("plan", "validate_output", ..., "reconcile"), as app.py registers them.
StepHandlers = Mapping[str, Handler]


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


# -- the local stage's executions (threads of the chalice process) ---------------------------------------------------


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


def function_arn(settings: Settings, function_name: str) -> str:
    """The ARN Chalice would deploy the app's Lambda `function_name` under (what the rendered definition invokes)."""
    return f"arn:aws:lambda:{region()}:{ACCOUNT}:function:{settings.app_name}-{settings.stage}-{function_name}"


def handlers_by_arn(steps: StepHandlers, settings: Settings) -> dict[str, Handler]:
    """The step handlers by the Lambda ARN the rendered definition's Task states name."""
    return {function_arn(settings, name): handler for name, handler in steps.items()}


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
        cause = f"local executor: {type(error).__name__}: {error}"
        execution = Execution(status="FAILED", error="States.Runtime", cause=cause)
    log.info("run %s: execution %s after %s", run_id, execution.status, " -> ".join(execution.visited))
    if execution.status != "SUCCEEDED" and reconcile is not None:
        try:
            reconcile(reconcile_event(run_id, execution, machine_arn), None)
        except Exception:
            log.exception("run %s: reconcile failed", run_id)
    return execution


def start(run: Run, payload: dict[str, Any], settings: Settings, steps: StepHandlers) -> str:
    """The orchestrator's local executor: check the definition now (a bad one is the caller's error), then follow it
    in a background thread of this process, calling `steps` for its Lambda tasks; returns the execution's ARN-like id
    at once."""
    definition = rendered_definition(settings)
    handlers = handlers_by_arn(steps, settings)
    machine = state_machine_arn(settings)
    thread = threading.Thread(
        target=_execute,
        args=(run.run_id,),
        kwargs={
            "definition": definition,
            "payload": payload,
            "handlers": handlers,
            "reconcile": steps.get(RECONCILE),
            "machine_arn": machine,
        },
        name=f"kagent-run-{run.run_id[:8]}",
        daemon=True,
    )
    thread.start()
    return execution_arn(machine, run.run_id)
