"""openapi.json describes the API app.py serves: generated from the Chalice app, valid OpenAPI 3.0, and in sync."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate

from scripts import openapi

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")


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
