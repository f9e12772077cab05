"""Write `openapi.json`: the HTTP API described as OpenAPI 3.0, built from the Chalice app itself.

    python scripts/openapi.py            # rewrite openapi.json
    python scripts/openapi.py --check    # exit 1 when openapi.json differs from what the app says

Paths, methods, accepted content types, path parameters and the SigV4 security come from Chalice's own
`SwaggerGenerator` over `app.py`; what Chalice cannot know (query parameters, headers, the answers and their bodies) is
described per operation in OPERATIONS below, with limits taken from the code that enforces them. A route without an
entry there, or an entry without a route, is an error, so the file cannot silently drift from the app
(tests/test_openapi.py runs the check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chalicelib.run_request import (
    MAX_EMAIL_LENGTH,
    MAX_IDEMPOTENCY_KEY,
    MAX_URL_LENGTH,
    SUBMIT_FALSE,
    SUBMIT_TRUE,
)
from chalicelib.run_view import ARTIFACT_LINKS
from chalicelib.runs import Status
from chalicelib.service import (
    CANCELLED,
    LIST_DEFAULT_LIMIT,
    LIST_MAX_LIMIT,
    MAX_CURSOR_CHARS,
    RETRY_AFTER_S,
    STATUS_LINK_EXPIRY_S,
)
from runner.kaggle_client import FAILED, REFUSED, SCORED, SCORING_ERROR, SUBMITTED
from runner.progress import PHASES
from scripts.chalice_app import app_module

REPO = Path(__file__).resolve().parent.parent
SPEC_PATH = REPO / "openapi.json"
PLACEHOLDER_LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:kagent-api_handler"
RUN_ID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
FIELD_NAMES = ["url", "email", "submit", "Idempotency-Key", "limit", "cursor"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema_name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema_name)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


RETRY_AFTER = {
    "Retry-After": {
        "description": f"seconds to wait before retrying ({RETRY_AFTER_S})",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
URL_PARAM = {
    "type": "string",
    "maxLength": MAX_URL_LENGTH,
    "description": "https://www.kaggle.com/competitions/<slug> or https://www.kaggle.com/c/<slug>",
    "example": "https://www.kaggle.com/competitions/titanic",
}
EMAIL_PARAM = {
    "type": "string",
    "maxLength": MAX_EMAIL_LENGTH,
    "description": "where the result (a link to submission.csv, or the reason it failed) is emailed",
    "example": "me@example.com",
}
QUOTA_RETRY_AFTER = {
    "Retry-After": {
        "description": f"seconds to wait: {RETRY_AFTER_S} when the slots are full, the time to the next UTC day when "
        "the caller's daily quota is spent",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
NOT_YOURS = "no run with this id that you started (another caller's run answers exactly as an unknown id)"
SUBMIT_PARAM = {
    "type": "boolean",
    "default": False,
    "description": "send submission.csv to Kaggle once validated (with the official client; the public score is "
    "polled for a bounded time); as a query parameter: true/false, 1/0 or yes/no. A refusal (daily limit, "
    "rules) is a reason in kaggle_submission, never a failed run",
}
SUBMIT_QUERY = {**SUBMIT_PARAM, "type": "string", "enum": list(SUBMIT_TRUE + SUBMIT_FALSE), "default": "false"}
UNSUPPORTED_MEDIA = _json("FrameworkError", "the Content-Type is not one the route accepts (Chalice answers)")

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/run", "post"): {
        "operationId": "startRun",
        "summary": "Start a run: download the competition, train, email a link to submission.csv",
        "description": 'The fields come as query parameters (`curl -X POST "$API/run?url=...&email=..."`) or as a '
        "JSON object body; query parameters win. A field given twice is refused. The email must be an address the "
        "operator allows (KAGENT_ALLOWED_RECIPIENTS; in the SES sandbox also a verified identity), checked before "
        "anything is written. At most KAGENT_MAX_RUNNING runs are in flight and one caller starts at most "
        "KAGENT_RUNS_PER_CALLER_PER_DAY runs per UTC day; more are refused with 429. The run belongs to the IAM "
        "identity that started it.",
        "parameters": [
            {"name": "url", "in": "query", "required": False, "schema": URL_PARAM},
            {"name": "email", "in": "query", "required": False, "schema": EMAIL_PARAM},
            {"name": "submit", "in": "query", "required": False, "schema": SUBMIT_QUERY},
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same key (from the same caller, with the same url and email) always answers with "
                "the same run: a retried request starts nothing new; the key with another request is a 409",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
            },
        ],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": _ref("RunFields")}},
        },
        "responses": {
            "202": _json("RunAccepted", "the run was admitted (QUEUED) and its workflow started"),
            "400": _json(
                "FieldError",
                "a field is missing or malformed, or the email is not an allowed recipient; `field` names it",
            ),
            "409": _json("FieldError", "the Idempotency-Key was used before with another url or email"),
            "415": UNSUPPORTED_MEDIA,
            "429": _json(
                "Error", "every run slot is in use, or the caller's runs for the UTC day are spent", QUOTA_RETRY_AFTER
            ),
            "503": _json(
                "Unavailable",
                "the run store is busy (nothing was admitted), or the workflow could not start (the run, named by "
                "run_id, is FAILED and its slot given back)",
                RETRY_AFTER,
            ),
        },
    },
    ("/runs/{run_id}", "get"): {
        "operationId": "getRun",
        "summary": "A run's status, plan, score, failure reason and (once SUCCEEDED) a short-lived download link",
        "parameters": [],
        "responses": {
            "200": _json("RunView", "the run"),
            "404": _json("Error", NOT_YOURS + " (malformed ids included)"),
            "503": _json("Unavailable", "the run store is busy", RETRY_AFTER),
        },
    },
    ("/runs/{run_id}", "delete"): {
        "operationId": "cancelRun",
        "summary": f'Cancel a run: it ends FAILED "{CANCELLED}" and its workflow is stopped',
        "description": "The run is FAILED at once; its slot comes back and its one failure email is sent when the "
        "workflow has really stopped (seconds later). Repeating the call answers 202 again.",
        "parameters": [],
        "responses": {
            "202": _json("RunCancelled", "the run is cancelled"),
            "404": _json("Error", NOT_YOURS),
            "409": _json("Error", "the run had already ended (SUCCEEDED, or FAILED for another reason)"),
            "503": _json("Unavailable", "the run store is busy, or the workflow did not stop yet: repeat", RETRY_AFTER),
        },
    },
    ("/runs", "get"): {
        "operationId": "listRuns",
        "summary": "The caller's own runs, newest first, a page at a time",
        "description": "A run admitted a moment ago may appear a moment later (the listing reads an index).",
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": LIST_MAX_LIMIT, "default": LIST_DEFAULT_LIMIT},
            },
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "next_cursor of the previous page",
                "schema": {"type": "string", "maxLength": MAX_CURSOR_CHARS},
            },
        ],
        "responses": {
            "200": _json("RunList", "one page of the caller's runs"),
            "400": _json("FieldError", "limit or cursor is malformed; `field` names it"),
            "503": _json("Unavailable", "the run store is busy", RETRY_AFTER),
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "RunFields": {
        "type": "object",
        "properties": {"url": URL_PARAM, "email": EMAIL_PARAM, "submit": SUBMIT_PARAM},
        "description": "non-object JSON bodies contribute no fields",
    },
    "RunAccepted": {
        "type": "object",
        "required": ["run_id", "status", "status_url"],
        "properties": {
            "run_id": {"type": "string", "pattern": RUN_ID_PATTERN},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "status_url": {"type": "string"},
        },
    },
    "RunCancelled": {
        "type": "object",
        "required": ["run_id", "status", "error"],
        "properties": {
            "run_id": {"type": "string", "pattern": RUN_ID_PATTERN},
            "status": {"type": "string", "enum": [Status.FAILED.value]},
            "error": {"type": "string", "enum": [CANCELLED]},
        },
    },
    "RunList": {
        "type": "object",
        "required": ["runs", "next_cursor"],
        "properties": {
            "runs": {"type": "array", "items": _ref("RunSummary")},
            "next_cursor": {"type": "string", "nullable": True, "description": "null on the last page"},
        },
    },
    "RunSummary": {
        "type": "object",
        "required": ["run_id", "status", "slug", "created_at", "timestamps"],
        "properties": {
            "run_id": {"type": "string", "pattern": RUN_ID_PATTERN},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "slug": {"type": "string"},
            "created_at": {"type": "string", "description": "ISO 8601 UTC time of admission"},
            "timestamps": {"type": "object", "additionalProperties": {"type": "string"}},
            "cv_score": {"type": "number", "nullable": True},
            "metric": {"type": "string", "nullable": True},
            "error": {"type": "string", "nullable": True},
        },
    },
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string", "minLength": 1}}},
    "FieldError": {
        "type": "object",
        "required": ["error", "field"],
        "properties": {
            "error": {"type": "string", "minLength": 1},
            "field": {"type": "string", "enum": FIELD_NAMES},
        },
    },
    "Unavailable": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "minLength": 1},
            "run_id": {"type": "string", "pattern": RUN_ID_PATTERN},
        },
    },
    "FrameworkError": {
        "type": "object",
        "required": ["Code", "Message"],
        "properties": {"Code": {"type": "string"}, "Message": {"type": "string"}},
    },
    "RunView": {
        "type": "object",
        "required": ["run_id", "status", "slug", "url", "email", "timestamps", "submission_url"],
        "properties": {
            "run_id": {"type": "string", "pattern": RUN_ID_PATTERN},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "slug": {"type": "string"},
            "url": {"type": "string"},
            "email": {"type": "string", "description": "masked: m***@example.com"},
            "timestamps": {
                "type": "object",
                "description": "status -> ISO 8601 UTC time it was reached",
                "additionalProperties": {"type": "string"},
            },
            "plan_summary": {"type": "string", "nullable": True},
            "plan": {"type": "object", "nullable": True},
            "cv_score": {"type": "number", "nullable": True},
            "metric": {"type": "string", "nullable": True},
            "error": {"type": "string", "nullable": True, "description": "why the run FAILED"},
            "email_error": {"type": "string", "nullable": True, "description": "why the email could not be sent"},
            "submission_url": {"type": "string", "nullable": True, "description": "presigned; SUCCEEDED runs only"},
            "submission_url_expires_in_s": {"type": "integer", "enum": [STATUS_LINK_EXPIRY_S]},
        },
    },
}


# Issue 14: what a user sees of a run besides its status (chalicelib/run_view.py).
_NUMBER = {"type": "number", "nullable": True}
_LINK = {"type": "string", "nullable": True, "description": "presigned GET; null until the runner uploaded it"}
PROGRESS = {
    "type": "object",
    "nullable": True,
    "description": "the runner's live progress, stored a few times a minute at most and never after the run ended",
    "required": ["phase", "elapsed_s", "updated_at"],
    "properties": {
        "phase": {"type": "string", "enum": list(PHASES)},
        "detail": {"type": "string"},
        "candidate": {"type": "integer", "minimum": 1, "description": "training candidate k ..."},
        "candidates": {"type": "integer", "minimum": 1, "description": "... of n"},
        "candidate_name": {"type": "string"},
        "best_cv": {"type": "number", "description": "the best cross-validated score so far"},
        "best_model": {"type": "string"},
        "metric": {"type": "string"},
        "elapsed_s": {"type": "integer", "minimum": 0},
        "remaining_s": {"type": "integer", "minimum": 0, "description": "an estimate"},
        "updated_at": {"type": "string", "description": "ISO 8601 UTC"},
    },
}
LINKS = {
    "type": "object",
    "required": [name for name, _key in ARTIFACT_LINKS],
    "properties": {name: _LINK for name, _key in ARTIFACT_LINKS},
}
COST = {
    "type": "object",
    "nullable": True,
    "description": "LLM tokens and dollars; Fargate vCPU- and GB-seconds at the configured prices",
    "properties": {
        name: {"type": "integer" if name.startswith("llm_tokens") else ("string" if name == "llm_model" else "number")}
        for name in (
            "llm_model",
            "llm_tokens_in",
            "llm_tokens_out",
            "llm_usd",
            "seconds",
            "vcpu",
            "memory_gb",
            "vcpu_seconds",
            "gb_seconds",
            "vcpu_hour_usd",
            "gb_hour_usd",
            "compute_usd",
            "total_usd",
        )
    },
}
KAGGLE_SUBMISSION = {
    "type": "object",
    "nullable": True,
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": [SCORED, SUBMITTED, SCORING_ERROR, REFUSED, FAILED]},
        "public_score": _NUMBER,
        "reason": {"type": "string", "description": "what to do, when not scored (daily limit, rules, ...)"},
        "message": {"type": "string", "description": "the submission's description on Kaggle (names the run)"},
        "ref": {"type": "integer"},
        "url": {"type": "string"},
    },
}
SCHEMAS["RunView"]["properties"].update(
    {
        "submit": {"type": "boolean", "description": "whether POST /run asked to submit to Kaggle"},
        "progress": PROGRESS,
        "cost": COST,
        "kaggle_submission": KAGGLE_SUBMISSION,
        "links": LINKS,
        "links_expire_in_s": {"type": "integer", "enum": [STATUS_LINK_EXPIRY_S]},
    }
)


def chalice_swagger() -> dict[str, Any]:
    """What Chalice itself would publish for app.py (Swagger 2.0)."""
    # lazy: chalice's deployer and the app only when the spec is generated
    from chalice.deploy.swagger import SwaggerGenerator  # noqa: PLC0415

    app = app_module().app
    return dict(SwaggerGenerator("us-east-1", {"api_handler_arn": PLACEHOLDER_LAMBDA}).generate_swagger(app))


def _operation(path: str, method: str, chalice_op: dict[str, Any]) -> dict[str, Any]:
    described = OPERATIONS.get((path, method))
    if described is None:
        raise SystemExit(f"openapi: route {method.upper()} {path} has no description in scripts/openapi.py OPERATIONS")
    operation = json.loads(json.dumps(described))
    path_params = [
        {"name": p["name"], "in": "path", "required": True, "schema": {"type": p.get("type", "string")}}
        for p in chalice_op.get("parameters", [])
        if p.get("in") == "path"
    ]
    operation["parameters"] = path_params + operation["parameters"]
    consumes = chalice_op.get("consumes", [])
    if "requestBody" in operation:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        operation["requestBody"]["content"] = {kind: {"schema": schema} for kind in consumes}
    elif consumes != ["application/json"]:
        raise SystemExit(f"openapi: {method.upper()} {path} accepts {consumes} but describes no request body")
    if chalice_op.get("security"):
        operation["security"] = chalice_op["security"]
    return operation


def build_spec() -> dict[str, Any]:
    swagger = chalice_swagger()
    paths: dict[str, Any] = {}
    for path, methods in swagger["paths"].items():
        paths[path] = {method: _operation(path, method, op) for method, op in methods.items()}
    described = {(p, m) for p, methods in paths.items() for m in methods}
    stale = set(OPERATIONS) - described
    if stale:
        raise SystemExit(f"openapi: described operations the app does not have: {sorted(stale)}")
    return {
        "openapi": "3.0.3",
        "info": {
            "title": swagger["info"]["title"],
            "version": "1.0",
            "description": "kagent: send a Kaggle competition URL and an email; get a submission.csv link by email. "
            "Generated by scripts/openapi.py from app.py; do not edit by hand.",
        },
        "servers": [
            {
                "url": "https://{api_id}.execute-api.{region}.amazonaws.com/api",
                "variables": {"api_id": {"default": "example"}, "region": {"default": "us-east-1"}},
            },
            {"url": "http://127.0.0.1:8000", "description": "the local stack (make local)"},
        ],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                name: {
                    "type": "apiKey",
                    "in": scheme["in"],
                    "name": scheme["name"],
                    "description": "AWS SigV4 (IAM) signed requests; the local stack admits every request",
                }
                for name, scheme in swagger.get("securityDefinitions", {}).items()
            },
        },
    }


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when openapi.json is out of date")
    parser.add_argument("--out", type=Path, default=SPEC_PATH)
    args = parser.parse_args(argv)
    text = render(build_spec())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python scripts/openapi.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
