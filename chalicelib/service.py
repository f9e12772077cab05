"""What the routes and step Lambdas do, as plain functions over injected collaborators (no Chalice, no os.environ).

Failures inside the workflow are raised as named exceptions: Step Functions catches them (`States.ALL`) and hands the
error to MarkFailed, which stores the reason, gives the slot back and emails — the one terminal path for failures.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib import orchestrator, run_view
from chalicelib.config import Settings
from chalicelib.kaggle_meta import KaggleUnavailable
from chalicelib.notify import Email, Mailer, deliver_once, failure_email, success_email
from chalicelib.plan import PlanTools, make_plan
from chalicelib.recipients import VerifiedCheck, check_recipient
from chalicelib.run_report import read_or_none
from chalicelib.run_request import (
    LOCAL_CALLER,
    InvalidRequest,
    RunRequest,
    mask_email,
    merge_params,
    parse_idempotency_key,
    parse_run_request,
)
from chalicelib.runs import (
    AdmissionRefused,
    IdempotencyConflict,
    QuotaExceeded,
    Run,
    RunStore,
    Status,
    is_run_id,
    utc_now,
)
from chalicelib.vocabulary import STORED_REASON_MAX_CHARS, result_key, sample_key, submission_key

RETRY_AFTER_S = 60
STATUS_LINK_EXPIRY_S = 900  # GET /runs/{id}: a short-lived link; the email's link lives KAGENT_PRESIGN_EXPIRY_S
ENDED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED")
# The sweeper: a run without an execution is failed only this long after admission (POST /run starts it within the
# API's 29 s, so a younger one may still be starting); each sweep looks at this many runs at most, oldest first.
SWEEP_GRACE_S = 900
SWEEP_LIMIT = 100
NEVER_STARTED = "the workflow never started"
CANCELLED = "cancelled by the caller"
LIST_DEFAULT_LIMIT = 20
LIST_MAX_LIMIT = 100
MAX_CURSOR_CHARS = 400


# -- errors the workflow sees (their class names become Step Functions error names) ---------------------------------


class RunNotFound(Exception):
    """The execution names a run the table does not hold."""


class RunAlreadyEnded(Exception):
    """The run reached a terminal status before this step (e.g. the runner or the reconciler failed it)."""


class TrainingFailed(Exception):
    """The training task ended without a usable submission."""


class SubmissionInvalid(Exception):
    """submission.csv failed validation; the message lists every problem."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


# DynamoDB answers that mean "not now" once boto3's own retries are spent: a 503 to retry, never a 500.
STORE_BUSY_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError"}
)
STORE_RETRY_AFTER_S = 5
# Recording a started run's execution ARN: a few quick tries, then give up quietly (see Service._note_execution).
NOTE_EXECUTION_DELAYS_S = (0.05, 0.2)

log = logging.getLogger("kagent.service")


def store_busy(error: Exception) -> Reply | None:
    """The 503 for a throttled or briefly unavailable run store, or None for any other error."""
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, Mapping) else None
    if code not in STORE_BUSY_CODES:
        return None
    return Reply(
        503, {"error": f"the run store is busy ({code}); retry shortly"}, {"Retry-After": str(STORE_RETRY_AFTER_S)}
    )


Validator = Callable[[bytes, bytes | None], list[str]]  # (submission, sample) -> problems


@dataclass
class Service:
    settings: Settings
    store: RunStore
    s3: Any
    mailer: Mailer
    executor: orchestrator.Executor
    validator: Validator
    plan_tools: Callable[[], PlanTools] = PlanTools  # called by the Plan step only, so only it reads credentials
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    # DescribeExecution for the sweeper; None with the local executor (its runs end through its own reconcile call).
    describe_execution: orchestrator.ExecutionDescriber | None = None
    now: Callable[[], datetime] = utc_now
    # SES: whether an address is a verified identity (asked only when KAGENT_SES_SANDBOX is true).
    recipient_verified: VerifiedCheck | None = None
    # StopExecution for DELETE /runs/{id} (the local executor's stop with KAGENT_EXECUTOR=local).
    stop_execution: orchestrator.ExecutionStopper | None = None

    # -- HTTP ------------------------------------------------------------------------------------------------------

    def submit(
        self,
        query: Mapping[str, str] | None,
        body: Any,
        idempotency_header: str | None,
        base_url: str,
        caller: str = LOCAL_CALLER,
    ) -> Reply:
        """`caller` scopes the Idempotency-Key (run_request.idempotency_caller): one caller's key is not another's."""
        try:
            request = parse_run_request(merge_params(query, body))
            key = parse_idempotency_key(idempotency_header)
            check_recipient(request.email, self.settings, self.recipient_verified)  # before any write
        except InvalidRequest as error:
            return Reply(400, error.to_json(), {})
        run = self._admit(request, key, caller)
        if isinstance(run, Reply):
            return run
        if run.status is Status.QUEUED and not run.execution_arn:
            try:
                arn = orchestrator.start(run, self.settings, self.executor)
            except Exception as error:  # the workflow did not start: the run must not hold its slot
                reason = f"could not start the run's workflow: {type(error).__name__}: {error}"
                reason = reason[:STORED_REASON_MAX_CHARS]
                try:
                    self.store.fail(run.run_id, reason)
                except Exception as store_error:  # the sweeper fails it and frees the slot after SWEEP_GRACE_S
                    log.warning("run %s: not marked FAILED (%s)", run.run_id, type(store_error).__name__)
                return Reply(503, {"error": reason, "run_id": run.run_id}, {"Retry-After": str(RETRY_AFTER_S)})
            self._note_execution(run.run_id, arn)
        status_url = f"{base_url.rstrip('/')}/runs/{run.run_id}"
        return Reply(202, {"run_id": run.run_id, "status": run.status.value, "status_url": status_url}, {})

    def _admit(self, request: RunRequest, key: str | None, caller: str) -> Run | Reply:
        """The admitted (or idempotently replayed) run, or the refusal: 409, 429 (quota or slots), 503 (store busy)."""
        try:
            return self.store.admit(
                request,
                self.settings.max_running,
                idempotency_key=key,
                caller=caller,
                runs_per_day=self.settings.runs_per_caller_per_day,
            )
        except IdempotencyConflict as error:
            return Reply(409, {"error": str(error), "field": "Idempotency-Key"}, {})
        except QuotaExceeded as error:
            return Reply(429, {"error": str(error)}, {"Retry-After": str(error.retry_after_s)})
        except AdmissionRefused as error:
            return Reply(429, {"error": str(error)}, {"Retry-After": str(RETRY_AFTER_S)})
        except Exception as error:
            if (busy := store_busy(error)) is None:
                raise
            return busy

    def _note_execution(self, run_id: str, arn: str) -> None:
        """Best effort, after the workflow started: the run exists and runs, so the caller gets its 202 whatever happens
        here. A missing ARN loses nothing: the execution is named by run_id, so it is found without it."""
        for delay in (*NOTE_EXECUTION_DELAYS_S, None):
            try:
                self.store.record(run_id, execution_arn=arn)
                return
            except Exception as error:
                if delay is None or store_busy(error) is None:
                    log.warning("run %s: execution ARN not recorded (%s: %s)", run_id, type(error).__name__, error)
                    return
                self.sleep(delay)

    def describe(self, run_id: str, caller: str = LOCAL_CALLER) -> Reply:
        try:
            run = self._own_run(run_id, caller)
        except Exception as error:
            if (busy := store_busy(error)) is None:
                raise
            return busy
        if run is None:
            return not_found(run_id)
        body: dict[str, Any] = {
            "run_id": run.run_id,
            "status": run.status.value,
            "slug": run.slug,
            "url": run.url,
            "email": mask_email(run.email),
            "timestamps": run.timestamps,
            "plan_summary": run.plan_summary,
            "plan": run.plan,
            "cv_score": run.cv_score,
            "metric": run.metric,
            "error": run.error,
            "email_error": run.email_error,
            "submission_url": None,
        }
        if run.status is Status.SUCCEEDED:
            body["submission_url"] = self.presign(run.s3_key or submission_key(run.run_id), STATUS_LINK_EXPIRY_S)
            body["submission_url_expires_in_s"] = STATUS_LINK_EXPIRY_S
        body.update(run_view.describe_fields(run, self.presign, STATUS_LINK_EXPIRY_S))  # progress, links, cost, Kaggle
        return Reply(200, body, {})

    def _own_run(self, run_id: str, caller: str) -> Run | None:
        """The run if `caller` started it; None for another caller's run exactly as for an unknown id."""
        run = self.store.get(run_id)
        return run if run is not None and run.caller == caller else None

    def list_runs(self, caller: str, limit: str | None, cursor: str | None) -> Reply:
        """GET /runs: the caller's runs, newest first, `limit` per page; `next_cursor` continues (null at the end)."""
        try:
            count = parse_limit(limit)
            after = decode_cursor(cursor)
            runs, last = self.store.list_for(caller, count, after)
        except InvalidRequest as error:
            return Reply(400, error.to_json(), {})
        except Exception as error:
            if (busy := store_busy(error)) is None:
                raise
            return busy
        listed = [
            {
                "run_id": run.run_id,
                "status": run.status.value,
                "slug": run.slug,
                "created_at": run.created_at,
                "timestamps": run.timestamps,
                "cv_score": run.cv_score,
                "metric": run.metric,
                "error": run.error,
            }
            for run in runs
        ]
        return Reply(200, {"runs": listed, "next_cursor": encode_cursor(last) if last else None}, {})

    def cancel(self, run_id: str, caller: str) -> Reply:
        """DELETE /runs/{id}: the run ends FAILED "cancelled by the caller" and its execution is stopped. The slot and
        the one failure email follow when the workflow has really ended (the reconciler on ABORTED, MarkFailed, or
        the sweeper): the runner task may run on for seconds after StopExecution. Repeating the call is safe."""
        try:
            run = self._own_run(run_id, caller)
            if run is None:
                return not_found(run_id)
            if run.status.is_terminal and run.error != CANCELLED:
                return Reply(409, {"error": f"the run already ended ({run.status.value}); nothing to cancel"}, {})
            if not run.status.is_terminal and not self.store.fail_keeping_slot(run.run_id, CANCELLED):
                ended = self.store.get(run.run_id)  # it ended just now, on its own
                if ended is None or ended.error != CANCELLED:
                    state = ended.status.value if ended else "gone"
                    return Reply(409, {"error": f"the run already ended ({state}); nothing to cancel"}, {})
        except Exception as error:
            if (busy := store_busy(error)) is None:
                raise
            return busy
        if self.stop_execution is not None:
            arn = run.execution_arn or orchestrator.execution_arn(self.settings.state_machine_arn, run.run_id)
            try:
                self.stop_execution(arn)
            except Exception as error:  # the run is cancelled; a repeated DELETE stops the execution again
                log.warning("run %s: StopExecution failed (%s: %s)", run.run_id, type(error).__name__, error)
                return Reply(
                    503,
                    {
                        "error": f"the run is cancelled but its workflow did not stop yet ({type(error).__name__}); "
                        "repeat the DELETE",
                        "run_id": run.run_id,
                    },
                    {"Retry-After": str(STORE_RETRY_AFTER_S)},
                )
        return Reply(202, {"run_id": run.run_id, "status": Status.FAILED.value, "error": CANCELLED}, {})

    def presign(self, key: str, expiry_s: int) -> str:
        return str(
            self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.settings.artifacts_bucket, "Key": key}, ExpiresIn=expiry_s
            )
        )

    # -- step Lambdas ------------------------------------------------------------------------------------------------

    def _live_run(self, event: Mapping[str, Any]) -> Run:
        run_id = str(event.get("run_id", ""))
        run = self.store.get(run_id)
        if run is None:
            raise RunNotFound(f"no run with id {run_id[:80]!r}")
        if run.status.is_terminal:
            raise RunAlreadyEnded(run.error or f"the run is already {run.status.value}")
        return run

    def plan(self, event: Mapping[str, Any]) -> dict[str, Any]:
        run = self._live_run(event)
        tools = self.plan_tools()
        meta, note = None, ""
        if tools.competition_meta is not None:
            try:
                meta = tools.competition_meta(run.slug)
            except KaggleUnavailable as error:  # metadata is a nicety; the runner downloads the data anyway
                note = str(error)
        plan = make_plan(run.slug, meta, tools.complete).noting(tools.note)
        stored = plan.as_dict() | ({"kaggle_note": note} if note else {})
        self.store.transition(run.run_id, Status.PLANNED, plan=stored, plan_summary=plan.summary)
        return {"summary": plan.summary, "task_type": plan.task_type, "metric": plan.metric, "source": plan.source}

    def validate_output(self, event: Mapping[str, Any]) -> dict[str, Any]:
        run = self._live_run(event)
        exit_code, stopped = _training_outcome(event.get("training"))
        if exit_code not in (None, 0):
            raise TrainingFailed(run.error or f"the training task exited with code {exit_code}{stopped}")
        sub_key = run.s3_key or submission_key(run.run_id)
        submission = self._read(sub_key)
        if submission is None:
            raise TrainingFailed(run.error or f"the runner stored no submission.csv{stopped}")
        sample = self._read(run.sample_key or sample_key(run.run_id))
        problems = self.validator(submission, sample)
        if problems:
            listed = "; ".join(problems)
            raise SubmissionInvalid(f"submission.csv failed validation: {listed}"[:STORED_REASON_MAX_CHARS])
        scores = self._scores(run)
        self.store.transition(run.run_id, Status.VALIDATED, s3_key=sub_key, **scores)
        return {"s3_key": sub_key, **scores}

    def _read(self, key: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=self.settings.artifacts_bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def _scores(self, run: Run) -> dict[str, Any]:
        scores: dict[str, Any] = {}
        if run.cv_score is not None:
            scores["cv_score"] = run.cv_score
        if run.metric:
            scores["metric"] = run.metric
        if scores.keys() >= {"cv_score", "metric"}:
            return scores
        result = read_or_none(lambda: self._read(run.result_key or result_key(run.run_id)))
        if result is not None:
            if "cv_score" not in scores and result.cv_score is not None:
                scores["cv_score"] = float(result.cv_score)
            if "metric" not in scores and result.metric is not None:
                scores["metric"] = result.metric
        return scores

    def mark_succeeded(self, event: Mapping[str, Any]) -> dict[str, Any]:
        run_id = str(event.get("run_id", ""))
        self.store.transition(run_id, Status.SUCCEEDED)
        self.store.release_slot(run_id)  # a no-op unless an earlier attempt stopped between the two writes
        run = self.store.get(run_id)
        if run is None:
            raise RunNotFound(f"no run with id {run_id[:80]!r}")
        if run.status is not Status.SUCCEEDED:
            raise RunAlreadyEnded(run.error or f"the run is {run.status.value}")
        expiry = self.settings.presign_expiry_s
        link = self.presign(run.s3_key or submission_key(run_id), expiry)
        emailed = deliver_once(self.store, run, self._success_email(run, link, expiry), self.mailer)
        return {"status": run.status.value, "emailed": emailed}

    def _success_email(self, run: Run, link: str, expiry: int) -> Email:
        """The success email with the leaderboard (result.json), the chart and the report's link, when uploaded."""
        result = run_view.read_result(run, self._read, result_key(run.run_id))
        chart = self._read(run.chart_key) if run.chart_key else None
        report = self.presign(run.report_key, expiry) if run.report_key else None
        return success_email(run, link, expiry, report_link=report, result=result, chart=chart)

    def mark_failed(self, event: Mapping[str, Any]) -> dict[str, Any]:
        run_id = str(event.get("run_id", ""))
        return self.finish_failed(run_id, reason_from_error(event.get("error")))

    def finish_failed(self, run_id: str, reason: str) -> dict[str, Any]:
        """FAILED with `reason` (unless already terminal), slot back, one failure email. Safe to repeat."""
        self.store.fail(run_id, reason[:STORED_REASON_MAX_CHARS])
        released = self.store.release_slot(run_id)
        run = self.store.get(run_id)
        if run is None:
            return {"status": "UNKNOWN", "emailed": False, "released": released}
        emailed = run.status is Status.FAILED and deliver_once(self.store, run, failure_email(run), self.mailer)
        return {"status": run.status.value, "reason": run.error, "emailed": emailed, "released": released}

    def reconcile(self, detail: Mapping[str, Any]) -> dict[str, Any]:
        """An execution ended badly: no run may stay non-terminal (or hold its slot) after its execution ended."""
        status = str(detail.get("status", ""))
        # EventBridge hands over every state machine's executions in the account: only ours may fail a run.
        if status not in ENDED_BADLY or not orchestrator.is_own_state_machine(
            detail.get("stateMachineArn"), self.settings
        ):
            return {"ignored": True}
        run_id = str(detail.get("name", ""))
        if self.store.get(run_id) is None:
            return {"ignored": True}
        return self.finish_failed(run_id, execution_end_reason(detail))

    # -- the sweeper ---------------------------------------------------------------------------------------------------

    def sweep(self, limit: int = SWEEP_LIMIT) -> dict[str, Any]:
        """Every run still holding a slot: a terminal one gets its slot back; a live one whose execution ended (or
        that never got one, past SWEEP_GRACE_S) takes the reconciler's path. Conditional writes make it safe against
        every other path: a run another path finished meanwhile is left as that path left it."""
        report: dict[str, Any] = {"checked": 0, "released": [], "failed": [], "errors": []}
        for run_id in self.store.holding_slots(limit):
            try:
                outcome = self._sweep_run(run_id)
            except Exception as error:  # one run's trouble (a throttled read) must not stop the others
                report["errors"].append(f"{run_id}: {type(error).__name__}: {error}"[:300])
                continue
            report["checked"] += 1
            if outcome:
                report[outcome].append(run_id)
        return report

    def _sweep_run(self, run_id: str) -> str | None:
        run = self.store.get(run_id)  # the index is eventually consistent: act on the run as it is now
        if run is None or not run.slot_held:
            return None
        if run.status is Status.FAILED and run.error == CANCELLED:
            # A cancelled run keeps its slot until its workflow ended; the reconciler missed it (or it never started).
            if self._why_ended(run) is None:
                return None
            return "released" if self.finish_failed(run_id, CANCELLED)["released"] else None
        if run.status.is_terminal:
            return "released" if self.store.release_slot(run_id) else None
        reason = self._why_ended(run)
        if reason is None:
            return None
        return "failed" if self.finish_failed(run_id, reason)["status"] == Status.FAILED.value else None

    def _why_ended(self, run: Run) -> str | None:
        """Why a live run's workflow is over, or None while it may still be running."""
        age = run.age_s(self.now())
        young = age is None or age < SWEEP_GRACE_S
        arn = run.execution_arn
        if self.describe_execution is None or not (arn or self.settings.state_machine_arn):
            # Without DescribeExecution only a run that never started can be told: no execution and no step ran.
            return NEVER_STARTED if not young and not arn and run.status is Status.QUEUED else None
        # POST /run may have started the execution without recording its ARN: it is named by run_id.
        named = orchestrator.execution_arn(self.settings.state_machine_arn, run.run_id)
        execution = self.describe_execution(arn or named)
        if execution is None:
            if young:
                return None
            return f"{NEVER_STARTED} (its execution {arn} does not exist)" if arn else NEVER_STARTED
        status = str(execution.get("status", ""))
        if status == "RUNNING":
            return None
        if status == "SUCCEEDED":
            return "the workflow ended (SUCCEEDED) without recording the run's outcome"
        return execution_end_reason(
            {"status": status, "error": execution.get("error"), "cause": execution.get("cause")}
        )


def not_found(run_id: str) -> Reply:
    """The one 404 for an unknown run and for another caller's run: no existence oracle."""
    return Reply(404, {"error": f"no run with id {run_id[:80]!r}"}, {})


def parse_limit(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return LIST_DEFAULT_LIMIT
    if not raw.strip().isdigit() or not 1 <= int(raw) <= LIST_MAX_LIMIT:
        raise InvalidRequest("limit", f"limit must be a whole number from 1 to {LIST_MAX_LIMIT}")
    return int(raw)


def encode_cursor(position: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> tuple[str, str] | None:
    """The (queued_at, run_id) a `next_cursor` names; the caller is never taken from it (it is the request's)."""
    if raw is None or not raw.strip():
        return None
    bad = InvalidRequest("cursor", "cursor must be a next_cursor value from an earlier GET /runs")
    if len(raw) > MAX_CURSOR_CHARS:
        raise bad
    try:
        position = json.loads(base64.urlsafe_b64decode(raw.strip() + "=" * (-len(raw.strip()) % 4)))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise bad from None
    if (
        not isinstance(position, list)
        or len(position) != 2
        or not all(isinstance(part, str) for part in position)
        or not is_run_id(position[1])
        or not _TIMESTAMP.match(position[0])
    ):
        raise bad
    return position[0], position[1]


_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def _training_outcome(training: Any) -> tuple[int | None, str]:
    """(exit code of the runner container, ", stopped: <reason>" or "") from the ECS task description."""
    if not isinstance(training, Mapping):
        return None, ""
    stopped = training.get("StoppedReason") or ""
    suffix = f" (ECS: {stopped})" if stopped else ""
    for container in training.get("Containers") or []:
        if isinstance(container, Mapping) and container.get("ExitCode") is not None:
            return int(container["ExitCode"]), suffix
    return None, suffix


# Exit codes a killed container reports: 128 + signal on ECS, -signal from a local subprocess.
_KILLED = {
    137: "killed by SIGKILL: out of memory or a forced stop",
    -9: "killed by SIGKILL: out of memory or a forced stop",
}
_KILLED |= {143: "stopped by SIGTERM", -15: "stopped by SIGTERM"}


def _container_note(task: Mapping[str, Any]) -> str:
    """ " (runner exit code 137: killed by SIGKILL ...; <container reason>)" from an ECS task description, or ""."""
    for container in task.get("Containers") or []:
        if not isinstance(container, Mapping) or container.get("ExitCode") is None:
            continue
        code = container["ExitCode"]
        notes = [f"runner exit code {code}" + (f": {_KILLED[code]}" if code in _KILLED else "")]
        if container.get("Reason"):
            notes.append(str(container["Reason"]))
        return f" ({'; '.join(notes)})"
    return ""


def reason_from_error(error: Any) -> str:
    """A readable reason from the `{"Error", "Cause"}` a Catch hands over (Lambda errors carry JSON causes)."""
    if not isinstance(error, Mapping):
        return "the run failed for an unknown reason"
    name = str(error.get("Error") or "Error")
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause) if isinstance(cause, str) and cause.strip().startswith("{") else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        if parsed.get("errorMessage"):
            return str(parsed["errorMessage"])
        if parsed.get("StoppedReason"):
            return f"the training task stopped: {parsed['StoppedReason']}{_container_note(parsed)}"
    if name == "States.Timeout":
        return "a step of the run timed out" + (f": {cause}" if cause else "")
    return f"{name}: {cause}" if cause else name


def execution_end_reason(detail: Mapping[str, Any]) -> str:
    status = detail.get("status")
    if status == "TIMED_OUT":
        return "the run timed out: the workflow's time limit was reached"
    if status == "ABORTED":
        return "the run was aborted (its workflow was stopped)"
    error, cause = detail.get("error") or "", detail.get("cause") or ""
    return "the workflow failed" + (f": {reason_from_error({'Error': error, 'Cause': cause})}" if error else "")
