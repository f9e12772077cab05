"""chalicelib.llm against the fake OpenAI-compatible server, through the real `openai` client."""

from __future__ import annotations

import time

import pytest

from chalicelib.llm import (
    LLMClient,
    LLMConfig,
    LLMPermanentError,
    LLMTransientError,
    estimate_cost_usd,
    llm_config_from_env,
    llm_configured,
    price_for,
)
from tests.fake_openai import FakeOpenAI, Reply, error, ok

HI = [{"role": "user", "content": "hi"}]


def make_client(server: FakeOpenAI, model: str = "gpt-5-mini", max_retries: int = 3, **kw: object) -> LLMClient:
    config = LLMConfig(model=model, api_key="sk-test", base_url=server.base_url, timeout_s=5, max_retries=max_retries)
    sleeps: list[float] = []
    client = LLMClient(config, sleep=sleeps.append, **kw)  # type: ignore[arg-type]
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


def test_llm_configured_by_key_or_base_url_only():
    assert not llm_configured({})
    assert not llm_configured({"OPENAI_API_KEY": "  "})
    assert llm_configured({"OPENAI_API_KEY": "sk-x"})
    assert llm_configured({"OPENAI_BASE_URL": "http://localhost:11434/v1"})


def test_config_from_env_without_llm_names_both_variables():
    with pytest.raises(LLMPermanentError, match=r"OPENAI_API_KEY.*OPENAI_BASE_URL"):
        llm_config_from_env({}, "gpt-5-mini")


def test_config_repr_hides_the_key():
    config = llm_config_from_env({"OPENAI_API_KEY": "sk-secret-canary"}, "gpt-5-mini")
    assert "sk-secret-canary" not in repr(config)
    assert config.api_key == "sk-secret-canary"


def test_cost_is_estimated_for_known_models_and_snapshots_only():
    assert estimate_cost_usd("gpt-5-mini", 1_000_000, 1_000_000) == pytest.approx(2.25)
    assert price_for("gpt-5-mini-2025-08-07") == price_for("gpt-5-mini")
    assert price_for("qwen2.5-coder:7b") is None
    assert estimate_cost_usd("llama3", 10, 10) is None


def test_chat_returns_content_and_counts_tokens():
    with FakeOpenAI([ok("hello", prompt_tokens=11, completion_tokens=7)]) as server:
        client = make_client(server)
        result = client.chat(HI, max_output_tokens=100)
    assert result.text == "hello"
    assert (result.prompt_tokens, result.completion_tokens) == (11, 7)
    assert client.usage.as_dict()["tokens_in"] == 11
    assert client.usage.cost_usd == estimate_cost_usd("gpt-5-mini", 11, 7)
    request = server.requests[0]
    assert request["model"] == "gpt-5-mini"
    assert request["max_tokens"] == 100  # a non-OpenAI base URL gets the widely supported name
    assert server.headers[0].get("authorization") == "Bearer sk-test"


def test_429_then_success_retries_with_backoff():
    with FakeOpenAI([error(429, "slow down"), error(503), ok("done")]) as server:
        client = make_client(server)
        result = client.chat(HI)
    assert result.text == "done"
    assert result.attempts == 3
    assert client.usage.retries == 2
    assert len(client.sleeps) == 2  # type: ignore[attr-defined]


def test_backoff_grows_exponentially_is_capped_and_honours_retry_after():
    with FakeOpenAI([error(500)] * 4 + [error(429, headers={"retry-after": "2"}), ok("x")]) as server:
        config = LLMConfig(
            model="m", api_key="k", base_url=server.base_url, max_retries=6, backoff_base_s=1, backoff_cap_s=4
        )
        sleeps: list[float] = []
        LLMClient(config, sleep=sleeps.append, rng=lambda: 1.0).chat(HI)
    assert sleeps == [1, 2, 4, 4, 4]


def test_500_past_the_retry_budget_raises_transient_with_reason():
    with FakeOpenAI(default=error(500, "boom")) as server:
        client = make_client(server, max_retries=2)
        with pytest.raises(LLMTransientError, match=r"500.*gave up after 3 attempts"):
            client.chat(HI)
    assert len(server.requests) == 3


def test_401_fails_at_once_naming_the_key():
    with FakeOpenAI([error(401, "Incorrect API key provided")]) as server:
        client = make_client(server)
        with pytest.raises(LLMPermanentError, match=r"authentication failed.*OPENAI_API_KEY"):
            client.chat(HI)
    assert len(server.requests) == 1
    assert client.sleeps == []  # type: ignore[attr-defined]


def test_unknown_model_404_fails_at_once_naming_the_model():
    with FakeOpenAI([error(404, "model does not exist", code="model_not_found")]) as server:
        client = make_client(server, model="gpt-nope")
        with pytest.raises(LLMPermanentError, match="'gpt-nope' not found"):
            client.chat(HI)
    assert len(server.requests) == 1


def test_exhausted_quota_is_permanent_although_429():
    quota = error(429, "You exceeded your current quota", code="insufficient_quota")
    with FakeOpenAI([quota]) as server, pytest.raises(LLMPermanentError, match="quota"):
        make_client(server).chat(HI)


def test_connection_reset_is_retried():
    with FakeOpenAI([Reply(drop=True), ok("after reset")]) as server:
        assert make_client(server).chat(HI).text == "after reset"


def test_timeout_is_retried_then_given_up():
    with FakeOpenAI(default=Reply(delay_s=1.5, content="late")) as server:
        config = LLMConfig(model="m", api_key="k", base_url=server.base_url, timeout_s=0.3, max_retries=1)
        with pytest.raises(LLMTransientError, match="timed out"):
            LLMClient(config, sleep=lambda s: None).chat(HI)


def test_deadline_stops_retrying_before_sleeping_past_it():
    with FakeOpenAI(default=error(503)) as server:
        config = LLMConfig(model="m", api_key="k", base_url=server.base_url, max_retries=50, backoff_base_s=10)
        client = LLMClient(config, sleep=lambda s: None, rng=lambda: 1.0)
        with pytest.raises(LLMTransientError, match="time budget"):
            client.chat(HI, deadline=time.monotonic() + 5)
    assert len(server.requests) == 1


def test_garbage_body_is_an_error_not_a_crash():
    garbage = Reply(raw=b"<html>bad gateway</html>")
    with FakeOpenAI(default=garbage) as server, pytest.raises((LLMTransientError, LLMPermanentError)):
        make_client(server, max_retries=1).chat(HI)


def test_openai_base_url_uses_max_completion_tokens():
    sent: dict[str, object] = {}

    class FakeCompletions:
        def create(self, **kwargs: object) -> object:
            sent.update(kwargs)
            raise LLMPermanentError("stop here")

    class FakeSDK:
        class chat:  # mirrors the SDK's attribute path
            completions = FakeCompletions()

    client = LLMClient(LLMConfig(model="gpt-5-mini", api_key="k"), sdk_factory=lambda c: FakeSDK())
    with pytest.raises(LLMPermanentError):
        client.chat(HI, max_output_tokens=500, json_object=True)
    assert sent["max_completion_tokens"] == 500
    assert sent["response_format"] == {"type": "json_object"}
