"""The selection policy: which evaluated candidate, or which blend of them, makes the submission.

- Only candidates measured on enough folds compete (`MIN_SELECTED_FOLDS`, fewer when nothing has more): a one-fold
  score is too noisy to beat five-fold ones.
- The best is `max` by `Score` (runner/score.py: the metric's direction, a failed score worse than any); on equal
  scores the one measured over more folds, and on a full tie the one evaluated first.
- A blend (greedy ensemble selection with replacement on the out-of-fold predictions, `BLEND_ROUNDS` rounds) is
  accepted only when it scores strictly better than the best single model on the rows every member predicted;
  otherwise the best single model is submitted.
- Binary label submissions for a metric that scores hard labels (f1) cut the chosen model's probabilities at the
  threshold that scores best out of fold (`decision_threshold`), not at 0.5.

`ranked` orders candidates best first by the same Score (seed bagging picks its templates with it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from runner.metrics import Metric, best_threshold
from runner.profile import LABEL, Profile
from runner.scaffold import Evaluation, PreparedData, validation_folds
from runner.score import Score, scorer

Log = Callable[[str], None]
MIN_SELECTED_FOLDS = 2
BLEND_ROUNDS = 20
MIN_BLEND_ROWS = 10  # rows every member predicted, below which a blend's score means nothing


def well_measured(evaluations: list[Evaluation]) -> list[Evaluation]:
    """The candidates with enough folds to compare (see MIN_SELECTED_FOLDS)."""
    enough = min(MIN_SELECTED_FOLDS, max(e.n_folds for e in evaluations))
    return [e for e in evaluations if e.n_folds >= enough]


def _rank(evaluation: Evaluation) -> tuple[Score, int]:
    """Score first; between equal valid scores, the one over more folds (failed scores do not tie-break)."""
    score = evaluation.score
    return score, evaluation.n_folds if score.valid else 0


def best(evaluations: list[Evaluation]) -> Evaluation:
    """The best single candidate among the well-measured ones (see the module docstring for the tie rules)."""
    return max(well_measured(evaluations), key=_rank)


def ranked(evaluations: list[Evaluation]) -> list[Evaluation]:
    """Best first by Score; equal scores keep their order."""
    return sorted(evaluations, key=lambda e: e.score, reverse=True)


def select(evaluations: list[Evaluation], metric: Metric, data: PreparedData, log: Log) -> Evaluation:
    """The submission's candidate: a blend that beats every single model, else the best single model."""
    single = best(evaluations)
    for evaluation in evaluations:
        log(f"{evaluation.name}: CV {metric.name}={evaluation.cv_score:.5f} ({evaluation.n_folds} folds)")
    mixed = blend(well_measured(evaluations), metric, data.y, folds=validation_folds(data))
    if mixed is not None:
        log(f"{mixed.name}: CV {metric.name}={mixed.cv_score:.5f} beats every single model on shared folds")
        return mixed
    log(f"chose {single.name} ({metric.direction})")
    return single


def blend(
    evaluations: list[Evaluation],
    metric: Metric,
    y: np.ndarray,
    rounds: int = BLEND_ROUNDS,
    folds: Sequence[np.ndarray] = (),
) -> Evaluation | None:
    """Greedy ensemble selection (with replacement) on out-of-fold predictions; None unless it beats the best single.

    `folds` (validation rows per CV fold) give the blend its own fold scores, so its spread is reported like a model's.
    """
    shape = evaluations[0].oof.shape if evaluations else ()
    usable = [e for e in evaluations if e.oof.shape == shape and len(e.oof) == len(y) and e.oof_mask.any()]
    if len(usable) < 2:
        return None
    mask = np.logical_and.reduce([e.oof_mask for e in usable])
    if mask.sum() < MIN_BLEND_ROWS:
        return None
    score = scorer(metric.name)
    oofs = [metric.transform(e.oof[mask]) if e.oof.ndim == 1 else e.oof[mask] for e in usable]
    single = [metric.score(y[mask], e.oof[mask]) for e in usable]
    best_index = max(range(len(usable)), key=lambda i: score(single[i]))
    counts = np.zeros(len(usable))
    counts[best_index] = 1
    best_score = single[best_index]
    for _ in range(rounds):
        trial_scores = []
        for i in range(len(usable)):
            trial = counts.copy()
            trial[i] += 1
            trial_scores.append(metric.score(y[mask], _mix(oofs, trial, metric, usable[0].oof.ndim)))
        pick = max(range(len(usable)), key=lambda i: score(trial_scores[i]))
        if not score(trial_scores[pick]) > score(best_score):
            break
        counts[pick] += 1
        best_score = trial_scores[pick]
    if (counts > 0).sum() < 2:
        return None
    weights = counts / counts.sum()
    regression = usable[0].oof.ndim == 1
    test_parts = [metric.transform(e.test_predictions) if regression else e.test_predictions for e in usable]
    oof_parts = [metric.transform(e.oof) if regression else e.oof for e in usable]
    names = "+".join(f"{e.name}*{w:.2f}" for e, w in zip(usable, weights, strict=True) if w > 0)
    oof = _mix(oof_parts, counts, metric, usable[0].oof.ndim)
    return Evaluation(
        name=f"blend({names})",
        metric=metric.name,
        cv_score=best_score,
        fold_scores=[metric.score(y[rows], oof[rows]) for rows in folds if mask[rows].all()],
        oof=oof,
        test_predictions=_mix(test_parts, counts, metric, usable[0].oof.ndim),
        elapsed=sum(e.elapsed for e in usable),
        n_folds=min(e.n_folds for e in usable),
        test_source="blend",
    )


def _mix(parts: list[np.ndarray], counts: np.ndarray, metric: Metric, ndim: int) -> np.ndarray:
    weights = counts / counts.sum()
    mixed = sum(w * p for w, p in zip(weights, parts, strict=True) if w > 0)
    mixed = np.asarray(mixed)
    return metric.inverse(mixed) if ndim == 1 else mixed


def decision_threshold(
    profile: Profile, metric: Metric, data: PreparedData, chosen: Evaluation, log: Log
) -> float | None:
    """The cut-off on P(positive) for a binary label submission under a metric that tunes it (else None)."""
    if not (metric.tunes_threshold and profile.task_type == "binary" and profile.submission_kind == LABEL):
        return None
    done = chosen.oof_mask
    threshold, score = best_threshold(metric, data.y[done], chosen.oof[done][:, 1])
    log(f"decision threshold P({profile.positive_class!r}) >= {threshold:.4f}: out-of-fold {metric.name}={score:.5f}")
    return threshold
