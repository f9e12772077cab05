"""Tuned leaves and rounds (runner/tuning.py): variants of the booster once the seed bags leave time over."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from runner.budget import MIN_ROWS
from runner.contract import TaskSpec, load_body_from_source
from runner.sandbox import SandboxLimits, Workers
from runner.scaffold import BodySource, Evaluation, PreparedData, evaluate
from runner.templates import template_source
from runner.tuning import VARIANTS, tune, variant_source


def interactions(rows: int, seed: int = 0) -> PreparedData:
    """A target made of feature interactions (what deeper trees find), 300 test rows."""
    rng = np.random.default_rng(seed)
    total = rows + 300
    X_all = pd.DataFrame({f"x{i}": rng.normal(size=total).astype("float32") for i in range(6)})
    signal = X_all["x0"] * X_all["x1"] + np.sin(2 * X_all["x2"]) * X_all["x3"] + 0.3 * X_all["x4"]
    y_all = (signal.to_numpy() + rng.normal(scale=0.4, size=total) > 0).astype(int)
    task = TaskSpec(
        type="binary",
        metric="logloss",
        seed=0,
        n_rows=rows,
        numeric=list(X_all.columns),
        n_classes=2,
        n_jobs=1,
        fit_seconds=20.0,
    )
    X, X_test = X_all.iloc[:rows].reset_index(drop=True), X_all.iloc[rows:].reset_index(drop=True)
    return PreparedData(X, y_all[:rows], X_test, [str(i) for i in range(300)], task, ["0", "1"])


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    with Workers.start(SandboxLimits(memory_mb=2000), threads=1) as started:
        yield started


def base(workers: Workers, data: PreparedData) -> tuple[list[Evaluation], dict[str, BodySource]]:
    body = BodySource("lightgbm_gbdt", template_source("lightgbm_gbdt"), trusted=True)
    workers.load(data.X, data.X_test)
    return [evaluate(body, data, float("inf"), workers=workers)], {body.name: body}


@pytest.mark.parametrize("variant", VARIANTS["lightgbm_gbdt"], ids=lambda v: v.suffix)
def test_a_variant_scales_exactly_its_parameters_and_nothing_else(variant):
    task = interactions(10).task
    plain = load_body_from_source(template_source("lightgbm_gbdt"), "plain").build_model(task)
    scaled = load_body_from_source(variant_source(template_source("lightgbm_gbdt"), variant), "v").build_model(task)
    changed = {k for k in plain.params if plain.params[k] != scaled.params[k]}
    assert changed == set(variant.params)
    for key, factor in variant.params.items():
        assert scaled.params[key] == pytest.approx(plain.params[key] * factor, rel=0.05)
    estimator_changed = {k for k, v in plain.get_params().items() if k != "params" and v != scaled.get_params()[k]}
    assert estimator_changed == set(variant.estimator)


def test_time_left_buys_variants_on_the_same_folds_and_the_winner_is_bagged(workers: Workers):
    data = interactions(MIN_ROWS + 500)
    evaluations, bodies = base(workers, data)
    found, sources, note = tune(evaluations, bodies, data, deadline=float("inf"), log=lambda _m: None, workers=workers)
    names = [e.name for e in found]
    assert names[:3] == ["lightgbm_gbdt_deeper", "lightgbm_gbdt_slower", "lightgbm_gbdt_shallower"]
    assert all(e.n_folds == 5 and np.isfinite(e.cv_score) for e in found)
    assert set(sources) == set(names)
    best_variant = min(found[:3], key=lambda e: e.cv_score)
    if best_variant.cv_score < evaluations[0].cv_score:  # logloss: lower is better
        assert f"{best_variant.name} beat the defaults" in note
        assert any(name.startswith(f"{best_variant.name}_bag") for name in names[3:])
    else:
        assert "none beat the defaults" in note and len(found) == 3


def test_without_time_nothing_is_tried_and_the_reason_says_how_much_was_missing(workers: Workers):
    data = interactions(MIN_ROWS + 500)
    evaluations, bodies = base(workers, data)
    clock = iter(range(10**6)).__next__  # one second per look at the clock
    found, _sources, note = tune(
        evaluations, bodies, data, deadline=clock() + 1, log=lambda _m: None, workers=workers, clock=clock
    )
    assert found == []
    assert note.startswith("lightgbm_gbdt_deeper: no time (")


def test_small_data_is_not_tuned(workers: Workers):
    data = interactions(MIN_ROWS - 1)
    evaluations, bodies = base(workers, data)
    found, _sources, note = tune(evaluations, bodies, data, deadline=float("inf"), log=lambda _m: None, workers=workers)
    assert (found, note) == ([], "")
