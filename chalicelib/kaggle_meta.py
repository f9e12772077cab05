"""Light Kaggle competition metadata for the Plan Lambda, and the rules pre-check.

Two small JSON calls to Kaggle's API (the protocol of kagglesdk: `POST {endpoint}/v1/<service>/<method>`), made with the
standard library so that the Lambda package stays small. `ListCompetitions` tells whether the account has entered the
competition (accepted its rules) and its evaluation metric; `ListDataFiles` names the files. Without credentials there
is no metadata and planning goes on from the slug alone.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.vocabulary import (
    KAGGLE_API_TOKEN,
    KAGGLE_CREDENTIALS,
    KAGGLE_CREDENTIALS_REJECTED,
    KAGGLE_KEY,
    KAGGLE_NOT_FOUND,
    KAGGLE_RULES,
    KAGGLE_USERNAME,
    accept_rules_reason,
    kaggle_status,
    no_such_competition_reason,
)

KAGGLE_API = "https://api.kaggle.com"
SERVICE = "competitions.CompetitionApiService"
TIMEOUT_S = 8.0
MAX_FILES = 50


@dataclass(frozen=True)
class KaggleCredentials:
    """Basic (username + key) or Bearer (API token) credentials, read once. repr never shows them.

    Shared by the Plan step (metadata over plain HTTP) and the runner (downloads through the `kaggle` package)."""

    username: str = field(default="", repr=False)
    key: str = field(default="", repr=False)
    api_token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KaggleCredentials:
        return cls(
            username=env.get(KAGGLE_USERNAME, "").strip(),
            key=env.get(KAGGLE_KEY, "").strip(),
            api_token=env.get(KAGGLE_API_TOKEN, "").strip(),
        )

    @property
    def present(self) -> bool:
        return bool(self.api_token or (self.username and self.key))

    def header(self) -> str:
        if self.api_token:
            return f"Bearer {self.api_token}"
        return "Basic " + base64.b64encode(f"{self.username}:{self.key}".encode()).decode()

    def config_values(self) -> dict[str, str]:
        """What `KaggleApi.config_values` holds after authenticating: a token wins over a legacy key, as in the CLI."""
        if self.api_token:
            return {"token": self.api_token, "username": self.username}
        return {"username": self.username, "key": self.key}


@dataclass(frozen=True)
class CompetitionMeta:
    slug: str
    title: str = ""
    evaluation_metric: str = ""
    category: str = ""
    deadline: str = ""
    user_has_entered: bool | None = None
    files: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "title": self.title,
            "evaluation_metric": self.evaluation_metric,
            "category": self.category,
            "deadline": self.deadline,
            "files": list(self.files),
        }


class PlanRefused(Exception):
    """Kaggle's answer means the run cannot succeed (rules not accepted, bad credentials, unknown competition)."""


class KaggleUnavailable(Exception):
    """Kaggle did not answer usefully; planning goes on without metadata."""


Post = Callable[[str, dict[str, Any], str], dict[str, Any]]


def http_post(url: str, body: dict[str, Any], authorization: str) -> dict[str, Any]:
    """POST JSON and return the JSON answer; HTTP errors become (status, message) in KaggleHttpError."""
    request = urllib.request.Request(  # noqa: S310 - the URL is the fixed https Kaggle API or a test server
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": authorization, "User-Agent": "kagent-plan"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            return dict(json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as error:
        raise KaggleHttpError(error.code, _message(error.read())) from None


class KaggleHttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message", ""))[:300]
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace")[:300]


def refusal_for(status: int, message: str, slug: str) -> Exception:
    meaning = kaggle_status(status, message)
    if meaning == KAGGLE_RULES:
        return PlanRefused(accept_rules_reason(slug))
    if meaning == KAGGLE_CREDENTIALS:
        return PlanRefused(KAGGLE_CREDENTIALS_REJECTED)
    if meaning == KAGGLE_NOT_FOUND:
        return PlanRefused(no_such_competition_reason(slug))
    return KaggleUnavailable(f"Kaggle answered HTTP {status} for '{slug}': {message}")


def _slug_of(ref: str) -> str:
    return ref.rstrip("/").rsplit("/", 1)[-1].lower()


def fetch_meta(
    slug: str, auth: KaggleCredentials, endpoint: str = KAGGLE_API, post: Post = http_post
) -> CompetitionMeta:
    """Metadata for `slug`; raises PlanRefused when Kaggle says the run cannot succeed, KaggleUnavailable otherwise."""
    base = endpoint.rstrip("/") + f"/v1/{SERVICE}/"
    try:
        listing = post(base + "ListCompetitions", {"search": slug}, auth.header())
        found = next((c for c in listing.get("competitions") or [] if _slug_of(str(c.get("ref", ""))) == slug), None)
        # As kagglesdk reads it: JSON omits a false field, so a missing userHasEntered means "not entered".
        if found is not None and not found.get("userHasEntered", False):
            raise PlanRefused(accept_rules_reason(slug, "retry (the Kaggle account has not joined)"))
        files = post(base + "ListDataFiles", {"competitionName": slug}, auth.header())
    except KaggleHttpError as error:
        raise refusal_for(error.status, error.message, slug) from None
    except (OSError, ValueError) as error:
        raise KaggleUnavailable(f"Kaggle did not answer for '{slug}': {error}") from None
    found = found or {}
    return CompetitionMeta(
        slug=slug,
        title=str(found.get("title") or ""),
        evaluation_metric=str(found.get("evaluationMetric") or ""),
        category=str(found.get("category") or ""),
        deadline=str(found.get("deadline") or ""),
        user_has_entered=bool(found.get("userHasEntered", False)) if found else None,
        files=tuple(str(f.get("name", "")) for f in (files.get("files") or [])[:MAX_FILES] if f.get("name")),
    )
