"""The engine's reach: free text, wide data and the memory ceiling (runner.memory, runner.shape, text templates)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runner.budget import bag_seeds, stop_reason
from runner.contract import TaskSpec
from runner.features import build_features, column_kinds, downcast
from runner.memory import Ceiling, MemoryWatch, cgroup_limit, memory_ceiling
from runner.metrics import get_metric
from runner.sandbox import FitReply, FitRequest, SandboxLimits, Workers
from runner.scaffold import BodySource, Evaluation, PreparedData, evaluate
from runner.shape import choose_templates
from runner.templates import template_source

WORDS_GOOD = ["great", "love", "delicious", "perfect", "excellent", "tasty"]
WORDS_BAD = ["stale", "awful", "broken", "bland", "refund", "disappointed"]
REPO = Path(__file__).resolve().parent.parent
FILLER = ["the", "bag", "arrived", "and", "this", "coffee", "was", "for", "my", "family", "price", "box"]


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    """Every body here runs as in a real run: each fold in a fresh, confined child of the warm zygote."""
    with Workers.start(SandboxLimits(memory_mb=2000), threads=2) as started:
        yield started


def run(workers: Workers, body: BodySource, data: PreparedData, **kwargs) -> Evaluation:
    workers.load(data.X, data.X_test)
    return evaluate(body, data, float("inf"), workers=workers, **kwargs)


def template(name: str) -> BodySource:
    return BodySource(name, template_source(name), trusted=True)


def reviews(n: int, seed: int = 0) -> tuple[pd.Series, np.ndarray]:
    """Texts whose label depends only on which words they use (a mix, so a few are misleading)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    texts = []
    for label in y:
        own = WORDS_GOOD if label else WORDS_BAD
        other = WORDS_BAD if label else WORDS_GOOD
        words = list(rng.choice(FILLER, size=8)) + list(rng.choice(own, size=2)) + list(rng.choice(other, size=1))
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
    return pd.Series(texts), y


def text_data(n: int = 600) -> PreparedData:
    texts, y = reviews(n + 200)
    combined = pd.DataFrame({"review": texts, "noise": np.random.default_rng(1).normal(size=n + 200)})
    frame, roles = build_features(combined, n)
    assert roles.text == ["review"]
    numeric, categorical, text = column_kinds(frame)
    task = TaskSpec(
        type="binary",
        metric="roc_auc",
        seed=0,
        n_rows=n,
        categorical=categorical,
        numeric=numeric,
        text=text,
        n_classes=2,
        n_jobs=1,
    )
    X, X_test = frame.iloc[:n].reset_index(drop=True), frame.iloc[n:].reset_index(drop=True)
    return PreparedData(X, y[:n], X_test, [str(i) for i in range(200)], task, ["0", "1"])


def test_free_text_is_told_apart_from_a_high_cardinality_category_and_kept_raw():
    n = 300
    combined = pd.DataFrame(
        {
            "review": reviews(n)[0],
            "city": [f"Town {i % 180} North" for i in range(n)],  # many values, but repeated short names
            "sku": [f"SKU-{i:05d}" for i in range(n)],  # unique but one word
        }
    )
    frame, roles = build_features(combined, n_train=250)
    assert roles.text == ["review"]
    assert "city" not in roles.text and "sku" not in roles.text
    numeric, _categorical, text = column_kinds(frame)
    assert text == ["review"] and "review__words" in numeric and frame["review"].iloc[3] == combined["review"].iloc[3]


@pytest.mark.parametrize("name", ["text_linear", "text_boost"])
def test_text_templates_read_the_words_where_the_numbers_cannot(workers: Workers, name: str):
    data = text_data()
    words = run(workers, template(name), data, n_folds=3)  # TF-IDF inside the confined child
    numbers_only = run(workers, template("lightgbm_gbdt"), data, n_folds=3)
    assert words.cv_score > 0.85, words.cv_score
    assert numbers_only.cv_score < 0.75  # length and word counts say nothing about the label here
    assert words.test_predictions.shape == (200, 2)


def test_the_other_templates_ignore_raw_text_columns(workers: Workers):
    data = text_data(300)
    for name in ("linear", "lightgbm_gbdt", "hist_gradient_boosting", "extra_trees", "mlp", "kernel_svm"):
        evaluation = run(workers, template(name), data, n_folds=2)
        assert np.isfinite(evaluation.cv_score), name


TEXT_PROBE = """
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.dummy import DummyClassifier


def add_features(df):
    return df


class TextProbe(BaseEstimator):
    def __init__(self, text=()):
        self.text = text

    def fit(self, X, y):
        for column in self.text:
            if not isinstance(X[column].dtype, pd.StringDtype) or X[column].dtype.na_value is not pd.NA:
                raise ValueError(f"{column} arrived as {X[column].dtype}, not the nullable string dtype")
        if not X[list(self.text)].isna().any().any():
            raise ValueError("a missing text did not arrive as missing")
        self.model_ = DummyClassifier(strategy="prior").fit(X[[]].assign(one=1.0), y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X[[]].assign(one=1.0))

    def predict(self, X):
        return self.model_.predict(X[[]].assign(one=1.0))


def build_model(task):
    if list(task.text) != ["review"] or "review" in task.numeric:
        raise ValueError(f"add_features mixed up the text columns: text={task.text}, numeric={task.numeric}")
    return TextProbe(text=list(task.text))
"""


def test_raw_text_reaches_a_confined_child_as_nullable_strings_and_survives_add_features(workers: Workers):
    data = text_data(300)
    X = data.X.copy()
    X.loc[::10, "review"] = pd.NA  # missing texts cross the parquet round trip to the zygote as pd.NA
    with_gaps = PreparedData(X, data.y, data.X_test, data.test_ids, data.task, data.classes)
    evaluation = run(workers, BodySource("probe", TEXT_PROBE), with_gaps, n_folds=2)  # untrusted: the full wall
    assert evaluation.oof_mask.all()


def fake_watch(ceiling_mb: float, used_mb: float) -> MemoryWatch:
    watch = MemoryWatch(Ceiling(ceiling_mb, "option"))
    watch.sample = lambda: used_mb  # type: ignore[method-assign]
    return watch


def wide_or_tall(rows: int, columns: int) -> PreparedData:
    task = TaskSpec(
        type="binary", metric="logloss", seed=0, n_rows=rows, numeric=[f"c{i}" for i in range(columns)], n_classes=2
    )
    X = pd.DataFrame(np.zeros((4, columns)), columns=task.numeric)
    return PreparedData(X, np.zeros(4, dtype=int), X, ["a"], task)


def test_wide_data_skips_the_kernel_and_the_mlp():
    lines: list[str] = []
    names = [name for name, _data in choose_templates(wide_or_tall(6000, 1500), lines.append, fake_watch(2048, 200))]
    assert "kernel_svm" not in names and "mlp" not in names and "lightgbm_gbdt" in names and "linear" in names
    assert any("too wide" in line for line in lines)
    assert "text_linear" not in names  # no text, no text templates


def test_text_templates_need_enough_rows_to_pay():
    lines: list[str] = []
    few = text_data(600)
    names = [name for name, _data in choose_templates(few, lines.append, fake_watch(2048, 200))]
    assert "text_linear" not in names and "text_boost" not in names and names[0] == "linear"
    assert any("too few for n-gram models" in line for line in lines)
    enough = text_data(1200)
    names = [name for name, _data in choose_templates(enough, lines.append, fake_watch(2048, 200))]
    assert names[:3] == ["text_linear", "lightgbm_gbdt", "text_boost"]


def test_under_a_tight_ceiling_slow_templates_sample_rows_or_are_skipped_and_say_so():
    lines: list[str] = []
    chosen = dict(choose_templates(wide_or_tall(300_000, 20), lines.append, fake_watch(2048, 400)))
    assert chosen["lightgbm_gbdt"].task.max_fit_rows == 0  # the floor always trains on every row
    assert 2000 <= chosen["kernel_svm"].task.max_fit_rows < 300_000
    assert any("fits on a sample" in line for line in lines)
    starved = dict(choose_templates(wide_or_tall(300_000, 20), lines.append, fake_watch(2048, 1500)))
    assert "extra_trees" not in starved and "lightgbm_gbdt" in starved
    assert any("skipping template extra_trees" in line and "memory ceiling" in line for line in lines)


def test_a_sampled_template_trains_on_fewer_rows_and_still_predicts_every_row(workers: Workers):
    data = text_data(400)
    capped = PreparedData(
        data.X, data.y, data.X_test, data.test_ids, TaskSpec(**{**data.task.to_dict(), "max_fit_rows": 100})
    )
    seen: list[FitRequest] = []

    class Recording:
        n_train, n_rows = len(capped.y), len(capped.y) + len(capped.X_test)

        def fit_predict(self, request: FitRequest) -> FitReply:
            seen.append(request)
            return workers.fit_predict(request)

    workers.load(capped.X, capped.X_test)
    evaluation = evaluate(template("extra_trees"), capped, float("inf"), workers=Recording(), n_folds=2)
    assert evaluation.oof_mask.all() and evaluation.test_predictions.shape == (200, 2)
    assert seen and all(len(r.train_rows) == 100 for r in seen)  # the scaffold sampled before the worker copied
    assert all(len(set(r.y_train)) == 2 for r in seen)  # stratified: both classes in every sample
    assert len(seen[0].predict_rows) == 200 + 200  # the fold's 200 validation rows and the 200 test rows


def test_numbers_are_downcast_only_when_they_would_crowd_the_ceiling():
    frame = pd.DataFrame(np.ones((1000, 50)))
    assert (downcast(frame, memory_mb=4096).dtypes == "float64").all()
    assert (downcast(frame, memory_mb=1).dtypes == "float32").all()


def test_the_ceiling_is_the_tightest_cgroup_limit_up_the_tree(tmp_path: Path):
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/outer/inner\n0::/\n")
    v1 = tmp_path / "fs" / "memory"
    (v1 / "outer" / "inner").mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(str(2**63 - 4096))
    (v1 / "outer" / "memory.limit_in_bytes").write_text(str(2048 * 2**20))
    (v1 / "outer" / "inner" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # unlimited: inherits
    found = cgroup_limit(root=tmp_path / "fs", proc_cgroup=proc)
    assert found is not None and found.mb == 2048 and found.source == "cgroup1"
    v2 = tmp_path / "v2"
    (v2 / "task").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("memory")
    (v2 / "task" / "memory.max").write_text(str(1536 * 2**20))
    (tmp_path / "cgroup2").write_text("0::/task\n")
    found = cgroup_limit(root=v2, proc_cgroup=tmp_path / "cgroup2")
    assert found is not None and found.mb == 1536 and found.source == "cgroup2"


def test_an_option_or_env_limit_below_the_kernel_one_wins_and_a_bad_env_value_is_ignored():
    assert memory_ceiling(option_mb=512, env={}).source == "option"
    assert memory_ceiling(option_mb=None, env={"KAGENT_MEMORY_LIMIT_MB": "300"}).mb == 300
    assert memory_ceiling(option_mb=None, env={"KAGENT_MEMORY_LIMIT_MB": "lots"}).source != "env"


def test_the_llm_preview_says_which_columns_are_free_text():
    from runner.prompting import data_preview  # noqa: PLC0415 - the prompt side, only for this test

    data = text_data(100)
    preview = data_preview(data.X.assign(target=data.y), ["target"])
    assert "- review: FREE TEXT (11 words on average)" in preview
    assert "- noise: float64" in preview


def noisy_data(n: int = 2400) -> PreparedData:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(n + 100, 6)), columns=[f"x{i}" for i in range(6)])
    y = (X["x0"] + 0.5 * X["x1"] + rng.normal(scale=1.0, size=n + 100) > 0).astype(int).to_numpy()
    task = TaskSpec(type="binary", metric="logloss", seed=0, n_rows=n, numeric=list(X.columns), n_classes=2, n_jobs=1)
    train, test = X.iloc[:n].reset_index(drop=True), X.iloc[n:].reset_index(drop=True)
    return PreparedData(train, y[:n], test, [str(i) for i in range(100)], task, ["0", "1"])


BAGGER = """
from sklearn.ensemble import BaggingClassifier


def build_model(task):
    return BaggingClassifier(n_estimators=3, max_samples=0.5, random_state=task.seed)
"""


def seeded_body() -> BodySource:
    return BodySource("bagger", BAGGER, trusted=True)


def test_seed_bags_are_honest_out_of_fold_and_stop_on_convergence_or_the_budget(workers: Workers):
    data = noisy_data()
    base = run(workers, seeded_body(), data)
    before = workers.requests
    bags, reason = bag_seeds(
        [base], {"bagger": seeded_body()}, data, deadline=time.monotonic() + 300, log=print, workers=workers
    )
    assert workers.requests > before  # every seed's folds ran in the workers, like any other body
    assert len(bags) == 1 and bags[0].name.startswith("bagger_bag")
    bag = bags[0]
    assert bag.oof_mask.all() and bag.cv_score < base.cv_score  # averaging seeds lowers the logloss here
    assert "CV converged" in reason or "seeds (the most tried)" in reason
    assert bag.cv_score == pytest.approx(get_metric("logloss").score(data.y, bag.oof))
    assert len(bag.fold_scores) == 5 and all(np.isfinite(bag.fold_scores))  # the report shows its spread
    _bags, reason = bag_seeds(
        [base], {"bagger": seeded_body()}, data, deadline=time.monotonic(), log=print, workers=workers
    )
    assert "time budget" in reason


def test_small_data_is_not_bagged_and_the_stop_reason_names_what_was_cut(workers: Workers):
    data = noisy_data(300)
    base = run(workers, seeded_body(), data)
    bagged = bag_seeds([base], {"bagger": seeded_body()}, data, deadline=float("inf"), log=print, workers=workers)
    assert bagged == ([], "")
    short = Evaluation("mlp", "logloss", 0.5, [0.5], base.oof, base.test_predictions, 1.0, n_folds=1)
    assert stop_reason([base, short], ["bagger", "mlp", "extra_trees"], "", 10).startswith(
        "time budget (templates cut short: mlp; not run: extra_trees)"
    )
    assert stop_reason([base], ["bagger"], "bagger: CV converged after 3 seeds", 42.4) == (
        "every template finished; bagging bagger: CV converged after 3 seeds; 42 s left"
    )
    assert stop_reason([base, short], ["bagger", "mlp"], "bagger: time budget after 2 seeds", 3) == (
        "time budget (templates cut short: mlp); bagging bagger: time budget after 2 seeds; 3 s left"
    )


def test_a_text_competition_end_to_end_uses_the_words_and_records_memory_and_why_it_stopped(tmp_path: Path):
    """Through the real CLI, in its own process: the memory ceiling counts the runner's process tree, and a pytest
    worker that has run hundreds of tests already holds more than this run's whole ceiling."""
    texts, y = reviews(1300, seed=5)
    folder = tmp_path / "comp"
    folder.mkdir()
    frame = pd.DataFrame({"id": range(1300), "review": texts, "label": np.where(y == 1, "good", "bad")})
    frame.iloc[:1100].to_csv(folder / "train.csv", index=False)
    frame.iloc[1100:, :2].to_csv(folder / "test.csv", index=False)
    frame.iloc[1100:][["id"]].assign(label="bad").to_csv(folder / "sample_submission.csv", index=False)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KAGENT_"))}
    args = ["--out", str(out), "--time-budget", "40", "--memory-limit", "1500", "--metric", "accuracy"]
    done = subprocess.run(
        [sys.executable, "-m", "runner", str(folder), *args, "--codegen", "template"],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "succeeded", result["reason"]
    assert result["memory_ceiling_mb"] <= 1500 and result["memory_ceiling_source"] in ("option", "cgroup1", "cgroup2")
    assert result["memory_peak_mb"] > 0 and 0 < result["memory_peak_share"] < 1
    assert result["stop_reason"]
    logs = (out / "logs.txt").read_text()
    assert "skipping template" not in logs, logs  # 1500 MB is room for every template on this data
    assert "text" in result["model"], logs  # a text template (alone or in the blend) made the submission
    assert result["cv_score"] > 0.8
    assert "memory ceiling" in logs and "stopped: " in logs
    assert "fits in fresh processes" in logs
