"""chalicelib.wiring: typed assembly (no `Any` in what it declares), nothing made at import, the app's step handlers
handed to the local executor, and the Plan step's tools built from credentials given as values."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib import wiring
from chalicelib.credentials import PlanSecrets
from chalicelib.kaggle_meta import CompetitionMeta, KaggleCredentials
from chalicelib.plan import plan_tools

REPO = Path(__file__).resolve().parent.parent
WIRING = REPO / "chalicelib" / "wiring.py"


def annotations(tree: ast.Module) -> list[ast.expr]:
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = [
                *node.args.posonlyargs,
                *node.args.args,
                *node.args.kwonlyargs,
                node.args.vararg,
                node.args.kwarg,
            ]
            found += [argument.annotation for argument in arguments if argument and argument.annotation]
            found += [node.returns] if node.returns else []
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id[0].isupper():
            found.append(node.value)  # type aliases (StepsSource = Callable[...]) and constants
    return found


def test_the_wiring_declares_no_any() -> None:
    tree = ast.parse(WIRING.read_text(encoding="utf-8"))
    named = {node.id for annotation in annotations(tree) for node in ast.walk(annotation) if isinstance(node, ast.Name)}
    named |= {
        node.attr
        for annotation in annotations(tree)
        for node in ast.walk(annotation)
        if isinstance(node, ast.Attribute)
    }
    assert "Any" not in named
    assert not re.search(r"\bAny\b", WIRING.read_text(encoding="utf-8").split('"""', 2)[2])  # nor imported, nor quoted


def test_the_checker_would_see_an_any() -> None:
    tree = ast.parse("from typing import Any\ndef f(x: int, *, y: 'list[Any]') -> dict[str, Any]: ...\n")
    assert any(isinstance(node, ast.Name) and node.id == "Any" for a in annotations(tree) for node in ast.walk(a))


def test_importing_the_app_makes_no_client_and_loads_no_boto3() -> None:
    code = "import sys, app; print('boto3' in sys.modules, app.config.settings.cache_info().currsize)"
    answer = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert answer.stdout.split() == ["False", "0"]


def test_the_local_executor_gets_the_step_handlers_the_app_hands_over(monkeypatch: pytest.MonkeyPatch) -> None:
    import app  # noqa: PLC0415 - the app module under test

    monkeypatch.setattr(wiring, "_steps", [])
    with pytest.raises(wiring.NoStepHandlers, match="KAGENT_EXECUTOR=local"):
        wiring.app_steps()
    monkeypatch.setattr(wiring, "_service", lambda: "the service")
    assert app._service() == "the service"
    steps = wiring.app_steps()
    assert set(steps) == {"plan", "validate_output", "mark_succeeded", "mark_failed", "reconcile", "sweep"}
    assert steps["plan"] is app.plan and steps["reconcile"] is app.reconcile


def test_the_plan_steps_tools_come_from_the_credentials_handed_over() -> None:
    asked: list[tuple[str, KaggleCredentials]] = []

    def fetch(slug: str, auth: KaggleCredentials) -> CompetitionMeta:
        asked.append((slug, auth))
        return CompetitionMeta(slug=slug)

    secrets = PlanSecrets(values={"KAGGLE_USERNAME": "ann", "KAGGLE_KEY": "k1"}, missing=("/p/OPENAI_API_KEY",))
    tools = plan_tools(secrets, {"OPENAI_BASE_URL": "", "KAGGLE_API_TOKEN": ""}, "gpt-5-mini", fetch)
    assert tools.complete is None  # no key, no base URL: no LLM
    assert tools.competition_meta is not None and tools.competition_meta("titanic").slug == "titanic"
    assert asked == [("titanic", KaggleCredentials(username="ann", key="k1"))]
    assert "OPENAI_API_KEY" in tools.note

    bare = plan_tools(PlanSecrets(), {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, "gpt-5-mini", fetch)
    assert bare.competition_meta is None and bare.complete is not None and bare.note == ""
