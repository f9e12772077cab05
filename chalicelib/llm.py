"""The one OpenAI-compatible client, shared by the Plan Lambda and the runner.

Chat Completions only (no tool calling), so every OpenAI-compatible server works: OpenAI, vLLM, Ollama, llama.cpp,
LiteLLM. `openai` is imported lazily so that importing this module costs nothing where no LLM is configured.

Transient failures (429, 5xx, timeouts, connection resets) are retried here with capped exponential backoff and full
jitter; the SDK's own retries are switched off so that one policy, with one budget, applies. Permanent failures
(401/403, 404 unknown model, 400, quota exhausted) raise `LLMPermanentError` at once with a reason a user can act on.
Every call's tokens are counted; `LLMClient.usage` carries the totals and an estimated cost when the price is known.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.config import LLM_MODEL, OPENAI_API_KEY, OPENAI_BASE_URL, PLAN_MODEL
from chalicelib.retry import Backoff, GaveUp, UniformFrom, retry_call

# USD per 1M tokens (input, output), list prices of OpenAI's API. A model not listed (a local server's) has no estimate.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.0),
    "gpt-4o-mini": (0.15, 0.60),
    "o4-mini": (1.10, 4.40),
    "o3": (2.0, 8.0),
}

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

Message = Mapping[str, str]


class LLMError(RuntimeError):
    """An LLM call failed; `reason` is one line a user can act on."""

    permanent = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LLMPermanentError(LLMError):
    """Retrying cannot help (bad key, unknown model, bad request, exhausted quota, not configured)."""

    permanent = True


class LLMTransientError(LLMError):
    """The server kept failing transiently until the retry budget or the deadline ran out."""


def llm_configured(env: Mapping[str, str]) -> bool:
    """True when an API key or a base URL (a local server needs no key) is set."""
    return bool(env.get(OPENAI_API_KEY, "").strip() or env.get(OPENAI_BASE_URL, "").strip())


def price_for(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens; a dated snapshot ("gpt-5-mini-2025-08-07") takes its family's price."""
    if model in PRICES_PER_MTOK:
        return PRICES_PER_MTOK[model]
    family = max((name for name in PRICES_PER_MTOK if model.startswith(name + "-")), key=len, default=None)
    return PRICES_PER_MTOK[family] if family else None


def estimate_cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    price = price_for(model)
    if price is None:
        return None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000, 6)


@dataclass(frozen=True)
class LLMConfig:
    """How to reach the server. `api_key` is held here, in memory, so the caller can drop it from the environment."""

    model: str
    api_key: str | None = None
    base_url: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0

    def __repr__(self) -> str:  # never print the key
        return f"LLMConfig(model={self.model!r}, base_url={self.base_url!r}, api_key={'***' if self.api_key else None})"

    @property
    def is_openai(self) -> bool:
        return not self.base_url or "api.openai.com" in self.base_url


def llm_config_from_env(env: Mapping[str, str], model: str, **overrides: Any) -> LLMConfig:
    """LLMConfig from OPENAI_API_KEY / OPENAI_BASE_URL; raises LLMPermanentError when neither is set."""
    if not llm_configured(env):
        raise LLMPermanentError(f"no LLM configured: set {OPENAI_API_KEY} (OpenAI) or {OPENAI_BASE_URL} (local server)")
    return LLMConfig(
        model=model,
        api_key=env.get(OPENAI_API_KEY, "").strip() or None,
        base_url=env.get(OPENAI_BASE_URL, "").strip() or None,
        **overrides,
    )


@dataclass
class Usage:
    """Running totals over every call a client made (failed calls that returned no usage count as calls only)."""

    model: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0

    @property
    def cost_usd(self) -> float | None:
        return estimate_cost_usd(self.model, self.prompt_tokens, self.completion_tokens)

    def as_dict(self) -> dict[str, Any]:
        return {
            "llm_model": self.model,
            "llm_calls": self.calls,
            "llm_retries": self.retries,
            "tokens_in": self.prompt_tokens,
            "tokens_out": self.completion_tokens,
            "estimated_cost_usd": self.cost_usd,
        }


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    attempts: int = 1


@dataclass
class LLMClient:
    """Chat Completions with one retry policy and token accounting. `sdk_factory` and `sleep` are seams for tests."""

    config: LLMConfig
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random
    sdk_factory: Callable[[LLMConfig], Any] | None = None
    usage: Usage = field(init=False)
    _sdk: Any = field(init=False, default=None, repr=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.usage = Usage(model=self.config.model)

    def chat(
        self,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        max_output_tokens: int | None = None,
        json_object: bool = False,
        deadline: float | None = None,
    ) -> ChatResult:
        """One completion; `deadline` is a time.monotonic() instant after which no call or backoff starts.

        Raises LLMPermanentError at once for permanent failures, LLMTransientError when retries or time run out.
        """
        model = model or self.config.model
        request = self._request(messages, model, max_output_tokens, json_object)
        attempts = 0

        def once() -> Any:
            nonlocal attempts
            attempts += 1
            timeout = self._timeout(deadline)  # out of time before the call: raised as it is, not retried
            try:
                return self._client().chat.completions.create(timeout=timeout, **request)
            except Exception as exc:
                self._count()
                raise _CallFailed(classify(exc, model), exc) from exc

        try:
            response = retry_call(
                once,
                backoff=self.backoff,
                retryable=lambda error: isinstance(error, _CallFailed) and not error.error.permanent,
                sleep=self.sleep,
                rng=UniformFrom(self.rng),
                deadline=deadline,
                min_delay=self._retry_after_floor,
                on_retry=self._count_retry,
            )
        except _CallFailed as failed:
            raise failed.error from failed.cause
        except GaveUp as gave:
            last = (
                gave.last if isinstance(gave.last, _CallFailed) else _CallFailed(classify(gave.last, model), gave.last)
            )
            budget = "time budget" if gave.out_of_time else f"{self.config.max_retries} retries"
            reason = f"{last.error.reason} (gave up after {gave.attempts} attempts, {budget})"
            raise LLMTransientError(reason) from last.cause
        return self._result(response, model, attempts)

    @property
    def backoff(self) -> Backoff:
        """Capped exponential backoff with full jitter: max_retries retries after the first call."""
        return Backoff(self.config.max_retries + 1, self.config.backoff_base_s, self.config.backoff_cap_s)

    def _retry_after_floor(self, error: Exception) -> float:
        """What the server's Retry-After asks (at most the cap), 0 without one."""
        retry_after = _retry_after_s(error.cause) if isinstance(error, _CallFailed) else None
        return min(retry_after, self.config.backoff_cap_s) if retry_after is not None else 0.0

    def _count_retry(self, attempt: int, error: Exception, delay: float) -> None:
        with self._lock:
            self.usage.retries += 1

    def _request(
        self, messages: Sequence[Message], model: str, max_output_tokens: int | None, json_object: bool
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
        if max_output_tokens:
            # OpenAI's reasoning models reject max_tokens; many local servers only know max_tokens.
            key = "max_completion_tokens" if self.config.is_openai else "max_tokens"
            request[key] = max_output_tokens
        if json_object:
            request["response_format"] = {"type": "json_object"}
        return request

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.config.timeout_s
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LLMTransientError("LLM time budget exhausted before the call")
        return max(1.0, min(self.config.timeout_s, remaining))

    def _client(self) -> Any:
        if self._sdk is None:
            self._sdk = (self.sdk_factory or _openai_sdk)(self.config)
        return self._sdk

    def _count(self, *, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self.usage.calls += 1
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += completion_tokens

    def _result(self, response: Any, model: str, attempts: int) -> ChatResult:
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise LLMTransientError(f"the server answered without choices (model {model})")
        message = choices[0].message
        return ChatResult(
            text=(getattr(message, "content", None) or ""),
            model=getattr(response, "model", None) or model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=getattr(choices[0], "finish_reason", None),
            attempts=attempts,
        )


class _CallFailed(Exception):
    """One failed call: the SDK's exception (`cause`) and what it means (`error`), handed to the retry loop."""

    def __init__(self, error: LLMError, cause: Exception) -> None:
        super().__init__(error.reason)
        self.error = error
        self.cause = cause


def _openai_sdk(config: LLMConfig) -> Any:
    import openai  # noqa: PLC0415 - lazy: the SDK loads only where an LLM is used

    return openai.OpenAI(
        # A local server needs no key, but the SDK insists on one.
        api_key=config.api_key or "no-key-needed",
        base_url=config.base_url or None,
        timeout=config.timeout_s,
        max_retries=0,
    )


def classify(exc: Exception, model: str) -> LLMError:
    """Map an SDK exception to a transient or permanent LLMError with a readable reason."""
    import openai  # noqa: PLC0415 - lazy: the SDK loads only where an LLM is used (as in _openai_sdk)

    if isinstance(exc, openai.APITimeoutError):
        return LLMTransientError("the LLM server timed out")
    if isinstance(exc, openai.APIConnectionError):
        return LLMTransientError(f"cannot reach the LLM server ({_root_cause(exc)})")
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc, model)
    if isinstance(exc, LLMError):
        return exc
    return LLMPermanentError(f"LLM call failed: {type(exc).__name__}: {exc}")


def _classify_status(exc: Any, model: str) -> LLMError:
    status = int(exc.status_code)
    detail = _short(getattr(exc, "message", "") or str(exc))
    code = getattr(exc, "code", None)
    if status == 401:
        return LLMPermanentError(f"LLM authentication failed (401): check {OPENAI_API_KEY} ({detail})")
    if status == 403:
        return LLMPermanentError(f"LLM access denied (403) for model {model!r} ({detail})")
    if status == 404:
        return LLMPermanentError(f"LLM model {model!r} not found (404): check {LLM_MODEL}/{PLAN_MODEL} ({detail})")
    if status == 429 and code == "insufficient_quota":
        return LLMPermanentError(f"LLM quota exhausted (429 insufficient_quota) ({detail})")
    if status in TRANSIENT_STATUS or status >= 500:
        return LLMTransientError(f"LLM server error {status} ({detail})")
    return LLMPermanentError(f"LLM request rejected ({status}) ({detail})")


def _retry_after_s(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw = headers.get("retry-after-ms")
    scale = 0.001
    if raw is None:
        raw, scale = headers.get("retry-after"), 1.0
    try:
        return max(0.0, float(raw) * scale) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: rare here, fall back to our own backoff


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return _short(f"{type(exc).__name__}: {exc}")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
