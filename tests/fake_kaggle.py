"""A fake Kaggle API on 127.0.0.1 speaking the protocol of kaggle 2.2 / kagglesdk, for driving the real client offline.

The real client POSTs `/v1/competitions.CompetitionApiService/DownloadDataFiles` with `{"competitionName": slug}` and
Basic (username/key) or Bearer (token) auth; Kaggle answers with a 302 to a signed storage URL ending in `.zip`, which
the client follows and streams. Errors come back as JSON `{"code": N, "message": ...}`, as Kaggle sends them.

kagglesdk has no endpoint variable, so `FakeKaggle.patch_endpoint(monkeypatch)` points its PROD entry of the
environment-to-endpoint map at this server.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import zipfile
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVICE = "/v1/competitions.CompetitionApiService/"
DOWNLOAD_PATH = SERVICE + "DownloadDataFiles"
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."
# Submissions (issue 14): StartSubmissionUpload -> PUT the file to createUrl -> CreateSubmission -> ListSubmissions.
SUBMIT_RULES_MESSAGE = "You must accept this competition's rules before you'll be able to submit."
DAILY_LIMIT_MESSAGE = (
    "Submission not allowed:  Your team has used its daily Submission allowance (5) today, please try again tomorrow "
    "UTC (7.2 hours from now)."
)
# The competition `tiny` the shared `kaggle` fixture serves (tests/conftest.py): four rows to learn, two to predict.
TINY_TRAIN = b"id,x,y\n1,0.1,0\n2,0.9,1\n3,0.2,0\n4,0.8,1\n"
TINY_TEST = b"id,x\n5,0.3\n6,0.7\n"
TINY_SAMPLE = b"id,y\n5,0\n6,0\n"
TINY_COMPETITION = {"train.csv": TINY_TRAIN, "test.csv": TINY_TEST, "sample_submission.csv": TINY_SAMPLE}


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@dataclass
class FakeKaggle:
    """State of the fake: competitions (slug → zip bytes), valid credentials, scripted refusals, and what it saw."""

    username: str = "alice"
    key: str = "secret-key"
    token: str = "KGAT_fake_token"
    competitions: dict[str, bytes] = field(default_factory=dict)
    rules_not_accepted: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    scripted: dict[str, deque[int]] = field(default_factory=dict)
    api_calls: Counter[str] = field(default_factory=Counter)
    file_downloads: Counter[str] = field(default_factory=Counter)
    url: str = ""
    file_delay_s: float = 0.0  # hold each file response this long (to stop a runner mid-download)
    download_started: threading.Event = field(default_factory=threading.Event)
    # submissions: uploaded files by token, the submissions made (dicts as ListSubmissions returns them), the daily
    # allowance, and after how many ListSubmissions calls a submission is scored (None: never, to test timeouts)
    uploads: dict[str, bytes] = field(default_factory=dict)
    submissions: list[dict[str, Any]] = field(default_factory=list)
    daily_allowance: int = 5
    score_after_polls: int | None = 1
    public_score: str = "0.87654"
    submission_error: str | None = None  # a scoring error (COMPLETE never comes; ERROR with this description)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    def add_competition(self, slug: str, files: dict[str, bytes]) -> None:
        self.competitions[slug] = zip_bytes(files)

    def fail_next(self, slug: str, *statuses: int) -> None:
        """The next API calls for `slug` answer these statuses, in order, before behaving normally."""
        self.scripted.setdefault(slug, deque()).extend(statuses)

    def start(self) -> FakeKaggle:
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def patch_endpoint(self, monkeypatch: Any) -> None:
        from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint  # noqa: PLC0415 (importing kaggle is lazy)

        monkeypatch.setitem(_env_to_endpoint, KaggleEnv.PROD, self.url)

    def authorized(self, header: str) -> bool:
        if header == f"Bearer {self.token}":
            return True
        basic = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        return header == f"Basic {basic}"


class _Handler(BaseHTTPRequestHandler):
    state: FakeKaggle

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"code": status, "message": message})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.rstrip("/").removeprefix("/api")
        if path.startswith(SERVICE) and path != DOWNLOAD_PATH:
            self._submission_call(path.removeprefix(SERVICE), body)
            return
        if path != DOWNLOAD_PATH:
            self._error(404, f"no handler for {self.path}")
            return
        slug = body.get("competitionName", "")
        state = self.state
        state.api_calls[slug] += 1
        if not state.authorized(self.headers.get("Authorization", "")):
            self._error(401, "Unauthenticated")
            return
        queue = state.scripted.get(slug)
        if queue:
            status = queue.popleft()
            self._error(status, "Internal server error" if status >= 500 else f"scripted {status}")
            return
        if slug in state.rules_not_accepted:
            self._error(403, RULES_MESSAGE)
            return
        if slug in state.closed:
            self._error(403, "Permission 'competitions.participate' was denied")
            return
        if slug not in state.competitions:
            self._error(404, "Competition not found")
            return
        self.send_response(302)
        self.send_header("Location", f"{state.url}/storage/bundle/{slug}/archive.zip?X-Goog-Signature=fake")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _submission_call(self, method: str, body: dict[str, Any]) -> None:
        state = self.state
        slug = body.get("competitionName", "")
        state.api_calls[f"{method}:{slug}"] += 1
        if not state.authorized(self.headers.get("Authorization", "")):
            self._error(401, "Unauthenticated")
            return
        if slug not in state.competitions:
            self._error(404, "Competition not found")
            return
        if method == "StartSubmissionUpload":
            token = f"blob-{len(state.uploads) + 1}"
            state.uploads[token] = b""
            self._json(200, {"token": token, "createUrl": f"{state.url}/upload/{token}"})
        elif method == "CreateSubmission":
            self._create_submission(slug, body)
        elif method == "ListSubmissions":
            self._list_submissions(slug)
        else:
            self._error(404, f"no handler for {method}")

    def _create_submission(self, slug: str, body: dict[str, Any]) -> None:
        state = self.state
        token = body.get("blobFileTokens", "")
        if not state.uploads.get(token):
            self._error(400, "The submission file was not uploaded")
            return
        queue = state.scripted.get(f"submit:{slug}")
        if queue:
            status = queue.popleft()
            self._error(status, "Internal server error" if status >= 500 else f"scripted {status}")
            return
        if slug in state.rules_not_accepted:
            self._error(403, SUBMIT_RULES_MESSAGE)
            return
        if sum(1 for s in state.submissions if s["slug"] == slug) >= state.daily_allowance:
            self._error(400, DAILY_LIMIT_MESSAGE)
            return
        ref = 1000 + len(state.submissions)
        state.submissions.append(
            {
                "slug": slug,
                "ref": ref,
                "description": body.get("submissionDescription", ""),
                "content": state.uploads[token],
                "polls": 0,
            }
        )
        self._json(200, {"message": "Successfully submitted to the competition", "ref": ref})

    def _list_submissions(self, slug: str) -> None:
        state = self.state
        listed = []
        for submission in reversed([s for s in state.submissions if s["slug"] == slug]):
            submission["polls"] += 1
            item: dict[str, Any] = {
                "ref": submission["ref"],
                "description": submission["description"],
                "fileName": "submission.csv",
                "date": "2026-11-29T12:00:00Z",
                "status": "PENDING",
            }
            due = state.score_after_polls is not None and submission["polls"] > state.score_after_polls
            if due and state.submission_error:
                item.update(status="ERROR", errorDescription=state.submission_error)
            elif due:
                item.update(status="COMPLETE", publicScore=state.public_score)
            listed.append(item)
        self._json(200, {"submissions": listed})

    def do_PUT(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        if len(parts) != 2 or parts[0] != "upload" or parts[1] not in self.state.uploads:
            self._error(404, "No such upload")
            return
        self.state.uploads[parts[1]] = data
        self._json(200, {})

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["storage", "bundle"] or parts[2] not in self.state.competitions:
            self._error(404, "No such object")
            return
        slug = parts[2]
        self.state.file_downloads[slug] += 1
        self.state.download_started.set()
        if self.state.file_delay_s and self.state._stopping.wait(self.state.file_delay_s):
            return
        payload = self.state.competitions[slug]
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Last-Modified", "Mon, 02 Jan 2023 10:00:00 GMT")
        self.end_headers()
        self.wfile.write(payload)
