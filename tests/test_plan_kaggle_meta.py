"""Light Kaggle metadata for the Plan Lambda and the rules pre-check, against a scripted Kaggle API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from chalicelib.kaggle_meta import (
    KaggleCredentials,
    KaggleHttpError,
    KaggleUnavailable,
    PlanRefused,
    fetch_meta,
)

AUTH = KaggleCredentials(username="alice", key="secret")


def kaggle(competitions=None, files=None, error=None):
    calls = []

    def post(url, body, authorization):
        calls.append((url.rsplit("/", 1)[-1], body, authorization))
        if error is not None:
            raise error
        if url.endswith("ListCompetitions"):
            return {"competitions": competitions or []}
        return {"files": files or []}

    return post, calls


def test_metadata_comes_from_the_matching_competition_and_its_files():
    post, calls = kaggle(
        competitions=[
            {"ref": "https://www.kaggle.com/competitions/titanic-2", "title": "Other", "userHasEntered": False},
            {
                "ref": "https://www.kaggle.com/competitions/titanic",
                "title": "Titanic",
                "evaluationMetric": "Categorization Accuracy",
                "userHasEntered": True,
            },
        ],
        files=[{"name": "train.csv"}, {"name": "test.csv"}, {"name": "gender_submission.csv"}],
    )
    meta = fetch_meta("titanic", AUTH, endpoint="http://127.0.0.1:1", post=post)
    assert meta.title == "Titanic" and meta.evaluation_metric == "Categorization Accuracy"
    assert meta.files == ("train.csv", "test.csv", "gender_submission.csv")
    assert calls[0] == ("ListCompetitions", {"search": "titanic"}, AUTH.header())
    assert calls[1][1] == {"competitionName": "titanic"}
    assert AUTH.header().startswith("Basic ") and "secret" not in repr(AUTH)


@pytest.mark.parametrize("entry", [{"ref": "titanic", "userHasEntered": False}, {"ref": "titanic"}])
def test_a_competition_the_account_has_not_entered_fails_fast_with_the_rules_link(entry):
    post, calls = kaggle(competitions=[entry])  # Kaggle's JSON omits a false userHasEntered
    with pytest.raises(PlanRefused, match=r"https://www\.kaggle\.com/c/titanic/rules"):
        fetch_meta("titanic", AUTH, post=post)
    assert len(calls) == 1


def test_a_search_without_the_exact_competition_gives_metadata_without_a_rules_verdict():
    post, _ = kaggle(competitions=[{"ref": "titanic-2", "userHasEntered": False}], files=[{"name": "train.csv"}])
    meta = fetch_meta("titanic", AUTH, post=post)
    assert meta.user_has_entered is None and meta.files == ("train.csv",)


@pytest.mark.parametrize(
    ("status", "message", "expected", "text"),
    [
        (
            403,
            "You must accept this competition's rules before you'll be able to download files.",
            PlanRefused,
            "rules",
        ),
        (401, "Unauthorized", PlanRefused, "credentials"),
        (404, "Not found", PlanRefused, "no such competition"),
        (503, "Service Unavailable", KaggleUnavailable, "503"),
        (429, "Too Many Requests", KaggleUnavailable, "429"),
    ],
)
def test_kaggle_http_refusals_map_to_fail_fast_or_go_on(status, message, expected, text):
    post, _ = kaggle(error=KaggleHttpError(status, message))
    with pytest.raises(expected, match=text):
        fetch_meta("titanic", AUTH, post=post)


def test_an_unreachable_kaggle_means_no_metadata_not_a_failure():
    post, _ = kaggle(error=OSError("connection refused"))
    with pytest.raises(KaggleUnavailable, match="connection refused"):
        fetch_meta("titanic", AUTH, post=post)


def test_credentials_come_from_the_kaggle_names_and_a_token_wins():
    assert not KaggleCredentials.from_env({}).present
    assert KaggleCredentials.from_env({"KAGGLE_USERNAME": "a", "KAGGLE_KEY": "b"}).present
    token = KaggleCredentials.from_env({"KAGGLE_API_TOKEN": "KGAT_x", "KAGGLE_USERNAME": "a", "KAGGLE_KEY": "b"})
    assert token.header() == "Bearer KGAT_x"


class _KaggleApi(BaseHTTPRequestHandler):
    """Kaggle's JSON API on 127.0.0.1: answers per method name, checks the Basic credentials."""

    answers: ClassVar[dict[str, tuple[int, dict]]] = {}

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        json.loads(self.rfile.read(length) or b"{}")
        if self.headers.get("Authorization") != AUTH.header():
            status, body = 401, {"code": 401, "message": "Unauthenticated"}
        else:
            status, body = self.answers[self.path.rsplit("/", 1)[-1]]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def kaggle_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KaggleApi)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_stdlib_client_speaks_kaggles_json_api(kaggle_api, monkeypatch):
    monkeypatch.setattr(
        _KaggleApi,
        "answers",
        {
            "ListCompetitions": (200, {"competitions": [{"ref": "titanic", "userHasEntered": True, "title": "T"}]}),
            "ListDataFiles": (200, {"files": [{"name": "train.csv"}]}),
        },
    )
    meta = fetch_meta("titanic", AUTH, endpoint=kaggle_api)
    assert meta.title == "T" and meta.files == ("train.csv",)
    with pytest.raises(PlanRefused, match="401"):
        fetch_meta("titanic", KaggleCredentials(username="alice", key="wrong"), endpoint=kaggle_api)


def test_a_rules_refusal_over_http_fails_fast(kaggle_api, monkeypatch):
    rules = "You must accept this competition's rules before you'll be able to download files."
    monkeypatch.setattr(
        _KaggleApi,
        "answers",
        {
            "ListCompetitions": (200, {"competitions": []}),
            "ListDataFiles": (403, {"code": 403, "message": rules}),
        },
    )
    with pytest.raises(PlanRefused, match=r"c/titanic/rules"):
        fetch_meta("titanic", AUTH, endpoint=kaggle_api)
