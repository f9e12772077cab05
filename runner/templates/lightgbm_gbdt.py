"""Template model body: LightGBM gradient boosting with native categoricals and early-stopped rounds.

The estimator finds the number of boosting rounds on a stratified holdout of its training rows (early stopping); below
10,000 rows it then refits on all of them with that many rounds scaled up for the extra data. From 10,000 rows the
scaled round count is offered as `reuse_params_` (`fixed_rounds`) instead: the scaffold's later folds and final fit
train once on all their rows rather than tune again (small data keeps tuning per fold, which is cheap there). Tree
size, learning rate and regularisation follow the row count, so small competitions do not overfit and large ones fit
in the time budget. Wide mostly-zero columns (`task.sparse`) reach LightGBM as one CSR matrix with the other columns
(categories as their codes, declared categorical), never as a dense copy.
"""

import time

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split


def time_limit(seconds):
    """A LightGBM callback that ends training when `seconds` have passed (keeps the run inside its budget)."""
    started = time.monotonic()

    def callback(env):
        if time.monotonic() - started > seconds:
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])

    callback.order = 40  # type: ignore[attr-defined]
    return callback


class EarlyStoppedLGBM(BaseEstimator):
    def __init__(
        self,
        task_type="regression",
        params=None,
        *,
        max_rounds=1500,
        holdout=0.15,
        patience=50,
        seed=0,
        fit_seconds=60,
        min_delta=0.0,
        refit=True,
        fixed_rounds=None,
        drop=None,
        sparse=None,
    ):
        self.task_type = task_type
        self.params = params
        self.max_rounds = max_rounds
        self.holdout = holdout
        self.patience = patience
        self.seed = seed
        self.fit_seconds = fit_seconds
        self.min_delta = min_delta
        self.refit = refit
        self.fixed_rounds = fixed_rounds
        self.drop = drop
        self.sparse = sparse

    def kept_columns(self, X):
        """The columns trained on, in X's order: all but `drop` (the raw text columns, when X holds any); with
        `sparse` columns, one CSR matrix: the other columns (category codes, missing as NaN) then the sparse ones."""
        X = X.drop(columns=list(self.drop)) if self.drop else X
        if not self.sparse:
            return X
        dense = X.drop(columns=list(self.sparse))
        columns = []
        for name in dense.columns:
            values = dense[name]
            if isinstance(values.dtype, pd.CategoricalDtype):
                codes = values.cat.codes.to_numpy().astype(np.float32)
                codes[codes < 0] = np.nan
                columns.append(codes)
            else:
                columns.append(values.to_numpy(dtype=np.float32, na_value=np.nan))
        block = X[list(self.sparse)].sparse.to_coo()
        if columns:
            block = sp.hstack([sp.csr_matrix(np.column_stack(columns)), block])
        self.categorical_ = [i for i, name in enumerate(dense.columns) if dense[name].dtype == "category"]
        return sp.csr_matrix(block, dtype=np.float32)

    def fit_options(self):
        return {"categorical_feature": self.categorical_} if self.sparse and self.categorical_ else {}

    def make_model(self, rounds):
        params = dict(self.params or {})
        params.update(n_estimators=int(rounds), random_state=self.seed, verbose=-1)
        if self.task_type == "regression":
            return lgb.LGBMRegressor(**params)
        return lgb.LGBMClassifier(**params)

    def fit(self, X, y):
        y = np.asarray(y)
        X = self.kept_columns(X)
        if self.fixed_rounds:
            self.rounds_ = int(self.fixed_rounds)
            self.model_ = self.make_model(self.rounds_)
            self.model_.fit(X, y, callbacks=[time_limit(self.fit_seconds * 1.5)], **self.fit_options())
            return self.finish()
        stratify = None
        if self.task_type != "regression" and np.bincount(y.astype(int)).min() >= 2:
            stratify = y
        X_fit, X_stop, y_fit, y_stop = train_test_split(
            X, y, test_size=self.holdout, random_state=self.seed, stratify=stratify
        )
        probe = self.make_model(self.max_rounds)
        probe.fit(
            X_fit,
            y_fit,
            eval_X=(X_stop,),
            eval_y=(y_stop,),
            callbacks=[
                lgb.early_stopping(self.patience, verbose=False, min_delta=self.min_delta),
                time_limit(self.fit_seconds * (0.5 if self.refit else 1.5)),
            ],
            **self.fit_options(),
        )
        best = probe.best_iteration_ or probe.n_estimators_
        full_rounds = max(20, int(best / (1 - self.holdout)))
        if not self.refit:
            self.rounds_, self.model_ = best, probe
            self.reuse_params_ = {"fixed_rounds": full_rounds}
        else:
            self.rounds_ = full_rounds
            self.model_ = self.make_model(self.rounds_)
            self.model_.fit(X, y, callbacks=[time_limit(self.fit_seconds * 0.5)], **self.fit_options())
        return self.finish()

    def finish(self):
        if self.task_type != "regression":
            self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(self.kept_columns(X))

    def predict_proba(self, X):
        return self.model_.predict_proba(self.kept_columns(X))


def build_model(task):
    n = task.n_rows
    small = n < 2000
    params = dict(
        learning_rate=0.05 if n < 10000 else 0.1,
        num_leaves=8 if small else (31 if n < 50000 else 63),
        min_child_samples=10 if n < 500 else 20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.5 if small else 0.7,
        reg_lambda=1.0 if small else 0.5,
        min_data_per_group=20 if small else 50,
        cat_smooth=10.0,
        cat_l2=10.0,
        max_bin=255,
        n_jobs=task.n_jobs,
    )
    if task.metric == "mae":
        params["objective"] = "l1"  # the median minimises absolute error; squared error chases the mean
    if task.type == "binary":
        # keep the rare class weighted as it is: probabilities stay calibrated for logloss and for thresholds at 0.5
        params["objective"] = "binary"
    return EarlyStoppedLGBM(
        task_type=task.type,
        params=params,
        max_rounds=min(1500, max(300, n)),  # small data needs (and can validate) fewer rounds
        holdout=0.2 if n < 1000 else (0.15 if n < 10000 else 0.1),
        # large data: the model trained on 90% is nearly as good as a refit, at half the cost
        refit=n < 10000,
        patience=50,
        seed=task.seed,
        fit_seconds=task.fit_seconds,
        # near-separable classes keep shaving tiny amounts off the logloss for thousands of rounds: stop there
        min_delta=0.0 if task.type == "regression" else 1e-4,
        drop=list(task.text) or None,
        sparse=list(task.sparse) or None,
    )
