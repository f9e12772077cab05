"""The static training scaffold: prepared data in, cross-validated model body out.

`prepare` turns the competition tables and profile into `PreparedData` (features, encoded target, test rows in the
sample submission's order). `evaluate` runs a model body on it: K-fold CV that respects a deadline, a final fit on all
train rows and test predictions, returned as an `Evaluation`. Both save to and load from a directory without pickle
(parquet, npy with allow_pickle=False, JSON), so a sandboxed subprocess can exchange them with the runner safely.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from runner.contract import ContractError, ModelBody, TaskSpec, build_estimator, check_estimator
from runner.features import ColumnRoles, build_features, column_kinds, normalise_body_output
from runner.memory import current_watch
from runner.metrics import Metric, get_metric
from runner.profile import Profile, Tables

Log = Callable[[str], None]
DEFAULT_FOLDS = 5
MIN_FOLDS = 2


class CandidateError(Exception):
    """A model body failed while training or predicting; the message is one line."""


@dataclass
class PreparedData:
    """Everything a model body is trained on: features, encoded target, test features in submission order."""

    X: pd.DataFrame
    y: np.ndarray  # classification: codes 0..k-1 (binary: 1 = positive); regression: raw float values
    X_test: pd.DataFrame
    test_ids: list[str]
    task: TaskSpec
    classes: list[str] = field(default_factory=list)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.X.to_parquet(directory / "X.parquet", index=False)
        self.X_test.to_parquet(directory / "X_test.parquet", index=False)
        np.save(directory / "y.npy", self.y, allow_pickle=False)
        meta = {"task": self.task.to_dict(), "classes": self.classes, "test_ids": self.test_ids}
        (directory / "meta.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> PreparedData:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        return cls(
            X=pd.read_parquet(directory / "X.parquet"),
            y=np.load(directory / "y.npy", allow_pickle=False),
            X_test=pd.read_parquet(directory / "X_test.parquet"),
            test_ids=[str(i) for i in meta["test_ids"]],
            task=TaskSpec.from_dict(meta["task"]),
            classes=[str(c) for c in meta["classes"]],
        )


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
    def oof_mask(self) -> np.ndarray:
        values = self.oof.reshape(len(self.oof), -1)
        return np.isfinite(values).all(axis=1)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "oof.npy", np.asarray(self.oof, dtype="float64"), allow_pickle=False)
        np.save(directory / "test_predictions.npy", np.asarray(self.test_predictions, "float64"), allow_pickle=False)
        meta = {k: v for k, v in asdict(self).items() if k not in ("oof", "test_predictions")}
        meta["cv_score"] = _json_float(self.cv_score)
        meta["fold_scores"] = [_json_float(s) for s in self.fold_scores]
        (directory / "evaluation.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Evaluation:
        meta = json.loads((directory / "evaluation.json").read_text(encoding="utf-8"))
        meta["cv_score"] = float("nan") if meta["cv_score"] is None else float(meta["cv_score"])
        meta["fold_scores"] = [float("nan") if s is None else float(s) for s in meta["fold_scores"]]
        return cls(
            oof=np.load(directory / "oof.npy", allow_pickle=False),
            test_predictions=np.load(directory / "test_predictions.npy", allow_pickle=False),
            **meta,
        )


def _json_float(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


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


def evaluate(
    body: ModelBody,
    data: PreparedData,
    deadline: float,
    *,
    n_folds: int = DEFAULT_FOLDS,
    log: Log | None = None,
    clock: Callable[[], float] = time.monotonic,
    give_up: Callable[[float, float], bool] | None = None,
) -> Evaluation:
    """K-fold CV of `body` (stopping early when the deadline nears), a final fit and test predictions.

    `deadline` is a `clock()` time. `give_up(first_fold_score, its_seconds)` may end the CV after the first fold (a
    candidate clearly behind a better one is not worth its remaining folds). An estimator fitted on the first fold may
    expose `reuse_params_` (constructor parameters it tuned, e.g. early-stopped boosting rounds): later folds and the
    final fit are built with them (`set_params`), so they need not tune again. Each fit's `task.fit_seconds` is its
    share of the time left. Raises CandidateError (one line) if the body fails.
    """
    say = log or (lambda _message: None)
    started = clock()
    metric = get_metric(data.task.metric)
    X, X_test, task = _apply_body_features(body, data)
    folds = _folds(data.y, task, n_folds)
    fold_budget = max(1.0, (deadline - started) / (len(folds) + 1))
    task = replace(task, fit_seconds=round(fold_budget, 1))
    check_estimator(build_estimator(body, task), task, body.name)
    y_fit = data.y if task.is_classification else metric.transform(data.y)

    oof = np.full(_prediction_shape(len(data.y), task), np.nan)
    test_sum = np.zeros(_prediction_shape(len(X_test), task))
    fold_scores: list[float] = []
    fold_seconds: list[float] = []
    reuse: dict[str, Any] = {}
    for index, (train_rows, valid_rows) in enumerate(folds):
        if fold_seconds and clock() + 2 * max(fold_seconds) > deadline:
            say(f"{body.name}: stopping after {index} of {len(folds)} folds to respect the time budget")
            break
        fold_start = clock()
        fit_task = replace(task, fit_seconds=round(max(1.0, (deadline - fold_start) / (len(folds) + 1 - index)), 1))
        model = _fit(body, fit_task, X.iloc[train_rows], y_fit[train_rows], reuse)
        if index == 0:
            reuse = _reusable_params(model)
        oof[valid_rows] = _predict(model, X.iloc[valid_rows], task, metric)
        test_sum += _predict(model, X_test, task, metric)
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
        final_task = replace(task, fit_seconds=round(max(1.0, deadline - clock()), 1))
        model = _fit(body, final_task, X, y_fit, reuse)
        test_predictions, source = _predict(model, X_test, task, metric), "final_fit"
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


def _apply_body_features(body: ModelBody, data: PreparedData) -> tuple[pd.DataFrame, pd.DataFrame, TaskSpec]:
    n_train = len(data.X)
    if body.add_features is None:
        return data.X, data.X_test, data.task
    combined = pd.concat([data.X, data.X_test], ignore_index=True)
    try:
        result = body.add_features(combined.copy())
    except Exception as exc:
        raise CandidateError(f"{body.name}: add_features failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(result, pd.DataFrame):
        raise CandidateError(f"{body.name}: add_features returned {type(result).__name__}, not a DataFrame")
    if len(result) != len(combined):
        raise CandidateError(f"{body.name}: add_features returned {len(result)} rows, expected {len(combined)}")
    if result.columns.duplicated().any() or result.shape[1] == 0:
        raise CandidateError(f"{body.name}: add_features must return uniquely named columns (at least one)")
    frame = normalise_body_output(result, n_train)
    numeric, categorical, text = column_kinds(frame)
    task = replace(data.task, categorical=categorical, numeric=numeric, text=text)
    return frame.iloc[:n_train].reset_index(drop=True), frame.iloc[n_train:].reset_index(drop=True), task


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


def _fit(body: ModelBody, task: TaskSpec, X: pd.DataFrame, y: np.ndarray, reuse: dict[str, Any] | None = None) -> Any:
    model = build_estimator(body, task)
    try:
        if reuse:
            model.set_params(**reuse)
        with threadpool_limits(limits={"blas": 1, "openmp": task.n_jobs}):
            model.fit(X, y)
    except ContractError:
        raise
    except Exception as exc:
        raise CandidateError(f"{body.name}: fit failed: {type(exc).__name__}: {_one_line(exc)}") from None
    return model


def _reusable_params(model: Any) -> dict[str, Any]:
    params = getattr(model, "reuse_params_", None)
    return dict(params) if isinstance(params, dict) else {}


def _predict(model: Any, X: pd.DataFrame, task: TaskSpec, metric: Metric) -> np.ndarray:
    try:
        with threadpool_limits(limits={"blas": 1, "openmp": task.n_jobs}):
            raw = model.predict_proba(X) if task.is_classification else model.predict(X)
    except Exception as exc:
        raise CandidateError(f"predict failed: {type(exc).__name__}: {_one_line(exc)}") from None
    values = np.asarray(raw, dtype="float64")
    values = _align_classes(values, model, task) if task.is_classification else metric.inverse(values.reshape(-1))
    if values.shape[0] != len(X) or not np.isfinite(values).all():
        raise CandidateError("predictions have the wrong shape or contain NaN/inf")
    return values


def _align_classes(proba: np.ndarray, model: Any, task: TaskSpec) -> np.ndarray:
    """Put predict_proba's columns at their class codes (a fold may lack a rare class)."""
    if proba.ndim != 2:
        raise CandidateError(f"predict_proba returned shape {proba.shape}, expected (rows, classes)")
    classes = np.asarray(getattr(model, "classes_", np.arange(proba.shape[1]))).astype(int)
    if proba.shape[1] == task.n_classes and (classes == np.arange(task.n_classes)).all():
        return proba
    full = np.zeros((len(proba), task.n_classes))
    full[:, classes] = proba
    return full


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def blend(evaluations: list[Evaluation], metric: Metric, y: np.ndarray, rounds: int = 20) -> Evaluation | None:
    """Greedy ensemble selection (with replacement) on out-of-fold predictions; None unless it beats the best single."""
    shape = evaluations[0].oof.shape if evaluations else ()
    usable = [e for e in evaluations if e.oof.shape == shape and len(e.oof) == len(y) and e.oof_mask.any()]
    if len(usable) < 2:
        return None
    mask = np.logical_and.reduce([e.oof_mask for e in usable])
    if mask.sum() < 10:
        return None
    oofs = [metric.transform(e.oof[mask]) if e.oof.ndim == 1 else e.oof[mask] for e in usable]
    single = [metric.score(y[mask], e.oof[mask]) for e in usable]
    best_index = max(range(len(usable)), key=lambda i: -single[i] if not metric.higher_is_better else single[i])
    counts = np.zeros(len(usable))
    counts[best_index] = 1
    best_score = single[best_index]
    for _ in range(rounds):
        trial_scores = []
        for i in range(len(usable)):
            trial = counts.copy()
            trial[i] += 1
            trial_scores.append(metric.score(y[mask], _mix(oofs, trial, metric, usable[0].oof.ndim)))
        pick = max(range(len(usable)), key=lambda i: trial_scores[i] if metric.higher_is_better else -trial_scores[i])
        if not metric.better(trial_scores[pick], best_score):
            break
        counts[pick] += 1
        best_score = trial_scores[pick]
    if (counts > 0).sum() < 2:
        return None
    weights = counts / counts.sum()
    regression = usable[0].oof.ndim == 1
    test_parts = [metric.transform(e.test_predictions) if regression else e.test_predictions for e in usable]
    oof_parts = [metric.transform(e.oof) if regression else e.oof for e in usable]
    names = "+".join(f"{e.name}*{w:.2f}" for e, w in zip(usable, weights, strict=True) if w > 0)
    return Evaluation(
        name=f"blend({names})",
        metric=metric.name,
        cv_score=best_score,
        fold_scores=[],
        oof=_mix(oof_parts, counts, metric, usable[0].oof.ndim),
        test_predictions=_mix(test_parts, counts, metric, usable[0].oof.ndim),
        elapsed=sum(e.elapsed for e in usable),
        n_folds=min(e.n_folds for e in usable),
        test_source="blend",
    )


def _mix(parts: list[np.ndarray], counts: np.ndarray, metric: Metric, ndim: int) -> np.ndarray:
    weights = counts / counts.sum()
    mixed = sum(w * p for w, p in zip(weights, parts, strict=True) if w > 0)
    mixed = np.asarray(mixed)
    return metric.inverse(mixed) if ndim == 1 else mixed
