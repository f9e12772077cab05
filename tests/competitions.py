"""Build small Kaggle-format competitions in temporary folders from scikit-learn's bundled datasets (for any test).

Each builder returns the competition folder. Options cover what the runner must survive: id styles, submission kinds,
sample-submission names, missing values, free text, categories only seen in test, metadata.
"""

from __future__ import annotations

import csv
import io
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runner.examples import load_frame, split, write_competition

_WORDS = ["red", "green", "blue", "fast", "slow", "big", "small", "happy", "sad", "bright", "dark", "loud", "quiet"]


def _ids(n: int, style: str, offset: int = 0) -> list[Any]:
    if style == "string":
        return [f"id-{i + offset:04d}" for i in range(n)]
    return list(range(offset + 1, offset + n + 1))


def _decorate(
    frame: pd.DataFrame, rng: np.random.Generator, *, nan_fraction: float, text: bool, categorical: bool
) -> pd.DataFrame:
    frame = frame.copy()
    if categorical:
        frame["colour"] = rng.choice(["red", "green", "blue"], size=len(frame))
    if text:
        frame["comment"] = [" ".join(rng.choice(_WORDS, size=rng.integers(4, 12))) for _ in range(len(frame))]
    if nan_fraction:
        for column in frame.columns[: max(1, len(frame.columns) // 2)]:
            frame.loc[rng.random(len(frame)) < nan_fraction, column] = np.nan
    return frame


def classification(
    root: Path,
    *,
    dataset: str = "breast_cancer",
    kind: str = "label",
    id_column: str = "id",
    id_style: str = "int",
    target: str = "target",
    labels: dict[str, str] | None = None,
    sample_name: str = "sample_submission.csv",
    n_features: int = 6,
    n_rows: int | None = 300,
    nan_fraction: float = 0.0,
    text: bool = False,
    categorical: bool = True,
    unseen_categories: bool = False,
    metadata: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """kind: label | proba (one column, probability of the positive class) | class_columns (one column per class)."""
    rng = np.random.default_rng(seed)
    features, y = load_frame(dataset)
    frame = features.iloc[:, :n_features]
    if labels:
        y = y.map(labels)
    if n_rows is not None and n_rows < len(frame):
        keep = np.sort(rng.choice(len(frame), size=n_rows, replace=False))
        frame, y = frame.iloc[keep].reset_index(drop=True), y.iloc[keep].reset_index(drop=True)
    frame = _decorate(frame, rng, nan_fraction=nan_fraction, text=text, categorical=categorical)
    frame.insert(0, id_column, _ids(len(frame), id_style))
    frame[target] = y.to_numpy()
    train, test = split(frame, 0.3, seed)
    if unseen_categories and categorical:
        test["colour"] = np.where(rng.random(len(test)) < 0.5, "purple", test["colour"])
    test = test.drop(columns=[target])
    if kind == "class_columns":
        classes = sorted(train[target].astype(str).unique())
        sample = pd.DataFrame({id_column: test[id_column], **{c: 1 / len(classes) for c in classes}})
    elif kind == "proba":
        sample = pd.DataFrame({id_column: test[id_column], target: 0.5})
    else:
        sample = pd.DataFrame({id_column: test[id_column], target: train[target].iloc[0]})
    return write_competition(root, train, test, sample, sample_name=sample_name, metadata=metadata)


def regression(
    root: Path,
    *,
    id_column: str = "Id",
    target: str = "y",
    n_rows: int | None = 300,
    nan_fraction: float = 0.0,
    metadata: dict[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Diabetes progression (a positive target, so rmsle works)."""
    rng = np.random.default_rng(seed)
    features, y = load_frame("diabetes")
    frame = features.copy()
    if n_rows is not None and n_rows < len(frame):
        keep = np.sort(rng.choice(len(frame), size=n_rows, replace=False))
        frame, y = frame.iloc[keep].reset_index(drop=True), y.iloc[keep].reset_index(drop=True)
    frame = _decorate(frame, rng, nan_fraction=nan_fraction, text=False, categorical=True)
    frame.insert(0, id_column, _ids(len(frame), "int"))
    frame[target] = y.to_numpy()
    train, test = split(frame, 0.3, seed)
    sample = pd.DataFrame({id_column: test[id_column], target: float(train[target].mean())})
    return write_competition(root, train, test.drop(columns=[target]), sample, metadata=metadata)


def zip_folder(folder: Path, archive: Path, *, nest: bool = False) -> Path:
    """Zip a competition folder's files (flat, as Kaggle does); with nest, put that zip inside another zip."""
    inner = archive.with_suffix(".inner.zip") if nest else archive
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    if nest:
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(inner, f"{folder.name}.zip")
        inner.unlink()
    return archive


def small_competition(rows: int = 160, seed: int = 0) -> dict[str, bytes]:
    """A learnable binary task as the files Kaggle serves: y is 1 when a + b is large, c is noise."""
    rng = random.Random(seed)

    def table(ids: range, with_target: bool) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "a", "b", "c", "y"] if with_target else ["id", "a", "b", "c"])
        for i in ids:
            a, b, c = rng.random(), rng.random(), rng.choice(["red", "green", "blue"])
            row = [i, f"{a:.4f}", f"{b:.4f}", c]
            writer.writerow([*row, int(a + b > 1.0)] if with_target else row)
        return out.getvalue().encode()

    test_ids = range(rows + 1, rows + 41)
    sample = "id,y\n" + "".join(f"{i},0\n" for i in test_ids)
    return {
        "train.csv": table(range(1, rows + 1), True),
        "test.csv": table(test_ids, False),
        "sample_submission.csv": sample.encode(),
    }
