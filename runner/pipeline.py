"""The runner's pipeline: competition files in, OUT written (submission.csv, logs.txt, gpt_code_trace.txt, result.json).

Stages: locate files → read and profile → prepare features → evaluate template bodies (CV within the budget) →
extra candidates (the LLM codegen seam) → choose the best by the metric (or a blend) → format → validate → write.
Every body, template or LLM, is evaluated the same way: each fold and the final fit in a fresh child of a warm zygote
started per prepared data set (runner.sandbox.Workers), the scores computed here from predictions alone.
This module orchestrates; the policies live beside it: which templates and on how many rows (runner.shape), each
one's time share (runner.templates.manifest), spending time left and giving up (runner.budget), which candidate or
blend makes the submission (runner.selection). LLM candidates come in through `RunOptions.extra_candidates`, built
where the options are (runner.codegen_step.llm_candidates_from_env): the pipeline never reads the environment.
`run_pipeline` never raises for bad input: it returns a RunResult whose reason is one line, and result.json says so.
"""

from __future__ import annotations

import contextlib
import csv
import resource
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chalicelib.run_report import FAILED, SUCCEEDED, RunReport
from chalicelib.submission import validate_submission
from chalicelib.vocabulary import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED, RESULT_FILE
from runner import selection
from runner.budget import bag_seeds, give_up_rule, stop_reason
from runner.data import CompetitionFiles, locate_competition
from runner.errors import InputError, NotConfiguredError
from runner.memory import start_watch
from runner.metrics import Metric, get_metric
from runner.output import submission_rows, write_submission
from runner.profile import Profile, profile_competition, read_tables, target_groups
from runner.sandbox import SandboxError, Workers
from runner.scaffold import BodySource, CandidateError, Evaluation, PreparedData, evaluate, prepare
from runner.shape import choose_templates, considered_templates
from runner.templates import template_source
from runner.templates.manifest import entry
from runner.tuning import tune

CODEGEN_MODES = ("template", "llm", "auto")
N_JOBS = 2
_FALLBACK_SOURCE = '''"""Fallback body: the training prior, used only if every template failed."""
from sklearn.dummy import DummyClassifier, DummyRegressor


def build_model(task):
    return DummyRegressor() if task.type == "regression" else DummyClassifier(strategy="prior")
'''


@dataclass(frozen=True)
class Candidate:
    """A model body from outside the templates (the LLM), already evaluated by scaffold.evaluate in the workers."""

    name: str
    source: str
    evaluation: Evaluation


@dataclass
class SelectionContext:
    """What an extra-candidates provider gets: the data, the profile, the best template so far, the workers that
    evaluate bodies on this data (runner.sandbox) and the clock."""

    data: PreparedData
    profile: Profile
    baseline: Evaluation
    metric: Metric
    deadline: float  # a time.monotonic() value; candidates must be evaluated by then
    trace: Callable[[str], None]  # appends to gpt_code_trace.txt
    log: Callable[[str], None]  # a line in logs.txt (and the terminal)
    plan: dict[str, Any] | None = None
    seed: int = 0
    workers: Workers | None = None


@dataclass
class RunOptions:
    metric: str | None = None
    time_budget: float = 300
    codegen: str = "auto"
    seed: int = 0
    plan: dict[str, Any] | None = None
    extra_candidates: Callable[[SelectionContext], Iterable[Candidate]] | None = None
    started_at: float | None = None  # time.monotonic() when the process started (the budget counts from there)
    memory_limit_mb: float | None = None  # a memory ceiling below the cgroup's (runner.memory); None: the kernel's
    # progress(event, **fields): phase / candidate / scored for live progress, prepared / chosen for the report
    # (runner.progress.Progress, runner.report.ReportCollector); never lets an error reach the run
    progress: Callable[..., None] | None = None


@dataclass
class RunResult:
    status: str  # succeeded | failed
    reason: str
    exit_code: int
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CodegenPlan:
    mode: str  # template | llm
    baseline_share: float  # fraction of the remaining budget the templates may use


def resolve_codegen(requested: str, options: RunOptions) -> CodegenPlan:
    """Which codegen runs. `llm` needs an LLM (`options.extra_candidates`: the caller builds it, from OPENAI_API_KEY /
    OPENAI_BASE_URL with runner.codegen_step.llm_candidates_from_env) and fails clearly without one; `auto` uses one
    when there is one, else the templates."""
    if requested not in CODEGEN_MODES:
        raise InputError(f"unknown --codegen {requested!r}: choose one of {', '.join(CODEGEN_MODES)}")
    if requested == "template":
        return CodegenPlan("template", baseline_share=1.0)
    if options.extra_candidates is None:
        if requested == "llm":
            raise NotConfiguredError(
                "--codegen llm needs an LLM: set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (a local server)"
            )
        return CodegenPlan("template", baseline_share=1.0)
    return CodegenPlan("llm", baseline_share=0.35)


class RunLog:
    """logs.txt lines with elapsed time, echoed to an optional sink (the terminal, a container log)."""

    def __init__(self, path: Path, started: float, sink: Callable[[str], None] | None) -> None:
        self._handle = path.open("w", encoding="utf-8")
        self._started = started
        self._sink = sink
        self.stage = "start"

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self._started:7.1f}s] {self.stage}: {message}"
        self._handle.write(line + "\n")
        self._handle.flush()
        if self._sink is not None:
            self._sink(line)

    def close(self) -> None:
        self._handle.close()


class Trace:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.write_text("", encoding="utf-8")

    def __call__(self, text: str) -> None:
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(text.rstrip("\n") + "\n\n")


def run_pipeline(data: Path, out: Path, options: RunOptions, *, log: Callable[[str], None] | None = None) -> RunResult:
    """Run the whole job; never raises for bad input (see module docstring)."""
    started = options.started_at if options.started_at is not None else time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("submission.csv", "result.json"):
        (out / stale).unlink(missing_ok=True)
    run_log = RunLog(out / "logs.txt", started, log)
    trace = Trace(out / "gpt_code_trace.txt")
    result: dict[str, Any] = {"status": FAILED, "reason": "", "time_budget_s": options.time_budget}
    status, reason, code = FAILED, "", EXIT_RUN_FAILED
    watch = start_watch(options.memory_limit_mb)  # engine-reach: the memory ceiling the templates plan for
    run_log(f"memory ceiling {watch.ceiling.mb:.0f} MB ({watch.ceiling.source})")
    try:
        _run(Path(data), out, options, started=started, log=run_log, trace=trace, result=result)
        status, reason, code = SUCCEEDED, "", EXIT_OK
    except (InputError, NotConfiguredError) as exc:
        reason, code = str(exc), EXIT_BAD_INPUT
    except Exception as exc:
        run_log(traceback.format_exc().rstrip())
        reason = f"internal error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if status == FAILED:
        run_log(f"failed: {reason}")
        (out / "submission.csv").unlink(missing_ok=True)
    result.update(status=status, reason=reason, elapsed_s=round(time.monotonic() - started, 2))
    result["peak_memory_mb"] = _peak_memory_mb()
    result.update(watch.stop())
    run_log.stage = "done"
    run_log(f"{status} in {result['elapsed_s']}s, peak memory {result['peak_memory_mb']} MB")
    run_log.close()
    report = RunReport.from_fields(result)
    report.write(out / RESULT_FILE)
    return RunResult(status, reason, code, report.as_dict())


def _run(
    data: Path, out: Path, options: RunOptions, *, started: float, log: RunLog, trace: Trace, result: dict[str, Any]
) -> None:
    budget = float(options.time_budget)
    if not budget > 0:
        raise InputError(f"--time-budget must be a positive number of seconds, got {options.time_budget}")
    metric_option = get_metric(options.metric).name if options.metric else None
    codegen = resolve_codegen(options.codegen, options)
    result["codegen"] = codegen.mode
    deadline = started + budget - _reserve(budget)
    workers = Workers.start(threads=N_JOBS)  # its imports overlap with reading and preparing the data
    try:
        plan = _TaskPlan(metric_option, codegen, deadline)
        _run_tasks(data, out, options, plan, workers, log=log, trace=trace, result=result)
    finally:
        workers.close()


@dataclass(frozen=True)
class _TaskPlan:
    metric_option: str | None
    codegen: CodegenPlan
    deadline: float


def _run_tasks(
    data: Path,
    out: Path,
    options: RunOptions,
    plan: _TaskPlan,
    workers: Workers,
    *,
    log: RunLog,
    trace: Trace,
    result: dict[str, Any],
) -> None:
    metric_option, codegen, deadline = plan.metric_option, plan.codegen, plan.deadline
    with tempfile.TemporaryDirectory(prefix="kagent-") as work:
        log.stage = "data"
        files = locate_competition(data, Path(work))
        _log_files(files, log)
        metric_name, source = _choose_metric(metric_option, options.plan, files)
        log.stage = "profile"
        _notify(options, "phase", phase="profiling")
        tables, id_column, targets = read_tables(files.train, files.test, files.sample)
        groups = target_groups(tables, id_column, targets)
        profiles = [profile_competition(tables, id_column, group, metric_name, source) for group in groups]
        if len(profiles) > 1:
            log(f"{len(profiles)} target columns, each its own task: {', '.join(p.label_column for p in profiles)}")
        for profile in profiles:
            _record_profile(profile, result, log)
        log.stage = "prepare"
        _notify(options, "phase", phase="preparing")
        tasks = []
        for profile in profiles:
            prepared, roles = prepare(tables, profile, seed=options.seed, n_jobs=N_JOBS)
            log(f"{len(prepared.X)} train rows, {len(prepared.X_test)} test rows; features: {roles.summary()}")
            if roles.dropped:
                log(f"dropped constant, empty or unusable columns: {', '.join(roles.dropped[:20])}")
            tasks.append((profile, prepared))
            _notify(options, "prepared", profile=profile, roles=roles, data=prepared)
        sample_text = files.sample.read_text(encoding="utf-8-sig")
        del tables
    trace(_trace_header(codegen.mode))
    columns: dict[str, list[str]] = {}
    solved: list[tuple[Profile, Evaluation]] = []
    thresholds: dict[str, float] = {}
    for index, (profile, prepared) in enumerate(tasks):
        share_deadline = time.monotonic() + max(0.0, deadline - time.monotonic()) / (len(tasks) - index)
        own = workers if index == 0 else Workers.start(threads=N_JOBS)  # one zygote per prepared data set
        try:
            own.load(prepared.X, prepared.X_test)
            chosen, threshold = _solve(
                profile,
                prepared,
                own,
                options=options,
                codegen=codegen,
                deadline=share_deadline,
                log=log,
                trace=trace,
                result=result,
            )
        finally:
            if own is not workers:
                own.close()
        solved.append((profile, chosen))
        if threshold is not None:
            thresholds[profile.label_column] = round(threshold, 6)
        rows = submission_rows(profile, prepared.test_ids, chosen.test_predictions, threshold=threshold)
        for position, name in enumerate([profile.id_column, *profile.target_columns]):
            columns[name] = [row[position] for row in rows]
    _record_choice(solved, result)
    if thresholds:
        result["decision_threshold"] = next(iter(thresholds.values())) if len(tasks) == 1 else thresholds
    log.stage = "submit"
    _notify(options, "phase", phase="validating")
    _write_and_validate(out, columns, profiles[0].id_column, sample_text=sample_text, log=log)


def _solve(
    profile: Profile,
    prepared: PreparedData,
    workers: Workers,
    *,
    options: RunOptions,
    codegen: CodegenPlan,
    deadline: float,
    log: RunLog,
    trace: Trace,
    result: dict[str, Any],
) -> tuple[Evaluation, float | None]:
    """Templates (and extra candidates) for one target; the chosen evaluation and its binary decision threshold."""
    metric = get_metric(profile.metric)
    log.stage = "train"
    template_deadline = time.monotonic() + codegen.baseline_share * max(0.0, deadline - time.monotonic())
    evaluations, bodies, planned = _evaluate_templates(prepared, template_deadline, log, workers, options.progress)
    # engine-reach (runner/budget.py): time left after the templates buys seed bags, evaluated through the same
    # workers as every body; say why the run stopped
    sampled = {name: rows for name, rows in planned.items() if rows}
    bags, bagging = bag_seeds(
        evaluations, bodies, prepared, deadline=template_deadline, log=log, workers=workers, sampled=sampled
    )
    for bag in bags:
        bodies[bag.name] = bodies[bag.name.rsplit("_bag", 1)[0]]
        _scored(options.progress, bag, metric)
    evaluations += bags
    # what is still left tries the booster's leaves and rounds away from their defaults (runner/tuning.py)
    tuned, tuned_bodies, tuning = tune(
        evaluations, bodies, prepared, deadline=template_deadline, log=log, workers=workers
    )
    for evaluation in tuned:
        _scored(options.progress, evaluation, metric)
    evaluations += tuned
    bodies.update(tuned_bodies)
    left = max(0.0, deadline - time.monotonic())
    result["stop_reason"] = stop_reason(evaluations, list(planned), bagging, left, tuning)
    log(f"stopped: {result['stop_reason']}")
    _log_overhead(workers, log)
    best = selection.best(evaluations)
    candidates: list[Candidate] = []
    if codegen.mode == "llm" and options.extra_candidates is not None:
        log.stage = "codegen"
        _notify(options, "phase", phase="codegen", detail="LLM candidates")
        context = SelectionContext(
            prepared, profile, best, metric, deadline, trace, log, options.plan, options.seed, workers
        )
        candidates = _extra_candidates(options.extra_candidates, context, log)
        report = getattr(options.extra_candidates, "result_fields", None)
        if callable(report):
            result.update(report())
        for candidate in candidates:
            log(f"candidate {candidate.name}: CV {metric.name}={candidate.evaluation.cv_score:.5f}")
            _scored(options.progress, candidate.evaluation, metric)
        evaluations += [c.evaluation for c in candidates]
    log.stage = "select"
    _notify(options, "phase", phase="blending")
    chosen = selection.select(evaluations, metric, prepared, log)
    sources = {**{name: body.source for name, body in bodies.items()}, **{c.name: c.source for c in candidates}}
    _notify(options, "chosen", profile=profile, data=prepared, chosen=chosen, evaluations=evaluations, sources=sources)
    _trace_choice(trace, chosen, evaluations, sources, metric)
    result.setdefault("candidates", []).extend(_summary(e) for e in evaluations)
    return chosen, selection.decision_threshold(profile, metric, prepared, chosen, log)


def _record_choice(solved: list[tuple[Profile, Evaluation]], result: dict[str, Any]) -> None:
    """One target: its model and score. Several: the models joined and the mean score (how Kaggle averages them)
    when they share a metric."""
    scores = [_finite(chosen.cv_score) for _profile, chosen in solved]
    finite = [s for s in scores if s is not None]
    comparable = len(finite) == len(scores) and len({p.metric for p, _chosen in solved}) == 1
    result.update(
        model=" | ".join(chosen.name for _profile, chosen in solved),
        cv_score=(sum(finite) / len(finite)) if comparable else None,
        cv_folds=min(chosen.n_folds for _profile, chosen in solved),
        test_predictions_from=solved[0][1].test_source,
    )
    if len(solved) > 1:
        result["cv_score_per_target"] = {p.label_column: s for (p, _c), s in zip(solved, scores, strict=True)}


def _extra_candidates(
    provider: Callable[[SelectionContext], Iterable[Candidate]], context: SelectionContext, log: RunLog
) -> list[Candidate]:
    """The provider's candidates; if it fails, the templates still make the submission."""
    try:
        return list(provider(context))
    except Exception as exc:
        log(f"extra candidates failed: {type(exc).__name__}: {str(exc).strip()[:300]}")
        return []


def _reserve(budget: float) -> float:
    """Seconds kept back from training for start-up, formatting, validation and writing."""
    return min(15.0, 2.0 + 0.08 * budget)


def _choose_metric(option: str | None, plan: dict[str, Any] | None, files: CompetitionFiles) -> tuple[str | None, str]:
    if option:
        return option, "option"
    if plan and plan.get("metric"):
        return get_metric(str(plan["metric"])).name, "plan"
    if files.metric:
        return get_metric(files.metric).name, "metadata"
    return None, "inferred"


def _log_files(files: CompetitionFiles, log: RunLog) -> None:
    log(f"train {files.train.name}, test {files.test.name}, sample submission {files.sample.name}")
    for extra in files.extra[:20]:
        log(f"ignoring extra file {extra.name}")
    if len(files.extra) > 20:
        log(f"ignoring {len(files.extra) - 20} more extra files")


def _record_profile(profile: Profile, result: dict[str, Any], log: RunLog) -> None:
    if "target_columns" in result:  # a further target of a multi-target competition
        result["target_columns"] = [*result["target_columns"], *profile.target_columns]
        result["label_column"] = f"{result['label_column']},{profile.label_column}"
        if profile.task_type != result["task_type"]:
            result["task_type"] = f"{result['task_type']},{profile.task_type}"
        if profile.metric != result["metric"]:
            result["metric"] = f"{result['metric']},{profile.metric}"
        _log_profile(profile, log)
        return
    result.update(
        metric=profile.metric,
        metric_source=profile.metric_source,
        task_type=profile.task_type,
        id_column=profile.id_column,
        target_columns=profile.target_columns,
        label_column=profile.label_column,
        submission_kind=profile.submission_kind,
        positive_class=profile.positive_class,
        classes=profile.classes[:50],
        n_train=profile.n_train,
        n_test=profile.n_test,
    )
    _log_profile(profile, log)


def _log_profile(profile: Profile, log: RunLog) -> None:
    log(
        f"id {profile.id_column!r}, target {profile.label_column!r} → {profile.target_columns}, "
        f"{profile.task_type}, submission of {profile.submission_kind}, "
        f"metric {profile.metric} ({profile.metric_source})"
    )
    for note in profile.notes:
        log(note)


def _log_overhead(workers: Workers, log: RunLog) -> None:
    """What running each fold in its own fresh process cost on top of the bodies' own work (benchmark evidence)."""
    if workers.overheads:
        mean = 1000 * sum(workers.overheads) / len(workers.overheads)
        log(f"workers: {len(workers.overheads)} fits in fresh processes, {mean:.0f} ms overhead per fit on average")
    if workers.respawns:
        log(f"workers: the zygote died and was restarted {workers.respawns} time(s); see the failed candidates above")


def _evaluate_templates(
    data: PreparedData,
    deadline: float,
    log: RunLog,
    workers: Workers,
    progress: Callable[..., None] | None = None,
) -> tuple[list[Evaluation], dict[str, BodySource], dict[str, int]]:
    evaluations: list[Evaluation] = []
    bodies: dict[str, BodySource] = {}
    planned: dict[str, int] = {}  # the templates chosen for this data: their max_fit_rows (0: all rows)
    total = len(considered_templates(data.task))
    # engine-reach: which templates, in which order and on how many rows, by shape and memory (runner/shape.py)
    for index, (name, template_data) in enumerate(choose_templates(data, log), start=1):
        planned[name] = template_data.task.max_fit_rows
        now = time.monotonic()
        if evaluations and now + _slowest_fit(evaluations) > deadline:
            log(f"skipping template {name}: not enough time left for one fold")
            continue
        body = BodySource(name, template_source(name), trusted=True)
        bodies[name] = body
        _call(progress, "candidate", index=index, total=max(total, index), name=name)
        own_deadline = now + entry(name).time_share * max(1.0, deadline - now)
        give_up = give_up_rule(evaluations, data, deadline)
        evaluation = _try_evaluate(body, template_data, own_deadline, log, workers, give_up=give_up)
        if evaluation is not None:
            evaluations.append(evaluation)
            _scored(progress, evaluation, get_metric(data.task.metric))
    if not evaluations:
        log("every template failed: falling back to the training prior")
        body = BodySource("prior", _FALLBACK_SOURCE, trusted=True)
        bodies[body.name] = body
        evaluation = _try_evaluate(body, data, time.monotonic() + 60, log, workers)
        if evaluation is None:
            raise RuntimeError("even the prior fallback failed")
        evaluations.append(evaluation)
    return evaluations, bodies, planned


def _slowest_fit(evaluations: list[Evaluation]) -> float:
    """Seconds the slowest template so far took per fit: a floor for what the next one needs."""
    return max(1.0, *(e.elapsed / (e.n_folds + 1) for e in evaluations))


def _try_evaluate(
    body: BodySource,
    data: PreparedData,
    deadline: float,
    log: RunLog,
    workers: Workers,
    *,
    give_up: Callable[[float, float], bool] | None = None,
) -> Evaluation | None:
    try:
        return evaluate(body, data, deadline, workers=workers, log=log, give_up=give_up)
    except (CandidateError, SandboxError) as exc:
        log(f"{body.name} failed: {exc}")
        return None


def _write_and_validate(
    out: Path, columns: dict[str, list[str]], id_column: str, *, sample_text: str, log: RunLog
) -> None:
    header = next(csv.reader(sample_text.splitlines()[:1]), [])
    missing = [name for name in header if name not in columns]
    if missing:
        raise RuntimeError(f"no predictions for the sample's columns {missing}")
    rows = [list(values) for values in zip(*(columns[name] for name in header), strict=True)]
    path = out / "submission.csv"
    write_submission(path, header, rows)
    problems = validate_submission(path, sample_text, id_column=id_column)
    if problems:
        raise RuntimeError(f"submission failed validation: {'; '.join(str(p) for p in problems[:3])}")
    log(f"wrote {path} ({len(rows)} rows), validated against the sample submission")


def _trace_header(mode: str) -> str:
    if mode == "template":
        return (
            "codegen mode: template — no LLM was used. The model bodies below are kagent's built-in templates\n"
            "(runner/templates/), evaluated by cross-validation; the chosen one (or blend) is marked."
        )
    return "codegen mode: llm — LLM candidates and the template baselines, evaluated by cross-validation."


def _trace_choice(
    trace: Trace, chosen: Evaluation, evaluations: list[Evaluation], sources: dict[str, str], metric: Metric
) -> None:
    lines = [f"chosen model: {chosen.name} (CV {metric.name} = {chosen.cv_score:.5f}, {metric.direction})"]
    lines += [f"  candidate {e.name}: CV {metric.name} = {e.cv_score:.5f}" for e in evaluations]
    trace("\n".join(lines))
    used = [name for name in sources if name == chosen.name or f"{name}*" in chosen.name]
    for name in used:
        trace(f"===== model body used: {name} =====\n{sources[name]}")


def _summary(evaluation: Evaluation) -> dict[str, Any]:
    folds = [s for s in (_finite(score) for score in evaluation.fold_scores) if s is not None]
    return {
        "name": evaluation.name,
        "cv_score": _finite(evaluation.cv_score),
        "folds": evaluation.n_folds,
        "elapsed_s": round(evaluation.elapsed, 2),
        "fold_scores": folds,
        "cv_std": float(np.std(folds)) if len(folds) > 1 else None,
    }


def _notify(options: RunOptions, event: str, **fields: Any) -> None:
    _call(options.progress, event, **fields)


def _scored(progress: Callable[..., None] | None, evaluation: Evaluation, metric: Metric) -> None:
    fields = {"metric": metric.name, "higher_is_better": metric.higher_is_better}
    _call(progress, "scored", name=evaluation.name, cv_score=evaluation.cv_score, **fields)


def _call(progress: Callable[..., None] | None, event: str, **fields: Any) -> None:
    """Progress and report hooks are observers: their failure is logged by them, never raised into the run."""
    if progress is None:
        return
    with contextlib.suppress(Exception):  # an observer's bug must not fail a run that trains fine
        progress(event, **fields)


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _peak_memory_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


__all__ = [
    "Candidate",
    "RunOptions",
    "RunResult",
    "SelectionContext",
    "resolve_codegen",
    "run_pipeline",
]
