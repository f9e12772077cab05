"""Download a competition's files with the official `kaggle` client; Kaggle's refusals become reasons a user can act on.

The `kaggle` package is imported lazily: importing it creates a config directory and tries to authenticate from the
environment (a network call when a token is set). We import it once with `KAGGLE_CONFIG_DIR` pointed at a writable
temporary directory, the credential variables hidden and its prints kept off stdout (stdout carries our JSON log), then
hand it the credentials read once at start-up, so later scrubbing of os.environ cannot break a download.
"""

from __future__ import annotations

import contextlib
import io
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

from chalicelib.kaggle_meta import KEY_ENV, TOKEN_ENV, USERNAME_ENV, KaggleCredentials

CONFIG_DIR_ENV = "KAGGLE_CONFIG_DIR"
_SECRET_ENV = (USERNAME_ENV, KEY_ENV, TOKEN_ENV)

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

    def delay(self, retry: int, rng: random.Random) -> float:
        """Sleep before retry number `retry` (1-based): uniform in [0, min(max, base * 2**(retry-1))]."""
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1)))


def rules_url(slug: str) -> str:
    return f"https://www.kaggle.com/c/{slug}/rules"


def reason_for_http(status: int, message: str, slug: str) -> KaggleError:
    """Map an HTTP refusal from Kaggle to an actionable reason."""
    text = " ".join(message.split())[:300]
    if status == 401:
        return KaggleError(
            f"Kaggle credentials rejected (401): check {USERNAME_ENV}/{KEY_ENV} or {TOKEN_ENV}", status=status
        )
    if status == 403 and "accept" in text.lower() and "rules" in text.lower():
        return KaggleError(f"accept the rules at {rules_url(slug)}, then retry", status=status)
    if status == 403:
        return KaggleError(
            f"no permission to download competition '{slug}' (403): it may be closed to new entrants or private"
            + (f" — Kaggle said: {text}" if text else ""),
            status=status,
        )
    if status == 404:
        return KaggleError(f"no such competition on Kaggle: '{slug}' (404)", status=status)
    if status == 429 or status >= 500:
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
        return KaggleError(f"Kaggle credentials missing: set {USERNAME_ENV} and {KEY_ENV}, or {TOKEN_ENV}")
    if isinstance(exc, ValueError) and "does not match expected size" in str(exc):
        return KaggleError(f"the download of '{slug}' was cut short: {exc}", transient=True)
    return KaggleError(f"Kaggle download of '{slug}' failed: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _quiet_import_environment(config_dir: Path):
    """Environment for importing `kaggle`: a writable config dir, no credentials, its prints (auth help) discarded."""
    saved = {name: os.environ.get(name) for name in (*_SECRET_ENV, CONFIG_DIR_ENV)}
    try:
        for name in _SECRET_ENV:
            os.environ.pop(name, None)
        os.environ[CONFIG_DIR_ENV] = str(config_dir)
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
                import kaggle  # noqa: F401, PLC0415
        from kaggle.api.kaggle_api_extended import KaggleApi  # noqa: PLC0415

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
            raise KaggleError(f"Kaggle credentials missing: set {USERNAME_ENV} and {KEY_ENV}, or {TOKEN_ENV}")
        dest.mkdir(parents=True, exist_ok=True)
        started = self._clock()
        for attempt in range(1, self._retry.attempts + 1):
            try:
                return self._download_once(slug, dest)
            except Exception as exc:
                error = classify(exc, slug)
                if not error.transient:
                    raise error from exc
                if attempt == self._retry.attempts:
                    raise KaggleError(
                        f"{error.reason}; gave up after {attempt} attempts", status=error.status, transient=True
                    ) from exc
                delay = self._retry.delay(attempt, self._rng)
                if self._clock() - started + delay > self._retry.deadline_s:
                    raise KaggleError(
                        f"{error.reason}; gave up after {attempt} attempts ({self._retry.deadline_s:.0f} s limit)",
                        status=error.status,
                        transient=True,
                    ) from exc
                self._log(f"Kaggle download attempt {attempt} failed ({error.reason}); retrying in {delay:.1f} s")
                self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _download_once(self, slug: str, dest: Path) -> Path:
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
