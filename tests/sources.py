"""The repository's Python files read as data, never imported: `parse` (ast), `require` (skip, naming the file, until
it has landed) and the Lambdas app.py declares. Shared by the wiring tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "app.py"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.relative_to(REPO)} has not landed yet")
    return path


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def decorator_name(decorator: ast.expr) -> tuple[str, str | None] | None:
    """('lambda_function' | 'on_cw_event' | ..., name= keyword) for an @app.<kind>(...) decorator."""
    if isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute):
        name = next(
            (k.value.value for k in decorator.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)), None
        )
        if name is None and decorator.func.attr == "lambda_function" and decorator.args:
            first = decorator.args[0]
            name = first.value if isinstance(first, ast.Constant) else None
        return decorator.func.attr, name
    return None


def app_lambdas() -> dict[str, str]:
    """Function name Chalice gives each non-API Lambda of app.py -> its decorator kind."""
    found = {}
    for node in ast.walk(parse(require(APP))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                kind_and_name = decorator_name(decorator)
                if kind_and_name and kind_and_name[0] in {
                    "lambda_function",
                    "on_cw_event",
                    "schedule",
                    "on_s3_event",
                    "on_sns_message",
                    "on_sqs_message",
                    "on_dynamodb_record",
                    "on_ws_message",
                }:
                    found[kind_and_name[1] or node.name] = kind_and_name[0]
    return found


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> text) under `root`: a small made-up source tree for a checker's own tests."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
