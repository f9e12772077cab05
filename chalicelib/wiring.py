"""Assemble the Service the handlers call: Settings (chalicelib.config), boto3 clients (chalicelib.aws), the executor
that starts a run's workflow, the mailer, the Plan step's tools.

app.py calls `service(steps=...)` in each handler; the first call builds the Service, later ones return it. Importing
this module creates no client and reads no setting. `steps` is how the app hands its step handlers (Lambda function
name -> handler) to the local executor (KAGENT_EXECUTOR=local), which calls them in-process: nothing here or there
imports the app.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from chalicelib import aws, config, credentials, local_executor, orchestrator, recipients
from chalicelib.config import Settings
from chalicelib.credentials import PlanSecrets
from chalicelib.kaggle_meta import fetch_meta
from chalicelib.notify import CopyingMailer, Mailer, OutboxMailer, SesMailer
from chalicelib.plan import MetaFetch, PlanTools
from chalicelib.plan import plan_tools as build_plan_tools
from chalicelib.runs import Run, RunStore
from chalicelib.service import CANCELLED, Service
from chalicelib.submission import validate_submission as validate_csv

# The app's step handlers by Lambda function name, asked for when a local execution starts.
StepsSource = Callable[[], local_executor.StepHandlers]
# The local executor's start: (run, execution input, settings, step handlers) -> execution id.
LocalStart = Callable[[Run, dict[str, object], Settings, local_executor.StepHandlers], str]
SfnClientFactory = Callable[[], object]

_secrets_lock = threading.Lock()
_ssm_secrets: dict[str, PlanSecrets] = {}  # SSM prefix -> its secrets: read once per container
_steps: list[StepsSource] = []  # the app's step handlers (service(steps=...)); one entry at most


class NoStepHandlers(orchestrator.OrchestrationError):
    """KAGENT_EXECUTOR=local, but no step handlers were handed over (the app was not started through app.py)."""


def service(steps: StepsSource | None = None) -> Service:
    """The Service the handlers call, built on first use. `steps` (app.py's step handlers) is kept for the local
    executor; a caller without it (a test, a script) gets the same Service."""
    if steps is not None:
        _steps[:] = [steps]
    return _service()


@functools.cache
def _service() -> Service:
    current = config.settings()
    return Service(
        settings=current,
        store=RunStore(aws.runs_table()),
        s3=aws.client("s3"),
        mailer=mailer(current),
        executor=executor(current, lambda: aws.client("stepfunctions")),
        validator=validate_submission,
        plan_tools=plan_tools,
        # Local executions are threads of `chalice local` that end through the executor's own reconcile call.
        describe_execution=None if current.executor == "local" else describe_execution,
        recipient_verified=recipient_verified if current.ses_sandbox else None,
        stop_execution=stop_execution,
    )


def reset(clients: bool = True) -> None:
    """Forget the Service, the settings and the Plan step's secrets (and, unless `clients=False`, the boto3 clients).

    Tests switch environments between cases; keeping the clients (`clients=False`) is fine under moto's in-process
    mock, which intercepts every client, and saves the client creation time. The app's step handlers are kept."""
    _service.cache_clear()
    config.settings.cache_clear()
    _ssm_secrets.clear()
    if clients:
        aws.reset()


def mailer(settings: Settings) -> Mailer:
    """SES; in the local stack every email also lands in the outbox as an .eml file."""
    ses: Mailer = SesMailer(aws.client("ses"), settings.ses_sender)
    if settings.outbox:
        return CopyingMailer(ses, OutboxMailer(settings.outbox, settings.ses_sender))
    return ses


def executor(
    settings: Settings,
    sfn_client: SfnClientFactory,
    steps: StepsSource | None = None,
    local_start: LocalStart = local_executor.start,
) -> orchestrator.Executor:
    """Step Functions, or with KAGENT_EXECUTOR=local the local executor given the app's step handlers (`steps`,
    app_steps() by default). Chosen per start, so a missing state machine ARN fails that run's start (a 503), not the
    whole Service."""

    def start(run: Run, payload: dict[str, object]) -> str:
        if settings.executor == "local":
            return local_start(run, payload, settings, (steps or app_steps)())
        return orchestrator.stepfunctions_executor(sfn_client(), settings.state_machine_arn)(run, payload)

    return start


def app_steps() -> local_executor.StepHandlers:
    """The step handlers app.py handed over; NoStepHandlers (the run fails to start, saying why) without them."""
    if not _steps:
        raise NoStepHandlers(
            "KAGENT_EXECUTOR=local calls the app's step handlers in-process: serve the app through app.py (make local)"
        )
    return _steps[0]()


def describe_execution(arn: str) -> dict[str, object] | None:
    return orchestrator.describe_execution(aws.client("stepfunctions"), arn)


def stop_execution(arn: str) -> None:
    """StopExecution; with the local executor, whose executions are threads of this process named by the run id,
    its stop (SIGTERM to the runner task)."""
    if config.settings().executor == "local":
        local_executor.stop(arn.rpartition(":")[2])
        return
    orchestrator.stop_execution(aws.client("stepfunctions"), arn, CANCELLED)


def recipient_verified(email: str) -> bool:
    return recipients.ses_verified(aws.client("ses"))(email)


def validate_submission(submission: bytes, sample: bytes | None) -> list[str]:
    """The runner engine's stdlib validator (chalicelib.submission), problems as one-line strings."""
    if sample is None:
        return ["the runner stored no sample submission to check submission.csv against"]
    problems = validate_csv(submission.decode("utf-8", "replace"), sample.decode("utf-8", "replace"))
    return [str(problem) for problem in problems]


def plan_secrets() -> PlanSecrets:
    """The Plan step's credentials: in a deployed stage the SSM SecureString parameters under KAGENT_SSM_PREFIX, read
    once per container (a failed read is not kept: the next Plan asks again); in the local stage the environment's
    OPENAI_*/KAGGLE_*."""
    prefix = config.settings().ssm_prefix
    if not prefix:
        return credentials.secrets_from_environment(config.environment_values(credentials.SSM_SECRET_NAMES))
    with _secrets_lock:
        if prefix not in _ssm_secrets:
            found = credentials.read_ssm_secrets(aws.client("ssm"), prefix)
            if found.error:
                return found
            _ssm_secrets[prefix] = found
        return _ssm_secrets[prefix]


def plan_tools(fetch: MetaFetch = fetch_meta) -> PlanTools:
    """The Plan step's LLM and Kaggle metadata (chalicelib.plan.plan_tools), built when the Plan step runs from
    plan_secrets() and the clients' other settings in the environment."""
    environment = config.environment_values(credentials.ENVIRONMENT_NAMES)
    return build_plan_tools(plan_secrets(), environment, config.settings().plan_model, fetch)
