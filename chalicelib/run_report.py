"""`RunReport`: the runner's result.json, typed, in one place for the runner (writes it) and the service (reads it).

result.json is a JSON object. Since `SCHEMA_VERSION` 1 it carries `"schema_version": 1`; files written before had no
version and the same keys (they read as version 1). A file of a newer version than this code knows is refused with
one line (`UnknownReportVersion`): an old service must not misread a new runner's report.

Every key keeps the name and meaning it had before the report was typed (the HTML report, GET /runs/{id}, the emails,
the benchmarks and users read them). A field that is None is not written unless it was given as an explicit null
(`from_fields` records those in `nulls`): a null in result.json says "known, and empty" (no positive class for a
regression, several targets whose scores cannot be averaged, no price for the model), a missing key "not reached".
Keys this version does not name (a newer runner at the same version, a peer baseline's report) are kept in `extra`.

Standard library only: the runner image and the Lambda package both carry chalicelib/.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePath
from typing import Any

SCHEMA_VERSION = 1
VERSION_KEY = "schema_version"
SUCCEEDED = "succeeded"
FAILED = "failed"
UNKNOWN_STATUS = ""  # read from a file without a status (the runner always writes one; other writers may not)


class ReportError(ValueError):
    """result.json cannot be read as a RunReport; the message is one line naming why."""


class UnknownReportVersion(ReportError):
    """result.json was written by a newer kagent than this one."""


@dataclass(frozen=True)
class RunReport:
    """One run's result.json. Field names are the JSON keys; see the module docstring for what is written."""

    status: str  # SUCCEEDED or FAILED (UNKNOWN_STATUS when read from a file without one)
    reason: str = ""  # why it failed, one line ("" when it succeeded)
    time_budget_s: float | None = None
    codegen: str | None = None  # the candidates' source: "template" or "llm"
    elapsed_s: float | None = None
    peak_memory_mb: float | None = None
    memory_ceiling_mb: float | None = None
    memory_ceiling_source: str | None = None
    memory_peak_mb: float | None = None
    memory_peak_share: float | None = None
    # the data (several targets: names joined with ",")
    metric: str | None = None
    metric_source: str | None = None  # option | plan | metadata | inferred
    task_type: str | None = None
    id_column: str | None = None
    target_columns: list[str] | None = None
    label_column: str | None = None
    submission_kind: str | None = None
    positive_class: Any = None
    classes: list[Any] | None = None
    n_train: int | None = None
    n_test: int | None = None
    # the choice
    model: str | None = None
    cv_score: float | None = None  # None with several targets whose scores cannot be averaged
    cv_folds: int | None = None
    test_predictions_from: str | None = None
    cv_score_per_target: dict[str, float | None] | None = None
    decision_threshold: float | dict[str, float] | None = None
    stop_reason: str | None = None
    candidates: list[dict[str, Any]] | None = None
    # codegen and the LLM's usage
    codegen_model: str | None = None
    codegen_attempts: int | None = None
    codegen_scored: int | None = None
    codegen_best_cv: float | None = None
    codegen_stopped: str | None = None
    codegen_failure: str | None = None
    codegen_s: float | None = None
    llm_model: str | None = None
    llm_calls: int | None = None
    llm_retries: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    estimated_cost_usd: float | None = None
    # written after the run: the report (cost, ranked leaderboard, metric direction), the Kaggle submission
    cost: dict[str, Any] | None = None
    leaderboard: list[dict[str, Any]] | None = None
    metric_direction: str | None = None  # chalicelib.vocabulary.direction_text
    kaggle_submission: dict[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not name, as read
    nulls: frozenset[str] = frozenset()  # named fields given as an explicit null: written as null, not left out

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    # -- writing -----------------------------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """The JSON object: the version first, then the keys that are set (see the module docstring), then `extra`."""
        data: dict[str, Any] = {VERSION_KEY: SCHEMA_VERSION}
        for spec in _FIELDS:
            value = getattr(self, spec.name)
            if value is not None or spec.name in self.nulls:
                data[spec.name] = value
        data.update((key, value) for key, value in self.extra.items() if key not in data)
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, default=_plain) + "\n"

    def write(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    def updated(self, changes: Mapping[str, Any]) -> RunReport:
        """This report with `changes` (JSON keys: named fields are checked, others go to `extra`)."""
        return RunReport.from_fields({**self.as_dict(), **changes})

    # -- reading -----------------------------------------------------------------------------------------------------

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> RunReport:
        """A report from a JSON object's keys (or the runner's collected fields, numpy scalars allowed); ReportError
        if a named key holds the wrong type, UnknownReportVersion if the version is newer than SCHEMA_VERSION."""
        plain = json.loads(json.dumps(dict(data), default=_plain))
        _check_version(plain.get(VERSION_KEY))
        known: dict[str, Any] = {"status": UNKNOWN_STATUS}  # a status-less file is read for what it does hold
        for spec in _FIELDS:
            if spec.name in plain:
                known[spec.name] = _checked(spec.name, plain[spec.name])
        extra = {k: v for k, v in plain.items() if k != VERSION_KEY and k not in known}
        nulls = frozenset(name for name, value in known.items() if value is None)
        return cls(**known, extra=extra, nulls=nulls)

    @classmethod
    def from_json(cls, text: str | bytes) -> RunReport:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise ReportError(f"result.json is not valid JSON: {str(error).splitlines()[0][:200]}") from None
        if not isinstance(data, dict):
            raise ReportError(f"result.json must hold a JSON object, not {type(data).__name__}")
        return cls.from_fields(data)

    @classmethod
    def read(cls, path: Path) -> RunReport:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ReportError(f"cannot read {path.name}: {type(error).__name__}: {error}") from None
        return cls.from_json(text)


def read_or_none(read: Callable[[], bytes | str | None]) -> RunReport | None:
    """The report `read()` returns, or None when it returns nothing or something that is not a readable report."""
    try:
        raw = read()
        return RunReport.from_json(raw) if raw else None
    except (ReportError, OSError):
        return None


_FIELDS = tuple(spec for spec in fields(RunReport) if spec.name not in ("extra", "nulls"))
_STR = {
    "status",
    "reason",
    "codegen",
    "memory_ceiling_source",
    "metric",
    "metric_source",
    "task_type",
    "id_column",
    "label_column",
    "submission_kind",
    "model",
    "test_predictions_from",
    "stop_reason",
    "codegen_model",
    "codegen_stopped",
    "codegen_failure",
    "llm_model",
    "metric_direction",
}
_INT = {"n_train", "n_test", "cv_folds", "codegen_attempts", "codegen_scored", "llm_calls", "llm_retries"}
_INT |= {"tokens_in", "tokens_out"}
_LIST = {"target_columns", "classes", "candidates", "leaderboard"}
_DICT = {"cv_score_per_target", "cost", "kaggle_submission"}
_ANY = {"positive_class"}


def _checked(name: str, value: Any) -> Any:
    """`value` if it has the type field `name` holds (None always does), else ReportError."""
    if value is None or name in _ANY:
        return value
    if name in _STR:
        ok = isinstance(value, str)
    elif name in _INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name in _LIST:
        ok = isinstance(value, list)
    elif name in _DICT:
        ok = isinstance(value, dict)
    elif name == "decision_threshold":
        ok = _is_number(value) or isinstance(value, dict)
    else:  # the remaining fields are numbers
        ok = _is_number(value)
    if not ok:
        raise ReportError(f"result.json's {name} must not be {type(value).__name__} ({str(value)[:40]!r})")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_version(version: Any) -> None:
    if version is None:
        return  # written before result.json was versioned: the same keys as version 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ReportError(f"result.json has an invalid schema_version {str(version)[:40]!r}")
    if version > SCHEMA_VERSION:
        raise UnknownReportVersion(
            f"result.json has schema_version {version}, newer than this kagent reads ({SCHEMA_VERSION}): upgrade kagent"
        )


def _plain(value: Any) -> Any:
    """JSON for what the runner collects beyond JSON types: numpy scalars (their .item()) and paths."""
    if isinstance(value, PurePath):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
