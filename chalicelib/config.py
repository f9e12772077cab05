"""Settings: the one place the service reads its environment.

Every resource name arrives as an environment variable that `.chalice/config.json` (generated from Terraform outputs by
`scripts/recordresources.py`) or the ECS task definition provides. The names below are the contract between Terraform,
the Chalice app, the Fargate runner and the local stack: change one only together with all of them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chalicelib.vocabulary import OPENAI_API_KEY, OPENAI_BASE_URL  # noqa: F401 - re-exported: callers import them here

# Environment variable names (one source for app, runner, Terraform wiring test and local stack).
STAGE = "KAGENT_STAGE"
APP_NAME = "KAGENT_APP_NAME"
RUNS_TABLE = "KAGENT_RUNS_TABLE"
ARTIFACTS_BUCKET = "KAGENT_ARTIFACTS_BUCKET"
STATE_MACHINE_ARN = "KAGENT_STATE_MACHINE_ARN"
ECS_CLUSTER = "KAGENT_ECS_CLUSTER"
TASK_DEFINITION = "KAGENT_TASK_DEFINITION"
SUBNETS = "KAGENT_SUBNETS"
SECURITY_GROUP = "KAGENT_SECURITY_GROUP"
SES_SENDER = "KAGENT_SES_SENDER"
MAX_RUNNING = "KAGENT_MAX_RUNNING"
PRESIGN_EXPIRY_S = "KAGENT_PRESIGN_EXPIRY_S"
RUN_TIME_BUDGET_S = "KAGENT_RUN_TIME_BUDGET_S"
EXECUTOR = "KAGENT_EXECUTOR"
OUTBOX = "KAGENT_OUTBOX"
DATA_MIRROR = "KAGENT_DATA_MIRROR"
LLM_MODEL = "KAGENT_LLM_MODEL"
PLAN_MODEL = "KAGENT_PLAN_MODEL"
SANDBOX_USER = "KAGENT_SANDBOX_USER"  # runner as root: generated code runs as this user
# The runner task's size (the task definition's cpu and memory), for the run's cost in report.html (issue 14).
TASK_CPU_UNITS = "KAGENT_TASK_CPU_UNITS"
TASK_MEMORY_MIB = "KAGENT_TASK_MEMORY_MIB"
MEMORY_LIMIT_MB = "KAGENT_MEMORY_LIMIT_MB"  # the runner plans its models for this ceiling (runner/memory.py)
# Deployed stages: path prefix of the Plan step's SecureString credentials (chalicelib/credentials.py).
SSM_PREFIX = "KAGENT_SSM_PREFIX"
# Who may be emailed and how much one caller may start (issue 12): comma-separated addresses and domains; whether the
# account's SES is in its sandbox (then only verified identities); runs one caller may start per UTC day.
ALLOWED_RECIPIENTS = "KAGENT_ALLOWED_RECIPIENTS"
SES_SANDBOX = "KAGENT_SES_SANDBOX"
RUNS_PER_CALLER_PER_DAY = "KAGENT_RUNS_PER_CALLER_PER_DAY"
# OPENAI_API_KEY and OPENAI_BASE_URL (read by chalicelib.llm: the OpenAI SDK's own names, so every OpenAI-compatible
# server is configured the same way) are the vocabulary's, imported above.

DEFAULT_LLM_MODEL = "gpt-5-mini"
EXECUTORS = ("stepfunctions", "local")


class ConfigError(ValueError):
    """The environment is missing or has a malformed setting; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    stage: str = "local"
    app_name: str = "kagent"
    runs_table: str = "kagent-local-runs"
    artifacts_bucket: str = "kagent-local-artifacts"
    state_machine_arn: str = ""
    ecs_cluster: str = ""
    task_definition: str = ""
    subnets: tuple[str, ...] = ()
    security_group: str = ""
    ses_sender: str = "kagent@example.com"
    max_running: int = 2
    presign_expiry_s: int = 3600
    run_time_budget_s: int = 300
    executor: str = "stepfunctions"
    outbox: Path | None = None
    data_mirror: Path | None = None
    llm_model: str = DEFAULT_LLM_MODEL
    plan_model: str = DEFAULT_LLM_MODEL
    ssm_prefix: str = ""  # empty (the local stage): the Plan step takes OPENAI_*/KAGGLE_* from the environment
    # Lower-case addresses ("ann@example.com") and domains ("example.com"); empty allows nobody in a deployed stage
    # and everybody in the local stage (its mail lands in the outbox and the emulator).
    allowed_recipients: tuple[str, ...] = ()
    ses_sandbox: bool = False
    runs_per_caller_per_day: int = 50

    @property
    def is_local(self) -> bool:
        return self.stage == "local"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def _recipients(listed: str) -> tuple[str, ...]:
    """KAGENT_ALLOWED_RECIPIENTS: `ann@example.com, example.org` (an address, or a domain meaning any address at it)."""
    entries = []
    for raw in listed.split(","):
        entry = raw.strip().lower().removeprefix("@")
        if not entry:
            continue
        domain = entry.rpartition("@")[2]
        if entry.count("@") > 1 or "." not in domain or any(c.isspace() for c in entry):
            raise ConfigError(f"{ALLOWED_RECIPIENTS} entries are addresses or domains, got {raw.strip()!r}")
        entries.append(entry)
    return tuple(entries)


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    return Path(raw) if raw else None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an environment mapping (the process environment by default)."""
    env = os.environ if env is None else env
    defaults = Settings()
    executor = env.get(EXECUTOR, defaults.executor).strip() or defaults.executor
    if executor not in EXECUTORS:
        raise ConfigError(f"{EXECUTOR} must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    llm_model = env.get(LLM_MODEL, "").strip() or defaults.llm_model
    return Settings(
        stage=env.get(STAGE, defaults.stage).strip() or defaults.stage,
        app_name=env.get(APP_NAME, defaults.app_name).strip() or defaults.app_name,
        runs_table=env.get(RUNS_TABLE, defaults.runs_table).strip() or defaults.runs_table,
        artifacts_bucket=env.get(ARTIFACTS_BUCKET, defaults.artifacts_bucket).strip() or defaults.artifacts_bucket,
        state_machine_arn=env.get(STATE_MACHINE_ARN, "").strip(),
        ecs_cluster=env.get(ECS_CLUSTER, "").strip(),
        task_definition=env.get(TASK_DEFINITION, "").strip(),
        subnets=tuple(s.strip() for s in env.get(SUBNETS, "").split(",") if s.strip()),
        security_group=env.get(SECURITY_GROUP, "").strip(),
        ses_sender=env.get(SES_SENDER, defaults.ses_sender).strip() or defaults.ses_sender,
        max_running=_int(env, MAX_RUNNING, defaults.max_running, minimum=1),
        presign_expiry_s=_int(env, PRESIGN_EXPIRY_S, defaults.presign_expiry_s, minimum=60),
        run_time_budget_s=_int(env, RUN_TIME_BUDGET_S, defaults.run_time_budget_s, minimum=10),
        executor=executor,
        outbox=_path(env, OUTBOX),
        data_mirror=_path(env, DATA_MIRROR),
        llm_model=llm_model,
        plan_model=env.get(PLAN_MODEL, "").strip() or llm_model,
        ssm_prefix=env.get(SSM_PREFIX, "").strip(),
        allowed_recipients=_recipients(env.get(ALLOWED_RECIPIENTS, "")),
        ses_sandbox=_bool(env, SES_SANDBOX, defaults.ses_sandbox),
        runs_per_caller_per_day=_int(env, RUNS_PER_CALLER_PER_DAY, defaults.runs_per_caller_per_day, minimum=1),
    )


@functools.cache
def settings() -> Settings:
    """The process's Settings, read once (chalicelib.wiring.reset forgets them, for tests that switch environments)."""
    return load_settings()


def environment_values(names: Iterable[str]) -> dict[str, str]:
    """The process environment's values of `names` ("" where unset): credentials and client settings the Plan step
    reads when it runs, handed on as values (chalicelib.wiring)."""
    return {name: os.environ.get(name, "") for name in names}
