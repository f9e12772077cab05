"""What a POST /run asks for: a Kaggle competition URL and an email address, checked into a `RunRequest`.

Only `https://www.kaggle.com/competitions/<slug>` and `https://www.kaggle.com/c/<slug>` (with an optional trailing path,
query or slash) name a competition; anything else is an `InvalidRequest` naming the field at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chalicelib.vocabulary import KAGGLE_HOST, competition_url

MAX_URL_LENGTH = 2048
MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART = 64
MAX_SLUG_LENGTH = 100
MAX_IDEMPOTENCY_KEY = 256
COMPETITION_PREFIXES = ("competitions", "c")
REQUEST_FIELDS = ("url", "email", "submit")
SUBMIT_TRUE = ("true", "1", "yes")
SUBMIT_FALSE = ("false", "0", "no", "")

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_TLD = re.compile(r"^[A-Za-z]{2,63}$")
_PRINTABLE_ASCII = re.compile(r"^[\x21-\x7e]+$")


class InvalidRequest(ValueError):
    """A request field is missing or malformed; `field` names it ("url", "email", or the header)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True)
class RunRequest:
    url: str  # canonical: https://www.kaggle.com/competitions/<slug>
    slug: str
    email: str
    submit: bool = False  # send the submission to Kaggle once it is validated


def parse_slug(url: str) -> str:
    """The competition slug of a Kaggle competition URL, or InvalidRequest("url", why)."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest("url", f"url is too long ({len(url)} characters; at most {MAX_URL_LENGTH})")
    if not _PRINTABLE_ASCII.match(url):
        raise InvalidRequest("url", "url must be a single https URL without spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise InvalidRequest("url", "url must start with https://")
    if parts.netloc.lower() != KAGGLE_HOST:
        raise InvalidRequest("url", f"url must be on {KAGGLE_HOST} (got host {parts.netloc!r})")
    segments = parts.path.split("/")[1:]
    if len(segments) < 2 or segments[0] not in COMPETITION_PREFIXES:
        raise InvalidRequest(
            "url", "url must name a competition: https://www.kaggle.com/competitions/<slug> or .../c/<slug>"
        )
    slug = segments[1].lower()
    if not slug or len(slug) > MAX_SLUG_LENGTH or not _SLUG.match(slug):
        shown = segments[1][:MAX_SLUG_LENGTH]
        raise InvalidRequest("url", f"not a Kaggle competition slug: {shown!r} (letters, digits and single hyphens)")
    return slug


def parse_email(email: str) -> str:
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidRequest("email", f"email is too long ({len(email)} characters; at most {MAX_EMAIL_LENGTH})")
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise InvalidRequest("email", "email must look like name@example.com")
    if len(local) > MAX_LOCAL_PART or not _LOCAL.match(local):
        raise InvalidRequest("email", "email has an invalid name part before the @")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or not _TLD.match(labels[-1]):
        raise InvalidRequest("email", f"email has an invalid domain: {domain[:80]!r}")
    return local + "@" + domain.lower()


def _field(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidRequest(name, f"{name} is required (query parameter or JSON body field)")
    if not isinstance(value, str):
        raise InvalidRequest(name, f"{name} must be a string")
    return value.strip()


def parse_run_request(params: Mapping[str, Any]) -> RunRequest:
    """A RunRequest from the merged query parameters / JSON body, or InvalidRequest naming the first bad field."""
    slug = parse_slug(_field(params, "url"))
    email = parse_email(_field(params, "email"))
    return RunRequest(url=competition_url(slug), slug=slug, email=email, submit=parse_submit(params.get("submit")))


def parse_submit(value: Any) -> bool:
    """`submit`: a JSON boolean, or true/false (1/0, yes/no) as a query parameter; absent means false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in SUBMIT_TRUE + SUBMIT_FALSE:
        return value.strip().lower() in SUBMIT_TRUE
    raise InvalidRequest("submit", "submit must be true or false")


def merge_params(query: Mapping[str, str] | None, body: Any) -> dict[str, Any]:
    """Query parameters win over JSON body fields; a non-object body contributes nothing.

    A field repeated in the query (`?url=a&url=b`) is refused: a proxy that checked the first copy must not see the
    app act on the last (Chalice's query mapping keeps the last).
    """
    for name in REQUEST_FIELDS:
        present = query is not None and name in query and hasattr(query, "getlist")
        copies = query.getlist(name) if present else []  # type: ignore[union-attr]
        if len(copies) > 1:
            raise InvalidRequest(name, f"{name} is given {len(copies)} times; give it once")
    merged: dict[str, Any] = dict(body) if isinstance(body, Mapping) else {}
    merged.update({k: v for k, v in (query or {}).items() if v is not None})
    return merged


LOCAL_CALLER = "local"  # chalice local has no IAM: every local request is the same caller
ANONYMOUS_CALLER = "anonymous"  # a deployed request without an IAM identity (IAM authorization makes it impossible)


def idempotency_caller(request_context: Mapping[str, Any] | None, local: bool) -> str:
    """Whose Idempotency-Key a request sends: the IAM identity API Gateway verified (`identity.userArn`, else
    `identity.caller`) in deployed stages, one constant in the local stage."""
    if local:
        return LOCAL_CALLER
    identity = (request_context or {}).get("identity")
    if isinstance(identity, Mapping):
        for name in ("userArn", "caller"):
            value = identity.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return ANONYMOUS_CALLER


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    key = value.strip()
    if len(key) > MAX_IDEMPOTENCY_KEY or not _PRINTABLE_ASCII.match(key):
        raise InvalidRequest(
            "Idempotency-Key", f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    return key


def mask_email(email: str) -> str:
    """m***@example.com — enough to recognise, not enough to harvest."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"
