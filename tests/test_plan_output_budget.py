"""The Plan step's LLM call leaves reasoning models room to answer, and never uses an answer that was cut off.

Reasoning models (the default gpt-5-mini) count hidden reasoning against the output limit: an answer cut at the limit
(finish_reason "length") or off the schema falls back to the heuristic plan, with the reason in the plan's note.
The real `openai` client talks to the fake server on 127.0.0.1 through chalicelib.plan.plan_complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from chalicelib import config, wiring
from chalicelib.kaggle_meta import CompetitionMeta
from chalicelib.plan import PLAN_MAX_OUTPUT_TOKENS, make_plan, plan_complete
from tests.fake_openai import FakeOpenAI, Reply, ok

META = CompetitionMeta(slug="titanic", evaluation_metric="Categorization Accuracy", files=("train.csv",))
GOOD = {"task_type": "binary", "metric": "accuracy", "target_hints": ["Survived"], "approach": "gradient boosting"}


@pytest.fixture(autouse=True)
def plan_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KAGENT_PLAN_MODEL", "gpt-5-mini")
    wiring.reset(clients=False)
    yield
    wiring.reset(clients=False)


def plan_with(server: FakeOpenAI) -> object:
    complete = plan_complete({"OPENAI_BASE_URL": server.base_url}, config.settings().plan_model)
    assert complete is not None
    return make_plan("titanic", META, complete)


def cut_off(content: str) -> Reply:
    return Reply(content=content, completion_tokens=PLAN_MAX_OUTPUT_TOKENS, finish_reason="length")


def test_the_plan_call_leaves_a_reasoning_model_thousands_of_output_tokens():
    with FakeOpenAI([ok(json.dumps(GOOD))]) as server:
        plan = plan_with(server)

    [request] = server.requests
    assert request["max_tokens"] == PLAN_MAX_OUTPUT_TOKENS >= 4000
    assert plan.source == "llm" and plan.metric == "accuracy"


def test_an_answer_cut_off_at_the_limit_falls_back_to_the_heuristic_plan_saying_so():
    with FakeOpenAI([cut_off('{"task_type": "binary", "metric": "accur')]) as server:
        plan = plan_with(server)

    assert plan.source == "heuristic" and plan.metric == "accuracy"  # the heuristic reads Kaggle's metric
    assert "cut off at 4000 output tokens" in plan.note, plan.note


def test_a_cut_off_answer_is_not_used_even_when_a_whole_json_object_survived_the_cut():
    truncated = json.dumps({**GOOD, "task_type": "regression"}) + "\n\nNote: the target is"
    with FakeOpenAI([cut_off(truncated)]) as server:
        plan = plan_with(server)

    assert plan.source == "heuristic" and plan.task_type == "binary"
    assert "cut off" in plan.note


def test_an_answer_off_the_schema_falls_back_with_the_reason_in_the_note():
    with FakeOpenAI([ok(json.dumps({**GOOD, "task_type": "tabular"}))]) as server:
        plan = plan_with(server)

    assert plan.source == "heuristic"
    assert "LLM plan rejected: task_type must be one of" in plan.note, plan.note
