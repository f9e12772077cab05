"""Ingestion limits and encodings (issue 12): one byte budget and one file budget across all nested archives, and
competitions whose tables are not UTF-8 (Kaggle ships some in Latin-1 and cp1252) run instead of failing."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from chalicelib.submission import validate_submission
from runner import data
from runner.data import locate_competition, non_utf8_encoding
from runner.errors import InputError
from runner.pipeline import RunOptions, run_pipeline
from runner.profile import read_tables
from tests import competitions

MIB = 1024**2


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buffer.getvalue()


def nested_bomb(levels: int, payload: bytes) -> bytes:
    """A zip holding the three tables and a chain of `levels` zips, each with `payload` and the next zip."""
    inner = zipped({"filler.bin": payload})
    for level in range(levels - 1):
        inner = zipped({f"filler{level}.bin": payload, f"deeper{level}.zip": inner})
    tables = {
        "train.csv": b"id,x,y\n1,2,0\n2,3,1\n",
        "test.csv": b"id,x\n3,4\n",
        "sample_submission.csv": b"id,y\n3,0\n",
    }
    return zipped({**tables, "extra.zip": inner})


# -- one budget across nested archives ---------------------------------------------------------------------------------


def test_nested_archives_share_one_byte_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Each archive alone fits the budget (the old per-archive check let all four through); together they do not.
    monkeypatch.setattr(data, "MAX_UNZIPPED_BYTES", 25 * MIB)
    archive = tmp_path / "comp.zip"
    archive.write_bytes(nested_bomb(4, bytes(8 * MIB)))
    assert archive.stat().st_size < MIB  # compressed: zeros
    with pytest.raises(InputError, match=r"nested archives included") as refused:
        locate_competition(archive, tmp_path / "work")
    assert "\n" not in str(refused.value) and "25.0" not in str(refused.value)  # GB figures, one line
    written = sum(p.stat().st_size for p in (tmp_path / "work").rglob("*") if p.is_file())
    assert written <= 25 * MIB  # refused before the archive that would pass the budget was unpacked


def test_the_same_archives_within_the_budget_unpack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(data, "MAX_UNZIPPED_BYTES", 40 * MIB)
    archive = tmp_path / "comp.zip"
    archive.write_bytes(nested_bomb(4, bytes(8 * MIB)))
    assert locate_competition(archive, tmp_path / "work").train.name == "train.csv"


def test_nested_archives_share_one_file_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(data, "MAX_UNZIPPED_FILES", 100)
    many = {f"f{i}.txt": b"x" for i in range(40)}
    inner = zipped({**many, "more.zip": zipped({**many, "most.zip": zipped(many)})})
    folder = tmp_path / "comp"
    folder.mkdir()
    for name, content in {
        "train.csv": "id,y\n1,0\n",
        "test.csv": "id\n2\n",
        "sample_submission.csv": "id,y\n2,0\n",
    }.items():
        (folder / name).write_text(content)
    (folder / "extra.zip").write_bytes(inner)  # a folder's zips count too
    with pytest.raises(InputError, match=r"holds 40 files, past what is left of the 100 files"):
        locate_competition(folder, tmp_path / "work")


# -- encodings -------------------------------------------------------------------------------------------------------

CITIES = ["São Paulo", "Zürich", "Montréal", "Kraków", "Århus", "Besançon"]


def latin1_competition(root: Path, encoding: str = "latin-1") -> Path:
    """A real small competition whose ids and a text column carry accents, written in `encoding`."""
    folder = competitions.classification(root, n_rows=120, id_style="string")
    frames = {
        name: pd.read_csv(folder / name, dtype=str) for name in ("train.csv", "test.csv", "sample_submission.csv")
    }
    for name, frame in frames.items():
        frame["id"] = frame["id"].str.replace("id-", "réf-")
        if name != "sample_submission.csv":
            frame.insert(1, "city", [CITIES[i % len(CITIES)] for i in range(len(frame))])
        frame.to_csv(folder / name, index=False, encoding=encoding)
    return folder


def test_a_latin1_competition_runs_to_a_valid_submission(tmp_path: Path):
    folder = latin1_competition(tmp_path / "comp")
    raw = (folder / "test.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    out = tmp_path / "out"
    outcome = run_pipeline(folder, out, RunOptions(time_budget=20))
    assert outcome.status == "succeeded", outcome.reason
    submission = (out / "submission.csv").read_text(encoding="utf-8")
    assert "réf-" in submission
    files = locate_competition(folder, tmp_path / "again")
    assert validate_submission(submission, files.sample.read_text(encoding="utf-8")) == []
    assert any("is not UTF-8" in note for note in files.notes)


def test_a_table_that_is_not_utf8_is_converted_once_with_a_note_and_the_folder_left_alone(tmp_path: Path):
    folder = latin1_competition(tmp_path / "comp", encoding="cp1252")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    files = locate_competition(folder, tmp_path / "work")
    assert files.train.is_relative_to(tmp_path / "work") and files.train.name == "train.csv"
    assert "Zürich" in files.train.read_text(encoding="utf-8")
    assert len(files.notes) == 3 and all("converted to UTF-8" in note for note in files.notes)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    tables, id_column, _ = read_tables(files.train, files.test, files.sample)
    assert id_column == "id" and tables.test["id"].str.startswith("réf-").all()


def test_utf8_tables_are_used_as_they_are(tmp_path: Path):
    folder = competitions.classification(tmp_path / "comp", n_rows=40)
    files = locate_competition(folder, tmp_path / "work")
    assert files.train == folder / "train.csv" and files.notes == ()
    assert not (tmp_path / "work" / "utf8").exists()


def test_a_latin1_byte_deep_in_a_large_file_is_found(tmp_path: Path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"id,x\n" + b"1,2\n" * (3 * MIB) + "9,Montréal\n".encode("latin-1"))
    assert non_utf8_encoding(path) is not None
    assert non_utf8_encoding(tmp_path / "train.csv") != ("utf_8", True)


def test_reading_a_latin1_csv_directly_falls_back_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    folder = latin1_competition(tmp_path / "comp")
    with caplog.at_level("WARNING", logger="runner.profile"):
        tables, _, _ = read_tables(folder / "train.csv", folder / "test.csv", folder / "sample_submission.csv")
    assert "Zürich" in set(tables.train["city"])
    assert "train.csv is not UTF-8" in caplog.text


def test_binary_bytes_are_still_unreadable(tmp_path: Path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage\x00\n\x00\x00")
    with pytest.raises(InputError, match=r"train\.csv is unreadable"):
        non_utf8_encoding(path)
