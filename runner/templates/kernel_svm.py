"""Template model body: a support vector machine with an RBF kernel on one-hot and scaled features.

Smooth, distance-based predictions that differ from trees and from linear models: a strong blend partner on small and
medium data. Exact kernels cost O(n²), so above a few thousand rows a Nystroem approximation feeds a linear model.
Regression targets are standardised so the margin (epsilon) and C mean the same on any scale.
"""

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC, SVR

EXACT_KERNEL_MAX_ROWS = 4000


def signed_log(values):
    values = np.asarray(values, dtype=float)
    return np.sign(values) * np.log1p(np.abs(values))


def as_text(frame):
    return frame.astype(object).where(frame.notna(), "(missing)").astype(str)


def sparse_block(frame):
    """The contract's sparse columns (`task.sparse`) as one CSR matrix, signed-log scaled, missing as 0: never dense."""
    block = frame.sparse.to_coo().tocsr().astype(np.float32)
    block.data = np.nan_to_num(np.sign(block.data) * np.log1p(np.abs(block.data)), nan=0.0)
    block.eliminate_zeros()
    return block


def build_model(task):
    numeric = make_pipeline(
        FunctionTransformer(signed_log, feature_names_out="one-to-one"),
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
    )
    categorical = make_pipeline(
        FunctionTransformer(as_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3),
    )
    sparse = list(task.sparse)  # wide mostly-zero columns: one sparse matrix, scaled without centring
    parts = [
        ("numeric", numeric, [c for c in task.numeric if c not in set(sparse)]),
        ("categorical", categorical, list(task.categorical)),
    ]
    if sparse:
        scaled = make_pipeline(FunctionTransformer(sparse_block), StandardScaler(with_mean=False))
        parts.append(("sparse", scaled, sparse))
    encode = ColumnTransformer(parts, remainder="drop")
    gamma = 1.0 / (4 * max(1, len(task.numeric) + len(task.categorical)))
    exact = task.n_rows <= EXACT_KERNEL_MAX_ROWS
    # the approximate kernel holds rows x components floats (and copies of them): fewer components on large data
    components = max(100, min(300, 6_000_000 // max(1, task.n_rows)))
    if task.type == "regression":
        if exact:
            model = SVR(C=3.0, epsilon=0.05, gamma=gamma)
        else:
            model = make_pipeline(
                Nystroem(gamma=gamma, n_components=components, random_state=task.seed), Ridge(alpha=1.0)
            )
        return make_pipeline(encode, TransformedTargetRegressor(regressor=model, transformer=StandardScaler()))
    if exact:
        # Platt scaling on internal folds gives the probabilities (what SVC(probability=True) did before 1.9)
        classifier = CalibratedClassifierCV(SVC(C=1.0, gamma=gamma), ensemble=False, cv=3)
    else:
        classifier = make_pipeline(
            Nystroem(gamma=gamma, n_components=components, random_state=task.seed),
            LogisticRegression(C=1.0, max_iter=2000),
        )
    return make_pipeline(encode, classifier)
