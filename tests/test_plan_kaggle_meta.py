"""Light Kaggle metadata for the Plan Lambda and the rules pre-check, against a scripted Kaggle API."""

from __future__ import annotations

import pytest

from chalicelib.kaggle_meta import (
    KaggleAuth,
    KaggleHttpError,
    KaggleUnavailable,
    PlanRefused,
    fetch_meta,
)

AUTH = KaggleAuth(username="alice", key="secret")


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


def test_a_competition_the_account_has_not_entered_fails_fast_with_the_rules_link():
    post, calls = kaggle(competitions=[{"ref": "titanic", "userHasEntered": False}])
    with pytest.raises(PlanRefused, match=r"https://www\.kaggle\.com/c/titanic/rules"):
        fetch_meta("titanic", AUTH, post=post)
    assert len(calls) == 1


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
    assert not KaggleAuth.from_env({}).present
    assert KaggleAuth.from_env({"KAGGLE_USERNAME": "a", "KAGGLE_KEY": "b"}).present
    token = KaggleAuth.from_env({"KAGGLE_API_TOKEN": "KGAT_x", "KAGGLE_USERNAME": "a", "KAGGLE_KEY": "b"})
    assert token.header() == "Bearer KGAT_x"
