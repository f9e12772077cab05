"""openapi.json describes the API app.py serves: generated from the Chalice app, valid OpenAPI 3.0, and in sync."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate

from scripts import openapi


def committed_spec():
    return json.loads(openapi.SPEC_PATH.read_text(encoding="utf-8"))


def app_operations():
    from app import app  # noqa: PLC0415

    return {(path, method.lower()) for path, methods in app.routes.items() for method in methods}


def test_committed_openapi_json_is_what_the_generator_writes_from_the_app():
    assert openapi.render(openapi.build_spec()) == openapi.SPEC_PATH.read_text(encoding="utf-8"), (
        "openapi.json is stale: run python scripts/openapi.py"
    )


def test_openapi_json_is_valid_openapi_3():
    validate(committed_spec())


def test_every_route_of_the_app_is_described_and_nothing_else():
    spec = committed_spec()
    described = {(path, method) for path, methods in spec["paths"].items() for method in methods}
    assert described == app_operations()


def test_accepted_content_types_are_the_routes():
    from app import app  # noqa: PLC0415

    spec = committed_spec()
    for path, methods in app.routes.items():
        for method, entry in methods.items():
            body = spec["paths"][path][method.lower()].get("requestBody")
            if body is not None:
                assert sorted(body["content"]) == sorted(entry.content_types), (path, method)


def test_every_operation_is_sigv4_signed_like_the_deployed_routes():
    spec = committed_spec()
    for methods in spec["paths"].values():
        for operation in methods.values():
            assert operation["security"] == [{"sigv4": []}]
    assert spec["components"]["securitySchemes"]["sigv4"]["name"] == "Authorization"


def test_a_route_without_a_description_stops_the_generator(monkeypatch):
    monkeypatch.delitem(openapi.OPERATIONS, ("/runs/{run_id}", "get"))
    with pytest.raises(SystemExit, match=r"GET /runs/\{run_id\} has no description"):
        openapi.build_spec()


def test_a_description_without_a_route_stops_the_generator(monkeypatch):
    monkeypatch.setitem(openapi.OPERATIONS, ("/runs", "delete"), {"parameters": [], "responses": {}})
    with pytest.raises(SystemExit, match="does not have"):
        openapi.build_spec()


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert openapi.main(["--check", "--out", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert openapi.main(["--out", str(stale)]) == 0
    assert openapi.main(["--check", "--out", str(stale)]) == 0


def test_a_run_view_with_progress_links_cost_and_kaggle_submission_matches_the_schema():
    """Issue 14's fields as Service.describe builds them validate against RunView (nullable ones included)."""
    from openapi_schema_validator import OAS30Validator  # noqa: PLC0415

    from chalicelib.run_view import describe_fields  # noqa: PLC0415
    from chalicelib.runs import Run, Status  # noqa: PLC0415

    spec = committed_spec()
    validator = OAS30Validator(spec["components"]["schemas"]["RunView"])
    run = Run(
        run_id="0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f",
        url="https://www.kaggle.com/competitions/titanic",
        slug="titanic",
        email="bob@example.com",
        status=Status.RUNNING,
        submit=True,
        progress={
            "phase": "training",
            "candidate": 2,
            "candidates": 5,
            "candidate_name": "linear",
            "best_cv": 0.8,
            "elapsed_s": 40,
            "remaining_s": 100,
            "updated_at": "2026-11-29T12:00:00Z",
        },
        cost={"llm_tokens_in": 0, "llm_tokens_out": 0, "seconds": 12.0, "vcpu_seconds": 12.0, "total_usd": 0.0001},
        kaggle_submission={"status": "refused", "reason": "daily limit", "message": "kagent run", "url": "u"},
        report_key="x/report.html",
    )
    body = {
        "run_id": run.run_id, "status": "RUNNING", "slug": run.slug, "url": run.url, "email": "b***@example.com",
        "timestamps": {}, "submission_url": None,
        **describe_fields(run, lambda key, expiry: f"https://s3/{key}?X-Amz-Expires={expiry}", 900),
    }  # fmt: skip
    errors = [error.message for error in validator.iter_errors(body)]
    assert errors == []
    body["progress"]["phase"] = "dreaming"
    assert list(validator.iter_errors(body))  # the schema is not a blank cheque
