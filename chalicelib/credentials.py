"""The Plan step's credentials: Kaggle and OpenAI, from SSM SecureString parameters in deployed stages.

Secrets are never in `.chalice/config.json`: a deployed stage names only the parameters' path prefix
(`KAGENT_SSM_PREFIX`, the same `<prefix>/<NAME>` parameters the runner task gets from Terraform), and the Plan Lambda
reads them with one `ssm:GetParameters` call. The values go to the Plan step as arguments: never into os.environ,
never into a log line or a reason (`PlanSecrets`' repr hides them). A parameter that is missing (or SSM refusing) is
not an error: the Plan step goes on without that credential, and its plan's note says which one it lacked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.vocabulary import KAGGLE_API_TOKEN, OPENAI_BASE_URL, SSM_SECRET_NAMES

# The SSM parameters under the prefix are the vocabulary's SSM_SECRET_NAMES (terraform local.runner_secret_names; the
# wiring test keeps the two equal).
# Other settings of the same clients, taken from the environment as before in every stage (a local OpenAI-compatible
# server needs no key; a Kaggle API token is an alternative to username + key).
ENVIRONMENT_NAMES = (OPENAI_BASE_URL, KAGGLE_API_TOKEN)


@dataclass(frozen=True)
class PlanSecrets:
    """Credential name -> value, plus the SSM parameters that were missing and why nothing could be read, if so."""

    values: Mapping[str, str] = field(default_factory=dict, repr=False)
    missing: tuple[str, ...] = ()  # parameter names, not values
    error: str = ""  # SSM could not be asked (the error's class and code, never a value)

    @property
    def note(self) -> str:
        """What the Plan step went without, for the plan's note ("" when nothing was missing)."""
        if self.error:
            return f"credentials not read from SSM ({self.error}): planning without Kaggle or the LLM"
        if self.missing:
            return f"SSM parameter(s) {', '.join(self.missing)} missing: planning without them"
        return ""


def parameter_name(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}"


def read_ssm_secrets(ssm: Any, prefix: str) -> PlanSecrets:
    """The SSM_SECRET_NAMES parameters under `prefix`, decrypted, in one GetParameters call."""
    wanted = {parameter_name(prefix, name): name for name in SSM_SECRET_NAMES}
    try:
        answer = ssm.get_parameters(Names=list(wanted), WithDecryption=True)
    except Exception as error:  # AccessDenied, throttling, no network: plan without them, as when they are missing
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        return PlanSecrets(error=f"{type(error).__name__}{': ' + code if code else ''}")
    values = {
        wanted[parameter["Name"]]: parameter["Value"].strip()
        for parameter in answer.get("Parameters", [])
        if parameter.get("Name") in wanted and str(parameter.get("Value", "")).strip()
    }
    missing = tuple(path for path, name in wanted.items() if name not in values)
    return PlanSecrets(values=values, missing=missing)


def secrets_from_environment(env: Mapping[str, str]) -> PlanSecrets:
    """The local stage: the credentials of the environment, as the runner reads them (nothing is missing locally:
    an unset credential just means that service is not used)."""
    return PlanSecrets(values={name: env[name] for name in SSM_SECRET_NAMES if env.get(name, "").strip()})
