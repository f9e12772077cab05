"""runner.features: every column becomes numbers or train-vocabulary categories, whatever it holds."""

import numpy as np
import pandas as pd

from runner.features import build_features


def test_column_roles_cover_numbers_as_text_dates_text_high_cardinality_and_constants():
    n = 200
    rng = np.random.default_rng(0)
    combined = pd.DataFrame(
        {
            "charges": [" " if i % 50 == 0 else f"{i * 1.5:.2f}" for i in range(n)],
            "signup": pd.date_range("2021-01-01", periods=n, freq="12h").strftime("%Y-%m-%d %H:%M"),
            "review": [f"this product was quite good number {i} indeed" for i in range(n)],
            "code": [f"c{i % 150}" for i in range(n)],
            "plan": rng.choice(["basic", "pro"], size=n),
            "constant": ["same"] * n,
            "flag": rng.random(n) > 0.5,
        }
    )
    frame, roles = build_features(combined, n_train=150)
    assert roles.numeric == ["charges", "flag"] and roles.dates == ["signup"] and roles.text == ["review"]
    assert roles.frequency == ["code"] and roles.categorical == ["plan"] and roles.dropped == ["constant"]
    assert frame["charges"].isna().sum() == 4 and frame["charges"].dtype == "float64"
    assert {"signup__year", "signup__hour", "signup__days"} <= set(frame.columns)
    assert frame["review__words"].iloc[0] == 8
    assert all(frame[c].dtype == "float64" for c in frame.columns if c not in ("plan", "review"))
    assert frame["review"].iloc[0] == combined["review"].iloc[0]  # the raw text too, for the text templates
    assert isinstance(frame["plan"].dtype, pd.CategoricalDtype)
