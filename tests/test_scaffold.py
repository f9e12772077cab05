"""runner.scaffold and runner.contract: preparation, deadline-aware CV, the model-body contract, pickle-free I/O."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression

from runner.contract import ContractError, ModelBody, TaskSpec, check_body, load_body_from_source
from runner.metrics import get_metric
from runner.profile import Tables, profile_competition
from runner.scaffold import CandidateError, Evaluation, PreparedData, blend, evaluate, prepare
from runner.templates import TEMPLATES, load_template, template_source


def small_tables(n: int = 80, seed: int = 0) -> Tables:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n + 20)
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n + 20)],
            "x": x,
            "colour": rng.choice(["red", "blue"], size=n + 20),
            "when": pd.date_range("2020-01-01", periods=n + 20, freq="D").strftime("%Y-%m-%d"),
            "y": np.where(x + rng.normal(scale=0.5, size=n + 20) > 0, "yes", "no"),
        }
    )
    train, test = frame.iloc[:n].reset_index(drop=True), frame.iloc[n:].drop(columns=["y"]).reset_index(drop=True)
    test.loc[:4, "colour"] = "green"  # only in test
    sample = pd.DataFrame({"id": test["id"][::-1].to_numpy(), "y": "0.5"})
    return Tables(train, test, sample)


def prepared(n: int = 80) -> PreparedData:
    tables = small_tables(n)
    profile = profile_competition(tables, "id", ["y"], "roc_auc")
    data, _roles = prepare(tables, profile)
    return data


def test_prepare_never_uses_the_id_and_orders_test_rows_like_the_sample():
    data = prepared()
    assert "id" not in data.X.columns and "y" not in data.X.columns
    assert data.test_ids == [f"r{i}" for i in range(99, 79, -1)]
    assert data.X_test["x"].iloc[0] == pytest.approx(small_tables().test["x"].iloc[-1])
    assert data.classes == ["no", "yes"] and set(np.unique(data.y)) == {0, 1}


def test_categories_seen_only_in_test_become_missing_and_dates_become_numbers():
    data = prepared()
    assert isinstance(data.X["colour"].dtype, pd.CategoricalDtype)
    assert list(data.X["colour"].cat.categories) == ["blue", "red"]
    assert data.X_test["colour"].isna().sum() == 5
    assert "when__year" in data.X.columns and "when" not in data.X.columns
    assert data.task.categorical == ["colour"] and "x" in data.task.numeric


def test_prepared_data_round_trips_without_pickle(tmp_path: Path):
    data = prepared()
    data.save(tmp_path / "d")
    loaded = PreparedData.load(tmp_path / "d")
    pd.testing.assert_frame_equal(loaded.X, data.X)
    pd.testing.assert_frame_equal(loaded.X_test, data.X_test)
    assert np.array_equal(loaded.y, data.y) and loaded.task == data.task and loaded.test_ids == data.test_ids


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_follows_the_contract_and_scores(name: str):
    data = prepared()
    evaluation = evaluate(load_template(name), data, deadline=float("inf"), n_folds=3)
    assert evaluation.n_folds == 3 and 0.5 < evaluation.cv_score <= 1
    assert evaluation.test_predictions.shape == (20, 2)
    assert np.allclose(evaluation.test_predictions.sum(axis=1), 1)
    assert evaluation.oof_mask.all() and evaluation.test_source == "final_fit"
    assert "def build_model(task)" in template_source(name)


def test_evaluation_round_trips_without_pickle(tmp_path: Path):
    evaluation = evaluate(load_template("linear"), prepared(), deadline=float("inf"), n_folds=2)
    evaluation.save(tmp_path / "e")
    loaded = Evaluation.load(tmp_path / "e")
    assert loaded.cv_score == evaluation.cv_score and loaded.fold_scores == evaluation.fold_scores
    assert np.array_equal(loaded.test_predictions, evaluation.test_predictions)
    np.load(tmp_path / "e" / "oof.npy", allow_pickle=False)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slow_body(clock: FakeClock, seconds: float) -> ModelBody:
    class Slow(DummyClassifier):
        def fit(self, X, y, sample_weight=None):
            clock.now += seconds
            return super().fit(X, y)

    return ModelBody("slow", lambda task: Slow(strategy="prior"))


def test_cv_stops_early_and_averages_fold_models_when_the_deadline_nears():
    clock = FakeClock()
    evaluation = evaluate(slow_body(clock, 10), prepared(), deadline=24, n_folds=5, clock=clock)
    assert evaluation.n_folds == 1 and evaluation.test_source == "fold_average"
    assert evaluation.oof_mask.sum() == 16  # one fold of 80 rows
    assert np.isfinite(evaluation.cv_score)


def test_with_time_left_all_folds_run_and_a_final_fit_predicts():
    clock = FakeClock()
    evaluation = evaluate(slow_body(clock, 1), prepared(), deadline=100, n_folds=5, clock=clock)
    assert evaluation.n_folds == 5 and evaluation.test_source == "final_fit" and clock.now == 6


def test_add_features_runs_on_train_and_test_together_and_new_text_becomes_category():
    seen = {}

    def add_features(df):
        seen["rows"] = len(df)
        return df.assign(sign=np.where(df["x"] > 0, "pos", "neg"))

    def build_model(task):
        seen["categorical"] = task.categorical
        return DummyClassifier(strategy="prior")

    evaluate(ModelBody("feat", build_model, add_features), prepared(), deadline=float("inf"), n_folds=2)
    assert seen == {"rows": 100, "categorical": ["colour", "sign"]}


def test_add_features_that_drops_rows_is_rejected():
    body = ModelBody("bad", lambda task: DummyClassifier(), lambda df: df.iloc[:10])
    with pytest.raises(CandidateError, match="add_features returned 10 rows, expected 100"):
        evaluate(body, prepared(), deadline=float("inf"))


def test_a_regressor_for_a_classification_task_breaks_the_contract():
    with pytest.raises(ContractError, match="lacks predict_proba"):
        evaluate(ModelBody("reg", lambda task: LinearRegression()), prepared(), deadline=float("inf"))


def test_a_failing_fit_is_a_one_line_candidate_error():
    class Broken(DummyClassifier):
        def fit(self, X, y, sample_weight=None):
            raise ValueError("boom\nsecond line")

    with pytest.raises(CandidateError, match=r"^broken: fit failed: ValueError: boom$"):
        evaluate(ModelBody("broken", lambda task: Broken()), prepared(), deadline=float("inf"))


def test_load_body_from_source_reports_syntax_errors_and_missing_build_model():
    with pytest.raises(ContractError, match="syntax error at line 1"):
        load_body_from_source("def build_model(task:\n", "x")
    with pytest.raises(ContractError, match="must define a function build_model"):
        load_body_from_source("x = 1\n", "x")
    with pytest.raises(ContractError, match="exactly one argument"):
        load_body_from_source("def build_model():\n    return None\n", "x")


def test_check_body_with_a_task_builds_and_checks_the_estimator():
    task = TaskSpec(type="binary", metric="roc_auc", seed=0, n_rows=10, numeric=["x"])
    check_body(load_template("lightgbm_gbdt"), task)
    assert TaskSpec.from_dict(task.to_dict()) == task


def test_a_blend_is_returned_only_when_it_beats_every_single_model():
    y = np.array([0, 1] * 20)
    metric = get_metric("logloss")
    noisy = np.random.default_rng(0).uniform(0.2, 0.8, size=40)

    def ev(name, p):
        proba = np.column_stack([1 - p, p])
        return Evaluation(name, "logloss", metric.score(y, proba), [], proba, proba[:5], 0.0, 5)

    good = np.where(y == 1, 0.7, 0.3)
    mixed = blend([ev("a", good), ev("b", 0.5 * good + 0.5 * noisy)], metric, y)
    assert mixed is None or metric.better(mixed.cv_score, metric.score(y, np.column_stack([1 - good, good])))
    complementary = [
        ev("a", np.where(np.arange(40) < 20, good, 0.5)),
        ev("b", np.where(np.arange(40) >= 20, good, 0.5)),
    ]
    combined = blend(complementary, metric, y)
    assert combined is not None and combined.name.startswith("blend(")
    assert metric.better(combined.cv_score, min(e.cv_score for e in complementary))


def test_a_class_with_a_single_row_keeps_five_stratified_folds():
    data = prepared()
    data.y = np.where(np.arange(len(data.y)) % 2 == 0, 0, 1)
    data.y[0] = 2
    data.classes.append("rare")
    data.task = TaskSpec.from_dict({**data.task.to_dict(), "type": "multiclass", "n_classes": 3, "metric": "logloss"})
    evaluation = evaluate(load_template("linear"), data, deadline=float("inf"))
    assert evaluation.n_folds == 5 and evaluation.test_predictions.shape == (20, 3)
    assert np.isfinite(evaluation.cv_score)
