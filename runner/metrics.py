"""Metric objects: each knows its name, direction, what prediction it scores and the target transform that suits it.

Predictions are scored in the scaffold's internal form: a 1-D array of values for regression and an (n, k) matrix of
class probabilities for classification (column j = encoded class j; in binary tasks column 1 is the positive class).
Each metric turns that form into what it scores (labels by argmax, positive-class probability, ...), so code that
chooses the best candidate only calls `metric.better(a, b)` and never branches on the metric's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

from chalicelib.vocabulary import HIGHER_IS_BETTER, METRIC_ALIASES, METRIC_NAMES, direction_text
from runner.errors import InputError

REGRESSION = "regression"
CLASSIFICATION = "classification"
_EPS = 1e-15


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _log1p_clipped(values: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(values, 0, None))


def _expm1_clipped(values: np.ndarray) -> np.ndarray:
    return np.clip(np.expm1(values), 0, None)


def _labels(proba: np.ndarray) -> np.ndarray:
    return np.asarray(proba).argmax(axis=1)


def _rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(pred, float)) ** 2)))


def _rmsle(y: np.ndarray, pred: np.ndarray) -> float:
    return _rmse(_log1p_clipped(np.asarray(y, float)), _log1p_clipped(np.asarray(pred, float)))


def _mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(pred, float))))


def _roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    proba = np.asarray(proba, float)
    if proba.shape[1] == 2:
        return float(skm.roc_auc_score(y, proba[:, 1]))
    normalised = proba / np.clip(proba.sum(axis=1, keepdims=True), _EPS, None)
    return float(skm.roc_auc_score(y, normalised, multi_class="ovr", labels=np.arange(proba.shape[1])))


def _logloss(y: np.ndarray, proba: np.ndarray) -> float:
    proba = np.clip(np.asarray(proba, float), _EPS, 1 - _EPS)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return float(skm.log_loss(y, proba, labels=np.arange(proba.shape[1])))


def _accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float(skm.accuracy_score(y, _labels(proba)))


def _f1(y: np.ndarray, proba: np.ndarray) -> float:
    proba = np.asarray(proba)
    average = "binary" if proba.shape[1] == 2 else "macro"
    return float(skm.f1_score(y, _labels(proba), average=average, zero_division=0))


@dataclass(frozen=True)
class Metric:
    """A competition metric. `score(y_true, prediction)` takes predictions in the scaffold's internal form."""

    name: str
    higher_is_better: bool
    family: str  # REGRESSION or CLASSIFICATION: which task types it can score
    needs_proba: bool  # scores probabilities (so submissions of labels lose information)
    _score: Callable[[np.ndarray, np.ndarray], float]
    # The scaffold fits regression models on transform(y) and maps predictions back with inverse (log space for rmsle).
    transform: Callable[[np.ndarray], np.ndarray] = _identity
    inverse: Callable[[np.ndarray], np.ndarray] = _identity
    # Scores hard labels whose best cut-off depends on class balance (f1): tune the binary decision threshold on
    # out-of-fold predictions instead of cutting at 0.5.
    tunes_threshold: bool = False

    def score(self, y_true: np.ndarray, prediction: np.ndarray) -> float:
        return self._score(np.asarray(y_true), np.asarray(prediction))

    def better(self, a: float | None, b: float | None) -> bool:
        """True when score `a` is strictly better than score `b` (a missing or NaN score is never better)."""
        if a is None or not np.isfinite(a):
            return False
        if b is None or not np.isfinite(b):
            return True
        return a > b if self.higher_is_better else a < b

    @property
    def worst(self) -> float:
        return -np.inf if self.higher_is_better else np.inf

    @property
    def direction(self) -> str:
        return direction_text(self.higher_is_better)


# (family, needs_proba, score, options) per metric of the vocabulary; its direction comes from the vocabulary too.
_IMPLEMENTATIONS: dict[str, tuple[str, bool, Callable[[np.ndarray, np.ndarray], float], dict[str, Any]]] = {
    "rmse": (REGRESSION, False, _rmse, {}),
    "rmsle": (REGRESSION, False, _rmsle, {"transform": _log1p_clipped, "inverse": _expm1_clipped}),
    "mae": (REGRESSION, False, _mae, {}),
    "roc_auc": (CLASSIFICATION, True, _roc_auc, {}),
    "logloss": (CLASSIFICATION, True, _logloss, {}),
    "accuracy": (CLASSIFICATION, False, _accuracy, {}),
    "f1": (CLASSIFICATION, False, _f1, {"tunes_threshold": True}),
}
METRICS: dict[str, Metric] = {
    name: Metric(name, HIGHER_IS_BETTER[name], family, proba, score, **options)
    for name in METRIC_NAMES
    for family, proba, score, options in [_IMPLEMENTATIONS[name]]
}


def binary_decisions(positive_proba: np.ndarray, threshold: float) -> np.ndarray:
    """Hard binary decisions at `threshold` in the internal (n, 2) form, so any metric can score them."""
    positive = (np.asarray(positive_proba) >= threshold).astype(float)
    return np.column_stack([1 - positive, positive])


def best_threshold(metric: Metric, y: np.ndarray, positive_proba: np.ndarray) -> tuple[float, float]:
    """The cut-off on out-of-fold P(positive) that scores best (and that score); candidates are the data's quantiles."""
    candidates = np.unique(np.quantile(positive_proba, np.linspace(0.01, 0.99, 99)))
    best, best_score = 0.5, metric.score(y, binary_decisions(positive_proba, 0.5))
    for threshold in candidates:
        score = metric.score(y, binary_decisions(positive_proba, float(threshold)))
        if metric.better(score, best_score):
            best, best_score = float(threshold), score
    return best, best_score


def get_metric(name: str) -> Metric:
    """The metric called `name` (case-insensitive; a few common aliases accepted); InputError if unknown."""
    key = name.strip().lower().replace("-", "_")
    key = METRIC_ALIASES.get(key, key)
    if key not in METRICS:
        raise InputError(f"unknown metric {name!r}: choose one of {', '.join(METRIC_NAMES)}")
    return METRICS[key]
