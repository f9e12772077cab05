"""The names the service (chalicelib, app.py) and the runner share, each defined once.

Standard library only, and no import from chalicelib or the runner: the Lambda package and the runner image both carry
chalicelib/, so either side may import this module without pulling the other side in. tests/test_vocabulary.py fails
when one of these names or literals is defined again elsewhere.

What is here: metric names, aliases and direction; task types; the Kaggle and OpenAI environment variable names and
which of them are secrets; what Kaggle's HTTP answers mean and the reasons shown for them; the competition URLs; the
Step Functions execution ARN; the S3 artifact layout of a run; the runner's exit codes; the reason length caps.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from types import MappingProxyType

# -- metrics ---------------------------------------------------------------------------------------------------------

# The metrics the runner scores (runner.metrics implements each; a plan's metric is one of these or None).
METRIC_NAMES = ("rmse", "rmsle", "mae", "roc_auc", "logloss", "accuracy", "f1")
# Other spellings accepted for them (after lowercasing, with spaces and hyphens as underscores).
METRIC_ALIASES: Mapping[str, str] = MappingProxyType(
    {"auc": "roc_auc", "log_loss": "logloss", "acc": "accuracy", "f1_score": "f1", "rmsle_": "rmsle"}
)
# Each metric's direction: True when a higher score is better.
HIGHER_IS_BETTER: Mapping[str, bool] = MappingProxyType(
    {
        "rmse": False,
        "rmsle": False,
        "mae": False,
        "roc_auc": True,
        "logloss": False,
        "accuracy": True,
        "f1": True,
    }
)
HIGHER_BETTER_TEXT = "higher is better"
LOWER_BETTER_TEXT = "lower is better"


def higher_is_better(metric: str) -> bool:
    """The direction of `metric` (one of METRIC_NAMES); KeyError for any other name."""
    return HIGHER_IS_BETTER[metric]


def direction_text(higher: bool) -> str:
    """ "higher is better" or "lower is better", as logs, reports and result.json's `metric_direction` say it."""
    return HIGHER_BETTER_TEXT if higher else LOWER_BETTER_TEXT


# -- task types ------------------------------------------------------------------------------------------------------

BINARY = "binary"
MULTICLASS = "multiclass"
REGRESSION = "regression"
UNKNOWN_TASK = "unknown"  # a plan that cannot tell: the runner infers the task type from the data
TASK_TYPES = (BINARY, MULTICLASS, REGRESSION)  # what the runner builds models for (runner.contract.TaskSpec)
PLAN_TASK_TYPES = (*TASK_TYPES, UNKNOWN_TASK)  # what a plan may say

# -- environment variable names --------------------------------------------------------------------------------------

KAGGLE_USERNAME = "KAGGLE_USERNAME"
KAGGLE_KEY = "KAGGLE_KEY"
KAGGLE_API_TOKEN = "KAGGLE_API_TOKEN"  # noqa: S105 - the variable's name, not a secret
KAGGLE_CONFIG_DIR = "KAGGLE_CONFIG_DIR"
KAGGLE_CREDENTIAL_NAMES = (KAGGLE_USERNAME, KAGGLE_KEY, KAGGLE_API_TOKEN)
OPENAI_API_KEY = "OPENAI_API_KEY"
OPENAI_BASE_URL = "OPENAI_BASE_URL"
# The secrets stored as SSM SecureString parameters under KAGENT_SSM_PREFIX (terraform local.runner_secret_names; the
# wiring test keeps the two equal). A Kaggle API token is an alternative taken from the environment, not from SSM.
SSM_SECRET_NAMES = (OPENAI_API_KEY, KAGGLE_USERNAME, KAGGLE_KEY)
# Every credential the runner may hold in its environment: none of them may reach generated code (runner.sandbox).
SANDBOX_SECRET_NAMES = frozenset({*SSM_SECRET_NAMES, *KAGGLE_CREDENTIAL_NAMES})

# -- Kaggle: URLs, what its HTTP answers mean, the reasons shown for them --------------------------------------------

KAGGLE_HOST = "www.kaggle.com"


def competition_url(slug: str) -> str:
    return f"https://{KAGGLE_HOST}/competitions/{slug}"


def rules_url(slug: str) -> str:
    return f"https://{KAGGLE_HOST}/c/{slug}/rules"


def submissions_url(slug: str) -> str:
    return f"https://{KAGGLE_HOST}/competitions/{slug}/submissions"


# What an HTTP answer from Kaggle means, whatever kagent asked (metadata, a download, a submission).
KAGGLE_CREDENTIALS = "credentials"  # 401: the username/key or token is wrong
KAGGLE_RULES = "rules"  # the account has not accepted the competition's rules
KAGGLE_NOT_FOUND = "not_found"  # 404: no such competition
KAGGLE_BUSY = "busy"  # 429 or 5xx: Kaggle is overloaded or down; a later retry may work
KAGGLE_FORBIDDEN = "forbidden"  # any other 403: closed, private, or not for this account
KAGGLE_OTHER = "other"

KAGGLE_CREDENTIALS_MISSING = (
    f"Kaggle credentials missing: set {KAGGLE_USERNAME} and {KAGGLE_KEY}, or {KAGGLE_API_TOKEN}"
)
KAGGLE_CREDENTIALS_REJECTED = (
    f"Kaggle credentials rejected (401): check {KAGGLE_USERNAME}/{KAGGLE_KEY} or {KAGGLE_API_TOKEN}"
)


def kaggle_status(status: int | None, message: str) -> str:
    """What Kaggle's answer `status` (None: no HTTP status) with `message` means: one of the KAGGLE_* meanings."""
    text = message.lower()
    if status == 401:
        return KAGGLE_CREDENTIALS
    if "rules" in text and (status == 403 or "accept" in text):
        return KAGGLE_RULES
    if status == 404:
        return KAGGLE_NOT_FOUND
    if status is not None and (status == 429 or status >= 500):
        return KAGGLE_BUSY
    if status == 403:
        return KAGGLE_FORBIDDEN
    return KAGGLE_OTHER


def accept_rules_reason(slug: str, then: str = "retry") -> str:
    return f"accept the rules at {rules_url(slug)}, then {then}"


def no_such_competition_reason(slug: str) -> str:
    return f"no such competition on Kaggle: '{slug}' (404)"


# -- Step Functions --------------------------------------------------------------------------------------------------


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN of the execution called `name` of the state machine `state_machine_arn`."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name


# -- the S3 artifact layout of a run: s3://<artifacts bucket>/<run_id>/<file> ----------------------------------------

SUBMISSION_FILE = "submission.csv"
SAMPLE_FILE = "sample_submission.csv"  # the competition's sample submission, whatever Kaggle called it
RESULT_FILE = "result.json"  # chalicelib.run_report.RunReport
LOGS_FILE = "logs.txt"
TRACE_FILE = "gpt_code_trace.txt"
REPORT_FILE = "report.html"
CV_CHART_FILE = "cv_chart.png"  # the chart the success email shows
RUN_ARTIFACTS = (SUBMISSION_FILE, LOGS_FILE, TRACE_FILE, RESULT_FILE, REPORT_FILE, CV_CHART_FILE)


def run_prefix(run_id: str) -> str:
    """The S3 prefix under which every artifact of the run lives."""
    return f"{run_id}/"


def artifact_key(run_id: str, name: str) -> str:
    """The S3 key of the run's artifact `name` (one of RUN_ARTIFACTS or SAMPLE_FILE)."""
    return run_prefix(run_id) + name


def submission_key(run_id: str) -> str:
    return artifact_key(run_id, SUBMISSION_FILE)


def sample_key(run_id: str) -> str:
    return artifact_key(run_id, SAMPLE_FILE)


def result_key(run_id: str) -> str:
    return artifact_key(run_id, RESULT_FILE)


# -- exit codes: one meaning each ------------------------------------------------------------------------------------
# The CLI (`python -m runner`) uses 0, 1 and 2; the Fargate task (runner.runner_main) uses 0, 1, 2, 3 and 143.

EXIT_OK = 0  # the run succeeded: submission.csv written (CLI) / uploaded (task)
# The run failed and says why (result.json's reason, the run item): an internal error in the CLI, any failure after
# the start in the task.
EXIT_RUN_FAILED = 1
# What the caller gave cannot run: the CLI's data, flags or plan file (one line on stderr), the task's environment.
EXIT_BAD_INPUT = 2
EXIT_NOT_RUNNABLE = 3  # the task's run is ended or unknown: it was left untouched
EXIT_TERMINATED = 128 + int(signal.SIGTERM)  # SIGTERM (ECS stops a task with it): the run was marked failed first

# -- reason length caps ----------------------------------------------------------------------------------------------

STORED_REASON_MAX_CHARS = 4000  # a failure reason as stored on the run item (and returned by the API)
EMAIL_REASON_MAX_CHARS = 2000  # the failure reason quoted in the failure email
