"""Template model body: scikit-learn's HistGradientBoosting with native categoricals and early stopping.

A second gradient-boosting implementation with different binning and regularisation: a useful blend partner for
LightGBM and a fallback that needs nothing beyond scikit-learn.
"""

from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor


def build_model(task):
    n = task.n_rows
    params = dict(
        learning_rate=0.08,
        max_iter=min(1000, max(200, n)),
        max_leaf_nodes=15 if n < 2000 else 31,
        min_samples_leaf=10 if n < 1000 else 20,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=30,
        tol=1e-4,
        categorical_features="from_dtype",
        random_state=task.seed,
    )
    if task.type == "regression":
        loss = "absolute_error" if task.metric == "mae" else "squared_error"
        return HistGradientBoostingRegressor(loss=loss, **params)
    return HistGradientBoostingClassifier(**params)
