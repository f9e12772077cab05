"""Template model body: scikit-learn's HistGradientBoosting with native categoricals and early stopping.

A second gradient-boosting implementation with different binning and regularisation: a useful blend partner for
LightGBM and a fallback that needs nothing beyond scikit-learn. It grows its trees in warm-started chunks and stops
when early stopping does or when its share of the time budget (1.5x the fit's share) is spent, so one fit on large
multiclass data cannot overrun the run's deadline.
"""

import time

from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

CHUNK = 50  # trees per warm-started step


class TimedHistGradientBoosting(BaseEstimator):
    """HistGradientBoosting (`params`: its parameters) that stops adding trees once `seconds` have passed.

    `fit` trains a fresh booster in warm-started chunks of CHUNK trees up to `params["max_iter"]`, stopping when early
    stopping ends a chunk short or the time is up; its own parameters never change.
    """

    def __init__(self, task_type="regression", params=None, *, seconds=60.0):
        self.task_type = task_type
        self.params = params
        self.seconds = seconds

    def fit(self, X, y, sample_weight=None):
        stop_at = time.monotonic() + self.seconds
        params = dict(self.params or {})
        target = params.pop("max_iter", 100)
        base = HistGradientBoostingRegressor if self.task_type == "regression" else HistGradientBoostingClassifier
        model = base(warm_start=True, max_iter=min(CHUNK, target), **params)
        while True:
            model.fit(X, y, sample_weight=sample_weight)
            stopped_early = model.n_iter_ < model.max_iter
            if stopped_early or model.max_iter >= target or time.monotonic() > stop_at:
                break
            model.set_params(max_iter=min(model.max_iter + CHUNK, target))
        self.model_ = model
        self.n_iter_ = model.n_iter_
        if self.task_type != "regression":
            self.classes_ = model.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


def build_model(task):
    n = task.n_rows
    params = dict(
        learning_rate=0.08,
        max_iter=min(1000, max(200, n)),
        max_leaf_nodes=15 if n < 2000 else 31,
        min_samples_leaf=10 if n < 1000 else 20,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=30,
        tol=1e-4,
        categorical_features="from_dtype",
        random_state=task.seed,
    )
    if task.type == "regression":
        params["loss"] = "absolute_error" if task.metric == "mae" else "squared_error"
    model = TimedHistGradientBoosting(task.type, params, seconds=max(1.0, 1.5 * task.fit_seconds))
    steps = []
    if task.text:  # raw text columns are for the text templates: train on the numbers and categories
        steps.append(FunctionTransformer(drop_columns, kw_args={"columns": list(task.text)}))
    if task.sparse:  # histogram boosting bins dense columns only: the sparse ones become dense float32 for the fit
        steps.append(FunctionTransformer(densify, kw_args={"columns": list(task.sparse)}))
    return make_pipeline(*steps, model) if steps else model


def drop_columns(frame, columns):
    return frame.drop(columns=columns)  # X's own column order: the same trees as without text columns


def densify(frame, columns):
    return frame.astype(dict.fromkeys(columns, "float32"))  # categories keep their dtype (native categoricals)
