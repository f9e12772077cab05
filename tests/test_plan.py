"""Planning: the LLM's answer is schema-checked, and every failure falls back to the heuristic plan."""

from __future__ import annotations

import json

import pytest

from chalicelib.kaggle_meta import CompetitionMeta
from chalicelib.plan import PlanError, heuristic_plan, make_plan, parse_plan

GOOD = {"task_type": "binary", "metric": "accuracy", "target_hints": ["Survived"], "approach": "LightGBM with CV"}


def test_without_an_llm_the_plan_is_heuristic_and_says_so():
    plan = make_plan("titanic", None, None)
    assert plan.source == "heuristic" and plan.note == "no LLM configured"
    assert plan.task_type == "unknown"


@pytest.mark.parametrize(
    ("metric", "task_type", "name"),
    [
        ("Categorization Accuracy", "binary", "accuracy"),
        ("Area Under Receiver Operating Characteristic Curve (AUC)", "binary", "roc_auc"),
        ("Root Mean Squared Logarithmic Error", "regression", "rmsle"),
        ("RMSE", "regression", "rmse"),
        ("Multiclass Loss", "multiclass", "log_loss"),
        ("Mean Absolute Error", "regression", "mae"),
    ],
)
def test_heuristic_plan_reads_the_kaggle_metric(metric, task_type, name):
    plan = heuristic_plan("x", CompetitionMeta(slug="x", evaluation_metric=metric, files=("train.csv", "test.csv")))
    assert (plan.task_type, plan.metric) == (task_type, name)
    assert "train.csv" in plan.approach


def test_a_schema_conforming_answer_becomes_the_plan_even_in_a_fence():
    plan = make_plan("titanic", None, lambda messages: "```json\n" + json.dumps(GOOD) + "\n```")
    assert plan.source == "llm" and plan.target_hints == ("Survived",)
    assert "binary task scored by accuracy" in plan.summary


def test_the_prompt_carries_the_competition_facts():
    seen = []
    meta = CompetitionMeta(slug="titanic", title="Titanic", evaluation_metric="Accuracy", files=("train.csv",))
    make_plan("titanic", meta, lambda messages: seen.append(messages) or json.dumps(GOOD))
    assert "Titanic" in seen[0][-1]["content"] and "train.csv" in seen[0][-1]["content"]
    assert "JSON" in seen[0][0]["content"]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("no json here", "no JSON object"),
        ("{not json}", "not valid JSON"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "metric"}), "lacks metric"),
        (json.dumps(GOOD | {"task_type": "images"}), "task_type"),
        (json.dumps(GOOD | {"approach": "x" * 301}), "approach"),
        (json.dumps(GOOD | {"target_hints": "Survived"}), "target_hints"),
        (json.dumps(GOOD | {"target_hints": ["a", "b", "c", "d", "e", "f"]}), "target_hints"),
    ],
)
def test_answers_off_the_schema_are_rejected_with_the_reason(answer, why):
    with pytest.raises(PlanError, match=why):
        parse_plan(answer)
    plan = make_plan("titanic", None, lambda messages: answer)
    assert plan.source == "heuristic" and why in plan.note


def test_an_llm_failure_falls_back_to_the_heuristic_plan():
    def broken(messages):
        raise TimeoutError("the LLM took too long")

    plan = make_plan("titanic", None, broken)
    assert plan.source == "heuristic" and "TimeoutError" in plan.note
