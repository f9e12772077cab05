"""Model bodies the sandbox tests hand straight to the workers (a good one; cheats that remember labels or hunt for
them; one that tunes its parameters on the first fold), and a tiny prepared dataset and a FitRequest to run them on.

The bodies would never pass the AST check: they test that honest scoring and the workers hold for code that gets past
it. tests/test_sandbox.py's root-only probe imports this module in a child process.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from runner.contract import TaskSpec
from runner.sandbox import FitRequest
from runner.scaffold import PreparedData

GOOD_BODY = """\
from sklearn.linear_model import LogisticRegression


def build_model(task):
    return LogisticRegression(max_iter=200)
"""

# Remembers every label it is shown, by row index and by row content, in module state: in one process across folds
# (the old sandbox) it answered later folds' validation rows from memory and won CV with a useless model.
MEMORY_BODY = """\
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

BY_INDEX = {}
BY_CONTENT = {}


class Memory(BaseEstimator, ClassifierMixin):
    def fit(self, X, y):
        for index, key, label in zip(X.index, map(tuple, X.round(9).to_numpy()), y):
            BY_INDEX[index] = label
            BY_CONTENT[key] = label
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        out = np.full((len(X), 2), 0.5)
        for row, (index, key) in enumerate(zip(X.index, map(tuple, X.round(9).to_numpy()))):
            label = BY_CONTENT.get(key, BY_INDEX.get(index))
            if label is not None:
                out[row] = [1.0 - label, float(label)]
        return out

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)


def build_model(task):
    return Memory()
"""

# Looks everywhere a labels file could be: the working directory, HOME/TMPDIR, temporary folders, its own and its
# parent's descriptors. Raises with what it could read, so a find fails the test with the evidence.
LABEL_HUNT_BODY = """\
import os

found = []
places = [os.getcwd(), os.environ.get("HOME", ""), os.environ.get("TMPDIR", ""), "/tmp", "/dev/shm"]
for place in places:
    for folder, _dirs, files in os.walk(place):
        for name in files:
            if name.endswith((".npy", ".parquet")):
                try:
                    with open(os.path.join(folder, name), "rb") as handle:
                        found.append((os.path.join(folder, name), len(handle.read())))
                except OSError:
                    pass
for pid in ("self", str(os.getppid())):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    for fd in fds:
        try:
            with open(f"/proc/{pid}/fd/{fd}", "rb") as handle:
                head = handle.read(200)
            if b"NUMPY" in head or b'"source"' in head:
                found.append((f"/proc/{pid}/fd/{fd}", head[:40]))
        except OSError:
            pass
if found:
    raise RuntimeError(f"LABELS-FOUND {found}")
print("LABEL-HUNT found nothing", flush=True)

from sklearn.dummy import DummyClassifier


def build_model(task):
    return DummyClassifier(strategy="prior")
"""

TUNING_BODY = """\
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Tuning(BaseEstimator, ClassifierMixin):
    def __init__(self, rounds=None):
        self.rounds = rounds

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        if self.rounds is None:
            self.reuse_params_ = {"rounds": 7}
        return self

    def predict_proba(self, X):
        p = 0.2 if self.rounds is None else self.rounds / 10  # which parameters it was built with, visibly
        return np.tile([1 - p, p], (len(X), 1))

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)


def build_model(task):
    return Tuning()
"""


def tiny_data(n: int = 160, seed: int = 0) -> PreparedData:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (X["a"] + 0.3 * rng.normal(size=n) > 0).astype("int64").to_numpy()
    X_test = pd.DataFrame({"a": rng.normal(size=20), "b": rng.normal(size=20)})
    task = TaskSpec(type="binary", metric="accuracy", seed=0, n_rows=n, numeric=["a", "b"], n_classes=2, n_jobs=1)
    return PreparedData(X, y, X_test, [str(i) for i in range(20)], task, ["0", "1"])


def request(data: PreparedData, source: str, trusted: bool = False, wall_s: float = 60.0, **extra) -> FitRequest:
    rows = np.arange(len(data.y))
    return FitRequest(
        name="probe",
        source=source,
        trusted=trusted,
        task=data.task.to_dict(),
        train_rows=rows[:100],
        y_train=data.y[:100],
        predict_rows=rows[100:],
        wall_s=wall_s,
        **extra,
    )
