"""Small Kaggle-format competitions built from datasets that ship inside scikit-learn (no download, no network).

`write_competition` lays out train.csv, test.csv, a sample submission and an optional metadata.json;
`build_breast_cancer_demo` writes the bundled example `breast-cancer-demo` (string ids, a categorical column and
missing values, so it exercises the scaffold). Tests build their variations with tests/competitions.py on top of this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import datasets

DEMO_SLUG = "breast-cancer-demo"


def load_frame(name: str) -> tuple[pd.DataFrame, pd.Series]:
    """Features and target of a bundled scikit-learn dataset: breast_cancer, iris, wine or diabetes."""
    loaders = {
        "breast_cancer": datasets.load_breast_cancer,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes,
    }
    bunch: Any = loaders[name](as_frame=True)
    features = bunch.data.copy()
    features.columns = [str(c).replace(" ", "_") for c in features.columns]
    target = bunch.target.copy()
    if name != "diabetes":
        target = target.map(dict(enumerate(bunch.target_names))).astype(str)
    return features, target


def write_competition(
    folder: Path,
    train: pd.DataFrame,
    test: pd.DataFrame,
    sample: pd.DataFrame,
    *,
    sample_name: str = "sample_submission.csv",
    metadata: dict[str, Any] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    sample.to_csv(folder / sample_name, index=False)
    if metadata is not None:
        (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return folder


def split(frame: pd.DataFrame, test_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    is_test = rng.random(len(frame)) < test_fraction
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)


def build_breast_cancer_demo(mirror: Path, seed: int = 0) -> Path:
    """The bundled example: predict whether a tumour is malignant (labels), scored by accuracy."""
    features, target = load_frame("breast_cancer")
    rng = np.random.default_rng(seed)
    frame = features.iloc[:, :12].copy()
    frame.insert(0, "patient_id", [f"P{i:05d}" for i in range(len(frame))])
    frame["clinic"] = rng.choice(["north", "south", "east", "west"], size=len(frame))
    for column in ("mean_texture", "mean_smoothness"):
        frame.loc[rng.random(len(frame)) < 0.1, column] = np.nan
    frame["diagnosis"] = target.to_numpy()
    train, test = split(frame, 0.3, seed)
    sample = pd.DataFrame({"patient_id": test["patient_id"], "diagnosis": "benign"})
    return write_competition(
        mirror / DEMO_SLUG,
        train,
        test.drop(columns=["diagnosis"]),
        sample,
        metadata={"title": "Breast cancer diagnosis (demo)", "metric": "accuracy"},
    )
