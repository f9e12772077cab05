"""Tuned leaves and rounds: what a long budget buys once the seed bags are done.

The templates size LightGBM from the row count alone. On a long budget the seed bags (runner.budget) converge or reach
their cap well before the end (food-reviews at 300 s: 159 s left; card-fraud at 600 s: 263 s), so the time left
tries the booster again with its tree size and learning rate moved off those defaults, one variant at a time while
a variant's expected time (its base's, times its cost) still fits:

- `deeper`: twice the leaves, half the minimum leaf size (interactions the default trees are too small for);
- `slower`: half the learning rate, twice the rounds and the early-stopping patience (finer steps, more of them);
- `shallower`: half the leaves (data the default trees overfit).

A variant is its template's source with `build_model` wrapped to scale those parameters: an ordinary candidate on
the same folds, so its CV compares directly and the blend may use it. The best variant that beats its base is then
bagged with new seeds like the templates. Below MIN_ROWS rows nothing is tuned (CV noise would pick the variant).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from runner.budget import MIN_ROWS, SAFETY, bag_seeds
from runner.metrics import get_metric
from runner.sandbox import SandboxError
from runner.scaffold import DEFAULT_FOLDS, BodySource, CandidateError, Evaluation, FoldRunner, PreparedData, evaluate


@dataclass(frozen=True)
class Variant:
    suffix: str  # the candidate is called <template>_<suffix>
    params: dict[str, float]  # factors for the estimator's LightGBM `params`
    estimator: dict[str, float]  # factors for the estimator's own parameters
    cost: float  # expected time relative to the base template's


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "lightgbm_gbdt": (
        Variant("deeper", {"num_leaves": 2.0, "min_child_samples": 0.5}, {}, cost=1.6),
        Variant("slower", {"learning_rate": 0.5}, {"max_rounds": 2.0, "patience": 2.0}, cost=2.0),
        Variant("shallower", {"num_leaves": 0.5}, {}, cost=0.8),
    ),
}

WRAPPER = """

base_build_model = build_model
PARAM_FACTORS = {params!r}
ESTIMATOR_FACTORS = {estimator!r}


def scaled(value, factor):
    return max(2, round(value * factor)) if isinstance(value, int) else value * factor


def build_model(task):
    model = base_build_model(task)
    params = dict(model.params)
    for key, factor in PARAM_FACTORS.items():
        params[key] = scaled(params[key], factor)
    current = model.get_params()
    model.set_params(params=params, **{{key: scaled(current[key], f) for key, f in ESTIMATOR_FACTORS.items()}})
    return model
"""


def variant_source(source: str, variant: Variant) -> str:
    """`source` (a template) with build_model wrapped to scale the variant's parameters."""
    return source + WRAPPER.format(params=variant.params, estimator=variant.estimator)


def tune(
    evaluations: list[Evaluation],
    bodies: dict[str, BodySource],
    data: PreparedData,
    *,
    deadline: float,
    log: Callable[[str], None],
    workers: FoldRunner,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[Evaluation], dict[str, BodySource], str]:
    """Variants of the tunable templates (see the module docstring) while time lasts: their evaluations (and the best
    one's seed bag), their bodies, and one line on what tuning did ("" when there was nothing to tune)."""
    if data.task.n_rows < MIN_ROWS:
        return [], {}, ""
    metric = get_metric(data.task.metric)
    found: list[Evaluation] = []
    sources: dict[str, BodySource] = {}
    notes: list[str] = []
    for name, variants in VARIANTS.items():
        base = next((e for e in evaluations if e.name == name and e.n_folds >= DEFAULT_FOLDS), None)
        body = bodies.get(name)
        if base is None or body is None:
            continue
        tried: list[Evaluation] = []
        for variant in variants:
            needed = SAFETY * variant.cost * base.elapsed
            if clock() + needed > deadline:
                left = max(0.0, deadline - clock())
                notes.append(f"{name}_{variant.suffix}: no time ({left:.0f} s left, needs ~{needed:.0f} s)")
                break
            candidate = BodySource(f"{name}_{variant.suffix}", variant_source(body.source, variant), trusted=True)
            try:
                evaluation = evaluate(candidate, data, deadline, workers=workers, log=log, clock=clock)
            except (CandidateError, SandboxError) as exc:
                notes.append(f"{candidate.name} failed ({exc})")
                continue
            if evaluation.n_folds < DEFAULT_FOLDS:
                notes.append(f"{candidate.name}: time budget after {evaluation.n_folds} folds")
                break
            log(f"{candidate.name}: CV {metric.name}={evaluation.cv_score:.5f} (base {base.cv_score:.5f})")
            tried.append(evaluation)
            sources[candidate.name] = candidate
        found += tried
        if not tried:
            continue
        best = max(tried, key=lambda e: e.score)  # Score knows the metric's direction
        if not best.score > base.score:
            notes.append(f"{name}: {len(tried)} variants tried, none beat the defaults")
            continue
        bags, bagging = bag_seeds([best], sources, data, deadline=deadline, log=log, workers=workers, clock=clock)
        for bag in bags:
            sources[bag.name] = sources[best.name]
        found += bags
        notes.append(f"{name}: {best.name} beat the defaults ({best.cv_score:.5f} vs {base.cv_score:.5f})")
        if bagging:
            notes.append(f"bagging {bagging}")
    return found, sources, "; ".join(notes)
