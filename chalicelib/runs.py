"""The run store: what DynamoDB knows about every run, and the rules for changing it.

One table, partition key `run_id`. Besides one item per run it holds a single slot counter item
(`run_id = "#slots"`, attribute `in_flight`). Admission is one transaction: increment the counter under
`in_flight < max` and put the QUEUED run item under `attribute_not_exists(run_id)`, so concurrent requests can never
over-admit. A run item holds its slot while `slot_held` is present; the terminal transition removes `slot_held` and
decrements the counter in the same transaction, and `release_slot` does the same for a run that is already terminal —
the `slot_held` condition makes the release happen exactly once whatever path gets there. Status changes only move
forward (conditional updates); a duplicate is a no-op.

While a run holds its slot it also carries `holding = "slot"`, written and removed together with `slot_held`: the key
of the sparse index SLOT_INDEX (sort key `queued_at`), which therefore lists exactly the runs holding a slot, oldest
first — at most KAGENT_MAX_RUNNING plus any leaked ones, however many runs the table keeps. The sweeper reads it.

Every run records its `caller` (the IAM identity API Gateway verified); the index CALLER_INDEX (partition key `caller`,
sort key `queued_at`) lists one caller's runs newest first for `GET /runs`. A caller's runs per UTC day are counted in
one quota item per caller and day (`run_id = "#quota#<day>#<caller>"`, attribute `runs`), taken in the admission
transaction under `runs < limit`, so the quota is as exact as the slots.
"""

from __future__ import annotations

import enum
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from chalicelib.retry import Backoff, GaveUp, UniformFrom, retry_call

SLOTS_KEY = "#slots"
QUOTA_KEY_PREFIX = "#quota#"  # + "<YYYY-MM-DD>#<caller>": runs admitted for the caller that UTC day
QUOTA_KEEP_S = 2 * 86400  # quota items carry `expires_at` (epoch seconds) for the table's TTL
CALLER_INDEX = "runs-by-caller"  # partition key `caller`, sort key queued_at: GET /runs, newest first
# What the caller index projects besides its keys: what a listing shows (GET /runs/{id} reads the whole run).
CALLER_INDEX_ATTRIBUTES = (
    "status", "slug", "error", "cv_score", "metric", "planned_at", "running_at", "validated_at", "succeeded_at",
    "failed_at",
)  # fmt: skip
LOCAL_CALLER = "local"  # chalicelib.run_request.LOCAL_CALLER: the one caller of the local stage
SLOT_INDEX = "runs-holding-slots"  # a sparse GSI: partition key HOLDING, sort key queued_at, keys only
HOLDING = "holding"  # present (= HOLDING_SLOT) exactly while slot_held is
HOLDING_SLOT = "slot"
_RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c1bd2-5d8e-4a4e-9d8e-6b6167656e74")
_CONFLICT_RETRIES = 8
# A transaction that lost a race on the slot counter (TransactionConflict) is tried again after 0-10 ms, 0-20 ms, ...
# at most 0-500 ms, _CONFLICT_RETRIES times in all.
CONFLICT_BACKOFF = Backoff(attempts=_CONFLICT_RETRIES, base_s=0.01, cap_s=0.5)
_T = TypeVar("_T")


class _Contended(Exception):
    """A transaction lost a race on the slot counter with another one: trying again will likely succeed."""


class Status(enum.StrEnum):
    QUEUED = "QUEUED"
    PLANNED = "PLANNED"
    RUNNING = "RUNNING"
    VALIDATED = "VALIDATED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (Status.SUCCEEDED, Status.FAILED)

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def can_move_to(self, target: Status) -> bool:
        """Forward only, never out of a terminal status; FAILED is reachable from every non-terminal status."""
        if self.is_terminal:
            return False
        return target is Status.FAILED or target.rank > self.rank

    def predecessors(self) -> tuple[Status, ...]:
        """The statuses from which a transition to `self` is allowed."""
        return tuple(s for s in Status if s.can_move_to(self))

    @property
    def timestamp_attribute(self) -> str:
        return f"{self.value.lower()}_at"


_ORDER = (Status.QUEUED, Status.PLANNED, Status.RUNNING, Status.VALIDATED, Status.SUCCEEDED, Status.FAILED)


class AdmissionRefused(Exception):
    """Every run slot is taken (or the slot counter stayed contended); retry after a while."""

    def __init__(self, max_running: int) -> None:
        super().__init__(f"all {max_running} run slots are in use; retry later")
        self.max_running = max_running


class QuotaExceeded(Exception):
    """The caller has started its runs for today; `retry_after_s` is the time until the next UTC day."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(f"you have started {limit} runs today, the most one caller may (UTC day); retry tomorrow")
        self.limit = limit
        self.retry_after_s = retry_after_s


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before, by the same caller, for another request."""


class NewRun(Protocol):
    """What admission needs from a validated request (chalicelib.run_request.RunRequest satisfies it)."""

    @property
    def url(self) -> str: ...
    @property
    def slug(self) -> str: ...
    @property
    def email(self) -> str: ...


# Attributes `record`/`transition` may set, with their Run field names (same name in DynamoDB).
RECORDABLE = frozenset(
    {
        "plan",
        "plan_summary",
        "cv_score",
        "metric",
        "error",
        "s3_key",
        "sample_key",
        "result_key",
        "s3_prefix",
        "email_error",
        "execution_arn",
        "notified_at",
        # issue 14: what the user sees (progress is written by RunStore.record_progress, conditionally)
        "report_key",
        "logs_key",
        "trace_key",
        "chart_key",
        "cost",
        "kaggle_submission",
    }
)
NON_TERMINAL = ("QUEUED", "PLANNED", "RUNNING", "VALIDATED")


@dataclass(frozen=True)
class Run:
    run_id: str
    url: str
    slug: str
    email: str
    status: Status
    timestamps: dict[str, str] = field(default_factory=dict)  # Status value -> ISO 8601 UTC
    plan: dict[str, Any] | None = None
    plan_summary: str | None = None
    cv_score: float | None = None
    metric: str | None = None
    error: str | None = None
    s3_key: str | None = None  # submission.csv
    sample_key: str | None = None  # the competition's sample submission, stored by the runner
    result_key: str | None = None  # the runner's result.json
    s3_prefix: str | None = None
    email_error: str | None = None
    execution_arn: str | None = None
    notified_at: str | None = None
    idempotency_key: str | None = None
    idempotency_caller: str | None = None  # whose key it is: keys are scoped to the caller that sent them
    caller: str | None = None  # who started the run: only this caller may read, list or cancel it (None: before owners)
    slot_held: bool = False
    # issue 14: live progress, the report's artifacts, the cost and the Kaggle submission (chalicelib/progress_view.py)
    submit: bool = False  # POST /run asked for the submission to be sent to Kaggle
    progress: dict[str, Any] | None = None
    report_key: str | None = None
    logs_key: str | None = None
    trace_key: str | None = None
    chart_key: str | None = None
    cost: dict[str, Any] | None = None
    kaggle_submission: dict[str, Any] | None = None

    @property
    def created_at(self) -> str:
        return self.timestamps.get(Status.QUEUED.value, "")

    def age_s(self, now: datetime) -> float | None:
        """Seconds since admission, or None without a QUEUED timestamp."""
        return (now - _parse_time(self.created_at)).total_seconds() if self.created_at else None

    def seconds_between(self, first: Status, last: Status) -> float | None:
        start, end = self.timestamps.get(first.value), self.timestamps.get(last.value)
        if not start or not end:
            return None
        return (_parse_time(end) - _parse_time(start)).total_seconds()

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Run:
        plain = {k: _from_dynamo(v) for k, v in item.items()}
        timestamps = {s.value: plain[s.timestamp_attribute] for s in Status if s.timestamp_attribute in plain}
        known = {name for name in cls.__dataclass_fields__} - {"timestamps", "status", "slot_held", "submit"}
        cv = plain.get("cv_score")
        return cls(
            status=Status(plain["status"]),
            timestamps=timestamps,
            slot_held=bool(plain.get("slot_held", False)),
            submit=plain.get("submit") is True,
            **{k: v for k, v in plain.items() if k in known and k != "cv_score"},
            cv_score=float(cv) if cv is not None else None,
        )


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def table_spec(name: str) -> dict[str, Any]:
    """boto3 `create_table` arguments for the runs table, its sparse SLOT_INDEX and CALLER_INDEX included (what
    terraform/ creates; the local stack and the tests create it from here)."""
    return {
        "TableName": name,
        "KeySchema": [{"AttributeName": "run_id", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": name_, "AttributeType": "S"} for name_ in ("run_id", HOLDING, "queued_at", "caller")
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": SLOT_INDEX,
                "KeySchema": [
                    {"AttributeName": HOLDING, "KeyType": "HASH"},
                    {"AttributeName": "queued_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {
                "IndexName": CALLER_INDEX,
                "KeySchema": [
                    {"AttributeName": "caller", "KeyType": "HASH"},
                    {"AttributeName": "queued_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(CALLER_INDEX_ATTRIBUTES)},
            },
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.match(text))


def run_id_for(idempotency_key: str | None, caller: str = "") -> str:
    """A fresh id, or the one id a caller's idempotency key always maps to (so a retried admission hits the same item).

    The caller is part of the name: the same key from two callers gives two runs, and knowing someone else's key
    gives nothing."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, json.dumps([caller, idempotency_key])))


class RunStore:
    """Runs in a DynamoDB table. `table` is a boto3 `Table` resource (its `meta.client` runs the transactions)."""

    def __init__(
        self, table: Any, clock: Callable[[], datetime] = utc_now, sleep: Callable[[float], None] = time.sleep
    ):
        self._table = table
        self._client = table.meta.client
        self._clock = clock
        self._sleep = sleep

    # -- reading -----------------------------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        if not is_run_id(run_id):
            return None
        item = self._table.get_item(Key={"run_id": run_id}, ConsistentRead=True).get("Item")
        return Run.from_item(item) if item else None

    def holding_slots(self, limit: int) -> list[str]:
        """Ids of runs holding a slot, oldest first, at most `limit` (from the sparse index: eventually consistent, so
        callers read each run again before acting)."""
        run_ids: list[str] = []
        query: dict[str, Any] = {
            "IndexName": SLOT_INDEX,
            "KeyConditionExpression": "#h = :slot",
            "ExpressionAttributeNames": {"#h": HOLDING},
            "ExpressionAttributeValues": {":slot": HOLDING_SLOT},
        }
        while len(run_ids) < limit:
            page = self._table.query(**query, Limit=limit - len(run_ids))
            run_ids += [str(item["run_id"]) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return run_ids[:limit]

    def in_flight(self) -> int:
        item = self._table.get_item(Key={"run_id": SLOTS_KEY}, ConsistentRead=True).get("Item") or {}
        return int(item.get("in_flight", 0))

    # -- admission ---------------------------------------------------------------------------------------------------

    def admit(
        self,
        request: NewRun,
        max_running: int,
        idempotency_key: str | None = None,
        caller: str = LOCAL_CALLER,
        runs_per_day: int | None = None,
    ) -> Run:
        """Take a slot (and, with `runs_per_day`, one of the caller's runs of the UTC day) and create the QUEUED run,
        atomically. The same caller's same idempotency key returns the same run, or IdempotencyConflict when it came
        with another request (another caller's same key is another run)."""
        run_id = run_id_for(idempotency_key, caller)
        if idempotency_key is not None and (existing := self.get(run_id)) is not None:
            return _same_request(existing, request)
        moment = self._clock()
        now = format_time(moment)
        item: dict[str, Any] = {
            "run_id": run_id,
            "url": request.url,
            "slug": request.slug,
            "email": request.email,
            "status": Status.QUEUED.value,
            Status.QUEUED.timestamp_attribute: now,
            "slot_held": True,
            HOLDING: HOLDING_SLOT,
        }
        if caller:
            item["caller"] = caller
        if getattr(request, "submit", False) is True:
            item["submit"] = True
        if idempotency_key is not None:
            item["idempotency_key"] = idempotency_key
            item["idempotency_caller"] = caller
        # The quota item goes first: when both the quota and the slots refuse, the longer wait is the one to report.
        writes = [self._take_slot(max_running), self._put_new(item)]
        if runs_per_day is not None:
            writes.insert(0, self._take_quota(caller, moment, runs_per_day))
        slot, put = len(writes) - 2, len(writes) - 1

        def once() -> Run:
            try:
                self._client.transact_write_items(TransactItems=writes)
                return Run.from_item(item)
            except self._client.exceptions.TransactionCanceledException as error:
                codes = _cancellation_codes(error, len(writes))
                if codes[put] == "ConditionalCheckFailed" and (existing := self.get(run_id)) is not None:
                    return _same_request(existing, request)  # the same key won a concurrent race
                if runs_per_day is not None and codes[0] == "ConditionalCheckFailed":
                    raise QuotaExceeded(runs_per_day, _seconds_to_next_day(moment)) from None
                if codes[slot] == "ConditionalCheckFailed":
                    raise AdmissionRefused(max_running) from None
                raise _Contended() from error  # TransactionConflict on the counter: someone else was admitted just now

        try:
            return self._retry_contended(once)
        except GaveUp:
            raise AdmissionRefused(max_running) from None

    def _take_quota(self, caller: str, moment: datetime, limit: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": {"run_id": quota_key(caller, moment)},
                "UpdateExpression": "SET #r = if_not_exists(#r, :zero) + :one, expires_at = :expires",
                "ConditionExpression": "attribute_not_exists(#r) OR #r < :limit",
                "ExpressionAttributeNames": {"#r": "runs"},
                "ExpressionAttributeValues": {
                    ":zero": 0,
                    ":one": 1,
                    ":limit": limit,
                    ":expires": int(moment.timestamp()) + QUOTA_KEEP_S,
                },
            }
        }

    def runs_today(self, caller: str) -> int:
        """How many runs `caller` started this UTC day (the quota item's count)."""
        key = quota_key(caller, self._clock())
        item = self._table.get_item(Key={"run_id": key}, ConsistentRead=True).get("Item") or {}
        return int(item.get("runs", 0))

    def list_for(
        self, caller: str, limit: int, after: tuple[str, str] | None = None
    ) -> tuple[list[Run], tuple[str, str] | None]:
        """`caller`'s runs, newest first, at most `limit`, from the caller index (eventually consistent: a run admitted
        a moment ago may show a moment later). Returns the runs (with the index's attributes only) and the position
        to continue after (queued_at, run_id), or None at the end."""
        query: dict[str, Any] = {
            "IndexName": CALLER_INDEX,
            "KeyConditionExpression": "#c = :caller",
            "ExpressionAttributeNames": {"#c": "caller"},
            "ExpressionAttributeValues": {":caller": caller},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after is not None:
            query["ExclusiveStartKey"] = {"caller": caller, "queued_at": after[0], "run_id": after[1]}
        page = self._table.query(**query)
        runs = [Run.from_item({"url": "", "email": "", **item}) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return runs, (str(last["queued_at"]), str(last["run_id"])) if last else None

    def _take_slot(self, max_running: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": {"run_id": SLOTS_KEY},
                "UpdateExpression": "SET in_flight = if_not_exists(in_flight, :zero) + :one",
                "ConditionExpression": "attribute_not_exists(in_flight) OR in_flight < :max",
                "ExpressionAttributeValues": {":zero": 0, ":one": 1, ":max": max_running},
            }
        }

    def _put_new(self, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table.name,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(run_id)",
            }
        }

    def _give_back_slot(self) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": {"run_id": SLOTS_KEY},
                "UpdateExpression": "SET in_flight = in_flight - :one",
                "ConditionExpression": "in_flight >= :one",
                "ExpressionAttributeValues": {":one": 1},
            }
        }

    def _retry_contended(self, once: Callable[[], _T]) -> _T:
        """`once()`, retried while it loses races on the slot counter (`_Contended`); GaveUp when they go on."""
        return retry_call(
            once,
            backoff=CONFLICT_BACKOFF,
            retryable=lambda error: isinstance(error, _Contended),
            sleep=self._sleep,
            rng=UniformFrom(random.random),
        )

    # -- changing ----------------------------------------------------------------------------------------------------

    def transition(self, run_id: str, status: Status, **attrs: Any) -> bool:
        """Move the run forward to `status`, setting `attrs` too; False when already there, past it, or terminal.

        A terminal transition gives the run's slot back in the same transaction.
        """
        status = Status(status)
        if not is_run_id(run_id) or not status.predecessors():  # nothing moves to QUEUED
            return False
        update = self._status_update(run_id, status, attrs)
        if not status.is_terminal:
            return self._conditional_update(update)
        holding = dict(update)
        holding["UpdateExpression"] += f" REMOVE slot_held, {HOLDING}"
        holding["ConditionExpression"] = f"({update['ConditionExpression']}) AND attribute_exists(slot_held)"

        def once() -> bool:
            try:
                self._client.transact_write_items(TransactItems=[{"Update": holding}, self._give_back_slot()])
                return True
            except self._client.exceptions.TransactionCanceledException as error:
                codes = _cancellation_codes(error)
                if codes[0] == "ConditionalCheckFailed":
                    # Either not allowed (duplicate, backwards, unknown) or the run holds no slot: try without one.
                    without = dict(update)
                    without["ConditionExpression"] = (
                        f"({update['ConditionExpression']}) AND attribute_not_exists(slot_held)"
                    )
                    return self._conditional_update(without)
                raise _Contended() from error

        try:
            return self._retry_contended(once)
        except GaveUp:
            raise RuntimeError(
                f"run {run_id}: the slot counter stayed contended; transition to {status} not applied"
            ) from None

    def fail(self, run_id: str, reason: str) -> bool:
        return self.transition(run_id, Status.FAILED, error=reason)

    def fail_keeping_slot(self, run_id: str, reason: str) -> bool:
        """FAILED with `reason` from any live status, but still holding its slot: the slot goes back (release_slot)
        once the workflow has really ended (the reconciler, MarkFailed or the sweeper), never while its task may still
        run. DELETE /runs/{id} uses it, and so does the runner, whose role may not write the slot counter. False when
        the run is unknown or already terminal."""
        if not is_run_id(run_id):
            return False
        return self._conditional_update(self._status_update(run_id, Status.FAILED, {"error": reason}))

    def record(self, run_id: str, **attrs: Any) -> None:
        """Set non-status attributes of an existing run (allowed in any status, e.g. an email error after FAILED)."""
        _check_recordable(attrs)
        if not attrs:
            return
        names, values, sets = _assignments(attrs)
        names["#rid"] = "run_id"
        self._table.update_item(
            Key={"run_id": run_id},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_exists(#rid)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def record_progress(self, run_id: str, progress: Mapping[str, Any]) -> bool:
        """Store the runner's live progress; refused (False) once the run is terminal, so a late write from a runner
        that lost the race with MarkFailed or the sweeper never touches a finished run."""
        if not is_run_id(run_id):
            return False
        values: dict[str, Any] = {":progress": _to_dynamo(dict(progress))}
        values.update({f":s{i}": status for i, status in enumerate(NON_TERMINAL)})
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET progress = :progress",
                ConditionExpression=f"#s IN ({', '.join(f':s{i}' for i in range(len(NON_TERMINAL)))})",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim_notification(self, run_id: str) -> bool:
        """True exactly once per run: the caller may send its email (sets `notified_at`)."""
        if not is_run_id(run_id):
            return False
        try:
            self._table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET notified_at = :now",
                ConditionExpression="attribute_exists(run_id) AND attribute_not_exists(notified_at)",
                ExpressionAttributeValues={":now": format_time(self._clock())},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release_slot(self, run_id: str) -> bool:
        """Give a terminal run's slot back if it still holds one; True only the one time it actually happens."""
        if not is_run_id(run_id):
            return False
        terminal = [s.value for s in Status if s.is_terminal]
        release = {
            "TableName": self._table.name,
            "Key": {"run_id": run_id},
            "UpdateExpression": f"REMOVE slot_held, {HOLDING}",
            "ConditionExpression": "attribute_exists(slot_held) AND #s IN (:t0, :t1)",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":t0": terminal[0], ":t1": terminal[1]},
        }

        def once() -> bool:
            try:
                self._client.transact_write_items(TransactItems=[{"Update": release}, self._give_back_slot()])
                return True
            except self._client.exceptions.TransactionCanceledException as error:
                if _cancellation_codes(error)[0] == "ConditionalCheckFailed":
                    return False
                raise _Contended() from error

        try:
            return self._retry_contended(once)
        except GaveUp:
            return False

    def _status_update(self, run_id: str, status: Status, attrs: Mapping[str, Any]) -> dict[str, Any]:
        _check_recordable(attrs)
        stamped = {**attrs, "status": status.value, status.timestamp_attribute: format_time(self._clock())}
        names, values, sets = _assignments(stamped)
        allowed = status.predecessors()
        placeholders = []
        for i, previous in enumerate(allowed):
            values[f":from{i}"] = previous.value
            placeholders.append(f":from{i}")
        return {
            "TableName": self._table.name,
            "Key": {"run_id": run_id},
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": f"#n_status IN ({', '.join(placeholders)})",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def _conditional_update(self, update: Mapping[str, Any]) -> bool:
        kwargs = {k: v for k, v in update.items() if k != "TableName"}
        try:
            self._table.update_item(**kwargs)
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True


def _check_recordable(attrs: Mapping[str, Any]) -> None:
    unknown = set(attrs) - RECORDABLE
    if unknown:
        raise ValueError(f"not a recordable run attribute: {', '.join(sorted(unknown))}")


def _assignments(attrs: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    """`SET #n_x = :v_x` pieces for an UpdateExpression."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets: list[str] = []
    for name, value in attrs.items():
        names[f"#n_{name}"] = name
        sets.append(f"#n_{name} = :v_{name}")
        if value is None:
            raise ValueError(f"{name} must not be None")
        values[f":v_{name}"] = _to_dynamo(value)
    return names, values, sets


def _cancellation_codes(error: Any, items: int = 2) -> list[str]:
    reasons = error.response.get("CancellationReasons") or []
    codes = [str(r.get("Code", "None")) for r in reasons]
    return codes + ["None"] * (items - len(codes))


def quota_key(caller: str, moment: datetime) -> str:
    return f"{QUOTA_KEY_PREFIX}{moment.astimezone(UTC).date().isoformat()}#{caller}"


def _seconds_to_next_day(moment: datetime) -> int:
    utc = moment.astimezone(UTC)
    midnight = datetime(utc.year, utc.month, utc.day, tzinfo=UTC) + timedelta(days=1)
    return max(1, math.ceil((midnight - utc).total_seconds()))


def _same_request(existing: Run, request: NewRun) -> Run:
    """The run an idempotent replay returns, or IdempotencyConflict when the replay asks for something else."""
    if (existing.url, existing.email) != (request.url, request.email):
        raise IdempotencyConflict(
            "this Idempotency-Key was already used for another request (a different url or email); use a new key"
        )
    return existing
