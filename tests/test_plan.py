"""Planning: the LLM's answer is schema-checked, and every failure falls back to the heuristic plan."""

from __future__ import annotations

import json

import pytest

from chalicelib.kaggle_meta import CompetitionMeta
from chalicelib.plan import METRIC_NAMES, PlanError, heuristic_plan, make_plan, metric_name, parse_plan

GOOD = {"task_type": "binary", "metric": "accuracy", "target_hints": ["Survived"], "approach": "LightGBM with CV"}


def test_without_an_llm_the_plan_is_heuristic_and_says_so():
    plan = make_plan("titanic", None, None)
    assert plan.source == "heuristic" and plan.note.startswith("no LLM configured")
    assert plan.task_type == "unknown"


@pytest.mark.parametrize(
    ("metric", "task_type", "name"),
    [
        ("Categorization Accuracy", "binary", "accuracy"),
        ("Area Under Receiver Operating Characteristic Curve (AUC)", "binary", "roc_auc"),
        ("Root Mean Squared Logarithmic Error", "regression", "rmsle"),
        ("RMSE", "regression", "rmse"),
        ("Multiclass Loss", "multiclass", "logloss"),
        ("Log Loss", "binary", "logloss"),
        ("Mean Absolute Error", "regression", "mae"),
    ],
)
def test_heuristic_plan_reads_the_kaggle_metric(metric, task_type, name):
    plan = heuristic_plan("x", CompetitionMeta(slug="x", evaluation_metric=metric, files=("train.csv", "test.csv")))
    assert (plan.task_type, plan.metric) == (task_type, name)
    assert "train.csv" in plan.approach


def test_the_metric_names_are_the_runners():
    from runner.metrics import METRIC_NAMES as RUNNER_METRIC_NAMES  # noqa: PLC0415

    assert METRIC_NAMES == RUNNER_METRIC_NAMES


@pytest.mark.parametrize(
    "meta",
    [None, CompetitionMeta(slug="x"), CompetitionMeta(slug="x", evaluation_metric="Quadratic Weighted Kappa")],
)
def test_a_heuristic_plan_without_a_known_metric_leaves_it_to_the_runner_and_says_so(meta):
    plan = heuristic_plan("x", meta)
    assert plan.metric is None and plan.as_dict()["metric"] is None
    assert "the runner infers the metric from the data" in plan.note
    assert "inferred from the data" in plan.summary


@pytest.mark.parametrize(
    ("said", "metric"),
    [
        ("accuracy", "accuracy"),
        ("AUC", "roc_auc"),
        ("ROC-AUC", "roc_auc"),
        ("log_loss", "logloss"),
        ("Root Mean Squared Logarithmic Error", "rmsle"),
        ("F1 score", "f1"),
        ("mean absolute error", "mae"),
        ("quadratic weighted kappa", None),
        ("", None),
        (None, None),
    ],
)
def test_the_llm_plans_metric_is_a_runner_metric_name_or_none(said, metric):
    plan = parse_plan(json.dumps(GOOD | {"metric": said}))
    assert plan.metric == metric
    assert plan.metric is None or plan.metric in METRIC_NAMES
    assert ("the runner infers the metric" in plan.note) == (metric is None)


def test_every_metric_a_plan_can_carry_is_one_the_runner_accepts():
    from runner.metrics import get_metric  # noqa: PLC0415

    texts = ["Categorization Accuracy", "Multiclass Loss", "auc", "RMSLE", "rmse", "MAE", "f1", "logloss", "acc"]
    for text in texts:
        name = metric_name(text)
        assert name is not None and get_metric(name).name == name


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
        (json.dumps(GOOD | {"metric": 3}), "metric"),
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
