"""Wide, mostly-zero data stays sparse end to end: scaffold -> worker transport -> confined child -> templates."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from runner.contract import TaskSpec, load_body_from_source
from runner.features import (
    SPARSE_MIN_COLUMNS,
    FeatureRows,
    build_features,
    column_kinds,
    normalise_body_output,
    sparse_columns,
    sparsify,
    stack_rows,
)
from runner.sandbox import SandboxLimits, Workers
from runner.scaffold import BodySource, CandidateError, PreparedData, evaluate
from runner.shape import fit_memory_mb
from runner.templates import TEMPLATES, template_source


def bits(rows: int, columns: int, seed: int = 0, density: float = 0.03) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = (rng.random((rows, columns)) < density).astype("int64")
    return pd.DataFrame(values, columns=[f"fp{i:04d}" for i in range(columns)])


def wide(rows: int = 900, columns: int = 240, *, dense: bool = True, seed: int = 0) -> tuple[PreparedData, np.ndarray]:
    """Fingerprint-like bits (3% set) plus, with `dense`, a number with gaps and a category; a binary target that
    depends on a few bits and the number. Returns the prepared data (train rows 0..rows-1, 300 test rows) and y."""
    total = rows + 300
    combined = bits(total, columns, seed)
    rng = np.random.default_rng(seed + 1)
    signal = combined.iloc[:, :30].sum(axis=1).to_numpy() * 1.5
    if dense:
        number = rng.normal(size=total)
        combined.insert(0, "weight", np.where(rng.random(total) < 0.1, np.nan, number))
        combined.insert(1, "kind", rng.choice(["a", "b", "c"], size=total))
        signal = signal + number
    y_all = (signal + rng.normal(scale=0.5, size=total) > np.median(signal)).astype(int)
    frame, _roles = build_features(combined, rows)
    numeric, categorical, text = column_kinds(frame)
    task = TaskSpec(
        type="binary",
        metric="logloss",
        seed=0,
        n_rows=rows,
        categorical=categorical,
        numeric=numeric,
        text=text,
        sparse=sparse_columns(frame),
        n_classes=2,
        n_jobs=1,
        fit_seconds=30.0,
    )
    X, X_test = frame.iloc[:rows].reset_index(drop=True), frame.iloc[rows:].reset_index(drop=True)
    y = y_all[:rows]
    return PreparedData(X, y, X_test, [str(i) for i in range(300)], task, ["0", "1"]), y


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    with Workers.start(SandboxLimits(memory_mb=2000), threads=1) as started:
        yield started


# ---------------------------------------------------------------- the scaffold's representation


def test_a_block_of_mostly_zero_columns_becomes_sparse_after_the_dense_ones():
    combined = bits(500, SPARSE_MIN_COLUMNS + 20)
    combined.insert(0, "weight", np.arange(500.0))
    combined["busy"] = np.arange(500) % 3  # two thirds non-zero: stays dense
    frame, _roles = build_features(combined, 400)
    sparse = sparse_columns(frame)
    assert len(sparse) == SPARSE_MIN_COLUMNS + 20
    assert list(frame.columns[: len(frame.columns) - len(sparse)]) == ["weight", "busy"]
    assert all(str(frame[c].dtype) == "Sparse[float32, 0.0]" for c in sparse)
    assert np.array_equal(frame[sparse].sparse.to_dense().to_numpy(), combined[sparse].to_numpy(dtype="float32"))
    numeric, _categorical, _text = column_kinds(frame)
    assert set(sparse) <= set(numeric)  # sparse columns are numeric columns too: old bodies still see them


def test_too_few_or_too_busy_columns_stay_dense_and_missing_counts_as_non_zero():
    few = bits(300, SPARSE_MIN_COLUMNS - 1).astype("float64")
    assert sparse_columns(sparsify(few)) == []
    gaps = bits(300, SPARSE_MIN_COLUMNS, density=0.0).astype("float64")
    gaps.iloc[:60, :] = np.nan  # 20% missing: not mostly zero
    assert sparse_columns(sparsify(gaps)) == []
    gaps.iloc[:20, :] = 0.0  # now 40 of 300 missing (13%): still too busy for the 10% rule
    assert sparse_columns(sparsify(gaps)) == []
    gaps.iloc[:50, :] = 0.0  # 10 missing (3%): sparse, the missing values kept as NaN
    kept = sparsify(gaps)
    assert len(sparse_columns(kept)) == SPARSE_MIN_COLUMNS
    assert int(kept.iloc[:, 0].isna().sum()) == 10


def test_feature_rows_travel_as_csr_and_take_rebuilds_exactly_the_frame(tmp_path: Path):
    data, _y = wide()
    rows = stack_rows(FeatureRows.from_frame(data.X), FeatureRows.from_frame(data.X_test))
    assert isinstance(rows.block, sp.csr_matrix)
    assert rows.dense.shape[1] == 2  # only the number and the category are dense
    FeatureRows.from_frame(data.X).save(tmp_path, "X")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.parquet", "X.sparse.npz"]
    with np.load(tmp_path / "X.sparse.npz", allow_pickle=False) as saved:  # plain arrays: no pickle needed
        assert saved["data"].dtype == np.float32
    loaded = FeatureRows.load(tmp_path, "X")
    positions = np.random.default_rng(3).permutation(len(data.X))[:500]
    expected = data.X.take(positions).reset_index(drop=True)
    pd.testing.assert_frame_equal(loaded.take(positions), expected)
    pd.testing.assert_frame_equal(rows.take(positions), expected)


def test_data_with_only_sparse_columns_round_trips(tmp_path: Path):
    data, _y = wide(dense=False)
    assert data.task.numeric == data.task.sparse
    FeatureRows.from_frame(data.X).save(tmp_path, "X")
    loaded = FeatureRows.load(tmp_path, "X")
    assert len(loaded) == len(data.X)
    pd.testing.assert_frame_equal(loaded.frame(), data.X)


def test_the_sparse_frame_is_a_fraction_of_the_dense_one():
    data, _y = wide(rows=3000, columns=1000, dense=False)
    dense_bytes = data.X.shape[0] * data.X.shape[1] * 4  # float32, as the scaffold downcasts wide data
    assert data.X.memory_usage(deep=True).sum() < dense_bytes / 5


# ---------------------------------------------------------------- the templates take it as it is


def held_out_logloss(name: str, data: PreparedData, y: np.ndarray) -> tuple[float, np.ndarray]:
    model = load_body_from_source(template_source(name), name).build_model(data.task)
    train, held = np.arange(700), np.arange(700, 900)
    model.fit(data.X.iloc[train].reset_index(drop=True), y[train])
    proba = np.clip(model.predict_proba(data.X.iloc[held].reset_index(drop=True))[:, 1], 1e-6, 1 - 1e-6)
    return float(-np.mean(y[held] * np.log(proba) + (1 - y[held]) * np.log(1 - proba))), proba


@pytest.mark.parametrize("dense", [True, False], ids=["mixed", "only-sparse"])
@pytest.mark.parametrize("name", [n for n in TEMPLATES if not n.startswith("text_")])
def test_every_template_learns_from_sparse_columns_as_well_as_from_dense_ones(name: str, dense: bool):
    data, y = wide(dense=dense)
    as_dense = replace(
        data, X=data.X.astype(dict.fromkeys(data.task.sparse, "float32")), task=replace(data.task, sparse=[])
    )
    sparse_loss, sparse_proba = held_out_logloss(name, data, y)
    dense_loss, dense_proba = held_out_logloss(name, as_dense, y)
    base = y[:700].mean()
    base_loss = -np.mean(y[700:900] * np.log(base) + (1 - y[700:900]) * np.log(1 - base))
    assert np.isfinite(sparse_loss)
    if name == "mlp":  # 700 rows are too few for the MLP on 240 columns: its loss swings either way by seed
        return
    assert sparse_loss < base_loss  # it learnt from the bits
    assert sparse_loss <= dense_loss + 0.01  # and no worse than on the same columns dense
    if name in ("lightgbm_gbdt", "hist_gradient_boosting"):  # the same bins, the same trees
        assert np.allclose(sparse_proba, dense_proba)


def test_lightgbm_gets_one_csr_matrix_with_categories_declared():
    data, y = wide()
    body = load_body_from_source(template_source("lightgbm_gbdt"), "lightgbm_gbdt")
    model = body.build_model(data.task)
    matrix = model.kept_columns(data.X)
    assert sp.issparse(matrix)
    assert matrix.shape == (len(data.X), len(data.X.columns))
    assert model.categorical_ == [list(data.X.columns).index("kind")]
    model.fit(data.X, y)
    assert model.model_.booster_.num_feature() == len(data.X.columns)


# ---------------------------------------------------------------- end to end through the confined workers

PROBE = """
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression


class Probe:
    def __init__(self, task):
        self.task = task

    def fit(self, X, y):
        kinds = {str(X[c].dtype) for c in self.task.sparse}
        if kinds != {"Sparse[float32, 0.0]"} or list(X.columns[-len(self.task.sparse):]) != self.task.sparse:
            raise TypeError("sparse columns did not arrive sparse: " + ", ".join(sorted(kinds)))
        self.model = LogisticRegression(max_iter=200).fit(X[self.task.sparse].sparse.to_coo().tocsr(), y)
        self.classes_ = self.model.classes_
        return self

    def predict_proba(self, X):
        return self.model.predict_proba(X[self.task.sparse].sparse.to_coo().tocsr())

    def predict(self, X):
        return self.model.predict(X[self.task.sparse].sparse.to_coo().tocsr())


def build_model(task):
    return Probe(task)
"""

WIDENING = (
    PROBE
    + """

def add_features(df):
    product = (df["fp0000"].sparse.to_dense() * df["fp0001"].sparse.to_dense()).to_numpy(dtype="float32")
    extra = pd.DataFrame({"pair": pd.arrays.SparseArray(product, fill_value=0.0)})
    return pd.concat([extra, df], axis=1)  # a new sparse column first: the scaffold puts it after the dense ones
"""
)


def test_a_confined_child_receives_the_sparse_columns_sparse(workers: Workers):
    data, _y = wide()
    workers.load(data.X, data.X_test)
    evaluation = evaluate(BodySource("probe", PROBE), data, float("inf"), workers=workers, n_folds=2)
    assert np.isfinite(evaluation.cv_score)


def test_add_features_may_add_sparse_columns_and_they_stay_sparse(workers: Workers):
    data, _y = wide()
    workers.load(data.X, data.X_test)
    evaluation = evaluate(BodySource("widening", WIDENING), data, float("inf"), workers=workers, n_folds=2)
    assert np.isfinite(evaluation.cv_score)


def test_the_probe_fails_on_a_dense_frame_so_the_checks_above_can_fail(workers: Workers):
    data, _y = wide()
    dense_X = data.X.astype(dict.fromkeys(data.task.sparse, "float32"))
    dense_test = data.X_test.astype(dict.fromkeys(data.task.sparse, "float32"))
    dense = PreparedData(dense_X, data.y, dense_test, data.test_ids, data.task, data.classes)
    workers.load(dense.X, dense.X_test)
    with pytest.raises(CandidateError, match="did not arrive sparse"):
        evaluate(BodySource("probe", PROBE), dense, float("inf"), workers=workers, n_folds=2)


@pytest.mark.parametrize("name", ["linear", "lightgbm_gbdt"])
def test_the_wide_templates_cross_validate_in_the_workers(workers: Workers, name: str):
    data, _y = wide(rows=1200, columns=600)
    workers.load(data.X, data.X_test)
    body = BodySource(name, template_source(name), trusted=True)
    evaluation = evaluate(body, data, float("inf"), workers=workers, n_folds=3)
    assert evaluation.cv_score < 0.6  # the base rate's logloss is 0.69


def test_a_bodys_sparse_column_stays_sparse_with_infinities_as_missing():
    values = np.array([0.0, 1.0, np.inf, 0.0, -np.inf])
    frame = pd.DataFrame({"bits": pd.arrays.SparseArray(values, fill_value=0.0), "x": np.arange(5.0)})
    out = normalise_body_output(frame, 3)
    assert sparse_columns(out) == ["bits"]
    assert str(out["bits"].dtype) == "Sparse[float32, 0.0]"
    assert out["bits"].sparse.to_dense().tolist()[:2] == [0.0, 1.0]
    assert out["bits"].isna().tolist() == [False, False, True, False, True]


def test_the_memory_plan_counts_sparse_columns_by_their_non_zeros_unless_the_fit_densifies():
    data, _y = wide(rows=2000, columns=1000, dense=False)
    as_dense = replace(
        data, X=data.X.astype(dict.fromkeys(data.task.sparse, "float32")), task=replace(data.task, sparse=[])
    )
    for name in ("linear", "lightgbm_gbdt", "mlp"):
        assert fit_memory_mb(name, data) < fit_memory_mb(name, as_dense) / 5
    assert fit_memory_mb("extra_trees", data) < fit_memory_mb("extra_trees", as_dense)  # its trees cost the same
    assert fit_memory_mb("hist_gradient_boosting", data) == fit_memory_mb("hist_gradient_boosting", as_dense)


def test_train_and_test_rows_with_different_sparse_columns_are_refused_not_dropped():
    data, _y = wide()
    test_dense = FeatureRows.from_frame(data.X_test.astype(dict.fromkeys(data.task.sparse, "float32")))
    with pytest.raises(ValueError, match="same sparse columns"):
        stack_rows(FeatureRows.from_frame(data.X), test_dense)
