"""Template model body: extremely randomised trees on ordinal-coded categoricals and imputed numbers.

Averaging many deep random trees makes errors unlike those of boosting or linear models, which is what a blend needs;
it is also robust on small data. Missing numbers get the median plus an indicator; unseen categories get their own code.
"""

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder


def as_text(frame):
    return frame.astype(object).where(frame.notna(), "(missing)").astype(str)


def build_model(task):
    numeric = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    categorical = make_pipeline(
        FunctionTransformer(as_text, feature_names_out="one-to-one"),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
    )
    encode = ColumnTransformer(
        [("numeric", numeric, list(task.numeric)), ("categorical", categorical, list(task.categorical))],
        remainder="drop",
    )
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
