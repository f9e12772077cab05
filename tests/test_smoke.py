"""scripts/smoke.py against a fake deployed API on 127.0.0.1 that checks SigV4 the way API Gateway does.

The fake recomputes each request's signature from the secret it knows (botocore's own canonical request), so a run is
admitted only when smoke.py signed the exact method, path, query and headers it sent. A wrong secret, a tampered
query or a missing signature get 403, as on a real stage.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from scripts import smoke

KEY, SECRET, REGION = "AKIDEXAMPLESMOKE", "smoke-secret", "eu-west-1"


def signature_ok(method: str, url: str, headers: dict[str, str]) -> bool:
    authorization = headers.get("authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return False
    fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(","))
    scope = fields["Credential"].split("/")
    if scope[0] != KEY or scope[2] != REGION or scope[3] != "execute-api":
        return False
    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest(method=method, url=url, headers={name: headers[name] for name in signed if name != "host"})
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(KEY, SECRET), "execute-api", REGION)
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    return bool(expected == fields["Signature"])


class FakeApi:
    """POST /api/run and GET /api/runs/{id}; the run moves one status per GET to `final`."""

    def __init__(self, final: str = "SUCCEEDED") -> None:
        self.final = final
        self.statuses = ["QUEUED", "PLANNED", "RUNNING", "VALIDATED", final]
        self.gets = 0
        self.posted: list[dict[str, list[str]]] = []
        self.refused = 0


@pytest.fixture
def fake_api(request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeApi]]:
    api = FakeApi(getattr(request, "param", "SUCCEEDED"))

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def signed(self) -> bool:
            url = f"http://{self.headers['Host']}{self.path}"
            if signature_ok(self.command, url, {k.lower(): v for k, v in self.headers.items()}):
                return True
            api.refused += 1
            self.answer(
                403, {"message": "The request signature we calculated does not match the signature you provided."}
            )
            return False

        def do_POST(self) -> None:
            if not self.signed():
                return
            parts = urllib.parse.urlsplit(self.path)
            api.posted.append(urllib.parse.parse_qs(parts.query))
            status_url = f"http://{self.headers['Host']}/api/runs/r-1"
            self.answer(202, {"run_id": "r-1", "status": "QUEUED", "status_url": status_url})

        def do_GET(self) -> None:
            if not self.signed():
                return
            if self.path != "/api/runs/r-1":
                self.answer(404, {"error": "no such run"})
                return
            status = api.statuses[min(api.gets, len(api.statuses) - 1)]
            api.gets += 1
            body: dict[str, Any] = {"run_id": "r-1", "status": status}
            if status == "SUCCEEDED":
                body.update(cv_score=0.83, metric="accuracy", submission_url="https://example/presigned")
            if status == "FAILED":
                body["error"] = "Kaggle credentials rejected (401)"
            self.answer(200, body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/", api
    finally:
        server.shutdown()
        server.server_close()


def signer(secret: str = SECRET) -> smoke.Signer:
    return smoke.Signer(Credentials(KEY, secret).get_frozen_credentials(), REGION)


def run_smoke(api: str, *extra: str, secret: str = SECRET) -> int:
    argv = ["--api", api, "--email", "me@example.com", "--poll", "0.01", "--timeout", "5", *extra]
    return smoke.main(argv, signer=signer(secret))


def test_a_signed_run_is_followed_to_success(fake_api: tuple[str, FakeApi], capsys: pytest.CaptureFixture[str]) -> None:
    url, api = fake_api
    assert run_smoke(url) == 0
    out = capsys.readouterr().out
    assert api.refused == 0
    assert api.posted == [{"url": [smoke.DEFAULT_URL], "email": ["me@example.com"]}]
    assert [line.strip() for line in out.splitlines() if line.startswith("  ")] == [
        "QUEUED",
        "PLANNED",
        "RUNNING",
        "VALIDATED",
        "SUCCEEDED",
    ]
    assert "SUCCEEDED: accuracy 0.83" in out and "check me@example.com for the email" in out


@pytest.mark.parametrize("fake_api", ["FAILED"], indirect=True)
def test_a_failed_run_exits_1_with_its_reason(
    fake_api: tuple[str, FakeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = fake_api
    assert run_smoke(url) == 1
    assert "FAILED: Kaggle credentials rejected (401)" in capsys.readouterr().out


def test_a_wrong_secret_is_refused_by_the_signature_check(
    fake_api: tuple[str, FakeApi], capsys: pytest.CaptureFixture[str]
) -> None:
    url, api = fake_api
    assert run_smoke(url, secret="not-the-secret") == 2
    err = capsys.readouterr().err
    assert api.refused == 1 and not api.posted
    assert err.startswith("smoke: POST /run answered 403") and err.count("\n") == 1


def test_the_fake_refuses_a_request_whose_query_was_changed_after_signing(fake_api: tuple[str, FakeApi]) -> None:
    url, api = fake_api
    signed_url = f"{url}run?url=a&email=b"
    headers = signer().headers("POST", signed_url, {})
    status, _ = smoke.http_send()("POST", f"{url}run?url=a&email=evil", headers)
    assert status == 403 and api.refused == 1


def test_a_run_still_going_at_the_timeout_exits_3(fake_api: tuple[str, FakeApi]) -> None:
    url, api = fake_api
    api.statuses = ["RUNNING"]
    assert run_smoke(url, "--timeout", "0.05") == 3


def test_the_api_url_comes_from_what_chalice_deployed(tmp_path: Path) -> None:
    deployed = tmp_path / ".chalice" / "deployed"
    deployed.mkdir(parents=True)
    api = "https://abc123.execute-api.eu-west-1.amazonaws.com/api/"
    (deployed / "dev.json").write_text(json.dumps({"resources": [{"resource_type": "rest_api", "rest_api_url": api}]}))
    assert smoke.api_url("dev", None, repo=tmp_path) == api
    assert smoke.region_of(api, None) == "eu-west-1"
    with pytest.raises(smoke.SmokeError, match=r"chalice deploy --stage prod"):
        smoke.api_url("prod", None, repo=tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--email", "me@example.com"], "name the stage"),
        (["--api", "https://x/api", "--email", "nobody"], "--email must be an email address"),
        (["--api", "ftp://x/api", "--email", "me@example.com"], "--api must be an http(s) URL"),
        (["--api", "https://x/api", "--email", "me@example.com", "--poll", "0"], "must be positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke.main(argv, signer=signer()) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
