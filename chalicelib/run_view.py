"""What a user sees of a run beyond its status (issue 14): live progress, links to its artifacts, its cost and the
Kaggle submission — for GET /runs/{id} and the success email. Plain functions over a Run and a presigner.

Links are presigned only for artifacts the runner recorded on the run (`report_key`, `logs_key`, `result_key`,
`trace_key`), whatever the status: a failed run's logs are worth reading too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.run_report import RunReport, read_or_none
from chalicelib.runs import Run

Presign = Callable[[str, int], str]  # (key, expiry seconds) -> URL
Read = Callable[[str], bytes | None]  # key -> bytes, None when absent

ARTIFACT_LINKS = (
    ("report_url", "report_key"),
    ("logs_url", "logs_key"),
    ("result_url", "result_key"),
    ("trace_url", "trace_key"),
)


def artifact_links(run: Run, presign: Presign, expiry_s: int) -> dict[str, str | None]:
    """`report_url`, `logs_url`, `result_url`, `trace_url`: a presigned GET each, or None when not uploaded."""
    links: dict[str, str | None] = {}
    for name, attribute in ARTIFACT_LINKS:
        key = getattr(run, attribute)
        links[name] = presign(key, expiry_s) if key else None
    return links


def describe_fields(run: Run, presign: Presign, expiry_s: int) -> dict[str, Any]:
    """The GET /runs/{id} fields of issue 14 (see openapi.json's RunView)."""
    return {
        "submit": run.submit,
        "progress": run.progress,
        "cost": run.cost,
        "kaggle_submission": run.kaggle_submission,
        "links": artifact_links(run, presign, expiry_s),
        "links_expire_in_s": expiry_s,
    }


def read_result(run: Run, read: Read, default_key: str) -> RunReport | None:
    """The runner's result.json (None when absent, unreadable, or of a newer version than this service reads)."""
    return read_or_none(lambda: read(run.result_key or default_key))


def leaderboard_rows(result: RunReport | None, limit: int = 10) -> list[dict[str, Any]]:
    """The leaderboard as the runner ranked it (result.json's `leaderboard`), at most `limit` rows."""
    rows = result.leaderboard if result is not None else None
    if not rows:
        return []
    return [dict(row) for row in rows[:limit] if isinstance(row, Mapping) and row.get("name")]
