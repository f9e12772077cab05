"""Emails: what they say, that each run is emailed once, and that a refusal is recorded rather than raised."""

from __future__ import annotations

import email
from datetime import UTC, datetime

import pytest

from chalicelib.notify import Email, OutboxMailer, advice_for, deliver_once, failure_email, success_email
from chalicelib.runs import Run, Status

RUN = Run(
    run_id="0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f",
    url="https://www.kaggle.com/competitions/titanic",
    slug="titanic",
    email="bob@example.com",
    status=Status.SUCCEEDED,
    timestamps={"QUEUED": "2026-01-01T00:00:00.000Z", "SUCCEEDED": "2026-01-01T00:04:05.000Z"},
    cv_score=0.8123456,
    metric="accuracy",
)


def test_success_email_names_competition_metric_score_link_and_duration():
    email = success_email(RUN, "https://bucket.s3/x?sig", 3600)
    assert email.to == "bob@example.com" and "titanic" in email.subject
    for text in ("https://bucket.s3/x?sig", "accuracy", "0.812346", "4 min 5 s", "60 min", RUN.url):
        assert text in email.body


@pytest.mark.parametrize(
    ("reason", "advice"),
    [
        ("accept the rules at https://www.kaggle.com/c/titanic/rules, then retry", "Accept the competition rules"),
        ("Kaggle credentials rejected (401)", "Credentials were rejected"),
        ("no such competition on Kaggle: 'x' (404)", "Check the competition URL"),
        ("the run timed out: the workflow's time limit was reached", "ran out of time"),
        ("Kaggle is unavailable (HTTP 503)", "Retry in a few minutes"),
        ("submission.csv failed validation: row 3: empty cell", "did not pass the checks"),
        ("something odd", "Retry later"),
    ],
)
def test_failure_advice_follows_the_reason(reason, advice):
    assert advice in advice_for(reason, "titanic")
    email = failure_email(RUN.__class__(**{**RUN.__dict__, "status": Status.FAILED, "error": reason}))
    assert reason in email.body and advice in email.body and "failed" in email.subject


def test_outbox_mailer_writes_one_eml_file_per_email(tmp_path):
    mailer = OutboxMailer(tmp_path / "outbox")
    mailer.send(Email("a@example.com", "s1", "b1"))
    mailer.send(Email("a@example.com", "s2", "b2"))
    files = list((tmp_path / "outbox").glob("*.eml"))
    parsed = [email.message_from_bytes(f.read_bytes()) for f in files]
    assert sorted(m["Subject"] for m in parsed) == ["s1", "s2"]
    assert {m["To"] for m in parsed} == {"a@example.com"}


class FakeStore:
    def __init__(self):
        self.claimed: set[str] = set()
        self.recorded: dict[str, str] = {}

    def claim_notification(self, run_id):
        if run_id in self.claimed:
            return False
        self.claimed.add(run_id)
        return True

    def record(self, run_id, **attrs):
        self.recorded.update(attrs)


class RefusingMailer:
    def send(self, email):
        error = Exception("refused")
        error.response = {"Error": {"Code": "Throttling", "Message": "Maximum sending rate exceeded."}}
        raise error


class ListMailer:
    def __init__(self):
        self.sent = []

    def send(self, email):
        self.sent.append(email)


def test_a_run_is_emailed_once():
    store, mailer = FakeStore(), ListMailer()
    email = Email("bob@example.com", "s", "b")
    assert deliver_once(store, RUN, email, mailer)
    assert not deliver_once(store, RUN, email, mailer)
    assert mailer.sent == [email]


def test_a_refusal_is_recorded_on_the_run_not_raised():
    store = FakeStore()
    assert not deliver_once(store, RUN, Email("bob@example.com", "s", "b"), RefusingMailer())
    assert store.recorded == {"email_error": "Throttling: Maximum sending rate exceeded."}


def test_duration_is_unknown_without_both_timestamps():
    run = Run(**{**RUN.__dict__, "timestamps": {}, "cv_score": None, "metric": None})
    body = success_email(run, "link", 120).body
    assert "Took:        unknown" in body and "not reported" in body
    assert datetime.now(UTC)  # the module is clock-free: durations come from the stored timestamps
