"""Template model body: a regularised linear model (logistic or ridge regression) on one-hot and scaled features.

Strong on small or mostly linear data, fast everywhere, and different enough from trees to help a blend. Skewed
numbers get a signed log so a few huge values do not dominate; missing values get an indicator. On wide data the
classifier's regularisation is chosen by inner cross-validation. Wide mostly-zero columns (`task.sparse`) stay one
sparse matrix, scaled without centring, so the model trains on it as is.
"""

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

WIDE_COLUMNS = 200


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
    sparse = list(task.sparse)
    parts = [
        ("numeric", numeric, [c for c in task.numeric if c not in set(sparse)]),
        ("categorical", categorical, list(task.categorical)),
    ]
    if sparse:
        scaled = make_pipeline(FunctionTransformer(sparse_block), StandardScaler(with_mean=False))
        parts.append(("sparse", scaled, sparse))
    encode = ColumnTransformer(parts, remainder="drop")  # mostly zero overall: the output stays sparse
    if task.type == "regression":
        model = RidgeCV(alphas=np.logspace(-2, 3, 12))
    elif len(task.numeric) + len(task.categorical) > WIDE_COLUMNS:
        # hundreds of columns (e.g. sparse bits, scaled up when rare) overfit at a fixed C: choose it on inner folds
        model = LogisticRegressionCV(
            Cs=np.logspace(-3.5, -0.5, 7),
            l1_ratios=(0.0,),  # plain L2, as before; said explicitly (scikit-learn 1.10 changes the default)
            cv=3,
            scoring="neg_log_loss",
            max_iter=2000,
            use_legacy_attributes=False,
        )
    else:
        model = LogisticRegression(C=0.5, max_iter=3000)
    return make_pipeline(encode, model)
