"""Score orders by the metric's direction, so the best is max(...); the selection built on it picks what the
hand-written loops it replaced picked; the codegen loop and the pipeline no longer import each other."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from chalicelib.vocabulary import higher_is_better
from runner.metrics import METRICS, get_metric
from runner.pipeline import RunOptions, run_pipeline
from runner.scaffold import Evaluation
from runner.score import Score, for_metric, scorer
from runner.selection import best, ranked, well_measured
from tests import competitions

VALUES = [0.1, 0.5, 0.5, 0.9, -2.0, 0.0, float("nan"), float("inf"), float("-inf"), None]


def test_best_is_max_in_the_metrics_own_direction():
    assert max(for_metric("roc_auc", v) for v in (0.7, 0.9, 0.8)).value == 0.9
    assert max(for_metric("rmse", v) for v in (0.7, 0.9, 0.8)).value == 0.7
    assert max(for_metric("logloss", v) for v in (0.7, None, float("nan"))).value == 0.7
    assert sorted([for_metric("mae", v) for v in (3.0, 1.0, 2.0)], reverse=True)[0].value == 1.0


def test_a_failed_score_is_worse_than_any_and_equal_to_another_failed_one():
    for direction in (True, False):
        failed = Score.failed(direction)
        assert not failed.valid and str(failed).startswith("failed")
        for value in (-1e300, 0.0, 1e300):
            assert Score(value, direction) > failed and failed < Score(value, direction)
        assert Score(float("nan"), direction) == failed == Score(float("inf"), direction)
        assert not failed > Score(None, direction)


def test_scores_of_opposite_directions_do_not_compare():
    with pytest.raises(TypeError, match="opposite directions"):
        _ = Score(0.5, True) > Score(0.4, False)
    with pytest.raises(TypeError):
        _ = Score(0.5, True) > 0.4
    assert Score(0.5, True) != Score(0.5, False)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_score_order_is_exactly_metric_better(name: str):
    """Every pair, NaN, infinities and None included: `Score(a) > Score(b)` iff the metric's own `better(a, b)`."""
    metric, score = get_metric(name), scorer(name)
    assert higher_is_better(name) is metric.higher_is_better
    for a, b in product(VALUES, VALUES):
        assert (score(a) > score(b)) is metric.better(a, b), (a, b)
        assert (score(a) == score(b)) is (not metric.better(a, b) and not metric.better(b, a)), (a, b)


def evaluation(name: str, score: float, folds: int, metric: str = "logloss") -> Evaluation:
    return Evaluation(name, metric, score, [score] * folds, np.full((4, 2), 0.5), np.full((2, 2), 0.5), 1.0, folds)


def old_best(evaluations: list[Evaluation], metric_name: str) -> Evaluation:
    """runner.pipeline._best before runner.selection existed (the reference)."""
    metric = get_metric(metric_name)
    enough = min(2, max(e.n_folds for e in evaluations))
    evaluations = [e for e in evaluations if e.n_folds >= enough]
    chosen = evaluations[0]
    for candidate in evaluations[1:]:
        tie = candidate.cv_score == chosen.cv_score and candidate.n_folds > chosen.n_folds
        if metric.better(candidate.cv_score, chosen.cv_score) or tie:
            chosen = candidate
    return chosen


def old_ranked(evaluations: list[Evaluation], metric_name: str) -> list[Evaluation]:
    """runner.budget._ranked before runner.selection existed (finite scores only: bagging filters the rest)."""
    hib = get_metric(metric_name).higher_is_better
    return sorted(evaluations, key=lambda e: -e.cv_score if hib else e.cv_score)


@pytest.mark.parametrize("metric", ["logloss", "roc_auc"])
def test_selection_picks_what_the_hand_written_loops_picked(metric: str):
    """Random candidates with ties in score and folds, and NaN scores: the same choice and the same ranking."""
    rng = np.random.default_rng(7)
    for trial in range(400):
        n = int(rng.integers(1, 7))
        scores = rng.choice([0.3, 0.4, 0.4, 0.5, float("nan")] if trial % 2 else [0.3, 0.4, 0.5], size=n)
        folds = rng.choice([1, 2, 5, 5], size=n)
        pairs = enumerate(zip(scores, folds, strict=True))
        candidates = [evaluation(f"c{i}", float(s), int(f), metric) for i, (s, f) in pairs]
        assert best(candidates) is old_best(candidates, metric), [(e.cv_score, e.n_folds) for e in candidates]
        finite = [e for e in candidates if math.isfinite(e.cv_score)]
        assert [e.name for e in ranked(finite)] == [e.name for e in old_ranked(finite, metric)]


def test_on_equal_scores_more_folds_win_then_the_earlier_candidate():
    a, b, c = evaluation("a", 0.4, 3), evaluation("b", 0.4, 5), evaluation("c", 0.4, 5)
    assert best([a, b, c]).name == "b"
    assert best([evaluation("x", 0.5, 1)]).name == "x"  # alone, one fold still counts
    assert [e.name for e in well_measured([evaluation("one", 0.1, 1), b])] == ["b"]


def test_codegen_and_the_pipeline_no_longer_import_each_other():
    code = (
        "import sys, runner.codegen; assert 'runner.pipeline' not in sys.modules, 'codegen imports the pipeline'\n"
        "import runner.pipeline; assert 'runner.codegen_step' not in sys.modules, 'the pipeline imports codegen'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-1500:]


def test_the_pipeline_never_reads_llm_settings_from_the_environment(tmp_path: Path, monkeypatch):
    """The options carry the LLM provider (built by the CLI or the cloud entrypoint); settings in the environment
    alone do not make the pipeline call an LLM."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-used")
    data = competitions.classification(tmp_path / "comp", n_rows=60)
    outcome = run_pipeline(data, tmp_path / "out", RunOptions(time_budget=5, codegen="llm"))
    assert (outcome.status, outcome.exit_code) == ("failed", 2)
    assert outcome.reason.startswith("--codegen llm needs an LLM")
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == "failed"
