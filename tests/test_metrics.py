"""runner.metrics: direction, scoring from the scaffold's internal prediction form, target transforms."""

import numpy as np
import pytest

from runner.errors import InputError
from runner.metrics import METRIC_NAMES, best_threshold, get_metric


def test_every_cli_metric_exists():
    assert set(METRIC_NAMES) == {"rmse", "rmsle", "mae", "roc_auc", "logloss", "accuracy", "f1"}


@pytest.mark.parametrize(("name", "good", "bad"), [("rmse", 0.1, 0.2), ("roc_auc", 0.9, 0.8), ("logloss", 0.3, 0.5)])
def test_better_follows_the_metric_direction(name: str, good: float, bad: float):
    metric = get_metric(name)
    assert metric.better(good, bad)
    assert not metric.better(bad, good)
    assert not metric.better(good, good)


def test_a_missing_or_nan_score_never_wins():
    metric = get_metric("accuracy")
    assert metric.better(0.1, float("nan"))
    assert not metric.better(float("nan"), 0.1)
    assert metric.better(0.1, None)


def test_classification_metrics_score_probability_matrices():
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    assert get_metric("accuracy").score(y, proba) == 0.75
    assert get_metric("roc_auc").score(y, proba) == 1.0
    assert get_metric("f1").score(y, proba) == pytest.approx(2 / 3)
    assert get_metric("logloss").score(y, proba) == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])), rel=1e-6)


def test_multiclass_auc_and_f1_work():
    y = np.array([0, 1, 2, 2])
    proba = np.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.2 / 3
    assert get_metric("roc_auc").score(y, proba) > 0.8
    assert 0 < get_metric("f1").score(y, proba) < 1


def test_rmsle_fits_in_log_space_and_maps_back():
    metric = get_metric("rmsle")
    y = np.array([10.0, 100.0, 1000.0])
    assert np.allclose(metric.inverse(metric.transform(y)), y)
    assert metric.score(y, np.e * (1 + y) - 1) == pytest.approx(1.0)
    assert metric.inverse(np.array([-5.0]))[0] == 0.0


def test_regression_metrics():
    y, pred = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0])
    assert get_metric("mae").score(y, pred) == pytest.approx(2 / 3)
    assert get_metric("rmse").score(y, pred) == pytest.approx(np.sqrt(4 / 3))


def test_names_are_case_insensitive_and_aliases_work():
    assert get_metric("AUC").name == "roc_auc"
    assert get_metric("log_loss").name == "logloss"


def test_an_unknown_metric_is_an_input_error_listing_the_choices():
    with pytest.raises(InputError, match="unknown metric 'mape': choose one of rmse, rmsle"):
        get_metric("mape")


def test_f1_tunes_its_binary_threshold_on_imbalanced_scores():
    y = np.array([0] * 90 + [1] * 10)
    positive = np.concatenate([np.linspace(0.0, 0.3, 90), np.linspace(0.25, 0.45, 10)])
    metric = get_metric("f1")
    assert metric.tunes_threshold and not get_metric("accuracy").tunes_threshold
    threshold, score = best_threshold(metric, y, positive)
    assert threshold < 0.5 and score > 0.8
    assert metric.score(y, np.column_stack([1 - positive, positive])) == 0
