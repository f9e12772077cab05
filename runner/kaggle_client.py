"""Download a competition's files with the official `kaggle` client; Kaggle's refusals become reasons a user can act on.

The `kaggle` package is imported lazily: importing it creates a config directory and tries to authenticate from the
environment (a network call when a token is set). We import it once with `KAGGLE_CONFIG_DIR` pointed at a writable
temporary directory, the credential variables hidden and its prints kept off stdout (stdout carries our JSON log), then
hand it the credentials read once at start-up, so later scrubbing of os.environ cannot break a download.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests  # the kaggle client's HTTP library; importing it has no side effects

from chalicelib.kaggle_meta import KaggleCredentials
from chalicelib.retry import Backoff, GaveUp, retry_call
from chalicelib.vocabulary import (
    KAGGLE_BUSY,
    KAGGLE_CONFIG_DIR,
    KAGGLE_CREDENTIAL_NAMES,
    KAGGLE_CREDENTIALS,
    KAGGLE_CREDENTIALS_MISSING,
    KAGGLE_CREDENTIALS_REJECTED,
    KAGGLE_FORBIDDEN,
    KAGGLE_NOT_FOUND,
    KAGGLE_RULES,
    accept_rules_reason,
    kaggle_status,
    no_such_competition_reason,
    submissions_url,
)

_import_lock = threading.Lock()


class KaggleError(Exception):
    """Kaggle did not deliver the data. `reason` is one line a user can act on; `transient` means a retry may help."""

    def __init__(self, reason: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.transient = transient


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped in attempts and in total time."""

    attempts: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 60.0
    deadline_s: float = 600.0
    request_timeout_s: float = 120.0

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.attempts, self.base_delay_s, self.max_delay_s, total_s=self.deadline_s)

    def delay(self, retry: int, rng: random.Random) -> float:
        """Sleep before retry number `retry` (1-based): uniform in [0, min(max, base * 2**(retry-1))]."""
        return self.backoff.delay(retry, rng)


def reason_for_http(status: int, message: str, slug: str) -> KaggleError:
    """Map an HTTP refusal from Kaggle to an actionable reason."""
    text = " ".join(message.split())[:300]
    meaning = kaggle_status(status, text)
    if meaning == KAGGLE_CREDENTIALS:
        return KaggleError(KAGGLE_CREDENTIALS_REJECTED, status=status)
    if meaning == KAGGLE_RULES:
        return KaggleError(accept_rules_reason(slug), status=status)
    if meaning == KAGGLE_FORBIDDEN:
        return KaggleError(
            f"no permission to download competition '{slug}' (403): it may be closed to new entrants or private"
            + (f" — Kaggle said: {text}" if text else ""),
            status=status,
        )
    if meaning == KAGGLE_NOT_FOUND:
        return KaggleError(no_such_competition_reason(slug), status=status)
    if meaning == KAGGLE_BUSY:
        return KaggleError(
            f"Kaggle is unavailable (HTTP {status}) while downloading '{slug}'", status=status, transient=True
        )
    return KaggleError(
        f"Kaggle refused the download of '{slug}' (HTTP {status})" + (f": {text}" if text else ""), status=status
    )


def _response_message(exc: Exception) -> str:
    """The server's message: the JSON `message` the SDK raises with, else the response body."""
    response = getattr(exc, "response", None)
    message = str(exc)
    if response is not None:
        with contextlib.suppress(Exception):
            body = response.json()
            if isinstance(body, dict) and body.get("message"):
                return str(body["message"])
        with contextlib.suppress(Exception):
            message = f"{message} {response.text}"
    return message


def classify(exc: BaseException, slug: str) -> KaggleError:
    """Turn whatever the kaggle client raised into a KaggleError."""
    if isinstance(exc, KaggleError):
        return exc
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return reason_for_http(exc.response.status_code, _response_message(exc), slug)
    if isinstance(exc, requests.Timeout | requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return KaggleError(f"could not reach Kaggle ({type(exc).__name__}) while downloading '{slug}'", transient=True)
    if isinstance(exc, SystemExit):  # the client exits when it finds no credentials
        return KaggleError(KAGGLE_CREDENTIALS_MISSING)
    if isinstance(exc, ValueError) and "does not match expected size" in str(exc):
        return KaggleError(f"the download of '{slug}' was cut short: {exc}", transient=True)
    return KaggleError(f"Kaggle download of '{slug}' failed: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _quiet_import_environment(config_dir: Path):
    """Environment for importing `kaggle`: a writable config dir, no credentials, its prints (auth help) discarded."""
    saved = {name: os.environ.get(name) for name in (*KAGGLE_CREDENTIAL_NAMES, KAGGLE_CONFIG_DIR)}
    try:
        for name in KAGGLE_CREDENTIAL_NAMES:
            os.environ.pop(name, None)
        os.environ[KAGGLE_CONFIG_DIR] = str(config_dir)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_kaggle_api_class() -> Any:
    """Import `kaggle` (once per process, side effects contained) and return its KaggleApi class."""
    with _import_lock:
        if "kaggle" not in sys.modules:
            config_dir = Path(tempfile.mkdtemp(prefix="kaggle-config-"))
            with _quiet_import_environment(config_dir):
                # lazy: the kaggle package authenticates on import, so only inside the quiet config dir
                import kaggle  # noqa: F401, PLC0415
        from kaggle.api.kaggle_api_extended import KaggleApi  # noqa: PLC0415 - lazy: as above

        return KaggleApi


def _apply_request_timeout(kaggle_client: Any, timeout_s: float) -> None:
    """The SDK sends its API call without a timeout; mount adapters that add one so a hung socket cannot hang a run."""

    class _TimeoutAdapter(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):  # type: ignore[override]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout_s
            return super().send(request, **kwargs)

    session = getattr(kaggle_client.http_client(), "_session", None)
    if session is not None:
        session.mount("https://", _TimeoutAdapter())
        session.mount("http://", _TimeoutAdapter())


class KaggleDownloader:
    """Fetches all files of a competition into a directory, retrying transient failures."""

    def __init__(
        self,
        credentials: KaggleCredentials,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._credentials = credentials
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._log = log or (lambda message: None)

    def download(self, slug: str, dest: Path) -> Path:
        """Download the competition's bundle into `dest` (created) and return the file's path (usually `<slug>.zip`)."""
        if not self._credentials.present:
            raise KaggleError(KAGGLE_CREDENTIALS_MISSING)
        dest.mkdir(parents=True, exist_ok=True)

        def once() -> Path:
            try:
                return self._download_once(slug, dest)
            except Exception as exc:
                error = classify(exc, slug)
                if error is exc:
                    raise
                raise error from exc

        def retrying(attempt: int, error: Exception, delay: float) -> None:
            reason = getattr(error, "reason", error)
            self._log(f"Kaggle download attempt {attempt} failed ({reason}); retrying in {delay:.1f} s")

        try:
            return retry_call(
                once,
                backoff=self._retry.backoff,
                retryable=lambda error: isinstance(error, KaggleError) and error.transient,
                sleep=self._sleep,
                clock=self._clock,
                rng=self._rng,
                on_retry=retrying,
            )
        except GaveUp as gave:
            error = classify(gave.last, slug)
            limit = "" if gave.out_of_attempts else f" ({self._retry.deadline_s:.0f} s limit)"
            raise KaggleError(
                f"{error.reason}; gave up after {gave.attempts} attempts{limit}", status=error.status, transient=True
            ) from (gave.last.__cause__ or gave.last)

    def _download_once(self, slug: str, dest: Path) -> Path:
        # lazy: kagglesdk loads only when a download starts
        from kagglesdk.competitions.types.competition_api_service import (  # noqa: PLC0415
            ApiDownloadDataFilesRequest,
        )

        api = load_kaggle_api_class()()
        api.config_values = self._credentials.config_values()
        try:
            with api.build_kaggle_client() as kaggle:
                _apply_request_timeout(kaggle, self._retry.request_timeout_s)
                request = ApiDownloadDataFilesRequest()
                request.competition_name = slug
                response = kaggle.competitions.competition_api_client.download_data_files(request)
                extension = response.url.split("?")[0].rsplit(".", 1)[-1] or "zip"
                outfile = dest / f"{slug}.{extension}"
                # Our loop owns retries (bounded, with jitter); the client's own would sleep up to minutes.
                api.download_file(
                    response,
                    str(outfile),
                    kaggle.http_client(),
                    quiet=True,
                    resume=False,
                    max_retries=0,
                    timeout=self._retry.request_timeout_s,
                )
        except SystemExit as exc:  # never let the client end the process
            raise classify(exc, slug) from None
        return outfile


# -- submitting (issue 14) -------------------------------------------------------------------------------------------

SUBMITTED = "submitted"  # accepted by Kaggle; scored later (the poll ran out of time)
SCORED = "scored"  # Kaggle scored it: public_score is set
SCORING_ERROR = "scoring_error"  # Kaggle accepted the file but could not score it
REFUSED = "refused"  # Kaggle refused the submission (daily limit, rules, credentials): reason says what to do
FAILED = "failed"  # the submission could not be sent (network, upload): reason says why
_LIMIT_WORDS = ("daily", "allowance", "limit", "too many")


@dataclass(frozen=True)
class SubmitPolicy:
    """How long to wait for the public score: a poll every `poll_every_s`, `timeout_s` in all."""

    poll_every_s: float = 10.0
    timeout_s: float = 300.0
    request_timeout_s: float = 60.0


@dataclass(frozen=True)
class SubmissionOutcome:
    """What became of a submission; `as_dict` is what the run item and result.json store."""

    status: str
    message: str
    reason: str = ""
    ref: int | None = None
    public_score: float | None = None
    url: str = ""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "message": self.message, "url": self.url}
        if self.reason:
            data["reason"] = self.reason
        if self.ref is not None:
            data["ref"] = self.ref
        if self.public_score is not None:
            data["public_score"] = self.public_score
        return data


def submission_refusal(status: int | None, message: str, slug: str) -> SubmissionOutcome | None:
    """Kaggle's refusals a user acts on (daily limit, rules, credentials, closed); None for anything else."""
    text = " ".join(message.split())[:300]
    lower = text.lower()
    meaning = kaggle_status(status, text)
    if meaning == KAGGLE_CREDENTIALS:
        reason = KAGGLE_CREDENTIALS_REJECTED
    elif meaning == KAGGLE_RULES:
        reason = accept_rules_reason(slug, "submit submission.csv yourself")
    elif any(word in lower for word in _LIMIT_WORDS) or status == 429:
        reason = f"Kaggle's daily submission limit is reached ({text}); submit submission.csv yourself later"
    elif meaning == KAGGLE_FORBIDDEN:
        reason = f"Kaggle does not accept submissions to '{slug}' from this account (403): {text}"
    else:
        return None
    return SubmissionOutcome(REFUSED, "", reason=reason, url=submissions_url(slug))


class KaggleSubmitter:
    """Sends a submission with the official client's `competition_submit`, then polls `competition_submissions` for
    its public score within `SubmitPolicy.timeout_s`. Never raises: every end is a SubmissionOutcome."""

    def __init__(
        self,
        credentials: KaggleCredentials,
        *,
        policy: SubmitPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._credentials = credentials
        self._policy = policy or SubmitPolicy()
        self._sleep = sleep
        self._clock = clock
        self._log = log or (lambda message: None)

    def submit(self, slug: str, path: Path, message: str) -> SubmissionOutcome:
        url = submissions_url(slug)
        if not self._credentials.present:
            reason = KAGGLE_CREDENTIALS_MISSING
            return SubmissionOutcome(REFUSED, message, reason=reason, url=url)
        try:
            api = self._api()
            response = _bounded(
                lambda: api.competition_submit(str(path), message, slug, quiet=True), self._policy.request_timeout_s
            )
        except Exception as exc:
            return self._refusal(exc, slug, message)
        if getattr(response, "message", "") == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", None):
            return SubmissionOutcome(FAILED, message, reason="the upload of submission.csv to Kaggle failed", url=url)
        ref = int(getattr(response, "ref", 0) or 0) or None
        self._log(f"submitted to Kaggle: {getattr(response, 'message', '')} (ref {ref})")
        return self._poll(api, slug, message, ref)

    def _api(self) -> Any:
        api = load_kaggle_api_class()()
        api.config_values = self._credentials.config_values()
        return api

    def _refusal(self, exc: BaseException, slug: str, message: str) -> SubmissionOutcome:
        status, text = None, str(exc)
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status, text = exc.response.status_code, _response_message(exc)
        refused = submission_refusal(status, text, slug)
        if refused is not None:
            return SubmissionOutcome(refused.status, message, reason=refused.reason, url=refused.url)
        if isinstance(exc, SystemExit):
            reason = KAGGLE_CREDENTIALS_MISSING
            return SubmissionOutcome(REFUSED, message, reason=reason, url=submissions_url(slug))
        shown = " ".join(text.split())[:300]
        where = f"HTTP {status}: " if status else f"{type(exc).__name__}: "
        return SubmissionOutcome(FAILED, message, reason=f"the submission to Kaggle failed ({where}{shown})")

    def _poll(self, api: Any, slug: str, message: str, ref: int | None) -> SubmissionOutcome:
        url = submissions_url(slug)
        deadline = self._clock() + self._policy.timeout_s
        while True:
            try:
                listed = _bounded(lambda: api.competition_submissions(slug), self._policy.request_timeout_s)
                found = self._find(listed, ref, message)
            except Exception as exc:  # the submission is in; only its score is unknown
                self._log(f"could not read the submission's status: {type(exc).__name__}: {exc}")
                found = None
            if found is not None:
                status = getattr(getattr(found, "status", None), "name", "PENDING")
                if status == "COMPLETE":
                    return SubmissionOutcome(SCORED, message, ref=ref, public_score=_score(found), url=url)
                if status == "ERROR":
                    reason = f"Kaggle could not score the submission: {getattr(found, 'error_description', '')}"
                    return SubmissionOutcome(SCORING_ERROR, message, reason=reason.strip(), ref=ref, url=url)
            if self._clock() + self._policy.poll_every_s > deadline:
                reason = f"no public score within {self._policy.timeout_s:g} s; Kaggle shows it at {url}"
                return SubmissionOutcome(SUBMITTED, message, reason=reason, ref=ref, url=url)
            self._sleep(self._policy.poll_every_s)

    @staticmethod
    def _find(submissions: Any, ref: int | None, message: str) -> Any:
        for submission in submissions or []:
            if submission is None:
                continue
            if ref is not None and getattr(submission, "ref", None) == ref:
                return submission
            if ref is None and getattr(submission, "description", None) == message:
                return submission
        return None


def _bounded(call: Callable[[], Any], timeout_s: float) -> Any:
    """`call()` in a daemon thread, given up after `timeout_s` (the SDK sends without timeouts: a hung socket must not
    hold the run); its prints are kept off stdout, which carries our JSON log."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="kaggle-call", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"Kaggle did not answer within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _score(submission: Any) -> float | None:
    try:
        value = float(getattr(submission, "public_score", "") or "nan")
    except ValueError:
        return None
    return value if math.isfinite(value) else None  # NaN: not published (yet)
