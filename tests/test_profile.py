"""runner.profile and runner.output: what the competition asks for, and predictions written in that form."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runner.errors import InputError
from runner.output import submission_rows
from runner.profile import Tables, profile_competition, read_tables


def tables(train: dict, test: dict, sample: dict) -> Tables:
    return Tables(pd.DataFrame(train), pd.DataFrame(test), pd.DataFrame(sample).astype(str))


def profile(train: dict, test: dict, sample: dict, metric: str | None = None, id_column: str = "id"):
    t = tables(train, test, sample)
    targets = [c for c in t.sample.columns if c != id_column]
    return profile_competition(t, id_column, targets, metric)


TEST = {"id": ["10", "11", "12"], "x": [1.0, 2.0, 3.0]}


def test_zero_one_labels_with_a_label_sample_are_a_binary_label_task():
    p = profile(
        {"id": ["1", "2", "3", "4"], "x": [1, 2, 3, 4], "Survived": ["0", "1", "0", "1"]},
        TEST,
        {"id": TEST["id"], "Survived": ["0", "0", "0"]},
    )
    assert (p.task_type, p.submission_kind, p.metric, p.metric_source) == ("binary", "label", "accuracy", "inferred")
    assert p.classes == ["0", "1"] and p.positive_class == "1"


def test_yes_no_target_with_a_numeric_sample_is_the_probability_of_yes():
    p = profile(
        {"id": ["1", "2", "3", "4"], "x": [1, 2, 3, 4], "churn": ["No", "Yes", "No", "No"]},
        TEST,
        {"id": TEST["id"], "churn": ["0.5", "0.5", "0.5"]},
    )
    assert (p.task_type, p.submission_kind, p.metric) == ("binary", "proba", "roc_auc")
    assert p.positive_class == "Yes" and p.classes == ["No", "Yes"]
    assert "positive class: churn = 'Yes' (negative: 'No')" in p.notes


def test_without_truthy_words_the_rarer_class_is_positive():
    p = profile(
        {"id": list("1234"), "x": [1, 2, 3, 4], "kind": ["cat", "dog", "dog", "dog"]},
        TEST,
        {"id": TEST["id"], "kind": ["0.5"] * 3},
    )
    assert p.positive_class == "cat"


def test_zero_one_target_with_a_zero_sample_and_auc_metric_submits_probabilities():
    p = profile(
        {"id": list("1234"), "x": [1, 2, 3, 4], "y": ["0", "1", "0", "1"]},
        TEST,
        {"id": TEST["id"], "y": ["0", "0", "0"]},
        metric="roc_auc",
    )
    assert p.submission_kind == "proba"


def test_species_names_are_multiclass_labels():
    p = profile(
        {"id": list("1234"), "x": [1, 2, 3, 4], "species": ["Adelie", "Gentoo", "Chinstrap", "Adelie"]},
        TEST,
        {"id": TEST["id"], "species": ["Adelie"] * 3},
    )
    assert (p.task_type, p.submission_kind, p.classes) == ("multiclass", "label", ["Adelie", "Chinstrap", "Gentoo"])


def test_one_sample_column_per_class_is_found_by_value():
    p = profile(
        {"id": list("1234"), "x": [1, 2, 3, 4], "label": ["a", "b", "c", "a"]},
        TEST,
        {"id": TEST["id"], "Class_a": ["0.3"] * 3, "Class_b": ["0.3"] * 3, "Class_c": ["0.4"] * 3},
    )
    assert (p.task_type, p.submission_kind, p.label_column, p.metric) == (
        "multiclass",
        "class_columns",
        "label",
        "logloss",
    )


def test_continuous_numbers_are_regression_scored_by_rmse_unless_told():
    train = {"id": list("1234"), "x": [1, 2, 3, 4], "price": ["10.5", "20.1", "30.7", "41.2"]}
    sample = {"id": TEST["id"], "price": ["1.0"] * 3}
    assert (profile(train, TEST, sample).task_type, profile(train, TEST, sample).metric) == ("regression", "rmse")
    assert profile(train, TEST, sample, metric="rmsle").metric == "rmsle"


def test_small_integer_targets_become_regression_when_the_metric_says_so():
    train = {"id": list("1234"), "x": [1, 2, 3, 4], "rating": ["1", "2", "3", "5"]}
    sample = {"id": TEST["id"], "rating": ["3"] * 3}
    assert profile(train, TEST, sample).task_type == "multiclass"
    assert profile(train, TEST, sample, metric="rmse").task_type == "regression"


def test_a_regression_metric_on_a_text_target_is_an_input_error():
    with pytest.raises(InputError, match="needs a numeric target"):
        profile({"id": list("12"), "x": [1, 2], "y": ["a", "b"]}, TEST, {"id": TEST["id"], "y": ["a"] * 3}, "rmse")


def test_sample_columns_missing_from_train_are_an_input_error():
    with pytest.raises(InputError, match=r"can.t be found in train\.csv"):
        profile({"id": list("12"), "x": [1, 2], "a": [1, 2], "b": [3, 4]}, TEST, {"id": TEST["id"], "zzz": ["1"] * 3})


def test_sample_ids_missing_from_test_are_an_input_error():
    with pytest.raises(InputError, match=r"1 ids of the sample submission are not in test\.csv"):
        profile({"id": list("12"), "x": [1, 2], "y": ["0", "1"]}, TEST, {"id": ["10", "11", "99"], "y": ["0"] * 3})


def test_a_single_valued_target_is_an_input_error():
    with pytest.raises(InputError, match="single value"):
        profile({"id": list("12"), "x": [1, 2], "y": ["a", "a"]}, TEST, {"id": TEST["id"], "y": ["a"] * 3})


def test_read_tables_keeps_id_and_label_text_exactly(tmp_path: Path):
    (tmp_path / "train.csv").write_text("id,x,y\n001,1,01\n002,2,1\n")
    (tmp_path / "test.csv").write_text("id,x\n003,3\n")
    (tmp_path / "s.csv").write_text("id,y\n003,0\n")
    t, id_column, targets = read_tables(tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "s.csv")
    assert (id_column, targets) == ("id", ["y"])
    assert t.train["id"].tolist() == ["001", "002"] and t.train["y"].tolist() == ["01", "1"]
    assert t.test["id"].tolist() == ["003"]


def test_labels_are_written_in_trains_form():
    p = profile(
        {"id": list("1234"), "x": [1, 2, 3, 4], "sp": ["Adelie", "Gentoo", "Chinstrap", "Adelie"]},
        TEST,
        {"id": TEST["id"], "sp": ["Adelie"] * 3},
    )
    rows = submission_rows(p, TEST["id"], np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.2, 0.5, 0.3]]))
    assert rows == [["10", "Gentoo"], ["11", "Adelie"], ["12", "Chinstrap"]]


def test_probabilities_are_of_the_positive_class_and_clipped():
    p = profile(
        {"id": list("1234"), "x": [1, 2, 3, 4], "churn": ["No", "Yes", "No", "No"]},
        TEST,
        {"id": TEST["id"], "churn": ["0.5"] * 3},
    )
    rows = submission_rows(p, TEST["id"], np.array([[0.25, 0.75], [1.0, 0.0], [-0.1, 1.1]]))
    assert rows == [["10", "0.75"], ["11", "0.0"], ["12", "1.0"]]


def test_class_columns_follow_the_sample_order_and_sum_to_one():
    p = profile(
        {"id": list("1234"), "x": [1, 2, 3, 4], "label": ["a", "b", "c", "a"]},
        TEST,
        {"id": TEST["id"], "Class_c": ["0.3"] * 3, "Class_a": ["0.3"] * 3, "Class_b": ["0.4"] * 3},
    )
    rows = submission_rows(p, TEST["id"], np.array([[2.0, 1.0, 1.0]] * 3))
    assert rows[0] == ["10", "0.25", "0.5", "0.25"]


def test_regression_values_are_plain_numbers():
    p = profile(
        {"id": list("1234"), "x": [1, 2, 3, 4], "price": ["10.5", "20.1", "30.7", "41.2"]},
        TEST,
        {"id": TEST["id"], "price": ["1.0"] * 3},
    )
    assert submission_rows(p, TEST["id"], np.array([1.5, 2.0, 180733.15])) == [
        ["10", "1.5"],
        ["11", "2.0"],
        ["12", "180733.15"],
    ]


def test_a_decision_threshold_moves_binary_labels():
    p = profile(
        {"id": list("1234"), "x": [1, 2, 3, 4], "Survived": ["0", "1", "0", "1"]},
        TEST,
        {"id": TEST["id"], "Survived": ["0", "0", "0"]},
    )
    proba = np.array([[0.7, 0.3], [0.9, 0.1], [0.4, 0.6]])
    assert [r[1] for r in submission_rows(p, TEST["id"], proba)] == ["0", "0", "1"]
    assert [r[1] for r in submission_rows(p, TEST["id"], proba, threshold=0.2)] == ["1", "0", "1"]
