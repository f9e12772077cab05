"""Load and fit hostile bodies with no wall at all (test-only): proves the suite's detectors see what they claim to.

    python -m tests.hostile.unwalled FOLDER   # every FOLDER/*.py, in name order, in this process

Run only through tests/hostile/launch.py (a child subreaper that kills what is left) by
tests/test_hostile_bodies.py::test_the_detectors_see_what_an_unwalled_body_does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from runner.contract import TaskSpec, load_body_from_source


def main() -> int:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 6)), columns=[f"f{i}" for i in range(6)])
    y = (X["f0"] > 0).astype(int).to_numpy()
    task = TaskSpec(type="binary", metric="accuracy", seed=0, n_rows=40, numeric=list(X.columns), n_classes=2)
    for path in sorted(Path(sys.argv[1]).glob("*.py")):
        try:
            body = load_body_from_source(path.read_text(), path.stem)
            body.build_model(task).fit(X, y).predict_proba(X)
            print(f"{path.stem}: ran", flush=True)
        except Exception as exc:
            print(f"{path.stem}: {type(exc).__name__}: {str(exc)[:3000]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
