"""Bad input: a one-line reason, a non-zero exit, result.json says failed, never only a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.run_report import RunReport
from runner.pipeline import RunOptions, run_pipeline
from tests import competitions

ROOT = Path(__file__).resolve().parent.parent


def good(tmp_path: Path) -> Path:
    return competitions.classification(tmp_path / "comp", n_rows=60)


def failed(data: Path, out: Path, **options) -> str:
    outcome = run_pipeline(data, out, RunOptions(time_budget=5, **options))
    assert (outcome.status, outcome.exit_code) == ("failed", 2)
    result = RunReport.read(out / "result.json")
    assert result.status == "failed" and result.reason == outcome.reason
    assert "\n" not in outcome.reason
    assert not (out / "submission.csv").exists()
    assert outcome.reason in (out / "logs.txt").read_text()
    return outcome.reason


def test_missing_train(tmp_path: Path):
    folder = good(tmp_path)
    (folder / "train.csv").unlink()
    assert failed(folder, tmp_path / "out").startswith("missing train.csv in comp")


def test_unreadable_train(tmp_path: Path):
    folder = good(tmp_path)
    (folder / "train.csv").write_bytes(b"\xff\xfe\x00\x81garbage\x00\n\x00\x00")
    assert "train.csv is unreadable" in failed(folder, tmp_path / "out")


def test_empty_train(tmp_path: Path):
    folder = good(tmp_path)
    header = (folder / "train.csv").read_text().splitlines()[0]
    (folder / "train.csv").write_text(header + "\n")
    assert failed(folder, tmp_path / "out") == "train.csv has no data rows"


def test_a_zero_byte_train(tmp_path: Path):
    folder = good(tmp_path)
    (folder / "train.csv").write_text("")
    assert failed(folder, tmp_path / "out") == "train.csv is empty"


def test_sample_columns_not_in_train(tmp_path: Path):
    folder = good(tmp_path)
    sample = folder / "sample_submission.csv"
    sample.write_text(sample.read_text().replace("id,target", "id,prediction", 1))
    train = folder / "train.csv"
    train.write_text(train.read_text().replace(",colour,", ",colour2,", 1).replace(",target", ",extra", 1))
    reason = failed(folder, tmp_path / "out")
    assert "the sample submission's columns ['prediction'] can't be found in train.csv" in reason


def test_sample_id_column_not_in_test(tmp_path: Path):
    folder = good(tmp_path)
    sample = folder / "sample_submission.csv"
    sample.write_text(sample.read_text().replace("id,target", "key,target", 1))
    assert "is a column of test.csv" in failed(folder, tmp_path / "out")


def test_unknown_metric(tmp_path: Path):
    assert failed(good(tmp_path), tmp_path / "out", metric="mape").startswith("unknown metric 'mape'")


def test_corrupt_zip(tmp_path: Path):
    broken = tmp_path / "comp.zip"
    broken.write_bytes(b"PK\x03\x04 truncated")
    assert "comp.zip is not a valid zip file" in failed(broken, tmp_path / "out")


def test_llm_codegen_without_an_llm_configured_fails_clearly(tmp_path: Path):
    assert failed(good(tmp_path), tmp_path / "out", codegen="llm").startswith("--codegen llm needs an LLM")


@pytest.mark.slow
def test_the_cli_prints_one_line_and_exits_non_zero(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "runner", str(tmp_path / "nope"), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == f"runner: data not found: {tmp_path / 'nope'}\n"
    assert RunReport.read(tmp_path / "out" / "result.json").status == "failed"


@pytest.mark.slow
def test_the_cli_rejects_an_unknown_codegen_in_one_line(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "runner", str(tmp_path), "--out", str(tmp_path / "o"), "--codegen", "gpt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == "runner: unknown --codegen 'gpt': choose one of template, llm, auto\n"
    assert RunReport.read(tmp_path / "o" / "result.json").status == "failed"


def test_when_every_template_fails_the_prior_still_gives_a_valid_submission(tmp_path: Path, monkeypatch):
    from runner import pipeline  # noqa: PLC0415

    broken = "def build_model(task):\n    raise RuntimeError('broken template')\n"
    monkeypatch.setattr(pipeline, "template_source", lambda name: broken)
    folder = good(tmp_path)
    outcome = run_pipeline(folder, tmp_path / "out", RunOptions(time_budget=5))
    assert outcome.status == "succeeded" and outcome.result["model"] == "prior"
    assert "every template failed: falling back to the training prior" in (tmp_path / "out" / "logs.txt").read_text()
