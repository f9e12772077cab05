"""The Fargate entrypoint: one run from RUNNING to artifacts in S3, with the run item kept truthful.

The state machine starts this task with RUN_ID, URL and EMAIL; resource names come from the task definition (the
names in chalicelib/config.py). Exit 0 only when a submission was uploaded and recorded; otherwise the failure reason is
on the run (FAILED) before a non-zero exit, so the state machine's Catch and MarkFailed see it. SIGTERM (a Fargate
stop or timeout; 30 s before SIGKILL) records its reason, uploads what exists and exits 143.

In the image this file is also /app/runner_main.py, the task's command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from chalicelib.config import ConfigError
from chalicelib.run_report import SUCCEEDED, read_or_none
from chalicelib.run_request import InvalidRequest, parse_slug
from chalicelib.runs import Run, RunStore, Status
from chalicelib.vocabulary import (
    CV_CHART_FILE,
    EXIT_BAD_INPUT,
    EXIT_NOT_RUNNABLE,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_TERMINATED,
    KAGGLE_CREDENTIAL_NAMES,
    LOGS_FILE,
    REPORT_FILE,
    RESULT_FILE,
    RUN_ARTIFACTS,
    SAMPLE_FILE,
    SUBMISSION_FILE,
    TRACE_FILE,
)
from runner.cloud import ArtifactStore, TaskEnv, TaskLog
from runner.data import CompetitionFiles, locate_competition
from runner.datasource import DataSource, DataSourceError, S3DataCache
from runner.errors import InputError, NotConfiguredError
from runner.kaggle_client import KaggleDownloader, KaggleError, KaggleSubmitter, SubmissionOutcome
from runner.output import merge_into_result
from runner.progress import Heartbeat, Progress, RunProgressWriter, line_sink
from runner.report import FargateTask, ReportCollector, fargate_task, run_cost, write_report

# Exit codes (chalicelib.vocabulary): EXIT_OK submission uploaded, EXIT_RUN_FAILED run failed, EXIT_BAD_INPUT task
# misconfigured, EXIT_NOT_RUNNABLE run not runnable, EXIT_TERMINATED SIGTERM.
RUNNER_LOG = "runner-logs.txt"  # every line of the task; uploaded as logs.txt (the engine's own logs.txt is a part)
# Seconds between progress writes on the run item (default 15: four a minute at most); the local demo lowers it to
# show every phase. Below 1 s is refused: progress must never become a write per event.
PROGRESS_INTERVAL_ENV = "KAGENT_PROGRESS_INTERVAL_S"


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException so that engine code catching Exception cannot swallow it."""


class EngineResult(Protocol):
    """What the entrypoint reads of runner.pipeline.RunResult."""

    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def result(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class EngineRequest:
    """What the entrypoint asks of the engine: the stored plan, the metric to optimise and the time budget."""

    plan: Mapping[str, Any]
    metric: str | None
    time_budget_s: int
    progress: Callable[..., None] | None = None  # RunOptions.progress: live progress and the report's collector


Engine = Callable[[CompetitionFiles, Path, EngineRequest, Callable[..., None]], EngineResult]


@dataclass
class Outcome:
    """What the run ended with: a failure reason (None on success) and the uploaded artifact keys."""

    reason: str | None = None
    exit_code: int = EXIT_OK
    keys: dict[str, str] = field(default_factory=dict)
    sample: Path | None = None
    cv_score: float | None = None
    metric: str | None = None
    model: str | None = None
    cost: dict[str, Any] | None = None
    kaggle_submission: dict[str, Any] | None = None


class Submitter(Protocol):
    def submit(self, slug: str, path: Path, message: str) -> SubmissionOutcome: ...


class SigtermGuard:
    """While armed, SIGTERM raises Terminated in the main thread; once disarmed (we are wrapping up: uploads and the
    record must finish inside ECS's 30 s stop timeout) it is only noted."""

    def __init__(self) -> None:
        self.armed = False
        self.received = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        if self.armed:
            self.armed = False
            raise Terminated()

    def __enter__(self) -> SigtermGuard:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        self.armed = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.armed = False
        signal.signal(signal.SIGTERM, self._previous)


def engine_request(
    run: Run, files: CompetitionFiles, time_budget_s: int, progress: Callable[..., None] | None = None
) -> EngineRequest:
    """The metric of the competition's metadata.json, when there is one, wins over the plan's guess."""
    return EngineRequest(plan=dict(run.plan or {}), metric=files.metric, time_budget_s=time_budget_s, progress=progress)


class PipelineEngine:
    """runner.pipeline on the unpacked files, with LLM candidates when OPENAI_* is configured (templates otherwise).

    The LLM provider is built here, before any generated code exists; building it makes this process non-dumpable and
    drops OPENAI_API_KEY from the environment (runner.codegen.llm_candidates_from_env).
    """

    def __init__(self, env: MutableMapping[str, str]) -> None:
        self._env = env

    def __call__(
        self, files: CompetitionFiles, out: Path, request: EngineRequest, log: Callable[..., None]
    ) -> EngineResult:
        from runner.codegen_step import llm_candidates_from_env  # noqa: PLC0415 - lazy: the engine pulls in pandas/sklearn
        from runner.pipeline import RunOptions, run_pipeline  # noqa: PLC0415

        options = RunOptions(
            metric=request.metric,
            time_budget=request.time_budget_s,
            plan=dict(request.plan),  # its metric is a runner metric name, or None: the engine infers it
            extra_candidates=llm_candidates_from_env(self._env),
            progress=request.progress,
        )
        # The engine finds the files again under their unpacked root without unzipping twice.
        return run_pipeline(files.root, out, options, log=log)


class TaskRunner:
    """One run of the task. Collaborators are passed in so tests drive it with moto clients and fake engines."""

    def __init__(
        self,
        task: TaskEnv,
        *,
        store: RunStore,
        artifacts: ArtifactStore,
        source: DataSource,
        workdir: Path,
        log: TaskLog,
        engine: Engine,
        submitter: Submitter | None = None,
        fargate: FargateTask | None = None,
        progress_interval_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task = task
        self.store = store
        self.artifacts = artifacts
        self.source = source
        self.workdir = workdir
        self.out = workdir / "out"
        self.log = log
        self.engine = engine
        self.phase = "starting"
        self.submitter = submitter
        self.fargate = fargate
        self.clock = clock
        self.started = clock()
        self.progress = Progress(budget_s=task.settings.run_time_budget_s, started=self.started, clock=clock)
        self.progress_writer = RunProgressWriter(
            store, task.run_id, min_interval_s=progress_interval_s, clock=clock, log=log
        )
        self.progress.add_sink(self.progress_writer)
        self.progress.add_sink(line_sink(lambda line: log(f"progress: {line}")))
        self.progress_interval_s = progress_interval_s
        self.collector = ReportCollector()

    def _observe(self, event: str, **fields: Any) -> None:
        """The pipeline's progress callback: live progress on the run item, and what the report needs."""
        self.progress(event, **fields)
        self.collector(event, **fields)

    def run(self) -> int:
        run = self._claim()
        if run is None:
            return EXIT_NOT_RUNNABLE
        outcome = Outcome()
        with SigtermGuard() as guard:
            try:
                try:
                    self._work(run, outcome)
                finally:
                    guard.armed = False
            except Terminated:
                outcome.reason = f"stopped by SIGTERM while {self.phase} (the task was stopped or timed out)"
                outcome.exit_code = EXIT_TERMINATED
            except Exception as error:
                outcome.reason = self._reason_for(error)
                outcome.exit_code = EXIT_RUN_FAILED
                self.log.error(outcome.reason, traceback=traceback.format_exc(limit=8))
            self._finish(outcome)
            if guard.received and outcome.reason is None:
                self.log("SIGTERM arrived while finishing; the run's outcome was recorded first")
        return outcome.exit_code

    def _claim(self) -> Run | None:
        """Set RUNNING; a run already RUNNING (the state machine retried the task) is taken over, others are left."""
        run_id = self.task.run_id
        moved = self.store.transition(run_id, Status.RUNNING)
        run = self.store.get(run_id)
        if run is None:
            self.log.error(f"run {run_id} does not exist; nothing to do")
            return None
        if not moved and run.status is not Status.RUNNING:
            self.log.error(f"run {run_id} is {run.status.value}, not runnable; left untouched")
            return None
        self.log(f"run {run_id} RUNNING", slug=run.slug, url=self.task.url)
        return run

    def _work(self, run: Run, outcome: Outcome) -> None:
        self.phase = "fetching the competition data"
        self.progress.phase("downloading")
        slug = run.slug or parse_slug(self.task.url)
        fetched = self.source.fetch(slug, self.workdir / "fetch")
        self.phase = "unpacking the competition data"
        files = locate_competition(fetched.path, self.workdir / "unpacked")
        outcome.sample = files.sample
        self.log(f"competition files: train={files.train.name} test={files.test.name} sample={files.sample.name}")
        for note in files.notes:  # e.g. a Latin-1 table converted to UTF-8
            self.log(note, level="warning")
        self.phase = "training"
        request = engine_request(run, files, self.task.settings.run_time_budget_s, progress=self._observe)
        with Heartbeat(self.progress_writer, self.progress, every_s=self.progress_interval_s):
            result = self.engine(files, self.out, request, self.log)
        self.phase = "finishing"
        if result.status != SUCCEEDED or not (self.out / SUBMISSION_FILE).is_file():
            outcome.reason = result.reason or f"the engine ended with status {result.status} and no submission"
            outcome.exit_code = EXIT_RUN_FAILED
            return
        outcome.cv_score, outcome.metric = _score_of(result.result, self.out / RESULT_FILE)
        self.phase = "writing the report"
        self.progress.phase("reporting")
        write_report(
            self.out,
            self.collector,
            slug=run.slug,
            url=run.url,
            run_id=run.run_id,
            cost=lambda result: run_cost(result, seconds=self.clock() - self.started, task=self.fargate),
            log=self.log,
        )
        outcome.model, outcome.cost = _summary_of(self.out / RESULT_FILE)
        if run.submit:
            self._submit(run, outcome)

    def _submit(self, run: Run, outcome: Outcome) -> None:
        """Send submission.csv to Kaggle (asked for with submit=true). Whatever Kaggle answers, the run goes on: a
        refusal (daily limit, rules) is a reason on the run, and the submission file is still delivered."""
        self.phase = "submitting to Kaggle"
        self.progress.phase("submitting")
        score = f", CV {outcome.metric} {outcome.cv_score:.5g}" if outcome.cv_score is not None else ""
        message = f"kagent run {run.run_id}: {outcome.model or 'model'}{score}"[:200]
        try:
            if self.submitter is None:
                raise RuntimeError("no Kaggle client is configured in this runner")
            submitted = self.submitter.submit(run.slug, self.out / SUBMISSION_FILE, message)
        except Exception as error:  # a bug or an outage here must not cost the user the submission file
            reason = f"the submission to Kaggle failed: {type(error).__name__}: {error}"
            submitted = SubmissionOutcome("failed", message, reason=reason[:500])
        outcome.kaggle_submission = submitted.as_dict()
        self.log(f"Kaggle submission: {submitted.status}", kaggle_submission=outcome.kaggle_submission)
        merge_into_result(self.out / RESULT_FILE, {"kaggle_submission": outcome.kaggle_submission})

    def _finish(self, outcome: Outcome) -> None:
        self.phase = "uploading artifacts"
        self.progress.phase("uploading")
        outcome.keys = self._upload(outcome)
        if outcome.reason is None and SUBMISSION_FILE not in outcome.keys:
            outcome.reason = "the submission could not be uploaded to S3"
            outcome.exit_code = EXIT_RUN_FAILED
        self._record(outcome)

    def _upload(self, outcome: Outcome) -> dict[str, str]:
        if outcome.reason is not None:
            self.log(f"run failed: {outcome.reason}", level="error")
        files = [(self.out / name, name) for name in RUN_ARTIFACTS if name != LOGS_FILE]
        if outcome.sample is not None:
            files.append((outcome.sample, SAMPLE_FILE))
        keys = self.artifacts.upload_present(files, log=self.log)
        self.log(f"uploaded {', '.join(sorted(keys)) or 'nothing'} to {self.artifacts.prefix}")
        # logs.txt last, so it holds every line up to here, the upload report included.
        keys.update(self.artifacts.upload_present([(self.workdir / RUNNER_LOG, LOGS_FILE)], log=self.log))
        return keys

    def _record(self, outcome: Outcome) -> None:
        keys = outcome.keys
        attrs: dict[str, Any] = {"s3_prefix": self.artifacts.prefix}
        for attr, name in (("s3_key", SUBMISSION_FILE), ("sample_key", SAMPLE_FILE), ("result_key", RESULT_FILE)):
            if name in keys:
                attrs[attr] = keys[name]
        if outcome.cv_score is not None:
            attrs["cv_score"] = outcome.cv_score
        if outcome.metric:
            attrs["metric"] = outcome.metric
        attrs.update(self._report_attributes(outcome))
        self.progress_writer.flush(force=True)  # the last phase, before the outcome is recorded
        run_id = self.task.run_id
        try:
            self.store.record(run_id, **attrs)
            if outcome.reason is not None:  # the slot goes back with MarkFailed: this role may not touch "#slots"
                self.store.fail_keeping_slot(run_id, outcome.reason)
        except Exception as error:  # DynamoDB unreachable: the exit code and the logs still tell the state machine
            self.log.error(f"could not record the outcome on the run: {type(error).__name__}: {error}")
            if outcome.exit_code == EXIT_OK:
                outcome.exit_code = EXIT_RUN_FAILED
            return
        if outcome.reason is None:
            self.log("run finished: submission uploaded", cv_score=outcome.cv_score, metric=outcome.metric)

    @staticmethod
    def _report_attributes(outcome: Outcome) -> dict[str, Any]:
        """Where the report, chart, logs and trace are, the cost and the Kaggle submission (issue 14)."""
        attrs: dict[str, Any] = {}
        names = (
            ("report_key", REPORT_FILE),
            ("chart_key", CV_CHART_FILE),
            ("logs_key", LOGS_FILE),
            ("trace_key", TRACE_FILE),
        )
        for attr, name in names:
            if name in outcome.keys:
                attrs[attr] = outcome.keys[name]
        if outcome.cost:
            attrs["cost"] = outcome.cost
        if outcome.kaggle_submission:
            attrs["kaggle_submission"] = outcome.kaggle_submission
        return attrs

    def _reason_for(self, error: Exception) -> str:
        if isinstance(error, KaggleError):
            return error.reason
        if isinstance(error, DataSourceError | InputError | NotConfiguredError | ConfigError):
            return str(error)
        if isinstance(error, InvalidRequest):
            return f"the run's URL is not a Kaggle competition: {error}"
        return f"runner error while {self.phase}: {type(error).__name__}: {error}"


def _score_of(result: Any, result_json: Path) -> tuple[float | None, str | None]:
    """The CV score and metric, from the engine's result object or else its result.json."""
    data: Mapping[str, Any] = {}
    if isinstance(result, Mapping):
        data = result
    elif result is not None and hasattr(result, "__dict__"):
        data = vars(result)
    if "cv_score" not in data and result_json.is_file():
        report = read_or_none(result_json.read_bytes)
        data = report.as_dict() if report is not None else {}
    score = data.get("cv_score")
    metric = data.get("metric")
    return (float(score) if isinstance(score, int | float) else None, str(metric) if metric else None)


def _summary_of(result_json: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The chosen model and the cost, as result.json records them."""
    report = read_or_none(result_json.read_bytes)
    if report is None:
        return None, None
    return report.model or None, dict(report.cost) if report.cost is not None else None


def progress_interval(env: Mapping[str, str]) -> float:
    raw = env.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return 15.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PROGRESS_INTERVAL_ENV} must be a number of seconds, got {raw!r}") from None
    if not value >= 1:
        raise ConfigError(f"{PROGRESS_INTERVAL_ENV} must be at least 1 second, got {raw!r}")
    return value


def build_runner(
    task: TaskEnv,
    workdir: Path,
    *,
    engine: Engine,
    fargate: FargateTask | None = None,
    progress_interval_s: float = 15.0,
) -> TaskRunner:
    """Wire the runner to AWS. Clients are created (and their credentials resolved) before anything drops secrets."""
    # lazy: boto3 clients only in the Fargate task, not where TaskRunner is built by hand
    from chalicelib import aws  # noqa: PLC0415

    settings = task.settings
    log = TaskLog(task.run_id, file=workdir / RUNNER_LOG)
    s3 = aws.client("s3")
    table = aws.resource("dynamodb").Table(settings.runs_table)
    kaggle = KaggleDownloader(task.kaggle, log=log)
    source = DataSource(
        mirror=settings.data_mirror,
        cache=S3DataCache(s3, settings.artifacts_bucket),
        download=kaggle.download,
        log=log,
    )
    return TaskRunner(
        task,
        store=RunStore(table),
        artifacts=ArtifactStore(s3, settings.artifacts_bucket, task.run_id),
        source=source,
        workdir=workdir,
        log=log,
        engine=engine,
        submitter=KaggleSubmitter(task.kaggle, log=log),
        fargate=fargate,
        progress_interval_s=progress_interval_s,
    )


def main(
    argv: list[str] | None = None, env: MutableMapping[str, str] | None = None, engine: Engine | None = None
) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return EXIT_OK
    env = os.environ if env is None else env
    try:
        task = TaskEnv.from_env(env)
        fargate = fargate_task(env)
        interval = progress_interval(env)
    except (ConfigError, ValueError) as error:
        print(json.dumps({"level": "error", "message": f"runner configuration: {error}"}), flush=True)
        return EXIT_BAD_INPUT
    for name in KAGGLE_CREDENTIAL_NAMES:  # held by task.kaggle from here on
        env.pop(name, None)
    workdir = Path(tempfile.mkdtemp(prefix=f"kagent-{task.run_id[:8]}-"))
    try:
        runner = build_runner(
            task, workdir, engine=engine or PipelineEngine(env), fargate=fargate, progress_interval_s=interval
        )
        return runner.run()
    except Exception as error:  # AWS unreachable before the run could be claimed: one line, no traceback
        print(json.dumps({"level": "error", "run_id": task.run_id, "message": f"runner: {error}"}), flush=True)
        return EXIT_RUN_FAILED
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
