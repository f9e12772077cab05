"""The model-body contract: the one piece of the training scaffold that a template or the LLM writes.

A model body is a Python module that defines:

``build_model(task) -> estimator``
    Returns an unfitted scikit-learn-compatible estimator: ``fit(X, y)``, ``predict(X)`` and, for classification tasks,
    ``predict_proba(X)`` (typically a ``Pipeline`` that does its own encoding and imputation).

``add_features(df) -> DataFrame`` (optional)
    Receives the features of the train and test rows together, shuffled, with a fresh index (no id column, no
    target) and returns a DataFrame with the same rows in the same order: add, transform or drop columns. It must not
    change the row count. New text columns become ``category`` columns; new numeric columns stay numeric.

What the scaffold guarantees to the estimator:

- ``X`` is a pandas DataFrame of features only: the id column and the target are never in it.
- Categorical columns (``task.categorical``) have pandas ``category`` dtype; their categories are the values seen in
  train, so a value seen only in test arrives as NaN. Numeric columns (``task.numeric``) are floats. Missing values are
  NaN (nothing imputed). Date-like columns arrive as numeric parts (``<col>__year``, ``__month``, ``__dayofweek``,
  ``__dayofyear``, ``__days``); near-unique strings (ids, names) as frequency counts. Free-text columns
  (``task.text``: long, mostly unique strings with spaces) arrive twice: as numeric length and word counts, and as
  the raw text itself (pandas ``string`` dtype, missing as NaN) under the column's own name, for bodies that vectorise
  words (e.g. ``TfidfVectorizer``). A body that does not use text must select ``task.numeric`` and
  ``task.categorical`` (e.g. a ``ColumnTransformer`` with ``remainder="drop"``) rather than take every column.
- Wide, mostly-zero data (one-hot codes, bits, pixels, counts: 100+ numeric columns with at most 10% non-zero values)
  arrives sparse: those columns (``task.sparse``, also listed in ``task.numeric``, after the dense columns) have
  pandas ``Sparse[float32, 0]`` dtype. ``X[task.sparse].sparse.to_coo().tocsr()`` gives them as one scipy CSR matrix
  without densifying; scikit-learn turns a selection of only sparse columns into a sparse matrix, so scale it
  without centring (``StandardScaler(with_mean=False)``, ``MaxAbsScaler``), and a selection mixing sparse and dense
  columns into a dense array. Missing values in them are stored NaN.
- ``y`` is a 1-D numpy array. Classification: integer codes ``0..k-1`` (in binary tasks ``1`` is the positive class).
  Regression: float values, already transformed for the metric (``log1p`` for ``rmsle``; the scaffold maps predictions
  back), so fit plain squared-error models.
- The scaffold does K-fold cross-validation with the estimator, fits it once more on all train rows and predicts the
  test rows. Every fold and the final fit run in a fresh process (nothing of the body survives from one to the
  next); the rows arrive shuffled with a fresh index (0..n-1), and the rows to predict mix validation and test rows.
  The runner computes every score from the predictions. Classification predictions come from ``predict_proba``.

``task`` (a :class:`TaskSpec`) says what to build: ``type`` ("binary" | "multiclass" | "regression"), ``metric`` (name),
``seed``, ``n_rows``, ``n_classes``, ``categorical``, ``numeric``, ``text`` and ``sparse`` (column names), ``n_jobs``
(use at most this many threads), ``fit_seconds`` (a rough time budget for one fit: size iterations to it) and
``max_fit_rows`` (0, or the most rows a fit trains on within the run's memory: the scaffold then hands the body a
random, stratified sample of that many training rows; it still predicts every row it is asked to).

Rules for bodies: deterministic given ``task.seed``; no file, network or subprocess access; no reading the target inside
``add_features``; only the libraries installed with the runner (numpy, pandas, scikit-learn, scipy, lightgbm).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib.vocabulary import BINARY, MULTICLASS


class ContractError(Exception):
    """A model body does not follow the contract; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class TaskSpec:
    """What the model body is asked to build (see the module docstring)."""

    type: str
    metric: str
    seed: int
    n_rows: int
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    n_classes: int = 0
    n_jobs: int = 2
    fit_seconds: float = 30.0
    higher_is_better: bool = True
    text: list[str] = field(default_factory=list)
    max_fit_rows: int = 0
    sparse: list[str] = field(default_factory=list)

    @property
    def is_classification(self) -> bool:
        return self.type in (BINARY, MULTICLASS)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ModelBody:
    """A loaded model body: its callables and the source it came from (shown in the code trace)."""

    name: str
    build_model: Callable[[TaskSpec], Any]
    add_features: Callable[[Any], Any] | None = None
    source: str = ""


def load_body_from_source(source: str, name: str) -> ModelBody:
    """Execute `source` as a fresh module called `name` and return its model body; ContractError if it is not one.

    This runs the code in this process: call it on untrusted code only in a confined worker (runner.zygote).
    """
    module = types.ModuleType(f"kagent_body_{name}")
    module.__file__ = f"<model body {name}>"
    try:
        code = compile(source, module.__file__, "exec")
        exec(code, module.__dict__)  # noqa: S102 - executing a model body is the purpose; untrusted ones run sandboxed
    except SyntaxError as exc:
        raise ContractError(f"model body {name} has a syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        raise ContractError(f"model body {name} failed on import: {type(exc).__name__}: {exc}") from None
    body = ModelBody(
        name=name,
        build_model=getattr(module, "build_model", None),  # type: ignore[arg-type]
        add_features=getattr(module, "add_features", None),
        source=source,
    )
    check_body(body)
    return body


def check_body(body: ModelBody, task: TaskSpec | None = None) -> None:
    """Raise ContractError unless `body` follows the contract; with a `task`, also build the estimator and check it."""
    if not callable(body.build_model):
        raise ContractError(f"model body {body.name} must define a function build_model(task)")
    _check_arity(body.build_model, "build_model(task)", body.name)
    if body.add_features is not None:
        if not callable(body.add_features):
            raise ContractError(f"model body {body.name}: add_features must be a function add_features(df)")
        _check_arity(body.add_features, "add_features(df)", body.name)
    if task is not None:
        check_estimator(build_estimator(body, task), task, body.name)


def build_estimator(body: ModelBody, task: TaskSpec) -> Any:
    try:
        return body.build_model(task)
    except Exception as exc:
        raise ContractError(f"model body {body.name}: build_model failed: {type(exc).__name__}: {exc}") from None


def check_estimator(estimator: Any, task: TaskSpec, name: str) -> None:
    needed = ["fit", "predict", *(["predict_proba"] if task.is_classification else [])]
    missing = [m for m in needed if not callable(getattr(estimator, m, None))]
    if missing:
        raise ContractError(
            f"model body {name}: build_model returned {type(estimator).__name__}, which lacks {', '.join(missing)}"
        )


def _check_arity(func: Callable[..., Any], expected: str, name: str) -> None:
    try:
        inspect.signature(func).bind(object())
    except TypeError:
        raise ContractError(f"model body {name}: {expected} must accept exactly one argument") from None
    except ValueError:  # builtins without a signature: accept
        return
