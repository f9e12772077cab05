"""Submitting to Kaggle through the real `kaggle` client (competition_submit, competition_submissions) against the fake
Kaggle server: success with the public score, the daily limit, a rules refusal, a scoring error and a poll timeout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.kaggle_client import (
    FAILED,
    REFUSED,
    SCORED,
    SCORING_ERROR,
    SUBMITTED,
    KaggleCredentials,
    KaggleSubmitter,
    SubmitPolicy,
)
from tests.fake_clock import FakeClock
from tests.fake_kaggle import FakeKaggle

SUBMISSION = b"id,y\n3,1\n4,0\n"


@pytest.fixture
def fake_kaggle(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKaggle]:
    fake = FakeKaggle().start()
    fake.patch_endpoint(monkeypatch)
    fake.add_competition("tiny", {"train.csv": b"id,y\n1,0\n"})
    yield fake
    fake.stop()


@pytest.fixture
def submission(tmp_path: Path) -> Path:
    path = tmp_path / "submission.csv"
    path.write_bytes(SUBMISSION)
    return path


def submitter(fake: FakeKaggle, clock: FakeClock, *, timeout_s: float = 60.0, **creds: str) -> KaggleSubmitter:
    credentials = KaggleCredentials(**creds) if creds else KaggleCredentials(fake.username, fake.key)
    policy = SubmitPolicy(poll_every_s=5.0, timeout_s=timeout_s)
    return KaggleSubmitter(credentials, policy=policy, sleep=clock.sleep, clock=clock)


def test_a_submission_is_uploaded_named_after_the_run_and_its_public_score_read_back(fake_kaggle, submission):
    clock = FakeClock()
    fake_kaggle.score_after_polls = 2  # pending on the first two polls

    outcome = submitter(fake_kaggle, clock).submit("tiny", submission, "kagent run 1234 (CV auc 0.9)")

    assert outcome.status == SCORED
    assert outcome.public_score == pytest.approx(0.87654)
    assert outcome.ref == fake_kaggle.submissions[0]["ref"]
    assert fake_kaggle.submissions[0]["content"] == SUBMISSION  # the very file, through the client's upload
    assert fake_kaggle.submissions[0]["description"] == "kagent run 1234 (CV auc 0.9)"
    assert clock.sleeps == [5.0, 5.0]  # polled until scored, no longer
    assert outcome.as_dict()["public_score"] == pytest.approx(0.87654)


def test_the_daily_limit_is_a_refusal_with_a_reason_not_an_exception(fake_kaggle, submission):
    fake_kaggle.daily_allowance = 0

    outcome = submitter(fake_kaggle, FakeClock()).submit("tiny", submission, "kagent run")

    assert outcome.status == REFUSED
    assert "daily submission limit" in outcome.reason
    assert "allowance (5)" in outcome.reason  # Kaggle's own words are kept
    assert fake_kaggle.submissions == []


def test_unaccepted_rules_are_a_refusal_naming_the_rules_page(fake_kaggle, submission):
    fake_kaggle.rules_not_accepted.add("tiny")

    outcome = submitter(fake_kaggle, FakeClock()).submit("tiny", submission, "kagent run")

    assert outcome.status == REFUSED
    assert "accept the rules at https://www.kaggle.com/c/tiny/rules" in outcome.reason


def test_rejected_credentials_are_a_refusal(fake_kaggle, submission):
    outcome = submitter(fake_kaggle, FakeClock(), username="alice", key="wrong").submit("tiny", submission, "m")

    assert outcome.status == REFUSED
    assert "401" in outcome.reason


def test_no_score_within_the_time_limit_leaves_it_submitted_with_the_reason(fake_kaggle, submission):
    clock = FakeClock()
    fake_kaggle.score_after_polls = None  # never scored

    outcome = submitter(fake_kaggle, clock, timeout_s=20.0).submit("tiny", submission, "kagent run")

    assert outcome.status == SUBMITTED
    assert "no public score within 20 s" in outcome.reason
    assert outcome.public_score is None
    assert sum(clock.sleeps) <= 20.0  # bounded
    assert len(fake_kaggle.submissions) == 1


def test_a_scoring_error_on_kaggle_is_reported(fake_kaggle, submission):
    fake_kaggle.submission_error = "Submission must have 418 rows"

    outcome = submitter(fake_kaggle, FakeClock()).submit("tiny", submission, "kagent run")

    assert outcome.status == SCORING_ERROR
    assert "418 rows" in outcome.reason


def test_a_server_error_is_a_failed_submission_not_an_exception(fake_kaggle, submission):
    fake_kaggle.fail_next("submit:tiny", 500)

    outcome = submitter(fake_kaggle, FakeClock()).submit("tiny", submission, "kagent run")

    assert outcome.status == FAILED
    assert "500" in outcome.reason


def test_missing_credentials_refuse_without_calling_kaggle(fake_kaggle, submission):
    outcome = KaggleSubmitter(KaggleCredentials()).submit("tiny", submission, "m")

    assert outcome.status == REFUSED
    assert "credentials missing" in outcome.reason
    assert sum(fake_kaggle.api_calls.values()) == 0
