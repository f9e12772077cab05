"""Template model body: a small neural net (scikit-learn's MLP) on quantile-normalised numbers and one-hot categories.

Smooth functions of many features at once, which trees approximate in steps: on data like that (e.g. many continuous
measurements) it beats the boosters, and elsewhere it is a blend partner unlike them. Early stopping on a held-out
10% picks the epoch; a time limit (the fit's share of the budget) ends training sooner and keeps the best weights.
Regression targets are standardised so the loss means the same on any scale.
"""

import time

from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, QuantileTransformer, StandardScaler


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
        return make_pipeline(encode, TransformedTargetRegressor(regressor=regressor, transformer=StandardScaler()))
    return make_pipeline(encode, _timed(MLPClassifier, seconds)(**params))
