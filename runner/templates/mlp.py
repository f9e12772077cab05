"""Template model body: a small neural net (scikit-learn's MLP) on quantile-normalised numbers and one-hot categories.

Smooth functions of many features at once, which trees approximate in steps: on data like that (e.g. many continuous
measurements) it beats the boosters, and elsewhere it is a blend partner unlike them. Early stopping on a held-out
10% picks the epoch; a time limit (the fit's share of the budget) ends training sooner and keeps the best weights.
Regression targets are standardised so the loss means the same on any scale.
"""

import time

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, QuantileTransformer, StandardScaler
from sklearn.utils import resample


def _as_text(frame):
    return frame.astype(object).where(frame.notna(), "__missing__").astype(str)


def _timed(base, seconds):
    """`base` (an MLP class) that also stops, keeping its best weights so far, once `seconds` have passed."""

    def fit(self, X, y, **kwargs):
        self._stop_at = time.monotonic() + seconds
        return base.fit(self, X, y, **kwargs)

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        base._update_no_improvement_count(self, early_stopping, X, y, sample_weight)
        if time.monotonic() > self._stop_at:
            self._no_improvement_count = self.n_iter_no_change + 1  # the solver's own stop: best weights restored

    methods = {"fit": fit, "_update_no_improvement_count": _update_no_improvement_count, "_stop_at": float("inf")}
    return type("TimedMLP", (base,), methods)


def build_model(task):
    numeric = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        QuantileTransformer(output_distribution="normal", n_quantiles=200, random_state=task.seed),
    )
    categorical = make_pipeline(
        FunctionTransformer(_as_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, max_categories=50, sparse_output=False),
    )
    encode = ColumnTransformer(
        [("numeric", numeric, list(task.numeric)), ("categorical", categorical, list(task.categorical))],
        remainder="drop",
    )
    params = dict(
        hidden_layer_sizes=(128, 64),
        alpha=1e-3,
        batch_size=256 if task.n_rows < 50000 else 512,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        max_iter=300,
        random_state=task.seed,
    )
    seconds = max(1.0, 0.9 * task.fit_seconds)
    if task.type == "regression":
        regressor = _timed(MLPRegressor, seconds)(**params)
        return _sampled(
            make_pipeline(encode, TransformedTargetRegressor(regressor=regressor, transformer=StandardScaler())), task
        )
    return _sampled(make_pipeline(encode, _timed(MLPClassifier, seconds)(**params)), task)


class SampledFit(BaseEstimator):
    """Fits `model` on a random (stratified) sample of at most `max_rows` rows (0: all); predicts every row. The run's
    memory plan sets `task.max_fit_rows` when a fit on all rows would not fit under the memory ceiling."""

    def __init__(self, model=None, max_rows=0, seed=0, stratify=False):
        self.model = model
        self.max_rows = max_rows
        self.seed = seed
        self.stratify = stratify

    def fit(self, X, y):
        y = np.asarray(y)
        if self.max_rows and len(y) > self.max_rows:
            rows = resample(
                np.arange(len(y)),
                n_samples=self.max_rows,
                replace=False,
                random_state=self.seed,
                stratify=y if self.stratify else None,
            )
            X, y = X.iloc[np.sort(rows)], y[np.sort(rows)]
        self.model_ = clone(self.model).fit(X, y)
        if self.stratify:  # a classifier
            self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


def _sampled(model, task):
    if not task.max_fit_rows or task.max_fit_rows >= task.n_rows:
        return model
    return SampledFit(model, max_rows=task.max_fit_rows, seed=task.seed, stratify=task.type != "regression")
