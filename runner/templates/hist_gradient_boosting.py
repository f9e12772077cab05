"""Template model body: scikit-learn's HistGradientBoosting with native categoricals and early stopping.

A second gradient-boosting implementation with different binning and regularisation: a useful blend partner for
LightGBM and a fallback that needs nothing beyond scikit-learn. It grows its trees in warm-started chunks and stops
when early stopping does or when its share of the time budget (1.5x the fit's share) is spent, so one fit on large
multiclass data cannot overrun the run's deadline.
"""

import time

from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

CHUNK = 50  # trees per warm-started step


def timed(base, seconds):
    """`base` (a HistGradientBoosting class) that stops adding trees once `seconds` have passed."""

    def fit(self, X, y, sample_weight=None):
        stop_at = time.monotonic() + seconds
        target = self.max_iter
        self.warm_start = True
        self.max_iter = min(CHUNK, target)
        while True:
            base.fit(self, X, y, sample_weight=sample_weight)
            stopped_early = self.n_iter_ < self.max_iter
            if stopped_early or self.max_iter >= target or time.monotonic() > stop_at:
                break
            self.max_iter = min(self.max_iter + CHUNK, target)
        self.max_iter, self.warm_start = target, False
        return self

    return type("TimedHistGradientBoosting", (base,), {"fit": fit})


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
    seconds = max(1.0, 1.5 * task.fit_seconds)
    if task.type == "regression":
        loss = "absolute_error" if task.metric == "mae" else "squared_error"
        model = timed(HistGradientBoostingRegressor, seconds)(loss=loss, **params)
    else:
        model = timed(HistGradientBoostingClassifier, seconds)(**params)
    if task.text:  # raw text columns are for the text templates: train on the numbers and categories
        keep = FunctionTransformer(drop_columns, kw_args={"columns": list(task.text)})
        return make_pipeline(keep, model)
    return model


def drop_columns(frame, columns):
    return frame.drop(columns=columns)  # X's own column order: the same trees as without text columns
