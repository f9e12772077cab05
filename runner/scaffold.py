"""The static training scaffold: prepared data in, cross-validated model body out.

`prepare` turns the competition tables and profile into `PreparedData` (features, encoded target, test rows in the
sample submission's order). `evaluate` runs a model body (its source: templates and LLM bodies alike) through the
workers of runner.sandbox: K-fold CV that respects a deadline, a final fit on all train rows and test predictions,
returned as an `Evaluation`. Every fold and the final fit run in a fresh process that never sees a label of a row it
predicts; the scores are computed here, from predictions alone, so a body cannot make its own score look better.
Which evaluation (or blend of them) makes the submission is runner.selection's policy.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils import resample

from runner.contract import TaskSpec
from runner.features import ColumnRoles, build_features, column_kinds, sparse_columns
from runner.memory import current_watch
from runner.metrics import get_metric
from runner.profile import Profile, Tables
from runner.sandbox import FitReply, FitRequest
from runner.score import Score, for_metric

Log = Callable[[str], None]
DEFAULT_FOLDS = 5
MIN_FOLDS = 2
MAX_FIT_WALL_S = 6 * 3600.0  # a fit's kill time when its deadline is far away (or infinite, in tests)


class CandidateError(Exception):
    """A model body failed while training or predicting; the message is one line, `reply` the worker's answer."""

    def __init__(self, message: str, reply: FitReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass
class PreparedData:
    """Everything a model body is trained on: features, encoded target, test features in submission order."""

    X: pd.DataFrame
    y: np.ndarray  # classification: codes 0..k-1 (binary: 1 = positive); regression: raw float values
    X_test: pd.DataFrame
    test_ids: list[str]
    task: TaskSpec
    classes: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    """A model body's cross-validated score and its test predictions (the scaffold's internal form, see metrics)."""

    name: str
    metric: str
    cv_score: float
    fold_scores: list[float]
    oof: np.ndarray  # out-of-fold predictions; rows of unfinished folds are NaN
    test_predictions: np.ndarray
    elapsed: float
    n_folds: int
    test_source: str = "final_fit"  # final_fit | fold_average | blend
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> Score:
        """The CV score with its metric's direction: the best evaluation is `max(evaluations, key=...score)`."""
        return for_metric(self.metric, self.cv_score)

    @property
    def oof_mask(self) -> np.ndarray:
        values = self.oof.reshape(len(self.oof), -1)
        return np.isfinite(values).all(axis=1)


# ---------------------------------------------------------------- preparation


def prepare(tables: Tables, profile: Profile, *, seed: int = 0, n_jobs: int = 2) -> tuple[PreparedData, ColumnRoles]:
    """Features from the columns train and test share (never the id or targets), test rows in the sample's order."""
    train = tables.train[tables.train[profile.label_column].notna()].reset_index(drop=True)
    test = _test_in_sample_order(tables, profile.id_column)
    excluded = {profile.id_column, profile.label_column, *profile.target_columns}
    shared = [c for c in train.columns if c in test.columns and c not in excluded]
    combined = pd.concat([train[shared], test[shared]], ignore_index=True)
    features, roles = build_features(combined, len(train), memory_mb=current_watch().ceiling.mb)
    X = features.iloc[: len(train)].reset_index(drop=True)
    X_test = features.iloc[len(train) :].reset_index(drop=True)
    y = _encode_target(train[profile.label_column], profile)
    numeric, categorical, text = column_kinds(X)
    metric = get_metric(profile.metric)
    task = TaskSpec(
        type=profile.task_type,
        metric=metric.name,
        seed=seed,
        n_rows=len(X),
        categorical=categorical,
        numeric=numeric,
        text=text,
        sparse=sparse_columns(X),
        n_classes=len(profile.classes),
        n_jobs=n_jobs,
        higher_is_better=metric.higher_is_better,
    )
    ids = tables.sample[profile.id_column].tolist()
    return PreparedData(X, y, X_test, ids, task, list(profile.classes)), roles


def _test_in_sample_order(tables: Tables, id_column: str) -> pd.DataFrame:
    test = tables.test.assign(**{id_column: tables.test[id_column].astype(str)}).set_index(id_column, drop=False)
    return test.loc[tables.sample[id_column].tolist()].reset_index(drop=True)


def _encode_target(labels: pd.Series, profile: Profile) -> np.ndarray:
    if profile.task_type == "regression":
        return np.array(pd.to_numeric(labels, errors="coerce").to_numpy(dtype="float64"))
    codes = {label: code for code, label in enumerate(profile.classes)}
    return np.array(labels.astype(str).map(codes).to_numpy(dtype="int64"))  # a writable copy


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class BodySource:
    """A model body as the runner holds it: source text only (it is executed in the workers, never here)."""

    name: str
    source: str
    trusted: bool = False  # one of our templates (see runner.sandbox.FitRequest)


class FoldRunner(Protocol):
    """What evaluate needs of runner.sandbox.Workers."""

    n_train: int
    n_rows: int

    def fit_predict(self, request: FitRequest) -> FitReply: ...


def evaluate(
    body: BodySource,
    data: PreparedData,
    deadline: float,
    *,
    workers: FoldRunner,
    n_folds: int = DEFAULT_FOLDS,
    log: Log | None = None,
    clock: Callable[[], float] = time.monotonic,
    give_up: Callable[[float, float], bool] | None = None,
    hard_deadline: float | None = None,
    memory_mb: int | None = None,
) -> Evaluation:
    """K-fold CV of `body` (stopping early when the deadline nears), a final fit and test predictions.

    Each fold and the final fit run in a fresh worker (runner.sandbox): the body gets the training rows with their
    labels and the rows to predict (validation and test rows, shuffled together) and never a label of a row it
    predicts; every score here is computed from its predictions alone. `deadline` is a `clock()` time: the body's
    time. `hard_deadline` (a clock time) kills a fold that runs past it (an untrusted body's budget); without it, a
    fold is killed after a generous multiple of its time share. `give_up(first_fold_score, its_seconds)` may end the
    CV after the first fold (a candidate clearly behind a better one is not worth its remaining folds). A template's
    estimator fitted on the first fold may expose `reuse_params_` (constructor parameters it tuned, e.g.
    early-stopped boosting rounds): later folds and the final fit are built with them, so they need not tune again;
    an untrusted body's are ignored (they would carry what it learnt from one fold to the next). Each fit's
    `task.fit_seconds` is its share of the time left; `memory_mb` overrides the workers' memory limit. Raises
    CandidateError (one line, with the worker's reply) if the body fails.
    """
    say = log or (lambda _message: None)
    started = clock()
    metric = get_metric(data.task.metric)
    task = data.task
    folds = _folds(data.y, task, n_folds)
    fits = _Fits(body, data, workers, clock=clock, hard_deadline=hard_deadline, memory_mb=memory_mb)
    n_train, test_rows = len(data.y), fits.test_rows
    oof = np.full(_prediction_shape(n_train, task), np.nan)
    test_sum = np.zeros(_prediction_shape(len(data.X_test), task))
    fold_scores: list[float] = []
    fold_seconds: list[float] = []
    for index, (train_rows, valid_rows) in enumerate(folds):
        if fold_seconds and clock() + 2 * max(fold_seconds) > deadline:
            say(f"{body.name}: stopping after {index} of {len(folds)} folds to respect the time budget")
            break
        fold_start = clock()
        seconds = (deadline - fold_start) / (len(folds) + 1 - index)
        predicted = fits.run(index, train_rows, np.concatenate([valid_rows, test_rows]), seconds)
        oof[valid_rows] = predicted[: len(valid_rows)]
        test_sum += predicted[len(valid_rows) :]
        fold_scores.append(metric.score(data.y[valid_rows], oof[valid_rows]))
        fold_seconds.append(clock() - fold_start)
        say(f"{body.name}: fold {index + 1}/{len(folds)} {metric.name}={fold_scores[-1]:.5f} ({fold_seconds[-1]:.1f}s)")
        if index == 0 and give_up is not None and give_up(fold_scores[0], fold_seconds[0]):
            say(f"{body.name}: clearly behind the best model after fold 1, not finishing its folds")
            break

    done = np.isfinite(oof.reshape(len(oof), -1)).all(axis=1)
    cv_score = metric.score(data.y[done], oof[done])
    notes: list[str] = []
    if clock() + 1.5 * max(fold_seconds) <= deadline:
        test_predictions = fits.run(len(folds), np.arange(n_train), test_rows, deadline - clock())
        source = "final_fit"
    else:
        test_predictions, source = test_sum / len(fold_scores), "fold_average"
        notes.append("no time for a final fit: test predictions average the fold models")
    say(f"{body.name}: CV {metric.name}={cv_score:.5f} over {len(fold_scores)} folds, test from {source}")
    return Evaluation(
        name=body.name,
        metric=metric.name,
        cv_score=cv_score,
        fold_scores=fold_scores,
        oof=oof,
        test_predictions=test_predictions,
        elapsed=clock() - started,
        n_folds=len(fold_scores),
        test_source=source,
        notes=notes,
    )


class _Fits:
    """One body's requests to the workers: builds each, checks the reply, keeps a template's reusable parameters."""

    def __init__(
        self,
        body: BodySource,
        data: PreparedData,
        workers: FoldRunner,
        *,
        clock: Callable[[], float],
        hard_deadline: float | None,
        memory_mb: int | None,
    ) -> None:
        self.body, self.task, self.workers, self.clock = body, data.task, workers, clock
        self.hard_deadline, self.memory_mb = hard_deadline, memory_mb
        self.metric = get_metric(data.task.metric)
        self.y_fit = data.y if self.task.is_classification else self.metric.transform(data.y)
        self.test_rows = len(data.y) + np.arange(len(data.X_test))
        self.reuse: dict[str, Any] = {}

    def run(self, index: int, train_rows: np.ndarray, predict_rows: np.ndarray, seconds: float) -> np.ndarray:
        """Fit on `train_rows`, predict `predict_rows` (in the metric's own space) in a fresh worker."""
        body, task = self.body, self.task
        hard = self.hard_deadline
        train_rows = self._fit_rows(train_rows, index)
        request = FitRequest(
            name=body.name,
            source=body.source,
            trusted=body.trusted,
            task=replace(task, fit_seconds=round(max(1.0, seconds), 1)).to_dict(),
            train_rows=train_rows,
            y_train=self.y_fit[train_rows],
            predict_rows=predict_rows,
            wall_s=min(MAX_FIT_WALL_S, max(60.0, 4 * seconds + 30) if hard is None else max(1.0, hard - self.clock())),
            seed=task.seed * 1000 + index,
            reuse=self.reuse,
            memory_mb=self.memory_mb,
        )
        reply = self.workers.fit_predict(request)
        if not reply.ok:
            raise CandidateError(f"{body.name}: {_one_line_text(reply.detail)}", reply)
        if not reply.group_empty:
            raise CandidateError(f"{body.name}: its worker left processes behind", reply)
        if index == 0:
            self.reuse.update(reply.reuse)  # empty for an untrusted body (runner.sandbox drops them)
        assert reply.predictions is not None
        values = reply.predictions if task.is_classification else self.metric.inverse(reply.predictions)
        if not np.isfinite(values).all():
            raise CandidateError(f"{body.name}: predictions have the wrong shape or contain NaN/inf", reply)
        return np.asarray(values)

    def _fit_rows(self, rows: np.ndarray, index: int) -> np.ndarray:
        """The training rows a fit gets: all, or (the memory plan's `task.max_fit_rows`) a random sample of them,
        stratified for classification. Sampling here, before the worker copies the rows, is what saves the memory;
        the body still predicts every row it is asked to."""
        cap = self.task.max_fit_rows
        if not cap or len(rows) <= cap:
            return rows
        stratify = self.y_fit[rows] if self.task.is_classification else None
        picked = resample(
            rows, n_samples=cap, replace=False, random_state=self.task.seed * 1000 + index, stratify=stratify
        )
        return np.sort(np.asarray(picked))


def _folds(y: np.ndarray, task: TaskSpec, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n_folds = max(MIN_FOLDS, min(n_folds, len(y) // 2))
    if task.is_classification and int(np.bincount(y).max()) >= n_folds:
        # a class rarer than the fold count only warns: it lands in some folds, and the rest keep their 5 folds
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=task.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return list(splitter.split(np.zeros(len(y)), y))
    splitter_plain = KFold(n_splits=n_folds, shuffle=True, random_state=task.seed)
    return list(splitter_plain.split(np.zeros(len(y))))


def _prediction_shape(n_rows: int, task: TaskSpec) -> tuple[int, ...]:
    return (n_rows, task.n_classes) if task.is_classification else (n_rows,)


def _one_line_text(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "failed"


def validation_folds(data: PreparedData, n_folds: int = DEFAULT_FOLDS) -> list[np.ndarray]:
    """The validation rows of each CV fold `evaluate` uses (the same for every body: same target, seed and count)."""
    return [valid for _train, valid in _folds(data.y, data.task, n_folds)]
