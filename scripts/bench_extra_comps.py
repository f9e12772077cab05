"""Generalisation competitions for `make bench`: unlike the four practice ones, built here from data that ships with
scikit-learn (generators and bundled sets, nothing downloaded), with tens of thousands of rows, imbalance, NaNs, a
high-cardinality category, a date column and other submission kinds. Same folder layout, same grader as
../shared/bench/competitions.py, whose build and grade code this reuses.

    ../shared/bench/bench-env python scripts/bench_extra_comps.py build OUT_DIR [NAME ...]
    ../shared/bench/bench-env python scripts/bench_extra_comps.py list
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes, make_classification, make_friedman1

SHARED_BENCH = Path(os.environ.get("KAGENT_SHARED_BENCH", Path(__file__).resolve().parents[1].parent / "shared/bench"))
sys.path.insert(0, str(SHARED_BENCH))

from competitions import Competition, main  # noqa: E402 - lives in ../shared/bench, found through sys.path

LETTERS = np.array(list("ABCDEFGHIJKL"))


def _fraud() -> pd.DataFrame:
    """40k card payments, 4% fraud: binned categoricals, a 400-level merchant id with signal, NaN-heavy columns."""
    x, y = make_classification(
        n_samples=40_000,
        n_features=14,
        n_informative=7,
        n_redundant=3,
        weights=[0.96],
        flip_y=0.01,
        class_sep=0.7,
        random_state=11,
    )
    rng = np.random.default_rng(11)
    df = pd.DataFrame(x[:, :10], columns=[f"v{i}" for i in range(10)])
    df["channel"] = LETTERS[np.digitize(x[:, 10], [-1.0, 0.0, 1.0])]
    df["card_type"] = np.where(x[:, 11] > 0.3, "credit", "debit")
    risky = rng.choice(400, size=40, replace=False)
    merchant = rng.integers(0, 400, size=len(df))
    merchant = np.where((y == 1) & (rng.random(len(df)) < 0.3), rng.choice(risky, size=len(df)), merchant)
    df["merchant"] = [f"m{m:03d}" for m in merchant]
    df["amount"] = np.round(np.exp(3 + 0.6 * x[:, 12] + 0.4 * y), 2)
    for col, share in (("v3", 0.3), ("v7", 0.6), ("channel", 0.1)):
        df.loc[rng.random(len(df)) < share, col] = np.nan
    df["is_fraud"] = np.where(y == 1, "fraud", "legit")
    return df


def _forest() -> pd.DataFrame:
    """20k plots, six unevenly sized tree species: one probability column per class, scored by log loss."""
    species = np.array(["aspen", "birch", "fir", "larch", "pine", "spruce"])
    x, y = make_classification(
        n_samples=20_000,
        n_features=18,
        n_informative=10,
        n_redundant=4,
        n_classes=6,
        n_clusters_per_class=2,
        weights=[0.35, 0.25, 0.15, 0.12, 0.08, 0.05],
        class_sep=1.0,
        random_state=12,
    )
    df = pd.DataFrame(np.round(x, 4), columns=[f"f{i:02d}" for i in range(18)])
    df["soil"] = LETTERS[np.digitize(x[:, 0] + x[:, 1], np.linspace(-3, 3, 8))]
    df["species"] = species[y]
    return df


def _demand() -> pd.DataFrame:
    """30k days x stores: Friedman's nonlinear signal, a date with weekly and yearly seasons, a store id, NaNs."""
    x, y = make_friedman1(n_samples=30_000, n_features=8, noise=1.0, random_state=13)
    rng = np.random.default_rng(13)
    dates = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365, size=len(y)), unit="D")
    store = rng.integers(0, 60, size=len(y))
    store_effect = np.linspace(-4, 4, 60)[rng.permutation(60)]
    season = 3 * np.sin(2 * np.pi * dates.day_of_year.to_numpy() / 365.25) + 2 * (dates.day_of_week.to_numpy() >= 5)
    df = pd.DataFrame(np.round(x, 4), columns=[f"x{i}" for i in range(8)])
    df["date"] = dates.strftime("%Y-%m-%d")
    df["store"] = [f"S{s:02d}" for s in store]
    df.loc[rng.random(len(df)) < 0.2, "x1"] = np.nan
    df["units"] = np.round(20 + y + season + store_effect[store], 3)
    return df


def _sensors() -> pd.DataFrame:
    """160k machine readings, 12% faults, labels as words: the scale check (time budget and memory on many rows)."""
    x, y = make_classification(
        n_samples=160_000,
        n_features=24,
        n_informative=10,
        n_redundant=6,
        weights=[0.88],
        flip_y=0.02,
        class_sep=0.8,
        random_state=14,
    )
    rng = np.random.default_rng(14)
    df = pd.DataFrame(np.round(x, 3), columns=[f"s{i:02d}" for i in range(24)])
    df["line"] = LETTERS[rng.integers(0, 8, size=len(df))]
    df.loc[rng.random(len(df)) < 0.05, "s05"] = np.nan
    df["status"] = np.where(y == 1, "fault", "ok")
    return df


def _diabetes() -> pd.DataFrame:
    """442 patients (scikit-learn's bundled set): a tiny regression where overfitting is the danger."""
    data = load_diabetes(as_frame=True, scaled=False)
    return data.frame.rename(columns={"target": "progression"})


EXTRA = {
    c.name: c
    for c in [
        Competition(
            "card-fraud",
            _fraud,
            "is_fraud",
            "binary",
            "logloss",
            id_column="transaction_id",
            kind="proba",
            positive="fraud",
            id_format="TX{:07d}",
        ),
        Competition(
            "forest-species",
            _forest,
            "species",
            "multiclass",
            "logloss",
            id_column="plot",
            sample_file="sampleSubmission.csv",
            kind="proba_per_class",
        ),
        Competition(
            "store-demand",
            _demand,
            "units",
            "regression",
            "rmse",
            id_column="row_id",
            sample_file="submission_format.csv",
            id_start=100_000,
        ),
        Competition("sensor-faults", _sensors, "status", "binary", "accuracy", id_column="reading_id", kind="label"),
        Competition(
            "diabetes", _diabetes, "progression", "regression", "rmse", id_column="patient", id_format="P{:04d}"
        ),
    ]
}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], EXTRA))
