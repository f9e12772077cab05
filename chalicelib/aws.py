"""Lazily cached boto3 clients and resources: the one place boto3 meets the environment on the service side.

boto3 is imported on first use so that `import app` stays fast. Endpoints come from boto3's own standard settings
(`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_DEFAULT_REGION`), so moto server or LocalStack need no
code path.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.config import Settings, load_settings

_lock = threading.Lock()
_secrets_lock = threading.Lock()
_ssm_secrets: dict[str, Any] = {}  # SSM prefix -> PlanSecrets: read once per container
PLAN_LLM_BUDGET_S = 60.0
# Reasoning models (the default gpt-5-mini) count their hidden reasoning against this limit: 800 left the JSON plan
# cut off. The answer itself is ~100 tokens; the rest is room to think, still bounded by PLAN_LLM_BUDGET_S.
PLAN_MAX_OUTPUT_TOKENS = 4000
MAX_POOL_CONNECTIONS = 64


@functools.cache
def settings() -> Settings:
    return load_settings()


def _session() -> Any:
    import boto3  # noqa: PLC0415 - lazy: keeps cold imports of app.py fast

    return boto3.session.Session()


@functools.cache
def client(service: str) -> Any:
    """A boto3 client for `service`, created once per process (creation is not thread-safe, hence the lock)."""
    from botocore.config import Config  # noqa: PLC0415

    # S3 presigned links must be SigV4: SigV2 is retired in newer regions and capped at 7 days everywhere.
    config = _config().merge(Config(signature_version="s3v4")) if service == "s3" else _config()
    with _lock:
        return _session().client(service, config=config)


@functools.cache
def resource(service: str) -> Any:
    with _lock:
        return _session().resource(service, config=_config())


def _config() -> Any:
    """chalice local serves requests in threads that share these clients: more than botocore's 10 pooled connections
    (past 10 it drops connections and reconnects per call). A Lambda serves one request at a time either way."""
    from botocore.config import Config  # noqa: PLC0415

    return Config(max_pool_connections=MAX_POOL_CONNECTIONS)


def runs_table() -> Any:
    return resource("dynamodb").Table(settings().runs_table)


def reset(clients: bool = True) -> None:
    """Forget cached settings and the service (and, unless `clients=False`, the boto3 clients too).

    Tests switch environments between cases; keeping the clients (`clients=False`) is fine under moto's in-process
    mock, which intercepts every client, and saves the client creation time.
    """
    settings.cache_clear()
    service.cache_clear()
    _ssm_secrets.clear()
    if clients:
        client.cache_clear()
        resource.cache_clear()


def plan_secrets() -> Any:
    """The Plan step's credentials (chalicelib.credentials.PlanSecrets): in a deployed stage the SSM SecureString
    parameters under KAGENT_SSM_PREFIX, read once per container (a failed read is not kept: the next Plan asks again);
    in the local stage the environment's OPENAI_*/KAGGLE_*."""
    from chalicelib import credentials  # noqa: PLC0415

    prefix = settings().ssm_prefix
    if not prefix:
        return credentials.secrets_from_environment(os.environ)
    with _secrets_lock:
        if prefix not in _ssm_secrets:
            found = credentials.read_ssm_secrets(client("ssm"), prefix)
            if found.error:
                return found
            _ssm_secrets[prefix] = found
        return _ssm_secrets[prefix]


def plan_tools(fetch: Callable[[str, Any], Any] | None = None) -> Any:
    """The Plan step's LLM and Kaggle metadata (chalicelib.plan.PlanTools), from plan_secrets(); the values are
    handed over as arguments, never put into os.environ. `fetch(slug, auth)` defaults to kaggle_meta.fetch_meta."""
    from chalicelib import credentials  # noqa: PLC0415
    from chalicelib.kaggle_meta import KaggleCredentials, fetch_meta  # noqa: PLC0415
    from chalicelib.plan import PlanTools  # noqa: PLC0415

    found = plan_secrets()
    env = {name: os.environ.get(name, "") for name in credentials.ENVIRONMENT_NAMES} | dict(found.values)
    auth = KaggleCredentials.from_env(env)
    fetch_ = fetch or fetch_meta
    return PlanTools(
        complete=plan_complete(env),
        competition_meta=(lambda slug: fetch_(slug, auth)) if auth.present else None,
        note=found.note,
    )


def plan_complete(env: Mapping[str, str]) -> Any:
    """The Plan Lambda's LLM as `complete(messages) -> text`, or None when `env` configures no LLM."""
    from chalicelib import llm  # noqa: PLC0415
    from chalicelib.plan import PlanError  # noqa: PLC0415

    if not llm.llm_configured(env):
        return None
    client_ = llm.LLMClient(llm.llm_config_from_env(env, settings().plan_model, timeout_s=30.0, max_retries=2))

    def complete(messages: Any) -> str:
        deadline = time.monotonic() + PLAN_LLM_BUDGET_S
        answer = client_.chat(messages, json_object=True, max_output_tokens=PLAN_MAX_OUTPUT_TOKENS, deadline=deadline)
        if answer.finish_reason == "length":  # a cut-off answer is never used, even if a JSON object survived the cut
            raise PlanError(
                f"the answer was cut off at {PLAN_MAX_OUTPUT_TOKENS} output tokens "
                f"({answer.completion_tokens} used, reasoning included)"
            )
        return answer.text

    return complete


def validate_submission(submission: bytes, sample: bytes | None) -> list[str]:
    """The runner engine's stdlib validator (chalicelib.submission), problems as one-line strings."""
    from chalicelib.submission import validate_submission as validate  # noqa: PLC0415

    if sample is None:
        return ["the runner stored no sample submission to check submission.csv against"]
    problems = validate(submission.decode("utf-8", "replace"), sample.decode("utf-8", "replace"))
    return [str(problem) for problem in problems]


@functools.cache
def service() -> Any:
    """The Service the handlers call, wired from Settings and the lazily created clients."""
    from chalicelib import orchestrator, recipients  # noqa: PLC0415
    from chalicelib.notify import CopyingMailer, Mailer, OutboxMailer, SesMailer  # noqa: PLC0415
    from chalicelib.runs import RunStore  # noqa: PLC0415
    from chalicelib.service import CANCELLED, Service  # noqa: PLC0415

    current = settings()
    mailer: Mailer = SesMailer(client("ses"), current.ses_sender)
    if current.outbox:  # the local stack: every email also lands as an .eml file
        mailer = CopyingMailer(mailer, OutboxMailer(current.outbox, current.ses_sender))

    def executor(run: Any, payload: dict[str, Any]) -> str:
        return orchestrator.choose_executor(current, lambda: client("stepfunctions"))(run, payload)

    def describe(arn: str) -> Any:
        return orchestrator.describe_execution(client("stepfunctions"), arn)

    def stop(arn: str) -> None:
        if current.executor == "local":  # executions are threads of this process; the id ends with the run id
            from chalicelib import local_executor  # noqa: PLC0415

            local_executor.stop(arn.rpartition(":")[2])
            return
        orchestrator.stop_execution(client("stepfunctions"), arn, CANCELLED)

    def verified(email: str) -> bool:
        return recipients.ses_verified(client("ses"))(email)

    return Service(
        settings=current,
        store=RunStore(runs_table()),
        s3=client("s3"),
        mailer=mailer,
        executor=executor,
        validator=validate_submission,
        plan_tools=plan_tools,
        # Local executions are threads of `chalice local` that end through the executor's own reconcile call.
        describe_execution=None if current.executor == "local" else describe,
        recipient_verified=verified if current.ses_sandbox else None,
        stop_execution=stop,
    )
