"""Template model body: a small neural net (scikit-learn's MLP) on quantile-normalised numbers and one-hot categories.

Smooth functions of many features at once, which trees approximate in steps: on data like that (e.g. many continuous
measurements) it beats the boosters, and elsewhere it is a blend partner unlike them. Early stopping on a held-out
10% picks the epoch (trained with `partial_fit`, one epoch per call, so only public APIs are used); a time limit (the
fit's share of the budget) ends training sooner and keeps the best weights.
Regression targets are standardised so the loss means the same on any scale. Wide mostly-zero columns
(`task.sparse`) stay one sparse matrix, scaled without centring.
"""

import time

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MaxAbsScaler, OneHotEncoder, QuantileTransformer, StandardScaler


def as_text(frame):
    return frame.astype(object).where(frame.notna(), "(missing)").astype(str)


def sparse_block(frame):
    """The contract's sparse columns (`task.sparse`) as one CSR matrix, signed-log scaled, missing as 0: never dense."""
    block = frame.sparse.to_coo().tocsr().astype(np.float32)
    block.data = np.nan_to_num(np.sign(block.data) * np.log1p(np.abs(block.data)), nan=0.0)
    block.eliminate_zeros()
    return block


class TimedMLP(BaseEstimator):
    """An MLP trained epoch by epoch (`partial_fit`) with early stopping on a held-out share of its rows.

    Stops when the validation score (accuracy or R²) has not improved by `tol` for `n_iter_no_change` epochs, after
    `max_iter` epochs, or once `seconds` have passed, and keeps the best weights seen: the same rule as
    scikit-learn's own early stopping, plus the time limit.
    """

    def __init__(
        self,
        task_type="regression",
        params=None,
        *,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        max_iter=300,
        seconds=60.0,
        seed=0,
    ):
        self.task_type = task_type
        self.params = params
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.max_iter = max_iter
        self.seconds = seconds
        self.seed = seed

    def fit(self, X, y):
        stop_at = time.monotonic() + self.seconds
        y = np.asarray(y)
        classify = self.task_type != "regression"
        # One generator for the whole fit: an int seed would re-seed every partial_fit call, so every epoch would see
        # its minibatches in the same order (scikit-learn's own fit draws a new order each epoch).
        model = (MLPClassifier if classify else MLPRegressor)(
            random_state=np.random.RandomState(self.seed), **(self.params or {})
        )
        stratify = y if classify and np.bincount(y.astype(int)).min() >= 2 else None
        X_fit, X_val, y_fit, y_val = train_test_split(
            X, y, test_size=self.validation_fraction, random_state=self.seed, stratify=stratify
        )
        extra = {"classes": np.unique(y)} if classify else {}
        best_score, best_coefs, best_intercepts, stale = -np.inf, [], [], 0
        self.n_iter_ = 0
        while self.n_iter_ < self.max_iter:
            self.n_iter_ += 1
            model.partial_fit(X_fit, y_fit, **extra)
            score = model.score(X_val, y_val)
            stale = stale + 1 if score < best_score + self.tol else 0
            if score > best_score:
                best_score = score
                best_coefs = [c.copy() for c in model.coefs_]
                best_intercepts = [b.copy() for b in model.intercepts_]
            if stale > self.n_iter_no_change or time.monotonic() > stop_at:
                break
        model.coefs_, model.intercepts_ = best_coefs, best_intercepts
        self.model_ = model
        if classify:
            self.classes_ = model.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


def build_model(task):
    numeric = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        QuantileTransformer(output_distribution="normal", n_quantiles=200, random_state=task.seed),
    )
    categorical = make_pipeline(
        FunctionTransformer(as_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, max_categories=50, sparse_output=False),
    )
    sparse = list(task.sparse)
    parts = [
        ("numeric", numeric, [c for c in task.numeric if c not in set(sparse)]),
        ("categorical", categorical, list(task.categorical)),
    ]
    if sparse:
        scaled = make_pipeline(FunctionTransformer(sparse_block), MaxAbsScaler())
        parts.append(("sparse", scaled, sparse))
    encode = ColumnTransformer(parts, remainder="drop")
    params = dict(hidden_layer_sizes=(128, 64), alpha=1e-3, batch_size=256 if task.n_rows < 50000 else 512)
    model = TimedMLP(
        task_type=task.type,
        params=params,
        validation_fraction=0.1,
        n_iter_no_change=10,
        max_iter=300,
        seconds=max(1.0, 0.9 * task.fit_seconds),
        seed=task.seed,
    )
    if task.type == "regression":
        return make_pipeline(encode, TransformedTargetRegressor(regressor=model, transformer=StandardScaler()))
    return make_pipeline(encode, model)
