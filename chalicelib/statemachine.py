"""Render `statemachine.asl.json`: its `${name}` placeholders are string values, so the file is valid JSON as stored.

Terraform renders the same file with `templatefile`; tests and the local executor use `render` with the same names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

DEFINITION_PATH = Path(__file__).resolve().parent.parent / "statemachine.asl.json"
PLACEHOLDERS = (
    "plan_function_arn",
    "validate_output_function_arn",
    "mark_succeeded_function_arn",
    "mark_failed_function_arn",
    "ecs_cluster_arn",
    "runner_task_definition_arn",
    "runner_container_name",
)
RUNNER_CONTAINER_NAME = "runner"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


class RenderError(ValueError):
    """A placeholder has no value, or a value would break the JSON."""


def render(definition_text: str, values: Mapping[str, str]) -> str:
    """Substitute every `${name}`; fail on a missing or unknown name. The result is checked to be valid JSON."""
    missing = sorted({name for name in _PLACEHOLDER.findall(definition_text) if name not in values})
    if missing:
        raise RenderError(f"no value for state machine placeholder(s): {', '.join(missing)}")
    for name, value in values.items():
        if not isinstance(value, str) or '"' in value or "\\" in value:
            raise RenderError(f"placeholder {name} needs a plain string value, got {value!r}")
    rendered = _PLACEHOLDER.sub(lambda m: values[m.group(1)], definition_text)
    json.loads(rendered)
    return rendered


def load_definition() -> str:
    return DEFINITION_PATH.read_text(encoding="utf-8")


def function_arn(region: str, account: str, app_name: str, stage: str, name: str) -> str:
    """The ARN of a Chalice-deployed Lambda: `{app}-{stage}-{name}`."""
    return f"arn:aws:lambda:{region}:{account}:function:{app_name}-{stage}-{name}"


def placeholder_values(
    region: str, account: str, app_name: str, stage: str, *, ecs_cluster_arn: str, task_definition_arn: str
) -> dict[str, str]:
    """The values Terraform passes to templatefile, built the same way."""
    return {
        "plan_function_arn": function_arn(region, account, app_name, stage, "plan"),
        "validate_output_function_arn": function_arn(region, account, app_name, stage, "validate_output"),
        "mark_succeeded_function_arn": function_arn(region, account, app_name, stage, "mark_succeeded"),
        "mark_failed_function_arn": function_arn(region, account, app_name, stage, "mark_failed"),
        "ecs_cluster_arn": ecs_cluster_arn,
        "runner_task_definition_arn": task_definition_arn,
        "runner_container_name": RUNNER_CONTAINER_NAME,
    }
