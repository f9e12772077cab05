"""Bad input against the app in-process (chalice.test.Client over moto): fuzzed from openapi.json, then hand-picked.

Whatever arrives, the answer is never a 5xx; its status is one openapi.json declares for the operation and its JSON
body matches the declared schema, so every 400 names its field (url, email or Idempotency-Key), a 415 names the
content type, a 429 carries Retry-After. And nothing that was admitted holds an input the validator would refuse.
"""

from __future__ import annotations

import json
import re
import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from openapi_schema_validator import OAS30Validator
from openapi_schema_validator import validate as validate_schema

from chalicelib import aws
from chalicelib.run_request import parse_run_request
from chalicelib.runs import SLOTS_KEY, RunStore
from scripts import openapi
from tests.moto_env import (
    app_client,
    service_environment,
)

pytestmark = pytest.mark.aws

SPEC = json.loads(openapi.SPEC_PATH.read_text(encoding="utf-8"))
MAX_RUNNING = 4
TITANIC = "https://www.kaggle.com/competitions/titanic"
EMAIL = "alice@example.com"
CANONICAL_URL = re.compile(r"^https://www\.kaggle\.com/competitions/[a-z0-9]+(-[a-z0-9]+)*$")
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One app and one moto backend for the module (building them takes seconds); tests compare before and after."""
    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        # The daily quota is tested in test_ownership; here it would end admissions after 50 runs and hide the
        # admission path from the last fuzzer, which shares this module's table.
        service_environment(monkeypatch, KAGENT_MAX_RUNNING=str(MAX_RUNNING), KAGENT_RUNS_PER_CALLER_PER_DAY="100000")
        with app_client(tmp_path_factory.mktemp("app")) as test_client:
            yield test_client


def declared_schema(template: str, method: str, status: int) -> dict:
    responses = SPEC["paths"][template][method]["responses"]
    assert str(status) in responses, (
        f"{method.upper()} {template} answered {status}, which openapi.json does not declare"
    )
    ref = responses[str(status)]["content"]["application/json"]["schema"]["$ref"]
    return SPEC["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def check_answer(response, template: str, method: str, content_type: str | None = None) -> dict:
    """The contract every answer keeps, whatever the input; returns the JSON body."""
    assert response.status_code < 500, response.body[:300]
    body = json.loads(response.body)
    validate_schema(body, declared_schema(template, method, response.status_code), cls=OAS30Validator)
    if response.status_code == 415:
        assert "media type" in body["Message"] and (content_type or "") in body["Message"]
    if response.status_code in (429, 503):
        assert int(response.headers["Retry-After"]) > 0
    return body


def runs_in_table() -> list[dict]:
    items = aws.runs_table().scan(ConsistentRead=True)["Items"]
    return [item for item in items if not item["run_id"].startswith("#")]  # the slot counter, the quota items


def free_slots() -> None:
    """End every run still holding a slot (as MarkFailed would), so the next good request is admitted."""
    store = RunStore(aws.runs_table())
    for item in runs_in_table():
        if item.get("slot_held"):
            store.fail(item["run_id"], "ended by the test to free its slot")


def check_store_invariants() -> None:
    """Admitted runs hold only inputs the validator accepts; the slot counter matches the runs holding slots."""
    runs = runs_in_table()
    for item in runs:
        assert CANONICAL_URL.match(item["url"]), item["url"]
        again = parse_run_request({"url": item["url"], "email": item["email"]})
        assert (again.url, again.email, again.slug) == (item["url"], item["email"], item["slug"])
    holding = sum(1 for item in runs if item.get("slot_held"))
    in_flight = RunStore(aws.runs_table()).in_flight()
    assert in_flight == holding <= MAX_RUNNING


# -- fuzzing from the description ------------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=120)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80) | st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=20
)
GOOD_URLS = st.sampled_from([TITANIC, "https://www.kaggle.com/c/house-prices-advanced-regression-techniques/data"])
GOOD_EMAILS = st.sampled_from([EMAIL, "bob+kagent@Example.ORG"])
CONTENT_TYPES = st.sampled_from(
    [
        *SPEC["paths"]["/run"]["post"]["requestBody"]["content"],
        "application/json; charset=utf-8",
        "text/html",
        "application/xml",
        "multipart/form-data; boundary=x",
        "",
    ]
) | st.text(string.ascii_letters + "/;=-+. ", max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def spliced(draw, good: st.SearchStrategy[str]) -> str:
    """A good value with arbitrary text cut into it, or arbitrary text, or a good value."""
    value = draw(good)
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return value
    if choice == 1:
        return draw(ANY_TEXT)
    at = draw(st.integers(0, len(value)))
    return value[:at] + draw(ANY_TEXT) + value[at + draw(st.integers(0, 3)) :]


def field_copies(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    return st.lists(values.map(lambda v: (name, v)), max_size=2)


@st.composite
def run_requests(draw) -> tuple[str, dict[str, str], bytes | str | None]:
    pairs = draw(field_copies("url", spliced(GOOD_URLS))) + draw(field_copies("email", spliced(GOOD_EMAILS)))
    pairs += draw(st.lists(st.tuples(ANY_TEXT.filter(bool), ANY_TEXT), max_size=2))
    pairs = draw(st.permutations(pairs))
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["content-type"] = draw(CONTENT_TYPES)
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(HEADER_TEXT)
    body = draw(
        st.none()
        | JSON_VALUES.map(json.dumps)
        | st.fixed_dictionaries({"url": spliced(GOOD_URLS), "email": spliced(GOOD_EMAILS)}).map(json.dumps)
        | st.binary(max_size=200)
    )
    return "/run" + (f"?{query}" if query else ""), headers, body


@FUZZ
@given(request=run_requests(), slots_free=st.booleans())
def test_fuzzed_post_run_never_5xx_and_answers_as_described(client, request, slots_free):
    if slots_free:
        free_slots()
    path, headers, body = request
    response = client.http.post(path, headers=headers, body=body)
    check_answer(response, "/run", "post", headers.get("content-type"))


@FUZZ
@given(
    run_id=st.uuids().map(str)
    | ANY_TEXT.filter(bool)
    | st.builds(lambda u, t: str(u) + t, st.uuids(), ANY_TEXT)
    | st.text("0123456789abcdefABCDEF-", min_size=30, max_size=40)
)
def test_fuzzed_get_run_never_5xx_and_answers_as_described(client, run_id):
    response = client.http.get(f"/runs/{quote(run_id, safe='')}")
    body = check_answer(response, "/runs/{run_id}", "get")
    assert response.status_code == 404, body


def test_fuzzing_leaves_the_store_consistent(client):
    @FUZZ
    @given(request=run_requests(), slots_free=st.booleans())
    @example(request=(f"/run?url={quote(TITANIC, safe='')}&email={quote(EMAIL, safe='')}", {}, None), slots_free=True)
    def post(request, slots_free):
        if slots_free:
            free_slots()
        path, headers, body = request
        check_answer(client.http.post(path, headers=headers, body=body), "/run", "post", headers.get("content-type"))

    post()
    assert runs_in_table(), "the fuzzer admitted no run at all: it no longer reaches the admission path"
    check_store_invariants()
    for item in runs_in_table():
        check_answer(client.http.get(f"/runs/{item['run_id']}"), "/runs/{run_id}", "get")


# -- hand-picked -----------------------------------------------------------------------------------------------------


def q(**fields: str) -> str:
    return "/run?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())


JSON = {"content-type": "application/json"}
LONG = "x" * 100_000

# (case, path, headers, body, status, field) — field: what a 400 must name (or the content type a 415 must name)
HAND_PICKED = [
    ("very long url (100k chars)", q(url=TITANIC + "/" + LONG, email=EMAIL), {}, None, 400, "url"),
    ("very long slug", q(url="https://www.kaggle.com/c/" + "a" * 5000, email=EMAIL), {}, None, 400, "url"),
    ("very long email (100k chars)", q(url=TITANIC, email=LONG + "@example.com"), {}, None, 400, "email"),
    ("very long email domain", q(url=TITANIC, email="a@" + "b" * 240 + ".com"), {}, None, 400, "email"),
    ("unicode slug", q(url="https://www.kaggle.com/c/tïtanic", email=EMAIL), {}, None, 400, "url"),
    ("fullwidth host", q(url="https://ｗｗｗ.kaggle.com/c/titanic", email=EMAIL), {}, None, 400, "url"),
    ("IDN look-alike host", q(url="https://www.kаggle.com/c/titanic", email=EMAIL), {}, None, 400, "url"),
    ("right-to-left override", q(url=TITANIC + "\u202e", email=EMAIL), {}, None, 400, "url"),
    ("zero-width space in slug", q(url="https://www.kaggle.com/c/tita\u200bnic", email=EMAIL), {}, None, 400, "url"),
    ("emoji email", q(url=TITANIC, email="🙂@example.com"), {}, None, 400, "email"),
    ("unicode email domain", q(url=TITANIC, email="me@exämple.com"), {}, None, 400, "email"),
    ("NUL in url", q(url=TITANIC + "\x00", email=EMAIL), {}, None, 400, "url"),
    ("tab in url", q(url="https://www.kaggle.com/c/\ttitanic", email=EMAIL), {}, None, 400, "url"),
    ("CRLF header injection in email", q(url=TITANIC, email=EMAIL + "\r\nBcc: x@evil.example"), {}, None, 400, "email"),
    (
        "kaggle.com.evil.example",
        q(url="https://www.kaggle.com.evil.example/c/titanic", email=EMAIL),
        {},
        None,
        400,
        "url",
    ),
    ("trailing-dot host", q(url="https://www.kaggle.com./c/titanic", email=EMAIL), {}, None, 400, "url"),
    ("@ in the authority", q(url="https://www.kaggle.com@evil.example/c/titanic", email=EMAIL), {}, None, 400, "url"),
    (
        "@ after an encoded slash",
        q(url="https://www.kaggle.com%2F@evil.example/c/titanic", email=EMAIL),
        {},
        None,
        400,
        "url",
    ),
    ("backslash authority", q(url="https://www.kaggle.com\\@evil.example/c/x", email=EMAIL), {}, None, 400, "url"),
    ("fragment trick", q(url="https://evil.example#@www.kaggle.com/c/titanic", email=EMAIL), {}, None, 400, "url"),
    ("explicit port", q(url="https://www.kaggle.com:443/c/titanic", email=EMAIL), {}, None, 400, "url"),
    (".. as the slug", q(url="https://www.kaggle.com/c/../../evil", email=EMAIL), {}, None, 400, "url"),
    ("encoded .. as the slug", q(url="https://www.kaggle.com/c/%2e%2e/evil", email=EMAIL), {}, None, 400, "url"),
    (
        "encoded slash in the slug",
        q(url="https://www.kaggle.com/c/titanic%2F..%2Fx", email=EMAIL),
        {},
        None,
        400,
        "url",
    ),
    (
        "url given twice, bad one first",
        q(url="https://evil.example/c/x") + "&" + q(url=TITANIC, email=EMAIL)[5:],
        {},
        None,
        400,
        "url",
    ),
    (
        "url given twice, good one first",
        q(url=TITANIC, email=EMAIL) + "&url=https%3A%2F%2Fevil.example%2F",
        {},
        None,
        400,
        "url",
    ),
    ("email given twice", q(url=TITANIC, email=EMAIL) + "&email=eve%40evil.example", {}, None, 400, "email"),
    ("JSON array body", "/run", JSON, "[1, 2]", 400, "url"),
    ("JSON string body", "/run", JSON, '"https://www.kaggle.com/c/titanic"', 400, "url"),
    ("JSON null body", "/run", JSON, "null", 400, "url"),
    ("JSON number body", "/run", JSON, "42", 400, "url"),
    ("JSON nested 100k deep", "/run", JSON, "[" * 100_000, 400, "url"),
    ("JSON url not a string", "/run", JSON, json.dumps({"url": ["x"], "email": EMAIL}), 400, "url"),
    ("JSON email an object", "/run", JSON, json.dumps({"url": TITANIC, "email": {"a": 1}}), 400, "email"),
    ("invalid UTF-8 body", "/run", JSON, b"\xff\xfe\xfa", 400, "url"),
    ("JSON with trailing garbage", "/run", JSON, json.dumps({"url": TITANIC, "email": EMAIL}) + "}", 400, "url"),
    ("Content-Type text/html", q(url=TITANIC, email=EMAIL), {"content-type": "text/html"}, "<b>", 415, "text/html"),
    ("Content-Type application/xml", "/run", {"content-type": "application/xml"}, "<run/>", 415, "application/xml"),
    (
        "Content-Type multipart",
        "/run",
        {"content-type": "multipart/form-data; boundary=z"},
        "--z--",
        415,
        "multipart/form-data",
    ),
    ("empty Content-Type", q(url=TITANIC, email=EMAIL), {"content-type": ""}, None, 415, ""),
    (
        "form body (fields must be query parameters or JSON)",
        "/run",
        {"content-type": "application/x-www-form-urlencoded"},
        f"url={quote(TITANIC)}&email={quote(EMAIL)}",
        400,
        "url",
    ),
    (
        "Idempotency-Key with non-ASCII",
        q(url=TITANIC, email=EMAIL),
        {"Idempotency-Key": "clé"},
        None,
        400,
        "Idempotency-Key",
    ),
    (
        "Idempotency-Key 10k chars",
        q(url=TITANIC, email=EMAIL),
        {"Idempotency-Key": "k" * 10_000},
        None,
        400,
        "Idempotency-Key",
    ),
]


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "named"),
    [case[1:] for case in HAND_PICKED],
    ids=[case[0] for case in HAND_PICKED],
)
def test_hand_picked_bad_requests_are_refused_naming_the_field(client, path, headers, body, status, named):
    before = len(runs_in_table())
    response = client.http.post(path, headers=headers, body=body)
    answer = check_answer(response, "/run", "post", headers.get("content-type"))
    assert response.status_code == status, answer
    if status == 400:
        assert answer["field"] == named
    assert len(runs_in_table()) == before


# Tricks that are harmless: the run is admitted but only for the canonical competition URL.
CANONICALISED = [
    ("path after the slug", "https://www.kaggle.com/c/titanic/../../datasets/evil", TITANIC),
    ("query and fragment", "https://www.kaggle.com/competitions/titanic?x=https://evil.example#frag", TITANIC),
    ("upper-case slug", "https://www.kaggle.com/c/Titanic", TITANIC),
    ("upper-case host", "https://WWW.KAGGLE.COM/competitions/titanic", TITANIC),
]


@pytest.mark.parametrize(("url", "stored"), [case[1:] for case in CANONICALISED], ids=[c[0] for c in CANONICALISED])
def test_accepted_tricks_are_stored_as_the_canonical_competition_url(client, url, stored):
    free_slots()
    response = client.http.post(q(url=url, email=EMAIL))
    body = check_answer(response, "/run", "post")
    assert response.status_code == 202
    assert RunStore(aws.runs_table()).get(body["run_id"]).url == stored


MALFORMED_RUN_IDS = [
    ("unknown uuid", "0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f"),
    ("the slot counter's key", "#slots"),
    ("upper-case uuid", "0B0E7F0C-59F5-4A8E-8F9E-3F1B2C3D4E5F"),
    ("uuid with a newline", "0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f\n"),
    ("uuid without hyphens", "0b0e7f0c59f54a8e8f9e3f1b2c3d4e5f"),
    ("path traversal", "../../etc/passwd"),
    ("NoSQL operator", '{"$ne": null}'),
    ("10k characters", "a" * 10_000),
    ("unicode", "ü\u202e🙂"),
    ("NUL", "\x00"),
]


@pytest.mark.parametrize("run_id", [case[1] for case in MALFORMED_RUN_IDS], ids=[c[0] for c in MALFORMED_RUN_IDS])
def test_unknown_and_malformed_run_ids_are_a_json_404(client, run_id):
    response = client.http.get(f"/runs/{quote(run_id, safe='')}")
    body = check_answer(response, "/runs/{run_id}", "get")
    assert response.status_code == 404
    assert len(body["error"]) < 200


def test_the_slot_counter_is_never_shown_as_a_run(client):
    free_slots()
    assert client.http.post(q(url=TITANIC, email=EMAIL)).status_code == 202
    response = client.http.get(f"/runs/{quote(SLOTS_KEY, safe='')}")
    assert response.status_code == 404
    assert "in_flight" not in response.body.decode()
