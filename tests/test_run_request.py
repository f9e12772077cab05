"""POST /run input: which Kaggle URLs and email addresses are accepted, and the field each rejection names."""

from __future__ import annotations

import pytest

from chalicelib.run_request import (
    ANONYMOUS_CALLER,
    LOCAL_CALLER,
    InvalidRequest,
    idempotency_caller,
    mask_email,
    merge_params,
    parse_idempotency_key,
    parse_run_request,
)
from tests.api_calls import BAD_EMAILS, BAD_URLS

EMAIL = "me@example.com"


@pytest.mark.parametrize(
    "url",
    [
        "https://www.kaggle.com/competitions/titanic",
        "https://www.kaggle.com/c/titanic",
        "https://www.kaggle.com/competitions/titanic/",
        "https://www.kaggle.com/c/titanic/data",
        "https://www.kaggle.com/competitions/titanic/overview/evaluation",
        "https://www.kaggle.com/competitions/titanic?tab=overview",
        "https://www.kaggle.com/c/titanic/?x=1#top",
        "https://WWW.Kaggle.com/competitions/Titanic",
        "  https://www.kaggle.com/competitions/titanic  ",
    ],
)
def test_competition_urls_are_accepted_and_canonicalised(url):
    request = parse_run_request({"url": url, "email": EMAIL})
    assert request.slug == "titanic"
    assert request.url == "https://www.kaggle.com/competitions/titanic"


def test_hyphenated_slug_is_kept():
    request = parse_run_request(
        {"url": "https://www.kaggle.com/c/house-prices-advanced-regression-techniques", "email": EMAIL}
    )
    assert request.slug == "house-prices-advanced-regression-techniques"


@pytest.mark.parametrize("url", BAD_URLS)
def test_other_urls_are_rejected_naming_the_url_field(url):
    with pytest.raises(InvalidRequest) as caught:
        parse_run_request({"url": url, "email": EMAIL})
    assert caught.value.field == "url"
    assert caught.value.to_json()["error"]


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_bad_email_shapes_are_rejected_naming_the_email_field(email):
    with pytest.raises(InvalidRequest) as caught:
        parse_run_request({"url": "https://www.kaggle.com/c/titanic", "email": email})
    assert caught.value.field == "email"


def test_email_domain_is_lowercased_and_plus_addressing_kept():
    request = parse_run_request({"url": "https://www.kaggle.com/c/titanic", "email": "Me+kaggle@Example.COM"})
    assert request.email == "Me+kaggle@example.com"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "url"),
        ({"email": EMAIL}, "url"),
        ({"url": "https://www.kaggle.com/c/titanic"}, "email"),
        ({"url": "", "email": EMAIL}, "url"),
        ({"url": "https://www.kaggle.com/c/titanic", "email": "   "}, "email"),
        ({"url": ["https://www.kaggle.com/c/titanic"], "email": EMAIL}, "url"),
        ({"url": "https://www.kaggle.com/c/titanic", "email": 42}, "email"),
    ],
)
def test_missing_or_non_string_fields_are_rejected(params, field):
    with pytest.raises(InvalidRequest) as caught:
        parse_run_request(params)
    assert caught.value.field == field


def test_query_parameters_win_over_body_fields():
    merged = merge_params({"url": "q"}, {"url": "b", "email": "e"})
    assert merged == {"url": "q", "email": "e"}
    assert merge_params(None, ["not", "an", "object"]) == {}


def test_idempotency_key_is_optional_and_bounded():
    assert parse_idempotency_key(None) is None
    assert parse_idempotency_key("  ") is None
    assert parse_idempotency_key(" abc-123 ") == "abc-123"
    with pytest.raises(InvalidRequest) as caught:
        parse_idempotency_key("x" * 257)
    assert caught.value.field == "Idempotency-Key"
    with pytest.raises(InvalidRequest):
        parse_idempotency_key("has space")


def test_mask_email_hides_the_name_part():
    assert mask_email("alice@example.com") == "a***@example.com"


def test_idempotency_keys_belong_to_the_iam_identity_deployed_and_to_one_caller_locally():
    user = "arn:aws:iam::123456789012:user/alice"
    assert idempotency_caller({"identity": {"userArn": user, "caller": "AIDAEXAMPLE"}}, local=False) == user
    assert idempotency_caller({"identity": {"userArn": None, "caller": "AROA:session"}}, local=False) == "AROA:session"
    assert idempotency_caller({"identity": {"sourceIp": "1.2.3.4"}}, local=False) == ANONYMOUS_CALLER
    assert idempotency_caller(None, local=False) == ANONYMOUS_CALLER
    assert idempotency_caller({"identity": {"userArn": user}}, local=True) == LOCAL_CALLER
