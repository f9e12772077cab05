"""The bench harness's plumbing (build → solve → grade → table) in --dummy mode on a tiny hand-made competition."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
spec = importlib.util.spec_from_file_location("bench", SCRIPT)
assert spec and spec.loader
bench = importlib.util.module_from_spec(spec)
sys.modules["bench"] = bench
spec.loader.exec_module(bench)


def tiny_competition(root: Path) -> Path:
    comp = root / "tiny"
    (comp / "public").mkdir(parents=True)
    (comp / "private").mkdir()
    (comp / "public" / "train.csv").write_text("id,x,label\n1,0.1,no\n2,0.9,yes\n3,0.2,no\n")
    (comp / "public" / "test.csv").write_text("id,x\n4,0.8\n5,0.3\n")
    (comp / "public" / "sample_submission.csv").write_text("id,label\n4,no\n5,no\n")
    (comp / "private" / "solution.csv").write_text("id,label\n4,yes\n5,no\n")
    meta = {
        "name": "tiny",
        "target": "label",
        "task": "binary",
        "metric": "accuracy",
        "higher_is_better": True,
        "id_column": "id",
        "sample_file": "sample_submission.csv",
        "kind": "label",
        "positive": None,
    }
    (comp / "meta.json").write_text(json.dumps(meta))
    return comp


@pytest.mark.skipif(
    not (bench.SHARED_BENCH / "competitions.py").exists(), reason="../shared/bench is not beside the repo"
)
def test_dummy_mode_grades_the_copied_sample_as_valid_and_weak(tmp_path: Path) -> None:
    tiny_competition(tmp_path)
    argv = [
        "--dummy",
        "--competitions",
        "tiny",
        "--comps-dir",
        str(tmp_path),
        "--results",
        str(tmp_path / "res"),
        "--grader-python",
        sys.executable,
    ]
    assert bench.main(argv) == 0
    table = (tmp_path / "res" / "latest.md").read_text()
    assert "| tiny | accuracy ↑ | 0.5000 | yes | — | — |" in table
    outcome = json.loads((tmp_path / "res" / "latest.json").read_text())["rows"][0]["outcomes"]["dummy"]
    assert outcome["valid"] is True


def test_table_marks_an_invalid_submission_as_a_loss_and_flags_budget_and_memory_misses() -> None:
    row = bench.Row("comp", "rmse", higher_is_better=False)
    row.outcomes["ours"] = bench.Outcome("ours", valid=False, wall_s=75.0, peak_mb=1500.0)
    row.outcomes["flaml"] = bench.Outcome("flaml", score=1.0, valid=True, wall_s=62.0, peak_mb=300.0)
    table = bench.render_table([row], ["ours", "flaml"], budget=60)
    assert "| comp | rmse ↓ | invalid | 1.0000 | loss | NO | 75 ✗ | 1500 ✗ | 62 / 300 |" in table


def test_versus_reads_lower_is_better_metrics_the_right_way_round() -> None:
    row = bench.Row("comp", "logloss", higher_is_better=False)
    row.outcomes["ours"] = bench.Outcome("ours", score=0.40, valid=True)
    row.outcomes["flaml"] = bench.Outcome("flaml", score=0.50, valid=True)
    assert bench._versus(row, "ours", "flaml") == "win (+20.0%)"
    row.outcomes["ours"].score = 0.50
    assert bench._versus(row, "ours", "flaml") == "tie"


def test_unknown_competition_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown competition"):
        bench.ensure_built(tmp_path, ["nope"], rebuild=False, grader_python=sys.executable)


HOG = "import time; b = bytearray({mb} * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.3); print('done')"


def test_memory_limit_kills_a_process_that_exceeds_it_and_measures_one_that_fits(tmp_path: Path) -> None:
    """A real limit: a 400 MB allocation under 150 MB dies; a 40 MB one runs and the kernel's peak is read back."""
    limit = bench.memory_limit(150, "test-over")
    over = bench.run_measured([sys.executable, "-c", HOG.format(mb=400)], tmp_path / "over.log", 60, limit=limit)
    assert over.returncode != 0
    assert "done" not in (tmp_path / "over.log").read_text()
    if limit.group is not None:
        assert not limit.group.exists()  # the group is removed after the run
    fits = bench.memory_limit(150, "test-fits")
    ok = bench.run_measured([sys.executable, "-c", HOG.format(mb=40)], tmp_path / "ok.log", 60, limit=fits)
    assert ok.returncode == 0, (tmp_path / "ok.log").read_text()
    if fits.method in ("cgroup1", "cgroup2"):
        assert fits.peak_mb is not None and 40 <= fits.peak_mb <= 150
        assert not fits.oom_killed


def test_budget_sweep_is_parsed_and_rendered_one_row_per_budget() -> None:
    args = bench.parse_args(["--budgets", "60,300"])
    assert bench.parse_budgets(args) == [60.0, 300.0]
    with pytest.raises(SystemExit, match="--budgets"):
        bench.parse_budgets(bench.parse_args(["--budgets", "60,soon"]))
    rows = []
    for budget, stop in ((60.0, "time budget"), (300.0, "CV converged")):
        row = bench.Row("comp", "rmse", higher_is_better=False, budget=budget)
        row.outcomes["ours"] = bench.Outcome(
            "ours",
            score=1.0,
            valid=True,
            wall_s=budget,
            peak_mb=900.0,
            stop_reason=stop,
            limit_mb=2048.0,
            limit_method="cgroup1",
        )
        rows.append(row)
    table = bench.render_table(rows, ["ours"], budget=60)
    assert "| comp | 60 | rmse ↓ | 1.0000 | yes | 60 | 900 of 2048 (cgroup1) | time budget |" in table
    assert "| comp | 300 | rmse ↓ | 1.0000 | yes | 300 | 900 of 2048 (cgroup1) | CV converged |" in table
