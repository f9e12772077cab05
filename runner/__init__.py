"""The runner: from a competition's files to a valid submission (the Fargate container and `python -m runner`)."""

import os

# OpenMP threads (LightGBM, HistGradientBoosting) busy-wait between parallel regions by default; on a shared 2-core
# machine that spinning starves the other thread and fits get several times slower. Passive waiting costs nothing when
# the machine is idle. It must be set before libgomp loads, i.e. before numpy/sklearn/lightgbm are imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
