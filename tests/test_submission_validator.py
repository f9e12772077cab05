"""chalicelib.submission: the standard-library validator the runner and the ValidateOutput Lambda share."""

from pathlib import Path

import pytest

from chalicelib.submission import InvalidSubmissionError, check_submission, validate_submission

SAMPLE = "id,prob\n1,0.5\n2,0.5\n3,0.5\n"
LABEL_SAMPLE = "PassengerId,Survived\n892,0\n893,1\n894,0\n"


def messages(submission: str, sample: str = SAMPLE) -> list[str]:
    return [str(p) for p in validate_submission(submission, sample)]


def test_a_matching_submission_has_no_problems():
    assert validate_submission("id,prob\n1,0.1\n2,0.9\n3,0.0\n", SAMPLE) == []


def test_rows_may_come_in_any_order_and_files_are_accepted(tmp_path: Path):
    sub, sample = tmp_path / "s.csv", tmp_path / "sample.csv"
    sub.write_text("id,prob\n3,0.1\n1,0.9\n2,1\n")
    sample.write_text(SAMPLE)
    assert validate_submission(sub, sample) == []


def test_a_different_header_is_named():
    assert messages("ID,prob\n1,0.1\n2,0.1\n3,0.1\n") == ["header is ID,prob, expected id,prob"]


def test_a_duplicated_id_names_the_row_and_the_id():
    found = messages("PassengerId,Survived\n892,0\n893,1\n893,0\n", LABEL_SAMPLE)
    assert "row 3: PassengerId 893 appears twice (first at row 2)" in found
    assert "1 ids of the sample submission are missing: 894" in found


def test_wrong_row_count_and_unexpected_ids_are_reported():
    found = messages("id,prob\n1,0.1\n2,0.1\n3,0.1\n4,0.1\n")
    assert "4 data rows, expected 3" in found
    assert "row 4: id 4 is not in the sample submission" in found


@pytest.mark.parametrize("cell", ["", "nan", "NaN", "inf", "NA"])
def test_empty_and_nan_cells_are_reported(cell: str):
    assert messages(f"id,prob\n1,0.1\n2,{cell}\n3,0.1\n") == [f"row 2: prob is empty or not a number ({cell!r})"]


def test_text_where_the_sample_has_numbers_is_reported():
    found = messages("PassengerId,Survived\n892,0\n893,yes\n894,0\n", LABEL_SAMPLE)
    assert found == ["row 2: Survived must be a number, got 'yes'"]


def test_probabilities_outside_zero_one_are_reported():
    assert messages("id,prob\n1,1.5\n2,-0.1\n3,0.2\n") == [
        "row 1: prob must be a probability in [0, 1], got 1.5",
        "row 2: prob must be a probability in [0, 1], got -0.1",
    ]


def test_label_columns_are_not_held_to_the_probability_range():
    assert messages("PassengerId,Survived\n892,0\n893,2\n894,0\n", LABEL_SAMPLE) == []


def test_text_labels_are_accepted_where_the_sample_has_text():
    sample = "id,species\na,Adelie\nb,Adelie\n"
    assert validate_submission("id,species\na,Gentoo\nb,Chinstrap\n", sample) == []


def test_rows_with_missing_cells_are_reported():
    assert "row 2: 1 cells, expected 2" in messages("id,prob\n1,0.1\n2\n3,0.3\n")


def test_an_empty_submission_is_one_problem():
    assert messages("") == ["submission is empty"]


def test_many_problems_of_one_kind_are_capped_with_a_count():
    sample = "id,v\n" + "".join(f"{i},0.5\n" for i in range(40))
    sub = "id,v\n" + "".join(f"{i},\n" for i in range(40))
    found = messages(sub, sample)
    assert len(found) == 11 and found[-1] == "... and 30 more empty cells"


def test_check_submission_raises_with_every_problem():
    with pytest.raises(InvalidSubmissionError) as caught:
        check_submission("id,prob\n1,2\n1,0.1\n", SAMPLE)
    assert len(caught.value.problems) >= 3
    assert str(caught.value).startswith("invalid submission: ")


def test_a_byte_order_mark_is_ignored():
    assert validate_submission("\ufeffid,prob\n1,0.1\n2,0.2\n3,0.3\n", SAMPLE) == []


def test_the_id_column_need_not_be_first():
    sample = "prediction,key\n0.5,a\n0.5,b\n"
    assert validate_submission("prediction,key\n0.1,b\n0.9,a\n", sample) == []
    assert validate_submission("prediction,key\n0.1,b\n0.9,b\n", sample, id_column="key")[0].row == 2
