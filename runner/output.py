"""Turn predictions into the submission the sample asks for: same header, same ids in the same order, right kind."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from chalicelib.run_report import ReportError, RunReport
from runner.metrics import binary_decisions
from runner.profile import CLASS_COLUMNS, LABEL, PROBA, VALUE, Profile, class_column_match


def submission_rows(
    profile: Profile, ids: list[str], predictions: np.ndarray, *, threshold: float | None = None
) -> list[list[str]]:
    """Rows (without header) in the sample's id order; `predictions` are in the scaffold's internal form.

    `threshold`: for binary labels, the P(positive) cut-off (None: the most probable class).
    """
    predictions = np.asarray(predictions, dtype="float64")
    if len(predictions) != len(ids):
        raise ValueError(f"{len(predictions)} predictions for {len(ids)} ids")
    if threshold is not None and profile.submission_kind == LABEL and predictions.shape[1] == 2:
        predictions = binary_decisions(predictions[:, 1], threshold)
    columns = _prediction_columns(profile, predictions)
    return [[identifier, *(column[i] for column in columns)] for i, identifier in enumerate(ids)]


def _prediction_columns(profile: Profile, predictions: np.ndarray) -> list[list[str]]:
    kind = profile.submission_kind
    if kind == VALUE:
        return [[_number(v) for v in predictions]]
    if kind == LABEL:
        return [[profile.classes[i] for i in predictions.argmax(axis=1)]]
    if kind == PROBA:
        positive = profile.classes.index(profile.positive_class) if profile.positive_class else 1
        return [[_probability(v) for v in predictions[:, positive]]]
    if kind == CLASS_COLUMNS:
        normalised = predictions / np.clip(predictions.sum(axis=1, keepdims=True), 1e-12, None)
        columns = []
        for name in profile.target_columns:
            label = class_column_match(name, profile.classes)
            values = normalised[:, profile.classes.index(label)] if label is not None else np.zeros(len(predictions))
            columns.append([_probability(v) for v in values])
        return columns
    raise ValueError(f"unknown submission kind {kind!r}")


def _number(value: float) -> str:
    return repr(float(value))


def _probability(value: float) -> str:
    return repr(float(min(1.0, max(0.0, value))))


def write_submission(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def merge_into_result(result_json: Path, fields: Mapping[str, Any]) -> None:
    """Add fields (e.g. the Kaggle submission's outcome) to a finished run's result.json; an unreadable one is left
    as it is (the caller also reports the fields elsewhere: the terminal, the run item)."""
    with contextlib.suppress(OSError, ReportError):
        RunReport.read(result_json).updated(fields).write(result_json)
