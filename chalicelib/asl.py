"""A small Amazon States Language interpreter: what the local executor follows in `statemachine.asl.json`.

Task, Pass, Succeed and Fail states; Next/End; InputPath, Parameters (with `.$` keys), ResultSelector, ResultPath and
OutputPath with plain `$.a.b[0]` paths; Retry (ErrorEquals, IntervalSeconds, MaxAttempts, BackoffRate,
MaxDelaySeconds, JitterStrategy) and Catch; the definition's TimeoutSeconds. Anything else (Choice, Map, Parallel,
Wait, intrinsic functions, the context object) is refused up front with a DefinitionError naming the state and field.

It knows nothing of Lambda, ECS or the app: a Task state calls the `TaskDispatch` it is given with its Resource, its
effective input and its TimeoutSeconds (chalicelib.local_executor routes those to the step handlers it receives).
The moto-interpreter tests keep checking the real semantics.
"""

from __future__ import annotations

import copy
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_STATES = {"Task", "Pass", "Succeed", "Fail"}
# States of the language this interpreter refuses, with what to do instead (a definition using one fails up front).
REFUSED_STATES = {
    "Choice": "branch in a step handler instead",
    "Map": "loop in a step handler or the runner instead",
    "Parallel": "run the branches in one task instead",
    "Wait": "wait inside a task instead",
}
SUPPORTED_FIELDS = {
    "Type", "Comment", "Next", "End", "Resource", "TimeoutSeconds", "InputPath", "Parameters", "ResultSelector",
    "ResultPath", "OutputPath", "Retry", "Catch", "Result", "Error", "Cause",
}  # fmt: skip
_PATH_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")

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
        if kind in REFUSED_STATES:
            raise DefinitionError(
                f"state {name}: Type {kind!r} is not followed locally ({REFUSED_STATES[kind]}; "
                f"supported: {sorted(SUPPORTED_STATES)})"
            )
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
