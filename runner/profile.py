"""What a competition asks for, read from its files: id and target columns, task type, submission kind, classes.

The sample submission is the source of truth: its first column found in test.csv is the id; its other columns are the
target(s), matched against train.csv either by name (one target column) or by value (one column per class, whose
names are the values of a train column).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from runner.data import FALLBACK_ENCODING, non_utf8_encoding
from runner.errors import InputError
from runner.metrics import CLASSIFICATION, REGRESSION, Metric, get_metric

VALUE, LABEL, PROBA, CLASS_COLUMNS = "value", "label", "proba", "class_columns"
SUBMISSION_KINDS = (VALUE, LABEL, PROBA, CLASS_COLUMNS)
_TRUTHY = {"1", "1.0", "yes", "y", "true", "t", "positive", "pos"}
log = logging.getLogger("runner.profile")
_MAX_INTEGER_CLASSES = 10  # integer targets with at most this many values are classes when no metric says otherwise


@dataclass(frozen=True)
class Profile:
    id_column: str
    target_columns: list[str]  # the sample submission's prediction columns, in order
    label_column: str  # the train column holding the target
    task_type: str  # binary | multiclass | regression
    submission_kind: str  # value | label | proba | class_columns
    metric: str
    metric_source: str  # option | plan | metadata | inferred
    # class labels as written in train; code = index; binary: [negative, positive]
    classes: list[str] = field(default_factory=list)
    positive_class: str | None = None
    n_train: int = 0
    n_test: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        return cls(**data)


@dataclass
class Tables:
    train: pd.DataFrame
    test: pd.DataFrame
    sample: pd.DataFrame  # every cell a string, exactly as in the file


def read_tables(train: Path, test: Path, sample: Path) -> tuple[Tables, str, list[str]]:
    """Read the three CSVs; ids and targets as strings (so `001` and `Yes` keep their form). InputError on bad files."""
    sample_df = _read_csv(sample, dtype=str, keep_default_na=False)
    if sample_df.shape[1] < 2:
        raise InputError(f"{sample.name} needs an id column and at least one prediction column, got {list(sample_df)}")
    test_header = list(_read_csv(test, nrows=0).columns)
    id_column = next((c for c in sample_df.columns if c in test_header), None)
    if id_column is None:
        raise InputError(f"none of {sample.name}'s columns {list(sample_df.columns)} is a column of {test.name}")
    targets = [c for c in sample_df.columns if c != id_column]
    train_header = list(_read_csv(train, nrows=0).columns)
    as_text = {c: str for c in [id_column, *targets] if c in train_header}
    train_df = _read_csv(train, dtype=as_text)
    test_df = _read_csv(test, dtype={id_column: str})
    for name, frame in ((train.name, train_df), (test.name, test_df), (sample.name, sample_df)):
        if frame.empty:
            raise InputError(f"{name} has no data rows")
    return Tables(train_df, test_df, sample_df), id_column, targets


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """A CSV as a frame; one that is not UTF-8 (runner.data converts the competition's own tables first) is read in
    the encoding runner.data detects, with a log line. InputError naming the file when it cannot be read."""
    try:
        return _parse_csv(path, **kwargs)
    except UnicodeDecodeError:
        found = non_utf8_encoding(path)  # InputError for binary bytes no encoding fits
        encoding = found[0] if found else FALLBACK_ENCODING
    try:
        frame = _parse_csv(path, encoding=encoding, **kwargs)
    except UnicodeDecodeError:  # the detected encoding fails further on: Latin-1 decodes any bytes
        encoding = FALLBACK_ENCODING
        frame = _parse_csv(path, encoding=encoding, **kwargs)
    log.warning("%s is not UTF-8: read as %s", path.name, encoding)
    return frame


def _parse_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, low_memory=False, **kwargs)
    except UnicodeDecodeError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{path.name} is empty") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path.name} is unreadable: {first_line}") from None
    frame.columns = [str(c) for c in frame.columns]
    return frame


def target_groups(tables: Tables, id_column: str, targets: list[str]) -> list[list[str]]:
    """The sample's prediction columns as independent tasks: each its own when every one is a train column
    (multi-target: several labels or values), else one task (a single target, or one column per class)."""
    in_train = [c for c in targets if c in tables.train.columns]
    if len(targets) > 1 and len(in_train) == len(targets):
        return [[target] for target in targets]
    return [targets]


def profile_competition(
    tables: Tables,
    id_column: str,
    targets: list[str],
    metric_name: str | None,
    metric_source: str = "option",
) -> Profile:
    """Decide the task from the tables; `metric_name` None means infer one."""
    train, test, sample = tables.train, tables.test, tables.sample
    notes: list[str] = []
    _check_ids(test, sample, id_column, notes)
    metric = get_metric(metric_name) if metric_name else None
    label_column, kind_hint = _find_label_column(train, test, id_column, targets, notes)
    labels = train[label_column]
    if labels.isna().all():
        raise InputError(f"train column {label_column!r} has no values")
    if labels.isna().any():
        notes.append(f"{int(labels.isna().sum())} train rows without a {label_column} value are dropped")
    labels = labels.dropna().astype(str)
    task_type = _task_type(labels, sample[targets[0]], metric, kind_hint, label_column)
    kind = kind_hint or _submission_kind(task_type, labels, sample[targets[0]], metric)
    classes, positive = _classes(labels, task_type, label_column, notes)
    if metric is None:
        metric = get_metric(_infer_metric(task_type, kind))
        metric_source = "inferred"
        notes.append(f"no metric given: using {metric.name} (pass --metric to choose)")
    return Profile(
        id_column=id_column,
        target_columns=targets,
        label_column=label_column,
        task_type=task_type,
        submission_kind=kind,
        metric=metric.name,
        metric_source=metric_source,
        classes=classes,
        positive_class=positive,
        n_train=len(train),
        n_test=len(sample),
        notes=notes,
    )


def _check_ids(test: pd.DataFrame, sample: pd.DataFrame, id_column: str, notes: list[str]) -> None:
    test_ids = test[id_column].astype(str)
    duplicated = test_ids[test_ids.duplicated()]
    if not duplicated.empty:
        raise InputError(f"test.csv: id {duplicated.iloc[0]!r} in column {id_column} appears more than once")
    missing = ~sample[id_column].isin(set(test_ids))
    if missing.any():
        example = sample[id_column][missing].iloc[0]
        raise InputError(
            f"{int(missing.sum())} ids of the sample submission are not in test.csv's {id_column} (e.g. {example!r})"
        )
    if len(test_ids) > len(sample):
        notes.append(f"{len(test_ids) - len(sample)} test rows are not in the sample submission and are not predicted")


def _find_label_column(
    train: pd.DataFrame, test: pd.DataFrame, id_column: str, targets: list[str], notes: list[str]
) -> tuple[str, str | None]:
    """The train column with the target, and CLASS_COLUMNS when the sample has one column per class."""
    in_train = [c for c in targets if c in train.columns]
    if len(targets) == 1 and in_train:
        return targets[0], None
    if len(in_train) > 1:
        raise InputError(f"the sample submission predicts several train columns {in_train}: not supported yet")
    candidates = [c for c in train.columns if c not in test.columns and c != id_column]
    for column in candidates:
        values = set(train[column].dropna().astype(str))
        if len(targets) > 1 and _class_names_match(targets, values):
            notes.append(f"one submission column per class of train column {column!r}")
            return column, CLASS_COLUMNS
    if len(targets) == 1 and len(candidates) == 1:
        notes.append(
            f"the sample's column {targets[0]!r} is predicted from train's only extra column {candidates[0]!r}"
        )
        return candidates[0], None
    raise InputError(
        f"the sample submission's columns {targets} can't be found in train.csv (its columns: {_few(train)})"
    )


def _few(frame: pd.DataFrame) -> str:
    names = list(frame.columns)
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")


def _class_names_match(columns: list[str], values: set[str]) -> bool:
    return all(class_column_match(c, values) is not None for c in columns)


def class_column_match(column: str, values: set[str] | list[str]) -> str | None:
    """The class value a per-class submission column stands for (`Class_1` or `1` both match class `1`)."""
    values = list(values)
    if column in values:
        return column
    lowered = {v.lower(): v for v in values}
    if column.lower() in lowered:
        return lowered[column.lower()]
    for prefix_sep in ("_", " ", "-", "."):
        tail = column.rsplit(prefix_sep, 1)[-1]
        if tail != column and tail in values:
            return tail
    return None


def _as_numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values.replace("", None), errors="coerce")


def _is_numeric(values: pd.Series) -> bool:
    return bool(len(values)) and bool(_as_numbers(values).notna().all())


def _is_integer_valued(values: pd.Series) -> bool:
    numbers = _as_numbers(values).dropna()
    return bool(len(numbers)) and bool((numbers == numbers.round()).all())


def _task_type(
    labels: pd.Series, sample_values: pd.Series, metric: Metric | None, kind_hint: str | None, column: str
) -> str:
    n_classes = labels.nunique()
    numeric = _is_numeric(labels)
    if kind_hint == CLASS_COLUMNS:
        family = CLASSIFICATION
    elif metric is not None:
        family = metric.family
    elif (
        not numeric
        or n_classes <= 2
        or (_is_integer_valued(labels) and n_classes <= _MAX_INTEGER_CLASSES and _is_integer_valued(sample_values))
    ):
        family = CLASSIFICATION
    else:
        family = REGRESSION
    if family == REGRESSION:
        if not numeric:
            example = labels[_as_numbers(labels).isna()].iloc[0]
            raise InputError(f"metric {metric.name if metric else ''} needs a numeric target; {column} has {example!r}")
        return "regression"
    if n_classes < 2:
        raise InputError(f"train column {column!r} has a single value ({labels.iloc[0]!r}): nothing to learn")
    return "binary" if n_classes == 2 else "multiclass"


def _submission_kind(task_type: str, labels: pd.Series, sample_values: pd.Series, metric: Metric | None) -> str:
    if task_type == "regression":
        return VALUE
    numbers = _as_numbers(sample_values)
    if task_type == "binary" and numbers.notna().all():
        if not _is_integer_valued(sample_values) and numbers.between(0, 1).all():
            return PROBA
        if not _is_numeric(labels):
            return PROBA  # a number where train has words: the probability of one class
        if metric is not None and metric.needs_proba and numbers.between(0, 1).all():
            return PROBA
    return LABEL


def _classes(labels: pd.Series, task_type: str, column: str, notes: list[str]) -> tuple[list[str], str | None]:
    if task_type == "regression":
        return [], None
    values = sorted(labels.unique(), key=_class_sort_key)
    if task_type != "binary":
        return values, None
    positive = _positive_class(labels, values)
    negative = next(v for v in values if v != positive)
    notes.append(f"positive class: {column} = {positive!r} (negative: {negative!r})")
    return [negative, positive], positive


def _class_sort_key(value: str) -> tuple[int, float, str]:
    try:
        number = float(value)
    except ValueError:
        return (1, 0.0, value)
    return (0, number if math.isfinite(number) else 0.0, value)


def _positive_class(labels: pd.Series, values: list[str]) -> str:
    """Truthy words (1, yes, true, ...) first; then the larger number; else the rarer class (the one usually sought)."""
    truthy = [v for v in values if v.strip().lower() in _TRUTHY]
    if len(truthy) == 1:
        return truthy[0]
    if all(_class_sort_key(v)[0] == 0 for v in values):
        return values[-1]
    counts = labels.value_counts()
    return str(min(values, key=lambda v: (counts.get(v, 0), -values.index(v))))


def _infer_metric(task_type: str, kind: str) -> str:
    if task_type == "regression":
        return "rmse"
    if kind == PROBA:
        return "roc_auc"
    if kind == CLASS_COLUMNS:
        return "logloss"
    return "accuracy"
