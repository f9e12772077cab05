"""The template manifest agrees with the files, the body check and the runner's requirements; the
HistGradientBoosting template, now a plain estimator, fits exactly as the class it replaced did."""

from __future__ import annotations

import ast
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from runner.bodycheck import allowed_module, check_body
from runner.contract import TaskSpec
from runner.templates import TEMPLATES, TEXT_TEMPLATES, load_template, template_source
from runner.templates.manifest import MANIFEST, entry

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = ROOT / "runner" / "templates"
NOT_TEMPLATES = {"__init__", "manifest"}


def imported_modules(source: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def third_party(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"__future__"}


def pinned_distributions() -> dict[str, str]:
    """runner/requirements.txt: normalised distribution name -> its exact pin."""
    pins = {}
    for line in (ROOT / "runner" / "requirements.txt").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_every_template_file_has_an_entry_and_every_entry_a_file():
    files = {p.stem for p in TEMPLATE_DIR.glob("*.py")} - NOT_TEMPLATES
    names = [e.name for e in MANIFEST]
    assert len(names) == len(set(names)), "a template is listed twice"
    assert set(names) == files
    assert tuple(names) == TEMPLATES  # the pipeline's order is the manifest's
    assert set(TEXT_TEMPLATES) == {e.name for e in MANIFEST if e.text} == {"text_linear", "text_boost"}


def test_time_shares_are_the_engines_own():
    """The shares the pipeline gave each template before the manifest existed: a change here changes results."""
    shares = {e.name: e.time_share for e in MANIFEST}
    assert shares == {
        "linear": 0.25,
        "text_linear": 0.5,
        "lightgbm_gbdt": 0.6,
        "text_boost": 0.6,
        "mlp": 0.5,
        "kernel_svm": 0.35,
        "hist_gradient_boosting": 0.6,
        "extra_trees": 1.0,
    }
    assert all(0 < share <= 1 for share in shares.values())
    with pytest.raises(KeyError, match="unknown template 'nope'"):
        entry("nope")


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_manifest_names_exactly_the_libraries_a_template_imports(name: str):
    assert set(entry(name).libraries) == third_party(imported_modules(template_source(name)))


@pytest.mark.parametrize("name", TEMPLATES)
def test_everything_a_template_imports_is_allowed_by_the_body_check(name: str):
    source = template_source(name)
    refused = sorted(m for m in imported_modules(source) if not allowed_module(m))
    assert refused == []
    assert check_body(source).ok, check_body(source).problems


def test_every_manifest_library_is_allowed_and_pinned_in_the_runner_requirements():
    pins = pinned_distributions()
    owners = metadata.packages_distributions()
    libraries = sorted({library for e in MANIFEST for library in e.libraries})
    assert libraries == ["lightgbm", "numpy", "pandas", "scipy", "sklearn"]
    for library in libraries:
        assert allowed_module(library), f"{library} is not in runner/bodycheck.py's allowlist"
        distributions = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(library, [])}
        pinned = distributions & set(pins)
        assert pinned, f"{library} (distribution {distributions or '?'}) is not pinned in runner/requirements.txt"
        for distribution in pinned:
            assert metadata.version(distribution) == pins[distribution], f"{distribution} installed != pinned"


# ---------------------------------------------------------------- HistGradientBoosting: the same fitted behaviour

CHUNK = 50


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One OpenMP thread: the fits compared here are small, and threads only contend on a shared machine."""
    with threadpool_limits(limits=1):
        yield


def old_timed(base, seconds):
    """The template's former construction (a class built with type() whose fit changes its own max_iter), verbatim
    in behaviour: the reference the plain estimator must match."""

    def fit(self, X, y, sample_weight=None):
        stop_at = time.monotonic() + seconds
        target = self.max_iter
        self.warm_start = True
        self.max_iter = min(CHUNK, target)
        while True:
            base.fit(self, X, y, sample_weight=sample_weight)
            stopped_early = self.n_iter_ < self.max_iter
            if stopped_early or self.max_iter >= target or time.monotonic() > stop_at:
                break
            self.max_iter = min(self.max_iter + CHUNK, target)
        self.max_iter, self.warm_start = target, False
        return self

    return type("TimedHistGradientBoosting", (base,), {"fit": fit})


def old_build_model(task: TaskSpec):
    n = task.n_rows
    params = dict(
        learning_rate=0.08,
        max_iter=min(1000, max(200, n)),
        max_leaf_nodes=15 if n < 2000 else 31,
        min_samples_leaf=10 if n < 1000 else 20,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=30,
        tol=1e-4,
        categorical_features="from_dtype",
        random_state=task.seed,
    )
    seconds = max(1.0, 1.5 * task.fit_seconds)
    if task.type == "regression":
        loss = "absolute_error" if task.metric == "mae" else "squared_error"
        model = old_timed(HistGradientBoostingRegressor, seconds)(loss=loss, **params)
    else:
        model = old_timed(HistGradientBoostingClassifier, seconds)(**params)
    if task.text:
        keep = FunctionTransformer(lambda frame, columns: frame.drop(columns=columns), kw_args={"columns": task.text})
        return make_pipeline(keep, model)
    return model


def frame(n: int, seed: int, kind: str) -> tuple[pd.DataFrame, np.ndarray, TaskSpec]:
    """Numbers with gaps, a category and (for `text`) a raw text column; a target with enough signal for early
    stopping to take more than one chunk of trees."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "c": pd.Categorical(rng.choice(["x", "y", "z"], size=n)),
        }
    )
    signal = X["a"].to_numpy() * 1.5 + np.nan_to_num(X["b"].to_numpy()) + (X["c"] == "x").to_numpy()
    noisy = signal + rng.normal(scale=0.7, size=n)
    text: list[str] = []
    if kind == "text":
        X["words"] = pd.array([f"w{i % 7} w{i % 3}" for i in range(n)], dtype="string")
        text = ["words"]
    if kind in ("regression", "mae"):
        y = noisy
        task_type = "regression"
    elif kind == "multiclass":
        y = np.digitize(noisy, np.quantile(noisy, [1 / 3, 2 / 3]))
        task_type = "multiclass"
    else:
        y = (noisy > 0).astype(int)
        task_type = "binary"
    task = TaskSpec(
        type=task_type,
        metric="mae" if kind == "mae" else ("rmse" if task_type == "regression" else "logloss"),
        seed=seed,
        n_rows=n,
        categorical=["c"],
        numeric=["a", "b"],
        n_classes=0 if task_type == "regression" else int(y.max()) + 1,
        fit_seconds=600.0,
        text=text,
    )
    return X, y, task


def predictions(model, X: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    return model.predict_proba(X) if task.is_classification else model.predict(X)


def final_step(model):
    return model.steps[-1][1] if hasattr(model, "steps") else model


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression", "mae", "text"])
def test_hist_gradient_boosting_predicts_exactly_as_the_former_construction(kind: str):
    X, y, task = frame(400, 3, kind)
    train, test = slice(0, 300), slice(300, None)
    new = load_template("hist_gradient_boosting").build_model(task).fit(X.iloc[train], y[train])
    old = old_build_model(task).fit(X.iloc[train], y[train])
    assert final_step(new).n_iter_ == final_step(old).n_iter_
    assert np.array_equal(predictions(new, X.iloc[test], task), predictions(old, X.iloc[test], task))
    if task.is_classification:
        assert np.array_equal(new.classes_, old.classes_)


def test_the_boosting_grows_in_chunks_and_early_stopping_ends_it():
    X, y, task = frame(400, 3, "binary")
    model = load_template("hist_gradient_boosting").build_model(task).fit(X, y)
    assert CHUNK < model.n_iter_ < task.n_rows  # more than one warm-started chunk, stopped before max_iter


@contextmanager
def clock_jumping(seconds: float) -> Iterator[None]:
    """time.monotonic() that moves `seconds` on at every call: each chunk looks like it took that long."""
    real = time.monotonic
    now = [real()]

    def tick() -> float:
        now[0] += seconds
        return now[0]

    time.monotonic = tick  # type: ignore[assignment]
    try:
        yield
    finally:
        time.monotonic = real  # type: ignore[assignment]


def test_out_of_time_it_stops_after_a_chunk_exactly_as_before():
    X, y, task = frame(400, 3, "multiclass")
    task = replace(task, fit_seconds=1.0)  # 1.5 s per fit; every clock read here moves 1000 s
    with clock_jumping(1000.0):
        new = load_template("hist_gradient_boosting").build_model(task).fit(X, y)
        old = old_build_model(task).fit(X, y)
    assert new.n_iter_ == old.n_iter_ == CHUNK
    assert np.array_equal(new.predict_proba(X), old.predict_proba(X))


def test_the_estimator_is_plain_its_parameters_unchanged_by_fit_and_clonable():
    X, y, task = frame(300, 1, "binary")
    model = load_template("hist_gradient_boosting").build_model(task)
    before = model.get_params()
    model.fit(X, y)
    assert type(model).__name__ == "TimedHistGradientBoosting" and type(model).__mro__[1].__name__ == "BaseEstimator"
    assert model.get_params() == before  # fit changes fitted attributes only
    again = clone(model).fit(X, y)
    assert np.array_equal(again.predict_proba(X), model.predict_proba(X))


def test_the_mlp_sees_its_minibatches_in_a_new_order_every_epoch(monkeypatch: pytest.MonkeyPatch):
    """scikit-learn re-seeds an int random_state on every partial_fit call: given one, every epoch would shuffle its
    minibatches the same way (card-fraud logloss 0.0638 against 0.0605 with a fresh order each epoch, 4 seeds x 5
    folds). The template hands the MLP one generator for the whole fit."""
    from sklearn.neural_network import _multilayer_perceptron as mlp_module  # noqa: PLC0415 - lazy: only this test

    orders: list[tuple[int, ...]] = []
    real_shuffle = mlp_module.shuffle

    def recording_shuffle(*arrays, **kwargs):
        shuffled = real_shuffle(*arrays, **kwargs)
        orders.append(tuple(np.asarray(shuffled)[:20]))
        return shuffled

    monkeypatch.setattr(mlp_module, "shuffle", recording_shuffle)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = (X["a"] > 0).astype(int).to_numpy()
    task = TaskSpec(type="binary", metric="logloss", seed=0, n_rows=300, numeric=["a", "b"], n_classes=2, n_jobs=1)
    model = load_template("mlp").build_model(task)
    model.set_params(timedmlp__max_iter=5, timedmlp__n_iter_no_change=10)
    model.fit(X, y)
    assert len(orders) == 5
    assert len(set(orders)) == 5, "every epoch shuffled its minibatches the same way"
