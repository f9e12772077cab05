"""Three small additions to moto's server so that `terraform apply` and `chalice deploy` run against it unchanged.

`make deploy-rehearsal` (scripts/deploy_rehearsal.py) applies them before it starts the emulator. Each one answers a
call that moto 5.2 lacks or refuses, from moto's own records, and changes nothing else:

1. Step Functions `ValidateStateMachineDefinition`: the AWS provider calls it before CreateStateMachine. The answer is
   built from the definition itself: "OK" for a JSON object with `StartAt` naming one of its `States`, else "FAIL" with
   one diagnostic (AWS checks much more; the state machine tests under tests/ check the definition properly).
2. Step Functions `ListStateMachineVersions`: the provider reads it after create; the versions are moto's own.
3. API Gateway ImportRestApi/PutRestApi with a Swagger 2.0 document: Chalice sends Swagger 2.0, moto reads only the
   `openapi` 3 form and needs `info.description`. The document is relabelled (`swagger` -> `openapi: 3.0.1`) and an
   absent description becomes "". moto keeps the paths and methods; the IAM authorizer is dropped (moto has no
   SigV4 check), so the rehearsal cannot test authorization: scripts/smoke.py does that on a real stage.
Nothing is patched for real AWS: the functions touch moto classes only and are applied in the emulator's process.
"""

from __future__ import annotations

import json
from typing import Any

_APPLIED: list[bool] = []


def definition_diagnostics(definition: str) -> list[dict[str, str]]:
    """The one structural check behind ValidateStateMachineDefinition: JSON, StartAt, a state of that name."""
    try:
        document = json.loads(definition)
    except (TypeError, json.JSONDecodeError) as exc:
        return [{"severity": "ERROR", "code": "INVALID_JSON_DESCRIPTION", "message": f"not JSON: {exc}"}]
    if not isinstance(document, dict):
        return [{"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": "the definition is not an object"}]
    states = document.get("States")
    start = document.get("StartAt")
    if not isinstance(states, dict) or not isinstance(start, str) or start not in states:
        message = f"StartAt {start!r} names no state in States"
        return [{"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": message, "location": "/StartAt"}]
    return []


def as_openapi3(api_doc: dict[str, Any]) -> dict[str, Any]:
    """Chalice's Swagger 2.0 document in the form moto's ImportRestApi reads (see the module docstring, item 3)."""
    document = dict(api_doc)
    if "swagger" in document and "openapi" not in document:
        document.pop("swagger")
        document["openapi"] = "3.0.1"
    info = dict(document.get("info") or {})
    info.setdefault("description", "")
    document["info"] = info
    return document


def apply() -> None:
    """Patch moto's classes once (idempotent)."""
    if _APPLIED:
        return
    # lazy: moto is heavy; only the rehearsal needs it
    from moto.apigateway.models import APIGatewayBackend  # noqa: PLC0415 - moto is heavy; only the rehearsal needs it
    from moto.core.responses import ActionResult  # noqa: PLC0415
    from moto.stepfunctions.responses import StepFunctionResponse  # noqa: PLC0415

    def validate_state_machine_definition(self: Any) -> Any:
        diagnostics = definition_diagnostics(self._get_param("definition"))
        return ActionResult({"result": "FAIL" if diagnostics else "OK", "diagnostics": diagnostics, "truncated": False})

    def list_state_machine_versions(self: Any) -> Any:
        machine = self.stepfunction_backend.describe_state_machine(self._get_param("stateMachineArn"))
        versions = [
            {"stateMachineVersionArn": version.arn, "creationDate": version.creation_date}
            for _, version in sorted(getattr(machine, "versions", {}).items(), reverse=True)
        ]
        return ActionResult({"stateMachineVersions": versions})

    StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition  # type: ignore[attr-defined]
    StepFunctionResponse.list_state_machine_versions = list_state_machine_versions  # type: ignore[attr-defined]

    original_import = APIGatewayBackend.import_rest_api
    original_put = APIGatewayBackend.put_rest_api

    def import_rest_api(self: Any, api_doc: dict[str, Any], fail_on_warnings: bool) -> Any:
        return original_import(self, as_openapi3(api_doc), fail_on_warnings)

    def put_rest_api(self: Any, function_id: str, api_doc: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return original_put(self, function_id, as_openapi3(api_doc), *args, **kwargs)

    APIGatewayBackend.import_rest_api = import_rest_api  # type: ignore[method-assign]
    APIGatewayBackend.put_rest_api = put_rest_api  # type: ignore[method-assign]
    _APPLIED.append(True)
