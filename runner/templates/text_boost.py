"""Template model body: LightGBM on the numbers and categories plus what a text model reads in the free text.

Boosted trees cannot read words, and a linear model on n-grams cannot combine them with numbers, dates and categories
the way trees do. So: word and character TF-IDF is fitted once per fit; a linear model on it makes out-of-fold
predictions for the training rows (5 internal folds, so the trees never see a prediction made with the row's own
label) and a model fitted on all of them predicts new rows; those predictions, with a 20-component TruncatedSVD of the
TF-IDF matrix (topics), join the other features for LightGBM, whose rounds are early-stopped on a holdout. On a
tight fit budget (under 8 s a fit, e.g. a 60 s run) it reads words only, with 3 internal folds. Runs only when the
profile found free text (`task.text`).
"""

import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

SVD_COMPONENTS = 20
GENEROUS_SECONDS = 8.0  # from this fit budget on: character n-grams, 5 inner folds, a finer SVD


CHAR_HEAD = 200  # characters of each text that get character n-grams


def text_head(frame):
    """The first CHAR_HEAD characters of each text: character n-grams cost a Python loop per character, and the words
    already cover the rest of a long text."""
    return [text[:CHAR_HEAD] for text in one_text(frame)]


def one_text(frame):
    return frame.iloc[:, 0].fillna("").astype(str).tolist()


def vectoriser(text_columns, chars_too):
    parts = []
    for column in text_columns:
        words = TfidfVectorizer(
            ngram_range=(1, 2), min_df=2, max_df=0.9, sublinear_tf=True, max_features=50_000, dtype=np.float32
        )
        chars = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), min_df=5, sublinear_tf=True, max_features=20_000, dtype=np.float32
        )
        parts.append((f"words_{column}", make_pipeline(FunctionTransformer(one_text), words), [column]))
        if chars_too:
            parts.append((f"chars_{column}", make_pipeline(FunctionTransformer(text_head), chars), [column]))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=1.0)


class TextStackedLGBM(BaseEstimator):
    def __init__(self, task_type="binary", *, text=(), tabular=(), params=None, seed=0, fit_seconds=60.0, holdout=0.15):
        self.task_type = task_type
        self.text = text
        self.tabular = tabular
        self.params = params
        self.seed = seed
        self.fit_seconds = fit_seconds
        self.holdout = holdout

    def linear_model(self):
        if self.task_type == "regression":
            return Ridge(alpha=3.0)
        solver = "saga" if self.task_type == "multiclass" else "liblinear"
        return LogisticRegression(C=4.0, solver=solver, max_iter=2000)

    def linear_output_of(self, model, matrix):
        if self.task_type == "regression":
            return model.predict(matrix).reshape(-1, 1)
        proba = model.predict_proba(matrix)
        return proba[:, 1:] if self.task_type == "binary" else proba

    def stacked_features(self, X, linear_output, topics):
        frame = X[list(self.tabular)].reset_index(drop=True)
        extra = {f"text_model_{i}": linear_output[:, i] for i in range(linear_output.shape[1])}
        extra.update({f"text_topic_{i}": topics[:, i] for i in range(topics.shape[1])})
        return pd.concat([frame, pd.DataFrame(extra)], axis=1)

    def fit(self, X, y):
        started = time.monotonic()
        y = np.asarray(y)
        classification = self.task_type != "regression"
        oof, topics = self.fit_text(X, y, classification) if self.text else (np.zeros((len(y), 0)),) * 2
        features = self.stacked_features(X, oof, topics)
        params = dict(self.params or {})
        params.update(n_estimators=2000, random_state=self.seed, verbose=-1)
        booster = lgb.LGBMRegressor(**params) if not classification else lgb.LGBMClassifier(**params)
        stratify = y if classification and np.bincount(y.astype(int)).min() >= 2 else None
        fit_rows, stop_rows = train_test_split(
            np.arange(len(y)), test_size=self.holdout, random_state=self.seed, stratify=stratify
        )
        left = max(1.0, 1.5 * self.fit_seconds - (time.monotonic() - started))
        booster.fit(
            features.iloc[fit_rows],
            y[fit_rows],
            eval_X=(features.iloc[stop_rows],),
            eval_y=(y[stop_rows],),
            callbacks=[lgb.early_stopping(50, verbose=False), time_limit(left)],
        )
        self.booster_ = booster
        if classification:
            self.classes_ = booster.classes_
        return self

    def fit_text(self, X, y, classification):
        """Out-of-fold text-model predictions and topics for the training rows; keeps the fitted text models."""
        # a tight fit budget: words only, 3 inner folds (character n-grams and more folds cost most of a text fit)
        generous = self.fit_seconds >= GENEROUS_SECONDS
        self.vectoriser_ = vectoriser(list(self.text), chars_too=generous)
        matrix = self.vectoriser_.fit_transform(X)
        if classification and np.bincount(y.astype(int)).min() >= 5:
            inner = StratifiedKFold(n_splits=5 if generous else 3, shuffle=True, random_state=self.seed)
        else:
            inner = KFold(n_splits=5 if generous else 3, shuffle=True, random_state=self.seed)
        method = "predict_proba" if classification else "predict"
        oof = cross_val_predict(self.linear_model(), matrix, y, cv=inner, method=method)
        oof = oof.reshape(-1, 1) if not classification else (oof[:, 1:] if self.task_type == "binary" else oof)
        self.linear_ = self.linear_model().fit(matrix, y)
        components = max(1, min(SVD_COMPONENTS, matrix.shape[1] - 1))
        self.svd_ = TruncatedSVD(n_components=components, n_iter=5 if generous else 2, random_state=self.seed)
        return oof, self.svd_.fit_transform(matrix)

    def stacked_inputs(self, X):
        if not self.text:
            return self.stacked_features(X, np.zeros((len(X), 0)), np.zeros((len(X), 0)))
        matrix = self.vectoriser_.transform(X)
        return self.stacked_features(X, self.linear_output_of(self.linear_, matrix), self.svd_.transform(matrix))

    def predict(self, X):
        return self.booster_.predict(self.stacked_inputs(X))

    def predict_proba(self, X):
        return self.booster_.predict_proba(self.stacked_inputs(X))


def time_limit(seconds):
    started = time.monotonic()

    def callback(env):
        if time.monotonic() - started > seconds:
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])

    callback.order = 40  # type: ignore[attr-defined]
    return callback


def build_model(task):
    n = task.n_rows
    params = dict(
        learning_rate=0.05 if n < 10000 else 0.1,
        num_leaves=15 if n < 5000 else 31,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.7,
        reg_lambda=1.0,
        n_jobs=task.n_jobs,
    )
    if task.type == "binary":
        params["objective"] = "binary"
    return TextStackedLGBM(
        task_type=task.type,
        text=list(task.text),
        tabular=[*task.numeric, *task.categorical],
        params=params,
        seed=task.seed,
        fit_seconds=task.fit_seconds,
    )
