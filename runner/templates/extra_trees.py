"""Template model body: extremely randomised trees on ordinal-coded categoricals and imputed numbers.

Averaging many deep random trees makes errors unlike those of boosting or linear models, which is what a blend needs;
it is also robust on small data. Missing numbers get the median plus an indicator; unseen categories get their own code.
"""

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder
from sklearn.utils import resample


def as_text(frame):
    return frame.astype(object).where(frame.notna(), "(missing)").astype(str)


def build_model(task):
    numeric = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    categorical = make_pipeline(
        FunctionTransformer(as_text, feature_names_out="one-to-one"),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
    )
    encode = ColumnTransformer(
        [("numeric", numeric, list(task.numeric)), ("categorical", categorical, list(task.categorical))],
        remainder="drop",
    )
    params = dict(
        # deep trees cost memory in proportion to rows / leaf size: fewer, coarser trees on large data
        n_estimators=300 if task.n_rows < 5000 else (200 if task.n_rows < 20000 else 100),
        min_samples_leaf=2 if task.n_rows < 5000 else (5 if task.n_rows < 50000 else 10),
        max_features=0.5 if task.type == "regression" else "sqrt",
        n_jobs=task.n_jobs,
        random_state=task.seed,
    )
    if task.type == "regression":
        return sampled(make_pipeline(encode, ExtraTreesRegressor(**params)), task)
    return sampled(make_pipeline(encode, ExtraTreesClassifier(**params)), task)


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


def sampled(model, task):
    if not task.max_fit_rows or task.max_fit_rows >= task.n_rows:
        return model
    return SampledFit(model, max_rows=task.max_fit_rows, seed=task.seed, stratify=task.type != "regression")
