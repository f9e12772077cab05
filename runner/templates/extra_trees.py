"""Template model body: extremely randomised trees on ordinal-coded categoricals and imputed numbers.

Averaging many deep random trees makes errors unlike those of boosting or linear models, which is what a blend needs;
it is also robust on small data. Missing numbers get the median plus an indicator; unseen categories get their own code.
"""

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder


def as_text(frame):
    return frame.astype(object).where(frame.notna(), "(missing)").astype(str)


def sparse_block(frame):
    """The contract's sparse columns (`task.sparse`) as one CSR matrix, signed-log scaled, missing as 0: never dense."""
    block = frame.sparse.to_coo().tocsr().astype(np.float32)
    block.data = np.nan_to_num(np.sign(block.data) * np.log1p(np.abs(block.data)), nan=0.0)
    block.eliminate_zeros()
    return block


def build_model(task):
    numeric = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    categorical = make_pipeline(
        FunctionTransformer(as_text, feature_names_out="one-to-one"),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
    )
    sparse = list(task.sparse)  # wide mostly-zero columns: one sparse matrix (the trees split it as is)
    parts = [
        ("numeric", numeric, [c for c in task.numeric if c not in set(sparse)]),
        ("categorical", categorical, list(task.categorical)),
    ]
    if sparse:
        parts.append(("sparse", FunctionTransformer(sparse_block), sparse))
    encode = ColumnTransformer(parts, remainder="drop")
    params = dict(
        # deep trees cost memory in proportion to rows / leaf size: fewer, coarser trees on large data
        n_estimators=300 if task.n_rows < 5000 else (200 if task.n_rows < 20000 else 100),
        min_samples_leaf=2 if task.n_rows < 5000 else (5 if task.n_rows < 50000 else 10),
        max_features=0.5 if task.type == "regression" else "sqrt",
        n_jobs=task.n_jobs,
        random_state=task.seed,
    )
    if task.type == "regression":
        return make_pipeline(encode, ExtraTreesRegressor(**params))
    return make_pipeline(encode, ExtraTreesClassifier(**params))
