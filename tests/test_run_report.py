"""RunReport: result.json typed and versioned — the keys written today keep their names, files written before the
version read as they are, a newer version is refused with one line, and a wrong type is an error, not a guess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chalicelib.run_report import (
    SCHEMA_VERSION,
    ReportError,
    RunReport,
    UnknownReportVersion,
    read_or_none,
)

# result.json as the runner wrote it before it was versioned (a succeeded single-target run with LLM codegen).
LEGACY = {
    "status": "succeeded",
    "reason": "",
    "time_budget_s": 600.0,
    "codegen": "llm",
    "metric": "roc_auc",
    "metric_source": "plan",
    "task_type": "binary",
    "id_column": "PassengerId",
    "target_columns": ["Survived"],
    "label_column": "Survived",
    "submission_kind": "label",
    "positive_class": 1,
    "classes": [0, 1],
    "n_train": 891,
    "n_test": 418,
    "stop_reason": "all templates finished",
    "codegen_model": "gpt-5-mini",
    "codegen_attempts": 2,
    "codegen_scored": 1,
    "codegen_best_cv": None,
    "codegen_stopped": "attempts",
    "codegen_failure": None,
    "codegen_s": 12.5,
    "llm_model": "gpt-5-mini",
    "llm_calls": 2,
    "llm_retries": 0,
    "tokens_in": 1200,
    "tokens_out": 300,
    "estimated_cost_usd": None,
    "candidates": [{"name": "lightgbm_gbdt", "cv_score": 0.87, "folds": 5}],
    "model": "lightgbm_gbdt",
    "cv_score": 0.87,
    "cv_folds": 5,
    "test_predictions_from": "refit",
    "decision_threshold": 0.41,
    "elapsed_s": 41.2,
    "peak_memory_mb": 812.3,
    "memory_ceiling_mb": 4096.0,
    "memory_ceiling_source": "cgroup",
    "memory_peak_mb": 812.3,
    "memory_peak_share": 0.198,
    "cost": {"total_usd": 0.0042},
    "leaderboard": [{"name": "lightgbm_gbdt", "cv_score": 0.87, "role": "chosen"}],
    "metric_direction": "higher is better",
    "kaggle_submission": {"status": "scored", "message": "m", "url": "u", "public_score": 0.77},
}


def test_a_legacy_result_json_reads_and_writes_back_every_key_unchanged() -> None:
    report = RunReport.from_json(json.dumps(LEGACY))
    assert report.succeeded and report.cv_score == 0.87 and report.metric == "roc_auc"
    assert report.extra == {}  # every key of today's layout is a named field
    written = json.loads(report.to_json())
    assert written.pop("schema_version") == SCHEMA_VERSION
    assert written == LEGACY


def test_the_version_is_written_first() -> None:
    assert next(iter(json.loads(RunReport("failed", "boom").to_json()))) == "schema_version"


def test_a_failed_run_writes_only_what_it_knows() -> None:
    failed = {"status": "failed", "reason": "no train.csv in the data", "time_budget_s": 60, "elapsed_s": 0.2}
    assert json.loads(RunReport.from_fields(failed).to_json()) == {"schema_version": SCHEMA_VERSION, **failed}


def test_an_explicit_null_stays_null_and_a_missing_key_stays_missing() -> None:
    """Several targets whose scores cannot be averaged: cv_score is null, and says so; codegen that never ran has a
    model and usage but no attempts, and gains no null keys for them."""
    fields = {
        "status": "succeeded",
        "reason": "",
        "model": "a | b",
        "cv_score": None,
        "cv_folds": 5,
        "codegen_model": "m",
    }
    data = json.loads(RunReport.from_fields(fields).to_json())
    assert data == {"schema_version": SCHEMA_VERSION, **fields}
    assert "cv_score" not in json.loads(RunReport("succeeded", model="a").to_json())  # None given to the class: unset


def test_keys_this_version_does_not_name_are_kept() -> None:
    report = RunReport.from_fields({"status": "succeeded", "something_new": {"a": 1}})
    assert report.extra == {"something_new": {"a": 1}}
    assert json.loads(report.to_json())["something_new"] == {"a": 1}


def test_the_runner_s_numpy_scalars_and_tuples_become_plain_json() -> None:
    fields = {"status": "succeeded", "n_train": np.int64(10), "cv_score": np.float64(0.5), "target_columns": ("y",)}
    fields["positive_class"] = np.int64(1)
    report = RunReport.from_fields(fields)
    assert (report.n_train, report.cv_score, report.target_columns, report.positive_class) == (10, 0.5, ["y"], 1)
    assert type(report.n_train) is int


def test_updated_adds_keys_and_checks_their_types() -> None:
    report = RunReport("succeeded").updated({"kaggle_submission": {"status": "refused"}, "cost": {"total_usd": 1.0}})
    assert report.kaggle_submission == {"status": "refused"} and report.cost == {"total_usd": 1.0}
    with pytest.raises(ReportError, match="kaggle_submission must not be str"):
        report.updated({"kaggle_submission": "refused"})


def test_a_newer_version_is_refused_with_one_line() -> None:
    newer = json.dumps({"schema_version": SCHEMA_VERSION + 1, "status": "succeeded"})
    with pytest.raises(UnknownReportVersion) as refused:
        RunReport.from_json(newer)
    message = str(refused.value)
    assert "\n" not in message and f"schema_version {SCHEMA_VERSION + 1}" in message and "upgrade kagent" in message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object, not list"),
        ('{"status": 1}', "status must not be int"),
        ('{"status": "succeeded", "cv_score": "0.9"}', "cv_score must not be str"),
        ('{"status": "succeeded", "n_train": true}', "n_train must not be bool"),
        ('{"status": "succeeded", "schema_version": "1"}', "invalid schema_version"),
        ('{"status": "succeeded", "schema_version": 0}', "invalid schema_version"),
    ],
)
def test_a_broken_result_json_is_a_one_line_error(text: str, error: str) -> None:
    with pytest.raises(ReportError, match=error) as raised:
        RunReport.from_json(text)
    assert "\n" not in str(raised.value)


def test_read_or_none_swallows_absence_and_breakage_but_not_bugs(tmp_path: Path) -> None:
    assert read_or_none(lambda: None) is None
    assert read_or_none(lambda: b"{broken") is None
    assert read_or_none((tmp_path / "missing.json").read_bytes) is None
    assert read_or_none(lambda: json.dumps({"schema_version": 99, "status": "succeeded"})) is None
    assert read_or_none(lambda: b'{"status": "failed"}') == RunReport("failed")

    def bug() -> bytes:
        raise KeyError("a bug is not a missing report")

    with pytest.raises(KeyError):
        read_or_none(bug)


def test_write_and_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    report = RunReport.from_fields(LEGACY)
    report.write(path)
    assert RunReport.read(path) == report
    with pytest.raises(ReportError, match="cannot read"):
        RunReport.read(tmp_path / "absent.json")


def test_a_file_without_a_status_is_read_for_what_it_holds() -> None:
    """What a fake runner or a hand-written file may hold: the service still finds the score in it."""
    report = RunReport.from_json('{"cv_score": 0.8, "metric": "accuracy"}')
    assert (report.status, report.cv_score, report.metric) == ("", 0.8, "accuracy")
    assert not report.succeeded
