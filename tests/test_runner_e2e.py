"""End to end: the runner on small competitions built by tests/competitions.py, through run_pipeline and the CLI."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.run_report import RunReport
from chalicelib.submission import validate_submission
from runner.pipeline import RunOptions, run_pipeline
from tests import competitions

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 8


def run(data: Path, out: Path, **options) -> dict:
    # no extra_candidates: `auto` means the templates (the pipeline never reads the LLM settings from the environment)
    outcome = run_pipeline(data, out, RunOptions(time_budget=BUDGET, **options))
    assert outcome.status == "succeeded", outcome.reason
    assert outcome.exit_code == 0
    result = RunReport.read(out / "result.json").as_dict()
    assert result == outcome.result
    return result


def submission(out: Path) -> list[dict[str, str]]:
    with (out / "submission.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def assert_valid(folder: Path, out: Path, sample_name: str = "sample_submission.csv") -> None:
    assert validate_submission(out / "submission.csv", folder / sample_name) == []
    sample_ids = [row[0] for row in csv.reader((folder / sample_name).open())][1:]
    assert [row[0] for row in csv.reader((out / "submission.csv").open())][1:] == sample_ids


pytestmark = pytest.mark.slow


def test_binary_labels_from_gender_submission_via_the_cli(tmp_path: Path):
    folder = competitions.classification(
        tmp_path / "titanic-like",
        id_column="PassengerId",
        target="Survived",
        labels={"malignant": "0", "benign": "1"},
        sample_name="gender_submission.csv",
        metadata={"metric": "accuracy"},
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "runner", str(folder), "--out", str(out), "--time-budget", str(BUDGET)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")},
    )
    assert done.returncode == 0, done.stderr
    assert "submission:" in done.stdout
    result = RunReport.read(out / "result.json")
    assert (result.task_type, result.submission_kind, result.metric) == ("binary", "label", "accuracy")
    assert result.metric_source == "metadata" and result.cv_score is not None and result.cv_score > 0.8
    assert result.elapsed_s is not None and result.elapsed_s <= BUDGET + 10
    assert_valid(folder, out, "gender_submission.csv")
    assert {row["Survived"] for row in submission(out)} <= {"0", "1"}
    assert (
        "template" in (out / "gpt_code_trace.txt").read_text()
        and "def build_model" in (out / "gpt_code_trace.txt").read_text()
    )
    logs = (out / "logs.txt").read_text()
    assert "profile:" in logs and "fold 1/" in logs


def test_binary_probability_with_string_ids_and_yes_no_labels(tmp_path: Path):
    folder = competitions.classification(
        tmp_path / "churn-like",
        kind="proba",
        id_column="customerID",
        id_style="string",
        target="churn",
        labels={"malignant": "Yes", "benign": "No"},
    )
    result = run(folder, tmp_path / "out", metric="roc_auc")
    assert (result["submission_kind"], result["positive_class"], result["id_column"]) == ("proba", "Yes", "customerID")
    assert result["cv_score"] > 0.9
    assert_valid(folder, tmp_path / "out")
    assert all(0 <= float(row["churn"]) <= 1 for row in submission(tmp_path / "out"))


def test_multiclass_labels(tmp_path: Path):
    folder = competitions.classification(tmp_path / "iris", dataset="iris", target="species", n_features=4)
    result = run(folder, tmp_path / "out")
    assert (result["task_type"], result["submission_kind"], result["metric"]) == ("multiclass", "label", "accuracy")
    assert {row["species"] for row in submission(tmp_path / "out")} <= {"setosa", "versicolor", "virginica"}
    assert_valid(folder, tmp_path / "out")


def test_one_column_per_class(tmp_path: Path):
    folder = competitions.classification(tmp_path / "wine", dataset="wine", kind="class_columns", n_rows=None)
    result = run(folder, tmp_path / "out", metric="logloss")
    assert result["submission_kind"] == "class_columns" and result["target_columns"] == [
        "class_0",
        "class_1",
        "class_2",
    ]
    rows = submission(tmp_path / "out")
    assert all(abs(sum(float(v) for k, v in row.items() if k != "id") - 1) < 1e-6 for row in rows)
    assert_valid(folder, tmp_path / "out")


def test_regression_and_rmsle(tmp_path: Path):
    folder = competitions.regression(tmp_path / "diabetes")
    for metric in ("rmse", "rmsle"):
        out = tmp_path / metric
        result = run(folder, out, metric=metric)
        assert (result["task_type"], result["submission_kind"], result["metric"]) == ("regression", "value", metric)
        assert_valid(folder, out)
        values = [float(row["y"]) for row in submission(out)]
        assert min(values) >= 0 and 25 < sum(values) / len(values) < 350


def test_a_nested_zip(tmp_path: Path):
    folder = competitions.classification(tmp_path / "nested", n_rows=150)
    archive = competitions.zip_folder(folder, tmp_path / "nested.zip", nest=True)
    run(archive, tmp_path / "out")
    assert_valid(folder, tmp_path / "out")


def test_nan_heavy_columns_free_text_and_categories_unseen_in_train(tmp_path: Path):
    folder = competitions.classification(
        tmp_path / "messy", nan_fraction=0.6, text=True, unseen_categories=True, n_rows=200
    )
    result = run(folder, tmp_path / "out")
    assert_valid(folder, tmp_path / "out")
    logs = (tmp_path / "out" / "logs.txt").read_text()
    assert "text 1" in logs and "categorical 1" in logs
    assert result["cv_score"] > 0.6


def test_an_id_column_that_is_not_first_and_train_rows_without_a_target(tmp_path: Path):
    folder = competitions.regression(tmp_path / "odd", n_rows=120)
    sample = (folder / "sample_submission.csv").read_text().splitlines()
    swapped = [",".join(reversed(line.split(","))) for line in sample]
    (folder / "sample_submission.csv").write_text("\n".join(swapped) + "\n")
    train = (folder / "train.csv").read_text().splitlines()
    (folder / "train.csv").write_text(
        "\n".join([train[0], *(line.rsplit(",", 1)[0] + "," for line in train[1:6]), *train[6:]]) + "\n"
    )
    result = run(folder, tmp_path / "out")
    assert result["id_column"] == "Id"
    assert (tmp_path / "out" / "submission.csv").read_text().splitlines()[0] == "y,Id"
    assert validate_submission(tmp_path / "out" / "submission.csv", folder / "sample_submission.csv") == []
    assert "5 train rows without a y value are dropped" in (tmp_path / "out" / "logs.txt").read_text()


def test_extra_candidates_see_the_baseline_and_a_better_one_is_chosen_and_traced(tmp_path: Path):
    import numpy as np  # noqa: PLC0415

    from runner.pipeline import Candidate  # noqa: PLC0415
    from runner.scaffold import Evaluation  # noqa: PLC0415

    seen = {}

    def provider(context):
        seen["baseline"] = context.baseline.name
        seen["metric"] = context.metric.name
        perfect = np.eye(2)[context.data.y]  # an oracle's out-of-fold predictions
        test = np.tile([0.2, 0.8], (len(context.data.test_ids), 1))
        evaluation = Evaluation("oracle", context.metric.name, 1.0, [1.0], perfect, test, 0.1, 5)
        context.trace("the oracle was asked nicely")
        return [Candidate("oracle", "def build_model(task):\n    return ORACLE\n", evaluation)]

    folder = competitions.classification(tmp_path / "seam", n_rows=120)
    outcome = run_pipeline(folder, tmp_path / "out", RunOptions(time_budget=6, extra_candidates=provider))
    assert outcome.status == "succeeded", outcome.reason
    assert seen["metric"] == "accuracy" and seen["baseline"] in ("linear", "lightgbm_gbdt", "kernel_svm")
    assert outcome.result["codegen"] == "llm" and outcome.result["model"] == "oracle"
    assert {row["target"] for row in submission(tmp_path / "out")} == {"malignant"}  # P(positive) = 0.8
    trace = (tmp_path / "out" / "gpt_code_trace.txt").read_text()
    assert "the oracle was asked nicely" in trace and "return ORACLE" in trace


def test_a_failing_candidate_provider_leaves_the_templates_choice(tmp_path: Path):
    def provider(context):
        raise RuntimeError("the LLM is down")

    folder = competitions.classification(tmp_path / "down", n_rows=120)
    outcome = run_pipeline(folder, tmp_path / "out", RunOptions(time_budget=6, extra_candidates=provider))
    assert outcome.status == "succeeded", outcome.reason
    assert "extra candidates failed: RuntimeError: the LLM is down" in (tmp_path / "out" / "logs.txt").read_text()


def test_several_target_columns_are_solved_one_by_one(tmp_path: Path):
    import pandas as pd  # noqa: PLC0415

    folder = competitions.regression(tmp_path / "multi", n_rows=150)
    train = pd.read_csv(folder / "train.csv")
    train["high"] = (train["y"] > train["y"].median()).map({True: "yes", False: "no"})
    train.to_csv(folder / "train.csv", index=False)
    sample = pd.read_csv(folder / "sample_submission.csv").assign(high=0.5)
    sample.to_csv(folder / "sample_submission.csv", index=False)
    result = run(folder, tmp_path / "out")
    assert result["target_columns"] == ["y", "high"] and result["task_type"] == "regression,binary"
    assert set(result["cv_score_per_target"]) == {"y", "high"} and result["metric"] == "rmse,roc_auc"
    assert result["cv_score"] is None  # no mean over different metrics
    rows = submission(tmp_path / "out")
    assert all(0 <= float(row["high"]) <= 1 and float(row["y"]) > 0 for row in rows)
    assert_valid(folder, tmp_path / "out")


def test_f1_on_imbalanced_labels_tunes_the_threshold_and_mae_regression_runs(tmp_path: Path):
    import pandas as pd  # noqa: PLC0415

    folder = competitions.classification(tmp_path / "rare", n_rows=300, labels={"malignant": "1", "benign": "0"})
    train = pd.read_csv(folder / "train.csv")
    rare = train[train["target"] == 1].iloc[20:].index  # keep only 20 positives: about one row in ten
    train.drop(index=rare).to_csv(folder / "train.csv", index=False)
    result = run(folder, tmp_path / "out", metric="f1")
    assert 0 < result["decision_threshold"] < 1 and result["cv_score"] > 0.5
    assert_valid(folder, tmp_path / "out")
    regression = competitions.regression(tmp_path / "mae", n_rows=120)
    assert run(regression, tmp_path / "out-mae", metric="mae")["metric"] == "mae"
