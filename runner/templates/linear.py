"""Template model body: a regularised linear model (logistic or ridge regression) on one-hot and scaled features.

Strong on small or mostly linear data, fast everywhere, and different enough from trees to help a blend. Skewed
numbers get a signed log so a few huge values do not dominate; missing values get an indicator. On wide data the
classifier's regularisation is chosen by inner cross-validation.
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
    encode = ColumnTransformer(
        [("numeric", numeric, list(task.numeric)), ("categorical", categorical, list(task.categorical))],
        remainder="drop",
    )
    if task.type == "regression":
        model = RidgeCV(alphas=np.logspace(-2, 3, 12))
    elif len(task.numeric) + len(task.categorical) > WIDE_COLUMNS:
        # hundreds of columns (e.g. sparse bits, scaled up when rare) overfit at a fixed C: choose it on inner folds
        model = LogisticRegressionCV(Cs=np.logspace(-3.5, -0.5, 7), cv=3, scoring="neg_log_loss", max_iter=2000)
    else:
        model = LogisticRegression(C=0.5, max_iter=3000)
    return make_pipeline(encode, model)
