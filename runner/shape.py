"""Which templates run, and on how many rows, from the data's shape and the memory the run may use.

- Free text (`task.text`): the text model runs first (TF-IDF n-grams in a linear model), then LightGBM, then LightGBM
  stacked on the text model; without text, or below MIN_TEXT_ROWS rows, they are skipped. From BOOSTER_FIRST_ROWS
  rows LightGBM runs first.
- Wide data (more than WIDE_COLUMNS features): the RBF kernel, the MLP and the randomised trees are skipped:
  distances, dense first layers and unbounded deep trees over 1,000+ mostly sparse columns cost the most and win the
  least; the linear (C tuned on inner folds) and boosted models take it, LightGBM first.
- Memory: before each template, its peak for one fit is estimated from rows and columns and compared with what is left
  under the ceiling (runner.memory: HEADROOM of the ceiling, less what is in use now). A template that would not fit
  trains on a random sample that does (`task.max_fit_rows`; it still predicts every row); one that would not fit even
  on MIN_SAMPLE_ROWS rows is skipped. LightGBM and the linear model always get all rows: they are the floor.
  Each decision is logged, so a degraded run says how it degraded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from runner.contract import TaskSpec
from runner.memory import MemoryWatch, current_watch
from runner.scaffold import PreparedData
from runner.templates import TEMPLATES, TEXT_TEMPLATES

WIDE_COLUMNS = 500
WIDE_SKIPS = ("mlp", "kernel_svm", "extra_trees")  # one fold of randomised trees on 1,500 columns took 25-40 s
HEADROOM = 0.7  # share of the ceiling the templates may plan to use (the rest: the runner, the data, fragmentation)
MIN_SAMPLE_ROWS = 2_000
BOOSTER_FIRST_ROWS = 250_000
# below this many rows a text's n-grams are mostly seen once: the text models' CV is noise the blend would chase
# (titanic's 668 passenger names: a blend with the text model scored 0.821 on test against 0.834 without)
MIN_TEXT_ROWS = 1_000
FULL_ROWS = ("linear", "lightgbm_gbdt")  # the floor: never sampled, never skipped for memory
SAMPLES = ("mlp", "kernel_svm", "extra_trees", "hist_gradient_boosting", "text_linear")  # the scaffold may sample
MB = 2**20
DENSIFIED = ("hist_gradient_boosting",)  # it bins dense columns: sparse ones are densified for its fit
TEXT_BYTES_PER_ROW = 8_000  # a document's word and char n-grams in a sparse TF-IDF matrix (with the fit's copies)


def fit_memory_mb(name: str, data: PreparedData, rows: int | None = None) -> float:
    """A rough upper estimate of one fit's extra memory in MB (the copies and structures it makes, not the data).
    Sparse columns (`task.sparse`) count by their share of non-zeros (a value and an index each), except for the
    templates that densify them (DENSIFIED)."""
    task = data.task
    n = rows if rows is not None else task.n_rows
    numeric = len(task.numeric) if name in DENSIFIED else _stored_columns(data)
    features = max(1.0, numeric + len(task.categorical))
    dense = n * features * 8 / MB
    onehot = n * (numeric * 2 + 50 * len(task.categorical)) * 8 / MB
    text = n * TEXT_BYTES_PER_ROW * max(1, len(task.text)) / MB
    classes = max(1, task.n_classes)
    estimates = {
        "linear": 4 * dense + onehot / 4,
        "lightgbm_gbdt": 2 * dense,
        "hist_gradient_boosting": 2 * dense,
        "mlp": 4 * onehot,
        "kernel_svm": (n * n * 8 / MB) if n <= 4000 else 3 * n * 300 * 8 / MB + 3 * dense,
        "extra_trees": dense + 100 * (2 * n / 10) * (64 + 8 * classes) / MB,
        "text_linear": text + 2 * dense,
        "text_boost": text + 3 * dense,
    }
    return estimates.get(name, 4 * dense)


def _stored_columns(data: PreparedData) -> float:
    """The numeric columns as a sparse-aware fit stores them: dense ones whole, sparse ones by their non-zeros."""
    task = data.task
    if not task.sparse:
        return float(len(task.numeric))
    density = float(data.X[list(task.sparse)].sparse.density) if len(data.X) else 1.0
    return len(task.numeric) - len(task.sparse) + len(task.sparse) * min(1.0, 2 * density)


def _available_mb(watch: MemoryWatch) -> float:
    return HEADROOM * watch.ceiling.mb - watch.sample()


def choose_templates(
    data: PreparedData, log: Callable[[str], None], watch: MemoryWatch | None = None
) -> Iterator[tuple[str, PreparedData]]:
    """The templates to evaluate, in TEMPLATES order, each with the data (and task) it should use. Lazy: the memory
    check for a template happens when the loop asks for it, after the ones before it have run and been freed."""
    watch = watch or current_watch()
    task = data.task
    width = len(task.numeric) + len(task.categorical)
    text_rows = task.n_rows >= MIN_TEXT_ROWS
    if task.text and not text_rows:
        log(f"free text in {', '.join(task.text)}, but {task.n_rows} rows are too few for n-gram models: counts only")
    for name in _order(task.text if text_rows else [], task.n_rows, width):
        if name in TEXT_TEMPLATES and not (task.text and text_rows):
            continue
        if name in WIDE_SKIPS and width > WIDE_COLUMNS:
            log(f"skipping template {name}: {width} feature columns is too wide for it to pay within the budget")
            continue
        if name in FULL_ROWS:
            yield name, data
            continue
        available = _available_mb(watch)
        need = fit_memory_mb(name, data)
        if need <= available:
            yield name, data
            continue
        rows = _rows_that_fit(name, data, available) if name in SAMPLES else 0
        if rows < MIN_SAMPLE_ROWS:
            log(
                f"skipping template {name}: one fit needs about {need:.0f} MB, {max(0.0, available):.0f} MB is left "
                f"under the {watch.ceiling.mb:.0f} MB memory ceiling ({watch.ceiling.source})"
            )
            continue
        log(
            f"template {name} fits on a sample of {rows} of {task.n_rows} rows: all of them would need about "
            f"{need:.0f} MB, {available:.0f} MB is left under the {watch.ceiling.mb:.0f} MB memory ceiling"
        )
        yield name, replace(data, task=replace(task, max_fit_rows=rows))


def considered_templates(task: TaskSpec) -> list[str]:
    """The templates choose_templates considers for `task` before its memory checks (an upper bound on how many run:
    the progress display's total)."""
    width = len(task.numeric) + len(task.categorical)
    text = task.text if task.n_rows >= MIN_TEXT_ROWS else []
    return [
        name
        for name in _order(text, task.n_rows, width)
        if not (name in TEXT_TEMPLATES and not text) and not (name in WIDE_SKIPS and width > WIDE_COLUMNS)
    ]


def _order(text: list[str], rows: int, width: int) -> list[str]:
    """TEMPLATES' order, except: with free text the text model goes first and LightGBM right after it (dates, counts
    and categories may carry as much as the words), then the stacked text booster; on very large or wide data
    LightGBM goes first (there one linear fold alone can cost a tenth of a minute's budget, and the booster wins)."""
    if text:
        first = ["text_linear", "lightgbm_gbdt", "text_boost"]
    elif rows >= BOOSTER_FIRST_ROWS or width > WIDE_COLUMNS:
        first = ["lightgbm_gbdt"]
    else:
        first = []
    return [*first, *(name for name in TEMPLATES if name not in first)]


def _rows_that_fit(name: str, data: PreparedData, available: float) -> int:
    """The most rows (halving from all of them) whose estimated fit stays within `available` MB."""
    rows = data.task.n_rows
    while rows >= MIN_SAMPLE_ROWS and fit_memory_mb(name, data, rows) > available:
        rows //= 2
    return rows
