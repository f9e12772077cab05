"""runner.scaffold and runner.contract: preparation, deadline-aware CV in the workers, the model-body contract."""

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from runner.contract import ContractError, TaskSpec, check_body, load_body_from_source
from runner.metrics import get_metric
from runner.profile import Tables, profile_competition
from runner.sandbox import FitReply, FitRequest, SandboxLimits, Workers
from runner.scaffold import BodySource, CandidateError, Evaluation, PreparedData, evaluate, prepare
from runner.selection import blend
from runner.templates import TEMPLATES, load_template, template_source
from tests.fake_clock import FakeClock


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


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    with Workers.start(SandboxLimits(memory_mb=2000), threads=2) as started:
        yield started


def run(workers: Workers, source: str, data: PreparedData, name: str = "body", **kwargs) -> Evaluation:
    workers.load(data.X, data.X_test)
    return evaluate(BodySource(name, source, trusted=True), data, float("inf"), workers=workers, **kwargs)


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_follows_the_contract_and_scores(workers: Workers, name: str):
    evaluation = run(workers, template_source(name), prepared(), name, n_folds=3)
    assert evaluation.n_folds == 3 and 0.5 < evaluation.cv_score <= 1
    assert evaluation.test_predictions.shape == (20, 2)
    assert np.allclose(evaluation.test_predictions.sum(axis=1), 1)
    assert evaluation.oof_mask.all() and evaluation.test_source == "final_fit"
    assert "def build_model(task)" in template_source(name)


class SlowWorkers:
    """Stands in for the workers to test the deadline logic: every fit takes `seconds` of a fake clock."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock, self.seconds, self.fits = clock, seconds, 0
        self.n_train = self.n_rows = 0

    def fit_predict(self, request: FitRequest) -> FitReply:
        self.clock.now += self.seconds
        self.fits += 1
        rows = len(request.predict_rows)
        return FitReply("ok", "", np.full((rows, 2), 0.5), {}, self.seconds, "", True, self.seconds)


def test_cv_stops_early_and_averages_fold_models_when_the_deadline_nears():
    clock = FakeClock()
    body = BodySource("slow", "unused", trusted=True)
    evaluation = evaluate(body, prepared(), 24, workers=SlowWorkers(clock, 10), n_folds=5, clock=clock)
    assert evaluation.n_folds == 1 and evaluation.test_source == "fold_average"
    assert evaluation.oof_mask.sum() == 16  # one fold of 80 rows
    assert np.isfinite(evaluation.cv_score)


def test_with_time_left_all_folds_run_and_a_final_fit_predicts():
    clock = FakeClock()
    fake = SlowWorkers(clock, 1)
    evaluation = evaluate(BodySource("slow", "unused"), prepared(), 100, workers=fake, n_folds=5, clock=clock)
    assert evaluation.n_folds == 5 and evaluation.test_source == "final_fit" and clock.now == 6 and fake.fits == 6


ADD_FEATURES_BODY = """
import numpy as np
from sklearn.dummy import DummyClassifier


def add_features(df):
    assert len(df) == 100, len(df)
    assert list(df.index) == list(range(100)), "the index was not reset"
    return df.assign(sign=np.where(df["x"] > 0, "pos", "neg"))


def build_model(task):
    assert task.categorical == ["colour", "sign"], task.categorical
    return DummyClassifier(strategy="prior")
"""


def test_add_features_runs_on_train_and_test_together_and_new_text_becomes_category(workers: Workers):
    evaluation = run(workers, ADD_FEATURES_BODY, prepared(), n_folds=2)
    assert evaluation.n_folds == 2


def test_add_features_that_drops_rows_is_rejected(workers: Workers):
    body = "from sklearn.dummy import DummyClassifier\n"
    body += "def add_features(df):\n    return df.iloc[:10]\n"
    body += "def build_model(task):\n    return DummyClassifier()\n"
    with pytest.raises(CandidateError, match="add_features failed: ValueError: returned 10 rows, expected 100"):
        run(workers, body, prepared())


def test_a_regressor_for_a_classification_task_breaks_the_contract(workers: Workers):
    body = "from sklearn.linear_model import LinearRegression\ndef build_model(task):\n    return LinearRegression()\n"
    with pytest.raises(CandidateError, match="lacks predict_proba"):
        run(workers, body, prepared())


def test_a_failing_fit_is_a_one_line_candidate_error(workers: Workers):
    body = (
        "from sklearn.dummy import DummyClassifier\n"
        "class Broken(DummyClassifier):\n"
        "    def fit(self, X, y, sample_weight=None):\n"
        "        raise ValueError('boom\\nsecond line')\n"
        "def build_model(task):\n    return Broken()\n"
    )
    with pytest.raises(CandidateError, match=r"^broken: fit failed: ValueError: boom$"):
        run(workers, body, prepared(), "broken")


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


def test_a_class_with_a_single_row_keeps_five_stratified_folds(workers: Workers):
    data = prepared()
    data.y = np.where(np.arange(len(data.y)) % 2 == 0, 0, 1)
    data.y[0] = 2
    data.classes.append("rare")
    data.task = TaskSpec.from_dict({**data.task.to_dict(), "type": "multiclass", "n_classes": 3, "metric": "logloss"})
    evaluation = run(workers, template_source("linear"), data, "linear")
    assert evaluation.n_folds == 5 and evaluation.test_predictions.shape == (20, 3)
    assert np.isfinite(evaluation.cv_score)


def test_a_blend_scores_each_fold_it_is_given_so_its_spread_is_reported_like_a_models():
    y = np.array([0, 1] * 20)
    metric = get_metric("logloss")
    good = np.where(y == 1, 0.7, 0.3)

    def ev(name, p):
        proba = np.column_stack([1 - p, p])
        return Evaluation(name, "logloss", metric.score(y, proba), [], proba, proba[:5], 0.0, 5)

    complementary = [
        ev("a", np.where(np.arange(40) < 20, good, 0.5)),
        ev("b", np.where(np.arange(40) >= 20, good, 0.5)),
    ]
    folds = [np.arange(i, 40, 4) for i in range(4)]
    combined = blend(complementary, metric, y, folds=folds)
    assert combined is not None
    assert combined.fold_scores == pytest.approx([metric.score(y[rows], combined.oof[rows]) for rows in folds])
    assert len(combined.fold_scores) == 4
    assert blend(complementary, metric, y).fold_scores == []  # no folds given: none invented
