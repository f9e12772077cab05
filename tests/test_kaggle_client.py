"""The Kaggle download through the real `kaggle` client against a fake Kaggle server on 127.0.0.1."""

from __future__ import annotations

import io
import random
import socket
import zipfile
from collections.abc import Iterator

import pytest

from runner.data import locate_competition
from runner.kaggle_client import (
    KaggleCredentials,
    KaggleDownloader,
    KaggleError,
    RetryPolicy,
    classify,
    reason_for_http,
)
from tests.fake_clock import FakeClock
from tests.fake_kaggle import FakeKaggle, zip_bytes

TRAIN = b"id,x,y\n1,0.5,0\n2,1.5,1\n"
TEST = b"id,x\n3,0.7\n"
SAMPLE = b"id,y\n3,0\n"
NO_WAIT = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0, deadline_s=30.0, request_timeout_s=10.0)


@pytest.fixture
def fake_kaggle(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKaggle]:
    fake = FakeKaggle().start()
    fake.patch_endpoint(monkeypatch)
    yield fake
    fake.stop()


def downloader(fake: FakeKaggle, sleeps: list[float] | None = None, **credentials: str) -> KaggleDownloader:
    creds = KaggleCredentials(**credentials) if credentials else KaggleCredentials(fake.username, fake.key)
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return KaggleDownloader(creds, retry=NO_WAIT, sleep=record, rng=random.Random(0))


def download_error(fake: FakeKaggle, slug: str, tmp_path, **credentials: str) -> KaggleError:
    with pytest.raises(KaggleError) as caught:
        downloader(fake, None, **credentials).download(slug, tmp_path / "dl")
    return caught.value


def test_download_saves_the_competition_bundle_as_slug_zip(fake_kaggle: FakeKaggle, tmp_path) -> None:
    fake_kaggle.add_competition("tiny", {"train.csv": TRAIN, "test.csv": TEST, "sample_submission.csv": SAMPLE})

    path = downloader(fake_kaggle).download("tiny", tmp_path / "dl")

    assert path == tmp_path / "dl" / "tiny.zip"
    with zipfile.ZipFile(path) as archive:
        assert archive.read("train.csv") == TRAIN
        assert sorted(archive.namelist()) == ["sample_submission.csv", "test.csv", "train.csv"]
    assert fake_kaggle.file_downloads["tiny"] == 1


def test_download_with_an_api_token_uses_bearer_auth(fake_kaggle: FakeKaggle, tmp_path) -> None:
    fake_kaggle.add_competition("tiny", {"train.csv": TRAIN})

    path = downloader(fake_kaggle, api_token=fake_kaggle.token).download("tiny", tmp_path / "dl")

    assert path.is_file()


def test_a_bundle_with_zips_inside_is_unpacked_by_the_locator(fake_kaggle: FakeKaggle, tmp_path) -> None:
    inner = zip_bytes({"train.csv": TRAIN})
    fake_kaggle.add_competition("nested", {"train.csv.zip": inner, "test.csv": TEST, "sample_submission.csv": SAMPLE})

    path = downloader(fake_kaggle).download("nested", tmp_path / "dl")
    files = locate_competition(path, tmp_path / "work")

    with zipfile.ZipFile(path) as outer, zipfile.ZipFile(io.BytesIO(outer.read("train.csv.zip"))) as nested:
        assert nested.read("train.csv") == TRAIN
    assert files.train.read_bytes() == TRAIN
    assert (files.test.read_bytes(), files.sample.name) == (TEST, "sample_submission.csv")


def test_rejected_credentials_say_so(fake_kaggle: FakeKaggle, tmp_path) -> None:
    fake_kaggle.add_competition("tiny", {"train.csv": TRAIN})

    error = download_error(fake_kaggle, "tiny", tmp_path, username="alice", key="wrong")

    assert error.status == 401
    assert error.reason.startswith("Kaggle credentials rejected")
    assert fake_kaggle.api_calls["tiny"] == 1  # not retried


def test_unaccepted_rules_tell_the_user_where_to_accept_them(fake_kaggle: FakeKaggle, tmp_path) -> None:
    fake_kaggle.add_competition("titanic", {"train.csv": TRAIN})
    fake_kaggle.rules_not_accepted.add("titanic")

    error = download_error(fake_kaggle, "titanic", tmp_path)

    assert error.reason == "accept the rules at https://www.kaggle.com/c/titanic/rules, then retry"
    assert fake_kaggle.file_downloads["titanic"] == 0


def test_other_403_is_reported_as_no_permission(fake_kaggle: FakeKaggle, tmp_path) -> None:
    fake_kaggle.add_competition("closed-comp", {"train.csv": TRAIN})
    fake_kaggle.closed.add("closed-comp")

    error = download_error(fake_kaggle, "closed-comp", tmp_path)

    assert error.status == 403
    assert error.reason.startswith("no permission to download competition 'closed-comp'")
    assert "rules" not in error.reason


def test_unknown_competition_is_reported_as_missing(fake_kaggle: FakeKaggle, tmp_path) -> None:
    error = download_error(fake_kaggle, "no-such-comp", tmp_path)

    assert error.reason == "no such competition on Kaggle: 'no-such-comp' (404)"
    assert not error.transient


def test_server_errors_are_retried_until_success(fake_kaggle: FakeKaggle, tmp_path) -> None:
    fake_kaggle.add_competition("flaky", {"train.csv": TRAIN})
    fake_kaggle.fail_next("flaky", 500, 503)
    sleeps: list[float] = []

    path = downloader(fake_kaggle, sleeps).download("flaky", tmp_path / "dl")

    assert path.is_file()
    assert fake_kaggle.api_calls["flaky"] == 3
    assert len(sleeps) == 2


def test_server_errors_past_the_retry_budget_fail_with_a_transient_reason(fake_kaggle: FakeKaggle, tmp_path) -> None:
    fake_kaggle.add_competition("down", {"train.csv": TRAIN})
    fake_kaggle.fail_next("down", 500, 500, 500, 500)

    error = download_error(fake_kaggle, "down", tmp_path)

    assert error.transient
    assert error.reason == "Kaggle is unavailable (HTTP 500) while downloading 'down'; gave up after 3 attempts"
    assert fake_kaggle.api_calls["down"] == NO_WAIT.attempts
    assert fake_kaggle.file_downloads["down"] == 0


def test_connection_refused_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeKaggle()
    fake.url = f"http://127.0.0.1:{port}"
    fake.patch_endpoint(monkeypatch)
    sleeps: list[float] = []

    with pytest.raises(KaggleError) as caught:
        downloader(fake, sleeps).download("any", tmp_path / "dl")

    assert caught.value.transient
    assert "could not reach Kaggle (ConnectionError)" in caught.value.reason
    assert len(sleeps) == NO_WAIT.attempts - 1


def test_missing_credentials_fail_before_any_request(tmp_path) -> None:
    with pytest.raises(KaggleError, match="Kaggle credentials missing"):
        KaggleDownloader(KaggleCredentials()).download("tiny", tmp_path)


def test_retries_stop_at_the_time_limit_before_the_attempt_limit(tmp_path) -> None:
    clock = FakeClock()
    policy = RetryPolicy(attempts=10, base_delay_s=4.0, max_delay_s=4.0, deadline_s=10.0)
    calls: list[str] = []

    class AlwaysDown(KaggleDownloader):
        def _download_once(self, slug, dest):
            calls.append(slug)
            raise reason_for_http(502, "bad gateway", slug)

    class MaxJitter(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    down = AlwaysDown(KaggleCredentials("u", "k"), retry=policy, sleep=clock.sleep, clock=clock, rng=MaxJitter())
    with pytest.raises(KaggleError, match="10 s limit"):
        down.download("x", tmp_path)
    assert len(calls) == 3  # 0 s, 4 s, 8 s; a third 4 s wait would pass 10 s


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0)
    rng = random.Random(1)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = [policy.delay(retry, rng) for _ in range(50)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2


def test_credentials_never_show_secrets_in_repr() -> None:
    creds = KaggleCredentials.from_env({"KAGGLE_USERNAME": "bob", "KAGGLE_KEY": "s3cr3t", "KAGGLE_API_TOKEN": "tok"})
    assert "s3cr3t" not in repr(creds) and "tok" not in repr(creds) and "bob" not in repr(creds)
    assert creds.config_values() == {"token": "tok", "username": "bob"}


def test_unexpected_errors_keep_their_type_in_the_reason() -> None:
    assert classify(RuntimeError("disk full"), "x").reason == "Kaggle download of 'x' failed: RuntimeError: disk full"
    assert not classify(RuntimeError("boom"), "x").transient
    assert reason_for_http(429, "slow down", "x").transient
    assert "HTTP 400" in reason_for_http(400, "bad", "x").reason
