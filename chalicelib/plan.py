"""The run's plan: task type, metric, target hints and approach — from a bounded LLM call or, without one, heuristics.

`make_plan` takes the LLM as an injected `complete(messages) -> text` callable, so it runs (and is tested) without any
server. The LLM's answer must be one JSON object matching `PLAN_SCHEMA`; anything else falls back to the heuristic plan.
`plan_tools` builds the Plan step's tools (that callable, over chalicelib.llm, and Kaggle's metadata) from credentials
handed over as values; chalicelib.wiring reads them (SSM or the environment) when the Plan step runs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from chalicelib import llm
from chalicelib.credentials import PlanSecrets
from chalicelib.kaggle_meta import CompetitionMeta, KaggleCredentials, fetch_meta
from chalicelib.vocabulary import METRIC_ALIASES, METRIC_NAMES
from chalicelib.vocabulary import PLAN_TASK_TYPES as TASK_TYPES

Complete = Callable[[Sequence[Mapping[str, str]]], str]
# Kaggle's metadata for a slug with these credentials (chalicelib.kaggle_meta.fetch_meta, or a fake in tests).
MetaFetch = Callable[[str, KaggleCredentials], CompetitionMeta]
PLAN_LLM_BUDGET_S = 60.0
# Reasoning models (the default gpt-5-mini) count their hidden reasoning against this limit: 800 left the JSON plan
# cut off. The answer itself is ~100 tokens; the rest is room to think, still bounded by PLAN_LLM_BUDGET_S.
PLAN_MAX_OUTPUT_TOKENS = 4000
PLAN_LLM_TIMEOUT_S = 30.0
PLAN_LLM_MAX_RETRIES = 2

# A plan's metric is one of the vocabulary's METRIC_NAMES or None: the runner then infers it from the data.
METRIC_INFERRED = "the runner infers the metric from the data"
MAX_TEXT = 300
MAX_HINTS = 5
PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["task_type", "metric", "target_hints", "approach"],
    "properties": {
        "task_type": {"enum": list(TASK_TYPES)},
        "metric": {"type": ["string", "null"], "maxLength": MAX_TEXT},  # normalised to METRIC_NAMES or None
        "target_hints": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": MAX_HINTS},
        "approach": {"type": "string", "maxLength": MAX_TEXT},
    },
}

# Kaggle evaluation metric names (lowercased substrings) -> (task type, metric name the runner knows).
_METRICS: tuple[tuple[str, str, str], ...] = (
    ("multiclass", "multiclass", "logloss"),
    ("categorization accuracy", "binary", "accuracy"),
    ("accuracy", "binary", "accuracy"),
    ("auc", "binary", "roc_auc"),
    ("log loss", "binary", "logloss"),
    ("logloss", "binary", "logloss"),
    ("f1", "binary", "f1"),
    ("rmsle", "regression", "rmsle"),
    ("root mean squared logarithmic", "regression", "rmsle"),
    ("rmse", "regression", "rmse"),
    ("root mean squared error", "regression", "rmse"),
    ("mae", "regression", "mae"),
    ("mean absolute error", "regression", "mae"),
)


@dataclass(frozen=True)
class PlanTools:
    """What the Plan step may ask, built when it runs (credentials are read then): the LLM and Kaggle's metadata, each
    None without credentials, and a note on what was missing."""

    complete: Complete | None = None
    competition_meta: Callable[[str], CompetitionMeta] | None = None
    note: str = ""


class PlanError(ValueError):
    """The LLM's answer is not a plan (the message says why)."""


def metric_name(text: str | None) -> str | None:
    """The runner's name for the metric `text` names (a name, an alias or Kaggle's wording), or None if none fits."""
    if not text or not text.strip():
        return None
    key = re.sub(r"[\s-]+", "_", text.strip().lower())
    key = METRIC_ALIASES.get(key, key)
    if key in METRIC_NAMES:
        return key
    lowered = text.lower()
    return next((name for needle, _, name in _METRICS if needle in lowered), None)


def _noted(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


@dataclass(frozen=True)
class Plan:
    task_type: str
    metric: str | None  # one of METRIC_NAMES, or None: the runner infers it
    target_hints: tuple[str, ...]
    approach: str
    source: str  # "llm" or "heuristic"
    note: str = ""

    def noting(self, extra: str) -> Plan:
        """This plan with `extra` added to its note (what the Plan step went without)."""
        return replace(self, note=_noted(self.note, extra)) if extra else self

    @property
    def summary(self) -> str:
        hints = f", target {'/'.join(self.target_hints)}" if self.target_hints else ""
        metric = self.metric or "a metric inferred from the data"
        return f"{self.task_type} task scored by {metric}{hints}: {self.approach} ({self.source})"[:MAX_TEXT]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_hints"] = list(self.target_hints)
        return data


def heuristic_plan(slug: str, meta: CompetitionMeta | None, note: str = "") -> Plan:
    metric_text = (meta.evaluation_metric if meta else "").lower()
    task_type = "unknown"
    metric: str | None = None
    for needle, kind, name in _METRICS:
        if needle in metric_text:
            task_type, metric = kind, name
            break
    files = ", ".join(meta.files[:5]) if meta and meta.files else "train/test CSVs"
    approach = f"profile {files}; cross-validated gradient boosting (LightGBM) with a linear baseline"
    if metric is None:
        note = _noted(note, f"no metric the runner knows from Kaggle: {METRIC_INFERRED}")
    return Plan(task_type, metric, (), approach, "heuristic", note)


def _messages(slug: str, meta: CompetitionMeta | None) -> list[dict[str, str]]:
    facts = meta.as_dict() if meta else {"slug": slug}
    return [
        {
            "role": "system",
            "content": (
                "You plan tabular Kaggle competition runs. Answer with one JSON object only, with keys: "
                f"task_type (one of {', '.join(TASK_TYPES)}), metric (one of {', '.join(METRIC_NAMES)}, or null "
                f"when unsure), target_hints (up to {MAX_HINTS} "
                "likely target column names), approach (one sentence, at most 300 characters)."
            ),
        },
        {"role": "user", "content": "Competition facts:\n" + json.dumps(facts, indent=1)[:4000]},
    ]


def parse_plan(text: str) -> Plan:
    """A Plan from the LLM's text (a JSON object, possibly in a ``` fence), checked against PLAN_SCHEMA."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        raise PlanError("the answer holds no JSON object")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as error:
        raise PlanError(f"the answer is not valid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise PlanError("the answer is not a JSON object")
    missing = [key for key in PLAN_SCHEMA["required"] if key not in data]
    if missing:
        raise PlanError(f"the answer lacks {', '.join(missing)}")
    if data["task_type"] not in TASK_TYPES:
        raise PlanError(f"task_type must be one of {', '.join(TASK_TYPES)}, got {data['task_type']!r}")
    approach = data["approach"]
    if not isinstance(approach, str) or not approach.strip() or len(approach) > MAX_TEXT:
        raise PlanError(f"approach must be a non-empty string of at most {MAX_TEXT} characters")
    said = data["metric"]
    if said is not None and (not isinstance(said, str) or len(said) > MAX_TEXT):
        raise PlanError(f"metric must be null or a string of at most {MAX_TEXT} characters")
    hints = data["target_hints"]
    if not isinstance(hints, list) or len(hints) > MAX_HINTS or not all(isinstance(h, str) and h for h in hints):
        raise PlanError(f"target_hints must be a list of at most {MAX_HINTS} names")
    hints_kept = tuple(h[:80] for h in hints)
    metric = metric_name(said)
    note = "" if metric else f"the LLM named no metric the runner knows ({str(said)[:80]!r}): {METRIC_INFERRED}"
    return Plan(data["task_type"], metric, hints_kept, approach.strip(), "llm", note)


def make_plan(slug: str, meta: CompetitionMeta | None, complete: Complete | None) -> Plan:
    """Ask the LLM once (the client bounds time and retries); without one, or on a bad answer, plan heuristically."""
    if complete is None:
        return heuristic_plan(slug, meta, note="no LLM configured")
    try:
        return parse_plan(complete(_messages(slug, meta)))
    except PlanError as error:
        return heuristic_plan(slug, meta, note=f"LLM plan rejected: {error}")
    except Exception as error:  # the LLM is optional for planning: any failure falls back, with the reason kept
        return heuristic_plan(slug, meta, note=f"LLM unavailable: {type(error).__name__}: {str(error)[:200]}")


# -- the Plan step's tools -------------------------------------------------------------------------------------------


def plan_complete(env: Mapping[str, str], model: str) -> Complete | None:
    """The Plan step's LLM as `complete(messages) -> text` (one JSON object, bounded by PLAN_LLM_BUDGET_S), or None
    when `env` configures no LLM."""
    if not llm.llm_configured(env):
        return None
    config = llm.llm_config_from_env(env, model, timeout_s=PLAN_LLM_TIMEOUT_S, max_retries=PLAN_LLM_MAX_RETRIES)
    client = llm.LLMClient(config)

    def complete(messages: Sequence[Mapping[str, str]]) -> str:
        deadline = time.monotonic() + PLAN_LLM_BUDGET_S
        answer = client.chat(messages, json_object=True, max_output_tokens=PLAN_MAX_OUTPUT_TOKENS, deadline=deadline)
        if answer.finish_reason == "length":  # a cut-off answer is never used, even if a JSON object survived the cut
            raise PlanError(
                f"the answer was cut off at {PLAN_MAX_OUTPUT_TOKENS} output tokens "
                f"({answer.completion_tokens} used, reasoning included)"
            )
        return answer.text

    return complete


def plan_tools(
    secrets: PlanSecrets, environment: Mapping[str, str], model: str, fetch: MetaFetch = fetch_meta
) -> PlanTools:
    """The Plan step's LLM and Kaggle metadata from `secrets` (SSM or the environment) over `environment` (the
    clients' other settings: OPENAI_BASE_URL, KAGGLE_API_TOKEN); values are handed over as arguments, never put into
    os.environ. Each tool is None without its credentials; the note says what was missing."""
    env = dict(environment) | dict(secrets.values)
    auth = KaggleCredentials.from_env(env)
    return PlanTools(
        complete=plan_complete(env, model),
        competition_meta=(lambda slug: fetch(slug, auth)) if auth.present else None,
        note=secrets.note,
    )
