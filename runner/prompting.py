"""Prompts for model-body generation: a compact, bounded data preview, the task, the contract, the plan, the history.

Everything here is bounded in size, whatever the data: a fixed number of columns, rows and characters per cell, and
tracebacks trimmed to head and tail, so that a prompt stays a few thousand tokens on any competition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from runner.bodycheck import allowed_imports_text
from runner.features import is_text_column
from runner.sandbox import trim

MAX_COLUMNS = 40
MAX_ROWS = 3
MAX_CELL_CHARS = 24
MAX_PREVIEW_CHARS = 6000
MAX_ERROR_CHARS = 1500
MAX_PLAN_CHARS = 2000
MAX_CODE_CHARS = 6000

SYSTEM_PROMPT = """\
You are a Kaggle grandmaster writing the model body of a fixed training scaffold for a tabular competition.
The scaffold loads the data, runs K-fold cross-validation, fits the final model, predicts the test set and writes
the submission. You write only one Python module, following the contract exactly. Answer with one ```python block
and nothing else of importance: no file access, no network, no prints of data."""

CONTRACT = f"""\
Contract (the module you write):
- `build_model(task)` returns an UNFITTED scikit-learn-compatible estimator: `fit(X, y)`, `predict(X)`, and for
  classification `predict_proba(X)`. Typically a Pipeline or an estimator that handles its own encoding.
- Optional `add_features(df)` gets the features of train and test concatenated (train rows first; no id, no target)
  and returns a DataFrame with the same rows in the same order.
- `task` attributes: type ("binary" | "multiclass" | "regression"), metric, seed, n_rows, n_classes, categorical,
  numeric, text and sparse (lists of column names), n_jobs (use at most this many threads), fit_seconds (rough
  budget for one fit), max_fit_rows (0, or the size of the random training sample the scaffold gives each fit, for
  memory).
- X is a DataFrame of feature columns only; categorical columns have pandas `category` dtype (a value seen only in
  test arrives as NaN); numeric columns are floats; missing values are NaN; free-text columns (task.text, marked FREE
  TEXT in the preview) hold the raw text as pandas `string` (vectorise it, e.g. TfidfVectorizer, or leave it out by
  selecting task.numeric + task.categorical; their length/word counts are numeric columns). Wide mostly-zero data:
  the columns in task.sparse (also in task.numeric) have pandas `Sparse[float32, 0]` dtype; take them as one CSR
  matrix with `X[task.sparse].sparse.to_coo().tocsr()` or a ColumnTransformer branch of their own (a selection of
  only sparse columns becomes a scipy sparse matrix: scale it with StandardScaler(with_mean=False) or MaxAbsScaler).
- y: integer class codes 0..k-1 for classification (1 = positive class in binary tasks); floats for regression,
  already transformed for the metric.
- The scaffold cross-validates with a fresh build_model per fold, then fits on all rows and predicts test.
- Allowed imports only: {allowed_imports_text()}.
  Everything else is refused: os, sys, subprocess, socket, ctypes, pickle, importlib, dataclasses, inspect, ...;
  no name, attribute or argument starting with '_' (except `_` and a custom estimator's `__init__` and
  `super().__init__()`), no string spelling a dunder; no attribute that reaches another module (np.lib, pd.io,
  lgb.basic, x.sys ...); no open, eval, exec, compile, getattr, setattr, globals, vars, dir, input, chr, bytes; no
  file readers or writers (pd.read_*, to_csv, to_string, np.load/save, save_model ...); no str.format on built
  strings; no pandas agg/transform/apply with a built string. Task attributes always exist: use `task.n_jobs`, not
  getattr. Code that breaks a rule is rejected with the line named; what passes runs in a sandbox.
- Limited time and memory: size the model to task.fit_seconds and task.n_jobs."""


VERDICT_PHRASES = {
    "rejected": "was rejected before running",
    "crashed": "crashed",
    "timed_out": "ran out of time and was killed",
    "out_of_memory": "ran out of memory",
    "bad_output": "produced unusable predictions",
}


@dataclass(frozen=True)
class Attempt:
    """What one earlier attempt did, for the next prompt."""

    number: int
    verdict: str  # "rejected", "crashed", "timed_out", "out_of_memory", "bad_output", "scored"
    detail: str = ""
    score: float | None = None
    code: str = ""


@dataclass(frozen=True)
class PromptContext:
    preview: str
    task: Mapping[str, Any]
    metric: str
    direction: str  # "higher is better" | "lower is better"
    baseline_score: float | None = None
    baseline_name: str = "template"
    baseline_code: str | None = None  # the best template's source: a working start the LLM may improve on
    plan: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def data_preview(
    train: pd.DataFrame,
    targets: Sequence[str],
    id_column: str | None = None,
    max_columns: int = MAX_COLUMNS,
    max_rows: int = MAX_ROWS,
) -> str:
    """Columns, dtypes, missing share, cardinality, target distribution, a few rows; at most MAX_PREVIEW_CHARS."""
    lines = [
        f"train: {len(train)} rows x {train.shape[1]} columns" + (f"; id column: {id_column}" if id_column else "")
    ]
    lines += [_target_line(train, t) for t in targets if t in train.columns]
    features = [c for c in train.columns if c not in set(targets) and c != id_column]
    lines.append("features (name: dtype, missing %, distinct, example):")
    lines += [_column_line(train[c]) for c in features[:max_columns]]
    if len(features) > max_columns:
        lines.append(f"... and {len(features) - max_columns} more feature columns")
    shown = [c for c in [*features[: min(max_columns, 12)], *targets] if c in train.columns]
    sample = train[shown].head(max_rows).map(_cell) if len(train) else train[shown]
    lines += ["first rows:", sample.to_csv(index=False).strip()]
    return trim("\n".join(lines), MAX_PREVIEW_CHARS)


def _target_line(train: pd.DataFrame, target: str) -> str:
    y = train[target]
    if pd.api.types.is_numeric_dtype(y) and y.nunique() > 20:
        q = y.quantile([0, 0.25, 0.5, 0.75, 1]).round(4).tolist()
        return f"target {target}: numeric, min/q1/median/q3/max = {q}, skew {float(y.skew()):.2f}"
    shares = y.astype(str).value_counts(normalize=True).head(10).round(3).to_dict()
    return f"target {target}: {y.nunique()} classes, shares {shares}"


def _column_line(col: pd.Series) -> str:
    missing = float(col.isna().mean()) * 100
    distinct = int(col.nunique(dropna=True))
    example = _cell(col.dropna().iloc[0]) if col.notna().any() else "NaN"
    kind = f"FREE TEXT ({_words(col)})" if is_text_column(col) else str(col.dtype)
    return f"- {_cell(str(col.name))}: {kind}, {missing:.0f}% missing, {distinct} distinct, e.g. {example}"


def _words(col: pd.Series) -> str:
    present = col.dropna().astype(str)
    return f"{present.str.split().str.len().mean():.0f} words on average" if len(present) else "empty"


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 3] + "..."


def build_messages(
    context: PromptContext, history: Sequence[Attempt], mode: str = "new", focus: Attempt | None = None
) -> list[dict[str, str]]:
    """mode: "new" (write a body), "repair" (fix `focus`, a failed attempt), "improve" (improve `focus`, scored)."""
    parts = [_task_section(context), CONTRACT]
    if context.plan:
        parts.append("Plan from the planning step (follow it when it helps):\n" + trim(context.plan, MAX_PLAN_CHARS))
    if history:
        parts.append(_history_section(history))
    parts.append(_instruction(context, mode, focus))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def _task_section(context: PromptContext) -> str:
    task = ", ".join(f"{k}={_short_value(v)}" for k, v in context.task.items())
    baseline = (
        f"The {context.baseline_name} baseline scores {context.baseline_score:.6g} by the scaffold's CV; beat it."
        if context.baseline_score is not None
        else ""
    )
    return (
        f"Task: {task}\nMetric: {context.metric} ({context.direction}). {baseline}\n\nData preview:\n{context.preview}"
    )


def _short_value(value: object) -> str:
    if isinstance(value, list | tuple):
        shown = ", ".join(map(str, value[:15]))
        return f"[{shown}{', ...' if len(value) > 15 else ''}] ({len(value)})"
    return str(value)


def _history_section(history: Sequence[Attempt]) -> str:
    lines = ["Earlier attempts:"]
    for attempt in history[-6:]:
        outcome = f"CV {attempt.score:.6g}" if attempt.score is not None else attempt.verdict
        first_line = attempt.detail.strip().splitlines()[-1:] if attempt.detail else []
        lines.append(f"- attempt {attempt.number}: {outcome}" + (f" ({first_line[0][:200]})" if first_line else ""))
    return "\n".join(lines)


def _instruction(context: PromptContext, mode: str, focus: Attempt | None) -> str:
    if mode == "repair" and focus is not None:
        code = f"Its code:\n```python\n{trim(focus.code, MAX_CODE_CHARS)}\n```\n" if focus.code.strip() else ""
        what = VERDICT_PHRASES.get(focus.verdict, focus.verdict)
        return (
            f"Attempt {focus.number} {what}:\n{trim(focus.detail, MAX_ERROR_CHARS)}\n\n"
            f"{code}Fix the problem and answer with the whole corrected module in one ```python block."
        )
    if mode == "improve" and focus is not None and focus.score is not None:
        return (
            f"Attempt {focus.number} scored CV {focus.score:.6g} ({context.direction}):\n"
            f"```python\n{trim(focus.code, MAX_CODE_CHARS)}\n```\n"
            "Propose one concrete improvement (model choice, hyperparameters, features, a blend) and answer with the "
            "whole improved module in one ```python block."
        )
    start = ""
    if context.baseline_code:
        start = (
            f"The {context.baseline_name} body, a working start you may build on:\n"
            f"```python\n{trim(context.baseline_code, MAX_CODE_CHARS)}\n```\n"
        )
    return (
        f"{start}Write the module now: one ```python block defining build_model(task) "
        "(and add_features(df) if useful) that beats the baseline."
    )
