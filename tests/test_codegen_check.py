"""Extracting a body from an LLM answer and the AST check that rejects escapes before anything runs."""

from __future__ import annotations

import pytest

from runner.bodycheck import check_body, extract_code
from runner.templates import TEMPLATES, template_source

GOOD = """\
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor


def build_model(task):
    if task.type == "regression":
        return HistGradientBoostingRegressor(random_state=task.seed)
    return HistGradientBoostingClassifier(random_state=task.seed)


def add_features(df):
    df = df.copy()
    return df
"""


def test_fenced_python_block_is_extracted_from_prose():
    answer = f"Here is my model:\n\n```python\n{GOOD}```\n\nIt uses boosting."
    assert extract_code(answer) == GOOD


def test_block_defining_build_model_wins_over_other_blocks():
    answer = f"```bash\npip install x\n```\n```python\nprint(1)\n```\n```\n{GOOD}```"
    assert "def build_model" in extract_code(answer)


def test_unfenced_answer_is_taken_whole_and_think_blocks_dropped():
    assert extract_code(f"<think>hmm, import os</think>\n{GOOD}") == GOOD


def test_unterminated_fence_from_a_truncated_answer_still_yields_code():
    assert extract_code(f"```python\n{GOOD}").startswith("import numpy")


def test_good_body_passes():
    check = check_body(GOOD)
    assert check.ok, check.message


def test_syntax_error_is_reported_with_its_line():
    check = check_body("def build_model(task):\n    return (\n")
    assert not check.ok
    assert "SyntaxError at line" in check.message


def test_missing_build_model_is_named():
    check = check_body("import numpy as np\n\ndef make(task):\n    return None\n")
    assert "build_model" in check.message


def test_garbage_text_is_rejected():
    assert not check_body(extract_code("I'm sorry, I cannot help with that.")).ok
    assert not check_body(extract_code("")).ok


@pytest.mark.parametrize(
    ("snippet", "named"),
    [
        ("import os", "'os'"),
        ("import sys", "'sys'"),
        ("import subprocess", "'subprocess'"),
        ("import socket", "'socket'"),
        ("import shutil", "'shutil'"),
        ("import importlib", "'importlib'"),
        ("import ctypes", "'ctypes'"),
        ("import pickle", "'pickle'"),
        ("from os import environ", "'os'"),
        ("from os.path import join", "'os.path'"),
        ("import numpy.ctypeslib", "numpy.ctypeslib"),
        ("from pandas.io import pickle", "pandas.io"),
        ("from numpy import load", "numpy.load"),
        ("x = open('/proc/self/environ').read()", "'open'"),
        ("eval('1')", "'eval'"),
        ("exec('x=1')", "'exec'"),
        ("__import__('os')", "'__import__'"),
        ("getattr(object, name)", "'getattr'"),
        ("getattr(object, '__class__')", "not allowed"),
        ("import pandas as pd\ngetattr(pd, 'read_csv')('x')", "'getattr'"),
        ("from sklearn.datasets import load_svmlight_file", "sklearn.datasets"),
        ("import scipy.io", "scipy.io"),
        ("x = ().__class__.__bases__", "'__class__'"),
        ("x = build_model.__globals__", "'__globals__'"),
        ("import pandas as pd\nx = pd.read_csv('/etc/passwd')", "read_csv"),
        ("import numpy as np\nx = np.load('a.npy', allow_pickle=True)", "'load'"),
        ("import pandas as pd\npd.DataFrame().to_pickle('x')", "'to_pickle'"),
        ("x = '{0.__class__}'.format(1)", "names something not allowed"),
        ("from . import secrets", "import from"),
    ],
)
def test_escapes_are_rejected_with_the_reason(snippet: str, named: str):
    check = check_body(f"{snippet}\n\n{GOOD}")
    assert not check.ok
    assert named in check.message


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_body_passes_the_check(name: str):
    """The LLM is shown the best template to start from: copying it must never be rejected."""
    check = check_body(template_source(name))
    assert check.ok, check.message


def test_getattr_with_a_plain_literal_name_is_allowed():
    source = GOOD.replace("random_state=task.seed", "random_state=getattr(task, 'seed', 0)")
    check = check_body(source)
    assert check.ok, check.message


def test_super_init_in_a_custom_estimator_is_allowed():
    source = GOOD + (
        "\n\nfrom sklearn.base import BaseEstimator\n\n"
        "class Wrapper(BaseEstimator):\n"
        "    def __init__(self, alpha=1.0):\n"
        "        super().__init__()\n"
        "        self.alpha = alpha\n"
    )
    check = check_body(source)
    assert check.ok, check.message
