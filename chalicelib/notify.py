"""The emails a run sends: a link to the submission on success, the reason and what to do on failure.

The success email is HTML with a plain-text alternative: the score, the leaderboard, the CV chart (inline, by
Content-ID, so no mail client has to fetch an image), the Kaggle submission when one was asked for, the cost, and links
to submission.csv and report.html. The HTML is rendered by Jinja2 (autoescaped) from chalicelib/email_templates/.

A run is emailed at most once: `RunStore.claim_notification` is a conditional write, so a retried Lambda or a reconciler
racing MarkFailed cannot send twice. If the mailer refuses (SES: unverified address, throttling) the run's status stays
right and the refusal is recorded on the run as `email_error`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

from chalicelib.run_report import RunReport
from chalicelib.run_view import leaderboard_rows
from chalicelib.runs import Run, RunStore, Status
from chalicelib.vocabulary import EMAIL_REASON_MAX_CHARS, rules_url

_EML_POLICY = policy.default.clone(max_line_length=998)  # RFC 5322's limit; presigned links are ~600 characters
TEMPLATES = Path(__file__).resolve().parent / "email_templates"
CHART_CID = "cv-chart@kagent"
LEADERBOARD_ROWS = 8


@dataclass(frozen=True)
class InlineImage:
    """A PNG the HTML shows as `<img src="cid:{cid}">`."""

    cid: str
    png: bytes = field(repr=False)
    filename: str = "chart.png"


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    body: str  # the plain text (the whole email for a text-only one, the alternative for an HTML one)
    html: str | None = None
    images: tuple[InlineImage, ...] = ()


def mime_message(email: Email, sender: str) -> EmailMessage:
    """The email as MIME: text/plain, or multipart/alternative (text, then HTML with its images related to it)."""
    message = EmailMessage(policy=_EML_POLICY)
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False)
    message.set_content(email.body)  # 7bit while lines fit 998 characters: the link stays one clickable line
    if email.html is not None:
        message.add_alternative(email.html, subtype="html")
        html_part: Any = message.get_payload()[1]  # type: ignore[index]  # the part add_alternative made
        for image in email.images:
            html_part.add_related(image.png, "image", "png", cid=f"<{image.cid}>", filename=image.filename)
    return message


class Mailer(Protocol):
    def send(self, email: Email) -> None: ...


class SesMailer:
    """Plain-text mail through SES `SendEmail` (the sender address must be verified in SES)."""

    def __init__(self, ses_client: Any, sender: str) -> None:
        self._ses = ses_client
        self._sender = sender

    def send(self, email: Email) -> None:
        if email.images:  # inline images need a raw MIME message
            raw = bytes(mime_message(email, self._sender))
            self._ses.send_raw_email(Source=self._sender, Destinations=[email.to], RawMessage={"Data": raw})
            return
        body: dict[str, Any] = {"Text": {"Data": email.body, "Charset": "UTF-8"}}
        if email.html is not None:
            body["Html"] = {"Data": email.html, "Charset": "UTF-8"}
        self._ses.send_email(
            Source=self._sender,
            Destination={"ToAddresses": [email.to]},
            Message={
                "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                "Body": body,
            },
        )


class OutboxMailer:
    """The local stage's mailbox: each email becomes an `.eml` file in a directory (KAGENT_OUTBOX)."""

    def __init__(self, directory: Path, sender: str = "kagent@example.com") -> None:
        self._directory = directory
        self._sender = sender

    def send(self, email: Email) -> None:
        message = mime_message(email, self._sender)
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


def _score(value: Any, digits: int = 6) -> str:
    return f"{value:.{digits}g}" if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def kaggle_line(run: Run) -> str:
    """What became of the Kaggle submission, in one line (or where to submit by hand)."""
    submission = run.kaggle_submission
    if not run.submit or not isinstance(submission, Mapping):
        return f"Submit it at {run.url}/submit"
    status = submission.get("status")
    if status == "scored":
        return f"Submitted to Kaggle: public score {_score(submission.get('public_score'))}"
    if status == "submitted":
        return f"Submitted to Kaggle; {submission.get('reason') or 'not scored yet'}"
    return f"Not submitted to Kaggle ({status}): {submission.get('reason', '')}".rstrip(": ")


def cost_line(cost: Mapping[str, Any] | None) -> str | None:
    if not isinstance(cost, Mapping):
        return None
    parts = [f"LLM {cost.get('llm_tokens_in', 0)} tokens in, {cost.get('llm_tokens_out', 0)} out"]
    if cost.get("vcpu_seconds") is not None:
        parts.append(f"Fargate {cost['vcpu_seconds']:g} vCPU-s, {cost.get('gb_seconds', 0):g} GB-s")
    total = cost.get("total_usd")
    return (f"${total:.4f} — " if isinstance(total, int | float) else "") + "; ".join(parts)


def _text_leaderboard(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["Leaderboard (CV mean ± std over folds):"]
    for row in rows:
        mark = {"chosen": "  <- chosen", "in blend": "  (in blend)"}.get(str(row.get("role")), "")
        std = f" ± {_score(row.get('cv_std'), 2)}" if row.get("cv_std") is not None else ""
        lines.append(f"  {str(row['name'])[:44]:<44} {_score(row.get('cv_score'), 5):>9}{std}{mark}")
    return [*lines, ""]


def success_email(
    run: Run,
    link: str,
    expiry_s: int,
    *,
    report_link: str | None = None,
    result: RunReport | None = None,
    chart: bytes | None = None,
) -> Email:
    """The success email: HTML (leaderboard, inline chart, links) with the same facts as its plain-text alternative."""
    rows = leaderboard_rows(result, LEADERBOARD_ROWS)
    facts: dict[str, str] = {
        "competition": run.url,
        "metric": run.metric or "not reported",
        "cv_score": _score(run.cv_score) if run.cv_score is not None else "not reported",
        "model": (result.model if result else None) or "not reported",
        "took": _duration(run.seconds_between(Status.QUEUED, Status.SUCCEEDED)),
        "cost": cost_line(run.cost or (result.cost if result else None)) or "",
        "kaggle": kaggle_line(run),
        "expires": _duration(expiry_s),
    }
    body = "\n".join(
        [
            f"Your kagent run for the Kaggle competition '{run.slug}' succeeded.",
            "",
            f"Competition: {facts['competition']}",
            f"Metric:      {facts['metric']}",
            f"CV score:    {facts['cv_score']}",
            f"Model:       {facts['model']}",
            f"Took:        {facts['took']}",
            *([f"Cost:        {facts['cost']}"] if facts["cost"] else []),
            "",
            *_text_leaderboard(rows),
            f"Download submission.csv (the link expires in {facts['expires']}):",
            link,
            "",
            *(["The report (leaderboard, charts, feature importances, code):", report_link, ""] if report_link else []),
            facts["kaggle"],
            f"Run id: {run.run_id}",
        ]
    )
    images = (InlineImage(CHART_CID, chart, "cv_chart.png"),) if chart else ()
    html = _render(
        "success.html.j2",
        run=run,
        facts=facts,
        rows=rows,
        link=link,
        report_link=report_link,
        chart_cid=CHART_CID if chart else None,
        direction=result.metric_direction if result else None,
        score=_score,
    )
    subject = f"kagent: your submission for {run.slug} is ready"
    return Email(to=run.email, subject=subject, body=body, html=html, images=images)


def _render(template: str, **context: Any) -> str:
    # lazy: only MarkSucceeded renders
    from jinja2 import Environment, FileSystemLoader, select_autoescape  # noqa: PLC0415 - only MarkSucceeded renders

    environment = Environment(
        loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]), trim_blocks=True
    )
    return environment.get_template(template).render(**context)


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
    reason = (run.error or "unknown reason")[:EMAIL_REASON_MAX_CHARS]
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
