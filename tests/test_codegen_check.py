"""Extracting a body from an LLM answer and the AST check that rejects escapes before anything runs."""

from __future__ import annotations

import importlib
import pkgutil
import types
import warnings

import pytest
import sklearn

from runner.bodycheck import (
    ALLOWED_MODULES,
    FOLLOWED_MODULE_ATTRIBUTES,
    MODULE_ATTRIBUTES,
    allowed_module,
    check_body,
    extract_code,
    importable_whole,
)
from runner.prompting import CONTRACT
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
        ("getattr(object, '__class__')", "'getattr'"),
        ("import pandas as pd\ngetattr(pd, 'read_csv')('x')", "'getattr'"),
        ("from sklearn.datasets import load_svmlight_file", "sklearn.datasets"),
        ("import scipy.io", "scipy.io"),
        ("x = ().__class__.__bases__", "'__class__'"),
        ("x = build_model.__globals__", "'__globals__'"),
        ("import pandas as pd\nx = pd.read_csv('/etc/passwd')", "read_csv"),
        ("import numpy as np\nx = np.load('a.npy', allow_pickle=True)", "'load'"),
        ("import pandas as pd\npd.DataFrame().to_pickle('x')", "'to_pickle'"),
        ("x = '{0.__class__}'.format(1)", "dunder"),
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


def test_getattr_is_refused_even_with_a_literal_name():
    source = GOOD.replace("random_state=task.seed", "random_state=getattr(task, 'seed', 0)")
    check = check_body(source)
    assert not check.ok
    assert "'getattr'" in check.message


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


# The bypasses that walked around the old blocklist (issue 11), each refused with the construct named.
@pytest.mark.parametrize(
    ("snippet", "named"),
    [
        ("import dataclasses\ndataclasses.builtins.exec('x=1')", "'dataclasses'"),
        ("import warnings\nf = warnings.sys.modules['builtins'].open('/tmp/x', 'w')", "attribute 'sys'"),
        ("from typing import List\nimport typing\nm = typing.sys.modules['importlib']", "'typing'"),
        ("from random import _os", "'_os'"),
        ("import lightgbm\nlib = lightgbm.basic.ctypes.CDLL(None)", "attribute 'basic'"),
        ("import lightgbm\nlib = lightgbm.basic.ctypes.CDLL(None)", "attribute 'ctypes'"),
        ("import lightgbm\nlib = lightgbm.basic.ctypes.CDLL(None)", "attribute 'CDLL'"),
        ("import numpy as np\nm = np.lib.format.open_memmap('/tmp/x', mode='w+')", "attribute 'lib'"),
        ("import numpy as np\nm = np.lib.format.open_memmap('/tmp/x', mode='w+')", "attribute 'open_memmap'"),
        ("import pandas as pd\nh = pd.io.common.get_handle('/tmp/x', 'w')", "attribute 'io'"),
        ("import pandas as pd\nh = pd.io.common.get_handle('/tmp/x', 'w')", "attribute 'get_handle'"),
        ("import pandas as pd\npd.DataFrame({'a': [1]}).to_string('/tmp/x')", "attribute 'to_string'"),
        ("t = ('{0.__cl' + 'ass__}').format(1)", "str.format on a built string"),
        ("a = '__cla'\nb = 'ss__'", "'__cla'"),
        ("a = '__cla'\nb = 'ss__'", "'ss__'"),
        ("t = '{0.__globals__}'.format(build_model)", "dunder"),
        ("t = '{0._x}'", "format string"),
        ("t = '{0[x]}'.format({'x': 1})", "attribute or index fields"),
    ],
)
def test_issue_bypasses_are_refused(snippet: str, named: str):
    check = check_body(f"{snippet}\n\n{GOOD}")
    assert not check.ok
    assert named in check.message, check.message


@pytest.mark.parametrize(
    ("snippet", "named"),
    [
        ("import numpy as np\nx = np.ctypeslib", "'ctypeslib'"),
        ("import numpy as np\nx = np.zeros(3).ctypes", "'ctypes'"),
        ("import numpy as np\nnp.zeros(3).tofile('/tmp/x')", "'tofile'"),
        ("import numpy as np\nnp.zeros(3).dump('/tmp/x')", "'dump'"),
        ("import numpy as np\nx = np.emath", "'emath'"),
        ("import numpy as np\nx = np.rec.fromfile('/tmp/x')", "'rec'"),
        ("import numpy as np\nx = np.random.mtrand", "'mtrand'"),
        ("from numpy import lib", "numpy.lib"),
        ("from numpy.lib import format", "'numpy.lib'"),
        ("import pandas as pd\nx = pd.read_parquet('y.parquet')", "read_parquet"),
        ("import pandas as pd\nx = pd.eval('1+1')", "'eval'"),
        ("import pandas as pd\nx = pd.DataFrame().query('a > 1')", "'query'"),
        ("import pandas as pd\nx = pd.DataFrame().style", "'style'"),
        ("import pandas as pd\nx = pd.HDFStore('/tmp/x')", "'HDFStore'"),
        ("import pandas as pd\nx = pd.Series([1]).agg('to_csv', '/tmp/x')", "'to_csv'"),
        ("import pandas as pd\nx = pd.Series([1]).agg('to' + '_csv')", "built string"),
        ("import pandas as pd\nx = pd.Series([1]).apply(f'{1}')", "built string"),
        ("import pandas as pd\nx = pd.Series([1]).transform('_mgr')", "private"),
        ("import pandas as pd\nx = pd.Series([1]).agg(['mean', '_mgr'])", "private"),
        ("import pandas as pd\nx = pd.api.extensions", "'extensions'"),
        ("import scipy\nx = scipy.io", "'io'"),
        ("from scipy import io", "scipy.io"),
        ("import scipy.integrate", "'scipy.integrate'"),
        ("from scipy import LowLevelCallable", "LowLevelCallable"),
        ("import sklearn.datasets", "'sklearn.datasets'"),
        ("from sklearn.utils import parallel\nx = parallel.joblib", "'joblib'"),
        ("import sklearn.base\nx = sklearn.base.inspect", "'inspect'"),
        ("from sklearn.utils.estimator_checks import check_estimator", "sklearn.utils.estimator_checks"),
        ("from sklearn.pipeline import Pipeline\np = Pipeline([], memory='/tmp/cache')", "'memory'"),
        ("import lightgbm as lgb\nm = lgb.LGBMClassifier(machines='127.0.0.1:1', num_machines=2)", "'machines'"),
        ("params = {'output_model': '/tmp/m.txt'}", "'output_model'"),
        ("import lightgbm as lgb\nb = lgb.Booster(model_file='/tmp/m.txt')", "'model_file'"),
        ("import lightgbm as lgb\nb = lgb.Booster().save_model('/tmp/m.txt')", "'save_model'"),
        ("import lightgbm as lgb\nh = lgb.Booster().handle", "'handle'"),
        ("import lightgbm as lgb\nx = lgb.libpath", "'libpath'"),
        ("import time\nx = time.sleep", None),
        ("import statistics\nx = statistics.sys", "'sys'"),
        ("from typing import get_type_hints", "typing.get_type_hints"),
        ("from __future__ import barry_as_FLUFL", "__future__.barry_as_FLUFL"),
        ("from sklearn import *", "name what you import"),
        ("x = getattr(build_model, 'y', 0)", "'getattr'"),
        ("setattr(build_model, 'y', 0)", "'setattr'"),
        ("x = globals()", "'globals'"),
        ("x = vars()", "'vars'"),
        ("x = dir()", "'dir'"),
        ("x = compile('1', 'f', 'eval')", "'compile'"),
        ("breakpoint()", "'breakpoint'"),
        ("x = input()", "'input'"),
        ("x = chr(95) * 2", "'chr'"),
        ("x = bytes([95, 95])", "'bytes'"),
        ("x = memoryview(b'1')", "'memoryview'"),
        ("x = __builtins__", "'__builtins__'"),
        ("x = __loader__", "'__loader__'"),
        ("class A:\n    _secret = 1", "'_secret'"),
        ("def _helper():\n    return 1", "'_helper'"),
        ("def f(_x):\n    return _x", "'_x'"),
        ("x = dict(_a=1)", "'_a'"),
        ("x = build_model.__code__", "'__code__'"),
        ("x = (1).__class__.__mro__", "'__class__'"),
        ("class M(type):\n    pass\n\nclass A(metaclass=M):\n    pass", "class keywords"),
        ("x = b'__class__'", "dunder"),
        ("try:\n    pass\nexcept ValueError as _e:\n    pass", "'_e'"),
        ("import numpy as _np", "'_np'"),
        ("async def f():\n    return 1", "async"),
    ],
)
def test_allowlist_refuses_what_it_does_not_name(snippet: str, named: str | None):
    check = check_body(f"{snippet}\n\n{GOOD}")
    if named is None:  # harmless: the allowlist lets it through
        assert check.ok, check.message
        return
    assert not check.ok
    assert named in check.message, check.message


def test_every_problem_is_one_line_naming_its_line():
    check = check_body("import os\nimport numpy as np\nx = np.lib\n\n" + GOOD)
    assert len(check.problems) == 2
    assert check.problems[0].startswith("line 1: import of 'os'")
    assert check.problems[1].startswith("line 3: attribute 'lib'")
    assert all("\n" not in p for p in check.problems)


@pytest.mark.parametrize(
    "snippet",
    [
        "import numpy as np\nx = np.array([1]) + np.random.default_rng(0).normal(size=1) + np.linalg.norm([1.0])",
        "import pandas as pd\nfrom pandas.api.types import is_numeric_dtype\nok = pd.api.types.is_numeric_dtype",
        "import pandas as pd\ns = pd.Series([1.0])\nm = s.groupby(s).transform('mean') + s.agg(['mean', 'std']).sum()",
        "import pandas as pd\ndf = pd.DataFrame({'date__year': [1]})\nx = df['date__year'] + df[f'{\"date\"}__year']",
        "import scipy.stats\nfrom scipy import sparse, stats\nfrom scipy.special import expit\nx = scipy.stats.norm",
        "import lightgbm as lgb\ncb = lgb.early_stopping(10)\ne = lgb.callback.EarlyStopException",
        "from sklearn.utils import check_random_state\nfrom sklearn.utils.validation import check_is_fitted",
        "import warnings\nwarnings.filterwarnings('ignore')",
        "from __future__ import annotations\nfrom typing import Any, Optional",
        "import math, itertools, functools, collections, copy, random, statistics\nx = math.log1p(1)",
        "for _ in range(3):\n    pass",
        "name = '_'.join(['a', 'b'])\ncol = 'x' + '_mean'\nsep = '__'",
        "t = '{0:.3f} {1}'.format(1.0, 'a')",
        "x = isinstance(1, int) and hasattr(build_model, 'y') and type(1) is int",
        "from sklearn.base import BaseEstimator\nclass M(BaseEstimator):\n    def __init__(self, a=1):\n"
        "        super().__init__()\n        self.a = a",
    ],
)
def test_ordinary_modelling_code_passes(snippet: str):
    check = check_body(f"{snippet}\n\n{GOOD}")
    assert check.ok, check.message


def test_module_valued_attributes_of_allowed_modules_are_all_listed():
    """Walk every allowed module (and its public classes): each public attribute whose value is a module must lead to
    an allowed module or be refused by name. Fails when a library upgrade adds a path to a module we do not allow."""
    computed = _module_valued_attributes()
    missing = sorted(computed - MODULE_ATTRIBUTES)
    assert not missing, f"add to bodycheck.MODULE_ATTRIBUTES: {' '.join(missing)}"
    assert not MODULE_ATTRIBUTES & FOLLOWED_MODULE_ATTRIBUTES


def _module_valued_attributes() -> set[str]:
    """Names of public attributes, reachable from the allowed modules through non-refused names, whose value is a
    module outside the allowlist. Names that are also everyday method names (`transform`, `array`, ...) are followed
    instead of refused: the module behind them is walked like an allowed one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = [m for m in ALLOWED_MODULES if importable_whole(m)]
        names += [m.name for m in pkgutil.walk_packages(sklearn.__path__, "sklearn.") if allowed_module(m.name)]
        frontier = [importlib.import_module(m) for m in names]
        refused: set[str] = set()
        seen: set[str] = set()
        while frontier:
            module = frontier.pop()
            if module.__name__ in seen:
                continue
            seen.add(module.__name__)
            owners = [module, *(v for _, v in _public(module) if isinstance(v, type))]
            for owner in owners:
                for name, value in _public(owner):
                    if not isinstance(value, types.ModuleType):
                        continue
                    if importable_whole(value.__name__) or name in FOLLOWED_MODULE_ATTRIBUTES:
                        frontier.append(value)
                    else:
                        refused.add(name)
    return refused


def _public(obj: object):
    for name in dir(obj):
        if name.startswith("_"):
            continue
        try:
            yield name, getattr(obj, name)
        except Exception:  # lazy attributes that fail to import are not reachable either
            continue


def test_the_contract_shown_to_the_llm_states_the_allowlist():
    for must in ("numpy", "pandas", "sklearn", "lightgbm", "scipy.stats", "starting with '_'", "getattr", "open"):
        assert must in CONTRACT, must
    assert "sklearn.datasets" in CONTRACT
