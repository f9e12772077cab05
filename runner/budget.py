"""Spending a long budget where it pays, and saying why the run stopped.

After the templates, time that is left goes to seed bagging of the strongest templates that finished all their folds:
each template again with a new seed (new folds, new row and column subsamples, new early-stopping holdout), averaged
with its earlier runs. Averaged out-of-fold predictions stay out of fold (each came from a model that never saw the
row), so the bag's CV is honest and the blend can weigh it like any candidate. Bagging stops when the budget is spent
or when CV has converged: a further seed moved the bag's score by less than CONVERGED (relative), so more of them
would buy nothing measurable.

On large data a template clearly behind the leader after its first fold, whose other folds would take a good share of
the time left, is not finished (`give_up_rule`): its time goes to the models that can win.

`stop_reason` is one line for logs.txt and result.json: what ended the templates (the time budget, naming those cut
short or not run, or every one finished), what ended bagging, what tuning did (runner.tuning), and the seconds left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from runner.metrics import Metric, get_metric
from runner.sandbox import SandboxError
from runner.scaffold import (
    DEFAULT_FOLDS,
    BodySource,
    CandidateError,
    Evaluation,
    FoldRunner,
    PreparedData,
    evaluate,
    validation_folds,
)
from runner.score import scorer
from runner.selection import ranked

MIN_ROWS = 2_000  # below this, CV noise outweighs what seeds add (and the blend would chase it)
CONVERGED = 2e-4  # relative change in CV below which a further seed is not worth its time
MAX_SEEDS = 8
BAGGED = 2  # the best this many finished templates are bagged
SAFETY = 1.3  # a seed is started only when 1.3x the template's last run time is left
DETERMINISTIC = ("linear", "text_linear")  # a new seed changes only their folds: nothing to average
# On large data (where the boosters win and the blends measured used only them), a template this far behind the
# best one on the first fold (relative gap), whose other folds would take at least this share of the time left, is
# not finished: its time goes to the models that can win. On smaller data a weaker model often helps the blend.
GIVE_UP_MIN_ROWS = 10_000
GIVE_UP_MARGIN = 0.02
GIVE_UP_TIME_SHARE = 0.15


def _finished(evaluations: list[Evaluation]) -> list[Evaluation]:
    return [e for e in evaluations if e.n_folds >= DEFAULT_FOLDS and np.isfinite(e.cv_score)]


def bag_seeds(
    evaluations: list[Evaluation],
    bodies: dict[str, BodySource],
    data: PreparedData,
    *,
    deadline: float,
    log: Callable[[str], None],
    workers: FoldRunner,
    sampled: Mapping[str, int] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[Evaluation], str]:
    """Bagged candidates for the best finished templates (see the module docstring), and why bagging stopped.
    `sampled` names the templates the memory plan ran on a sample (their `task.max_fit_rows`): their seeds do too."""
    metric = get_metric(data.task.metric)
    bags: list[Evaluation] = []
    reasons: list[str] = []
    if data.task.n_rows < MIN_ROWS:
        return bags, ""
    candidates = [e for e in _finished(evaluations) if e.name not in DETERMINISTIC]
    for base in ranked(candidates)[:BAGGED]:
        body = bodies.get(base.name)
        if body is None:
            continue
        own = replace(data, task=replace(data.task, max_fit_rows=(sampled or {}).get(base.name, 0)))
        bag, reason = _bag_one(base, body, own, deadline=deadline, log=log, metric=metric, clock=clock, workers=workers)
        reasons.append(f"{base.name}: {reason}")
        if bag is not None:
            bags.append(bag)
        if clock() >= deadline:
            break
    return bags, "; ".join(reasons)


def _bag_one(
    base: Evaluation,
    body: BodySource,
    data: PreparedData,
    *,
    deadline: float,
    log: Callable[[str], None],
    metric: Metric,
    clock: Callable[[], float],
    workers: FoldRunner,
) -> tuple[Evaluation | None, str]:
    runs = [base]
    score = base.cv_score
    seconds = base.elapsed
    for seed in range(data.task.seed + 1, data.task.seed + MAX_SEEDS):
        if clock() + SAFETY * seconds > deadline:
            return _bag(runs, metric, data), f"time budget after {len(runs)} seeds"
        seeded = replace(data, task=replace(data.task, seed=seed))
        started = clock()
        try:
            run = evaluate(body, seeded, deadline, workers=workers, log=log, clock=clock)
        except (CandidateError, SandboxError) as exc:
            return _bag(runs, metric, data), f"seed {seed} failed ({exc})"
        seconds = clock() - started
        if run.n_folds < DEFAULT_FOLDS:
            return _bag(runs, metric, data), f"time budget after {len(runs)} seeds"
        runs.append(run)
        bag = _bag(runs, metric, data)
        assert bag is not None
        change = abs(bag.cv_score - score) / max(abs(score), 1e-12)
        log(f"{bag.name}: CV {metric.name}={bag.cv_score:.5f} ({change:.2%} change with seed {seed})")
        score = bag.cv_score
        if change < CONVERGED:
            return bag, f"CV converged after {len(runs)} seeds (last change {change:.3%})"
    return _bag(runs, metric, data), f"{len(runs)} seeds (the most tried)"


def _bag(runs: list[Evaluation], metric: Metric, data: PreparedData) -> Evaluation | None:
    """The average of `runs` (same template, different seeds) as one candidate; None for a single run. Its fold
    scores are over the first run's validation folds: every averaged prediction is out of fold, whatever its seed."""
    if len(runs) < 2:
        return None
    regression = runs[0].oof.ndim == 1
    oof_parts = [metric.transform(r.oof) if regression else r.oof for r in runs]
    test_parts = [metric.transform(r.test_predictions) if regression else r.test_predictions for r in runs]
    oof, test = np.mean(oof_parts, axis=0), np.mean(test_parts, axis=0)
    if regression:
        oof, test = metric.inverse(oof), metric.inverse(test)
    return Evaluation(
        name=f"{runs[0].name}_bag{len(runs)}",
        metric=metric.name,
        cv_score=metric.score(data.y, oof),
        fold_scores=[metric.score(data.y[rows], oof[rows]) for rows in validation_folds(data)],
        oof=oof,
        test_predictions=test,
        elapsed=sum(r.elapsed for r in runs),
        n_folds=min(r.n_folds for r in runs),
        test_source="fold_average" if any(r.test_source == "fold_average" for r in runs) else "final_fit",
    )


def give_up_rule(
    evaluations: list[Evaluation], data: PreparedData, deadline: float
) -> Callable[[float, float], bool] | None:
    """Whether a template whose first fold scored `score` in `seconds` should stop: every template sees the same
    folds (same seed and target), so first folds compare directly with the best one so far."""
    metric = get_metric(data.task.metric)
    firsts = [e.fold_scores[0] for e in evaluations if e.fold_scores and np.isfinite(e.fold_scores[0])]
    if not firsts or data.task.n_rows < GIVE_UP_MIN_ROWS:
        return None
    leader = max(firsts, key=scorer(metric.name))

    def give_up(score: float, seconds: float) -> bool:
        costly = seconds * (DEFAULT_FOLDS - 1) >= GIVE_UP_TIME_SHARE * max(0.0, deadline - time.monotonic())
        return costly and clearly_behind(metric, score, leader)

    return give_up


def clearly_behind(metric: Metric, score: float, leader: float) -> bool:
    """`score` is worse than `leader` by more than GIVE_UP_MARGIN (relative), or is no score at all."""
    if not np.isfinite(score):
        return True
    gap = abs(score - leader) / max(abs(leader), 1e-12)
    as_score = scorer(metric.name)
    return as_score(leader) > as_score(score) and gap > GIVE_UP_MARGIN


def stop_reason(
    evaluations: list[Evaluation], planned: list[str], bagging: str, left_s: float, tuning: str = ""
) -> str:
    """Why the run ended, in one line (see the module docstring)."""
    cut = [e.name for e in evaluations if e.n_folds < DEFAULT_FOLDS]
    skipped = [name for name in planned if name not in {e.name for e in evaluations}]
    parts = []
    if cut or skipped:
        short = ([f"cut short: {', '.join(cut)}"] if cut else []) + (
            [f"not run: {', '.join(skipped)}"] if skipped else []
        )
        parts.append(f"time budget (templates {'; '.join(short)})")
    else:
        parts.append("every template finished")
    if bagging:
        parts.append(f"bagging {bagging}")
    if tuning:
        parts.append(f"tuning {tuning}")
    return f"{'; '.join(parts)}; {left_s:.0f} s left"
