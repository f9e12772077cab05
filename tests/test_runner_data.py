"""runner.data: finding train, test and the sample submission in folders and zips (zips inside zips too)."""

import json
import zipfile
from pathlib import Path

import pytest

from runner.data import locate_competition
from runner.errors import InputError


def make(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("id,x\n1,2\n")
    return folder


def test_a_folder_with_gender_submission_is_found(tmp_path: Path):
    folder = make(tmp_path / "titanic", ["train.csv", "test.csv", "gender_submission.csv", "notes.txt"])
    files = locate_competition(folder, tmp_path / "work")
    assert (files.train.name, files.test.name, files.sample.name) == ("train.csv", "test.csv", "gender_submission.csv")
    assert [p.name for p in files.extra] == ["notes.txt"]
    assert files.metric is None


@pytest.mark.parametrize("name", ["sampleSubmission.csv", "submission_format.csv", "sample_submission.csv"])
def test_sample_submission_names_vary(tmp_path: Path, name: str):
    files = locate_competition(make(tmp_path / "c", ["train.csv", "test.csv", name]), tmp_path / "work")
    assert files.sample.name == name


def test_a_name_saying_submission_beats_one_only_saying_sample(tmp_path: Path):
    folder = make(tmp_path / "c", ["train.csv", "test.csv", "train_sample.csv", "sample_submission.csv"])
    assert locate_competition(folder, tmp_path / "work").sample.name == "sample_submission.csv"


def test_metadata_metric_is_read(tmp_path: Path):
    folder = make(tmp_path / "c", ["train.csv", "test.csv", "sample_submission.csv"])
    (folder / "metadata.json").write_text(json.dumps({"metric": "rmsle"}))
    assert locate_competition(folder, tmp_path / "work").metric == "rmsle"


def test_a_zip_with_zipped_csvs_inside_is_unpacked_into_the_workdir(tmp_path: Path):
    inner = tmp_path / "train.csv.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("train.csv", "id,x\n1,2\n")
    outer = tmp_path / "comp.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(inner, "train.csv.zip")
        zf.writestr("test.csv", "id\n1\n")
        zf.writestr("sample_submission.csv", "id,y\n1,0\n")
    files = locate_competition(outer, tmp_path / "work")
    assert files.train.read_text() == "id,x\n1,2\n"
    assert files.train.is_relative_to(tmp_path / "work")


def test_a_folder_is_never_written_to(tmp_path: Path):
    folder = make(tmp_path / "c", ["test.csv", "sample_submission.csv"])
    with zipfile.ZipFile(folder / "train.zip", "w") as zf:
        zf.writestr("train.csv", "id,x\n1,2\n")
    before = sorted(p.name for p in folder.iterdir())
    files = locate_competition(folder, tmp_path / "work")
    assert files.train.is_relative_to(tmp_path / "work")
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["test.csv", "sample_submission.csv"], "missing train.csv in c"),
        (["train.csv", "sample_submission.csv"], "missing test.csv in c"),
        (["train.csv", "test.csv"], "missing a sample submission"),
    ],
)
def test_missing_files_are_named(tmp_path: Path, names: list[str], message: str):
    with pytest.raises(InputError, match=message):
        locate_competition(make(tmp_path / "c", names), tmp_path / "work")


def test_a_corrupt_zip_is_an_input_error(tmp_path: Path):
    broken = tmp_path / "comp.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(InputError, match=r"comp\.zip is not a valid zip file"):
        locate_competition(broken, tmp_path / "work")


def test_a_zip_escaping_its_folder_is_refused(tmp_path: Path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.csv", "x\n")
    with pytest.raises(InputError, match="unsafe path"):
        locate_competition(archive, tmp_path / "work")
    assert not (tmp_path / "outside.csv").exists()


def test_a_missing_path_and_a_plain_file_are_input_errors(tmp_path: Path):
    with pytest.raises(InputError, match="data not found"):
        locate_competition(tmp_path / "nope", tmp_path / "work")
    (tmp_path / "train.csv").write_text("a\n")
    with pytest.raises(InputError, match=r"must be a folder or a \.zip"):
        locate_competition(tmp_path / "train.csv", tmp_path / "work")


def test_bad_metadata_json_is_an_input_error(tmp_path: Path):
    folder = make(tmp_path / "c", ["train.csv", "test.csv", "sample_submission.csv"])
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(InputError, match=r"metadata\.json is not valid JSON"):
        locate_competition(folder, tmp_path / "work")
