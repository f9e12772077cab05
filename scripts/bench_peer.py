"""A peer AutoML (FLAML or AutoGluon) solving one practice competition, for `make bench` to compare the runner against.

    python scripts/bench_peer.py flaml COMP/public --out OUT --metric M --time-budget 60 \
        --target T --id-column ID --kind label|proba|proba_per_class|value [--positive P] [--sample FILE]

It runs in the peer's own virtualenv (.venv-flaml, .venv-autogluon). The harness hands it the competition's profile
from meta.json (target, id column, submission kind, positive class) so the peer is judged on modelling alone: its
submission has the sample's exact header, ids and order, labels in train's form, and probabilities of the right
class. Writes OUT/submission.csv and OUT/result.json (status, model, elapsed_s, peak_memory_mb).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PEERS = ("flaml", "autogluon")
FLAML_METRICS = {
    "rmse": "rmse",
    "rmsle": "rmse",
    "mae": "mae",
    "roc_auc": "roc_auc",
    "logloss": "log_loss",
    "accuracy": "accuracy",
    "f1": "f1",
}
AUTOGLUON_METRICS = {
    "rmse": "root_mean_squared_error",
    "rmsle": "root_mean_squared_error",
    "mae": "mean_absolute_error",
    "roc_auc": "roc_auc",
    "logloss": "log_loss",
    "accuracy": "accuracy",
    "f1": "f1",
}
SAMPLE_NAMES = ("sample_submission.csv", "sampleSubmission.csv", "gender_submission.csv", "submission_format.csv")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("peer", choices=PEERS)
    p.add_argument("data", type=Path, help="the competition's public folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metric", required=True, choices=sorted(FLAML_METRICS))
    p.add_argument("--time-budget", type=float, default=60.0)
    p.add_argument("--target", required=True)
    p.add_argument("--id-column", required=True)
    p.add_argument("--kind", required=True, choices=("label", "proba", "proba_per_class", "value"))
    p.add_argument("--task", required=True, choices=("binary", "multiclass", "regression"))
    p.add_argument("--positive", default=None, help="for --kind proba: the class whose probability is asked for")
    p.add_argument("--sample", default=None, help="sample submission file name (found by the usual names if omitted)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def find_sample(data: Path, name: str | None) -> Path:
    if name:
        return data / name
    for candidate in SAMPLE_NAMES:
        if (data / candidate).exists():
            return data / candidate
    raise SystemExit(f"no sample submission in {data}")


def fit_predict_flaml(train: pd.DataFrame, test: pd.DataFrame, args: argparse.Namespace) -> tuple[Any, Any, str]:
    """Returns (point predictions, class-probability frame or None, model name)."""
    from flaml import AutoML  # noqa: PLC0415 - lazy: only the FLAML venv has it

    automl = AutoML()
    x, y = train.drop(columns=[args.target]), train[args.target]
    task = "regression" if args.task == "regression" else "classification"
    automl.fit(
        x, y, task=task, metric=FLAML_METRICS[args.metric], time_budget=args.time_budget, seed=args.seed, verbose=0
    )
    pred = automl.predict(test)
    proba = None
    if task == "classification":
        proba = pd.DataFrame(automl.predict_proba(test), columns=list(automl.classes_))
    return pred, proba, f"flaml:{automl.best_estimator}"


def fit_predict_autogluon(train: pd.DataFrame, test: pd.DataFrame, args: argparse.Namespace) -> tuple[Any, Any, str]:
    from autogluon.tabular import TabularPredictor  # noqa: PLC0415 - lazy: only the AutoGluon venv has it

    predictor = TabularPredictor(
        label=args.target,
        problem_type=args.task,
        eval_metric=AUTOGLUON_METRICS[args.metric],
        path=str(args.out / "autogluon-models"),
        verbosity=1,
    )
    predictor.fit(train, presets="medium_quality", time_limit=args.time_budget)
    pred = predictor.predict(test)
    proba = predictor.predict_proba(test).reset_index(drop=True) if args.task != "regression" else None
    return pred, proba, f"autogluon:{predictor.model_best}"


FITTERS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, argparse.Namespace], tuple[Any, Any, str]]] = {
    "flaml": fit_predict_flaml,
    "autogluon": fit_predict_autogluon,
}


def same_form_as(values: pd.Series, like: pd.Series) -> pd.Series:
    """Class labels written the way train writes them (a 0/1 column stays integer, not 0.0/1.0)."""
    if pd.api.types.is_integer_dtype(like.dtype):
        return values.astype("int64")
    return values


def proba_column(proba: pd.DataFrame, cls: str) -> pd.Series:
    by_text = {str(c): c for c in proba.columns}
    if cls not in by_text:
        raise SystemExit(f"class {cls!r} not among the model's classes {list(by_text)}")
    return proba[by_text[cls]]


def build_submission(
    *,
    sample: pd.DataFrame,
    test_ids: pd.Series,
    train_target: pd.Series,
    pred: Any,
    proba: Any,
    args: argparse.Namespace,
) -> pd.DataFrame:
    by_id = pd.DataFrame({args.id_column: test_ids.to_numpy()})
    value_columns = [c for c in sample.columns if c != args.id_column]
    if args.kind == "proba_per_class":
        for cls in value_columns:
            by_id[cls] = proba_column(proba, cls).to_numpy()
    elif args.kind == "proba":
        by_id[args.target] = proba_column(proba, str(args.positive)).to_numpy()
    elif args.kind == "label":
        by_id[args.target] = same_form_as(pd.Series(np.asarray(pred)), train_target).to_numpy()
    else:
        values = np.asarray(pred, dtype=float)
        by_id[args.target] = np.expm1(values).clip(min=0) if args.metric == "rmsle" else values
    # the sample's ids, in the sample's order, matched as text so "007" and 7 never get confused
    order = by_id.set_index(by_id[args.id_column].astype(str))
    out = order.loc[sample[args.id_column].astype(str)].reset_index(drop=True)
    out[args.id_column] = sample[args.id_column].to_numpy()
    return out[list(sample.columns)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    sample = pd.read_csv(find_sample(args.data, args.sample))
    train = pd.read_csv(args.data / "train.csv")
    test = pd.read_csv(args.data / "test.csv")
    train = train[train[args.target].notna()].reset_index(drop=True)
    features = [c for c in train.columns if c not in (args.id_column, args.target)]
    fit_frame = train[[*features, args.target]].copy()
    if args.metric == "rmsle":
        fit_frame[args.target] = np.log1p(fit_frame[args.target].clip(lower=0))
    pred, proba, model = FITTERS[args.peer](fit_frame, test[features], args)
    submission = build_submission(
        sample=sample, test_ids=test[args.id_column], train_target=train[args.target], pred=pred, proba=proba, args=args
    )
    submission.to_csv(args.out / "submission.csv", index=False)
    return {"status": "succeeded", "reason": "ok", "model": model, "elapsed_s": round(time.monotonic() - started, 2)}


def peak_memory_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args)
    except Exception as e:  # a failing peer is a row in the table, not a crash of the bench
        result = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
        print(f"{args.peer} failed: {result['reason']}", file=sys.stderr)
    result["peak_memory_mb"] = peak_memory_mb()
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    return 0 if result["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
