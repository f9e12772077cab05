"""Engine quality rules: weak templates stop after one fold, tuned parameters carry over to later folds, and
one-fold scores never beat five-fold ones in selection."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from runner.budget import clearly_behind
from runner.metrics import get_metric
from runner.profile import Tables, profile_competition
from runner.sandbox import SandboxLimits, Workers
from runner.scaffold import BodySource, Evaluation, PreparedData, evaluate, prepare
from runner.selection import best, well_measured
from runner.templates import load_template, template_source
from tests.sandbox_bodies import TUNING_BODY


def prepared(n: int = 120) -> PreparedData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n + 20)
    frame = pd.DataFrame(
        {"id": [f"r{i}" for i in range(n + 20)], "x": x, "y": np.where(x + rng.normal(size=n + 20) > 0, "a", "b")}
    )
    train, test = frame.iloc[:n], frame.iloc[n:].drop(columns=["y"]).reset_index(drop=True)
    tables = Tables(train, test, pd.DataFrame({"id": test["id"], "y": "a"}))
    data, _roles = prepare(tables, profile_competition(tables, "id", ["y"], "logloss"))
    return data


def evaluation(name: str, score: float, folds: int) -> Evaluation:
    return Evaluation(name, "logloss", score, [score] * folds, np.full((4, 2), 0.5), np.full((2, 2), 0.5), 1.0, folds)


def test_parameters_tuned_on_the_first_fold_are_reused_by_later_folds_and_the_final_fit_of_a_template_only():
    """Each fold runs in its own process: the tuned parameters travel through the runner, and only for templates (an
    LLM body's would be a channel carrying what it learnt on one fold's labels to the next)."""
    data = prepared()
    with Workers.start(SandboxLimits(memory_mb=1500), threads=1) as workers:
        workers.load(data.X, data.X_test)
        template = evaluate(BodySource("t", TUNING_BODY, trusted=True), data, float("inf"), workers=workers, n_folds=3)
        lines: list[str] = []
        result = evaluate(
            BodySource("linear", template_source("linear"), trusted=True),
            data,
            float("inf"),
            workers=workers,
            n_folds=4,
            log=lines.append,
            give_up=lambda s, t: True,
        )
    first_fold = np.isclose(template.oof[:, 1], 0.2)
    assert 0 < first_fold.sum() < len(first_fold) and np.allclose(template.oof[~first_fold, 1], 0.7)
    assert np.allclose(template.test_predictions[:, 1], 0.7)
    # a template given up after its first fold stops there and says why
    assert result.n_folds == 1 and result.oof_mask.sum() == 30
    assert any("clearly behind" in line for line in lines)
    assert result.test_predictions.shape == (20, 2)


def test_the_large_data_lightgbm_template_offers_its_round_count_for_reuse():
    data = prepared(400)
    task = replace(data.task, n_rows=20000)
    model = load_template("lightgbm_gbdt").build_model(task).fit(data.X, data.y)
    assert model.reuse_params_["fixed_rounds"] >= 20
    refit = load_template("lightgbm_gbdt").build_model(task).set_params(**model.reuse_params_).fit(data.X, data.y)
    assert refit.rounds_ == model.reuse_params_["fixed_rounds"]


@pytest.mark.parametrize(
    ("metric", "score", "leader", "behind"),
    [
        ("logloss", 0.55, 0.50, True),
        ("logloss", 0.505, 0.50, False),
        ("logloss", 0.45, 0.50, False),
        ("accuracy", 0.90, 0.96, True),
        ("accuracy", 0.955, 0.96, False),
        ("rmse", float("nan"), 1.0, True),
    ],
)
def test_clearly_behind_is_a_relative_gap_in_the_metrics_own_direction(metric, score, leader, behind):
    assert clearly_behind(get_metric(metric), score, leader) is behind


def test_a_one_fold_score_never_beats_five_fold_scores():
    five, one = evaluation("five", 0.50, 5), evaluation("one", 0.40, 1)
    assert best([five, one]).name == "five"
    assert [e.name for e in well_measured([one])] == ["one"]  # nothing better measured: it still counts
