"""The emails a run sends: a link to the submission on success, the reason and what to do on failure.

A run is emailed at most once: `RunStore.claim_notification` is a conditional write, so a retried Lambda or a reconciler
racing MarkFailed cannot send twice. If the mailer refuses (SES: unverified address, throttling) the run's status stays
right and the refusal is recorded on the run as `email_error`.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

from chalicelib.run_request import rules_url
from chalicelib.runs import Run, RunStore, Status

MAX_REASON_CHARS = 2000
_EML_POLICY = policy.default.clone(max_line_length=998)  # RFC 5322's limit; presigned links are ~600 characters


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    def send(self, email: Email) -> None: ...


class SesMailer:
    """Plain-text mail through SES `SendEmail` (the sender address must be verified in SES)."""

    def __init__(self, ses_client: Any, sender: str) -> None:
        self._ses = ses_client
        self._sender = sender

    def send(self, email: Email) -> None:
        self._ses.send_email(
            Source=self._sender,
            Destination={"ToAddresses": [email.to]},
            Message={
                "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": email.body, "Charset": "UTF-8"}},
            },
        )


class OutboxMailer:
    """The local stage's mailbox: each email becomes an `.eml` file in a directory (KAGENT_OUTBOX)."""

    def __init__(self, directory: Path, sender: str = "kagent@example.com") -> None:
        self._directory = directory
        self._sender = sender

    def send(self, email: Email) -> None:
        message = EmailMessage(policy=_EML_POLICY)
        message["From"] = self._sender
        message["To"] = email.to
        message["Subject"] = email.subject
        message["Date"] = formatdate(localtime=False)
        message.set_content(email.body)  # 7bit while lines fit 998 characters: the link stays one clickable line
        self._directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}-{_safe(email.to)}.eml"
        temporary = self._directory / f".{name}.tmp"
        temporary.write_bytes(bytes(message))
        temporary.replace(self._directory / name)  # readers never see half a file


class CopyingMailer:
    """Files a copy of every email (the local outbox) and then sends it through the real mailer (SES)."""

    def __init__(self, mailer: Mailer, copy_to: Mailer) -> None:
        self._mailer = mailer
        self._copy_to = copy_to

    def send(self, email: Email) -> None:
        self._copy_to.send(email)
        self._mailer.send(email)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._-]", "_", text)[:80]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    if not minutes:
        return f"{secs} s"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"


def success_email(run: Run, link: str, expiry_s: int) -> Email:
    score = f"{run.cv_score:.6g}" if run.cv_score is not None else "not reported"
    took = _duration(run.seconds_between(Status.QUEUED, Status.SUCCEEDED))
    body = "\n".join(
        [
            f"Your kagent run for the Kaggle competition '{run.slug}' succeeded.",
            "",
            f"Competition: {run.url}",
            f"Metric:      {run.metric or 'not reported'}",
            f"CV score:    {score}",
            f"Took:        {took}",
            "",
            f"Download submission.csv (the link expires in {_duration(expiry_s)}):",
            link,
            "",
            f"Submit it at {run.url}/submit",
            f"Run id: {run.run_id}",
        ]
    )
    return Email(to=run.email, subject=f"kagent: your submission for {run.slug} is ready", body=body)


# (words any of which in the reason, advice); the first match wins.
_ADVICE: tuple[tuple[tuple[str, ...], str], ...] = (
    (("credential", "401", "unauthor"), "Credentials were rejected: fix the Kaggle or LLM credentials, then retry."),
    (("no such competition", "404"), "Check the competition URL: Kaggle does not know this competition."),
    (
        ("timed out", "timeout", "time budget", "aborted"),
        "The run ran out of time or was stopped. Retry later; a smaller competition may fit the time budget better.",
    ),
    (
        ("unavailable", "throttl", "throughput", "rate exceeded", "capacity", "429", "503", "try again"),
        "A service was busy. Retry in a few minutes.",
    ),
    (("submission",), "The agent's submission did not pass the checks listed above. Retry, or report the run id."),
)


def advice_for(reason: str, slug: str) -> str:
    """What the user can do about a failure, from its reason."""
    text = reason.lower()
    if "rules" in text and "accept" in text:
        return f"Accept the competition rules at {rules_url(slug)} with the Kaggle account kagent uses, then retry."
    for words, advice in _ADVICE:
        if any(word in text for word in words):
            return advice
    return "Retry later; if it keeps failing, report the run id."


def failure_email(run: Run) -> Email:
    reason = (run.error or "unknown reason")[:MAX_REASON_CHARS]
    body = "\n".join(
        [
            f"Your kagent run for the Kaggle competition '{run.slug}' failed.",
            "",
            "Reason:",
            reason,
            "",
            "What to do:",
            advice_for(reason, run.slug),
            "",
            f"Competition: {run.url}",
            f"Run id: {run.run_id}",
        ]
    )
    return Email(to=run.email, subject=f"kagent: your run for {run.slug} failed", body=body)


def deliver_once(store: RunStore, run: Run, email: Email, mailer: Mailer) -> bool:
    """Send `email` unless this run was already emailed; a refusal is recorded on the run, never raised."""
    if not store.claim_notification(run.run_id):
        return False
    try:
        mailer.send(email)
    except Exception as error:  # SES refusal or throttling: the status stays right; say why on the run
        store.record(run.run_id, email_error=_describe(error))
        return False
    return True


def _describe(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        detail = response["Error"]
        return f"{detail.get('Code', type(error).__name__)}: {detail.get('Message', '')}"[:500]
    return f"{type(error).__name__}: {error}"[:500]
