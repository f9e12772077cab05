"""The run's plan: task type, metric, target hints and approach — from a bounded LLM call or, without one, heuristics.

`make_plan` takes the LLM as an injected `complete(messages) -> text` callable, so it runs (and is tested) without any
server. The LLM's answer must be one JSON object matching `PLAN_SCHEMA`; anything else falls back to the heuristic plan.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from chalicelib.kaggle_meta import CompetitionMeta

Complete = Callable[[Sequence[Mapping[str, str]]], str]

TASK_TYPES = ("binary", "multiclass", "regression", "unknown")
MAX_TEXT = 300
MAX_HINTS = 5
PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["task_type", "metric", "target_hints", "approach"],
    "properties": {
        "task_type": {"enum": list(TASK_TYPES)},
        "metric": {"type": "string", "maxLength": MAX_TEXT},
        "target_hints": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": MAX_HINTS},
        "approach": {"type": "string", "maxLength": MAX_TEXT},
    },
}

# Kaggle evaluation metric names (lowercased substrings) -> (task type, metric name the runner knows).
_METRICS: tuple[tuple[str, str, str], ...] = (
    ("multiclass", "multiclass", "log_loss"),
    ("categorization accuracy", "binary", "accuracy"),
    ("accuracy", "binary", "accuracy"),
    ("auc", "binary", "roc_auc"),
    ("log loss", "binary", "log_loss"),
    ("logloss", "binary", "log_loss"),
    ("f1", "binary", "f1"),
    ("rmsle", "regression", "rmsle"),
    ("root mean squared logarithmic", "regression", "rmsle"),
    ("rmse", "regression", "rmse"),
    ("root mean squared error", "regression", "rmse"),
    ("mae", "regression", "mae"),
    ("mean absolute error", "regression", "mae"),
)


class PlanError(ValueError):
    """The LLM's answer is not a plan (the message says why)."""


@dataclass(frozen=True)
class Plan:
    task_type: str
    metric: str
    target_hints: tuple[str, ...]
    approach: str
    source: str  # "llm" or "heuristic"
    note: str = ""

    @property
    def summary(self) -> str:
        hints = f", target {'/'.join(self.target_hints)}" if self.target_hints else ""
        return f"{self.task_type} task scored by {self.metric}{hints}: {self.approach} ({self.source})"[:MAX_TEXT]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_hints"] = list(self.target_hints)
        return data


def heuristic_plan(slug: str, meta: CompetitionMeta | None, note: str = "") -> Plan:
    metric_text = (meta.evaluation_metric if meta else "").lower()
    task_type, metric = "unknown", metric_text or "inferred from the data"
    for needle, kind, name in _METRICS:
        if needle in metric_text:
            task_type, metric = kind, name
            break
    files = ", ".join(meta.files[:5]) if meta and meta.files else "train/test CSVs"
    approach = f"profile {files}; cross-validated gradient boosting (LightGBM) with a linear baseline"
    return Plan(task_type, metric, (), approach, "heuristic", note)


def _messages(slug: str, meta: CompetitionMeta | None) -> list[dict[str, str]]:
    facts = meta.as_dict() if meta else {"slug": slug}
    return [
        {
            "role": "system",
            "content": (
                "You plan tabular Kaggle competition runs. Answer with one JSON object only, with keys: "
                f"task_type (one of {', '.join(TASK_TYPES)}), metric (string), target_hints (up to {MAX_HINTS} "
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
    for key in ("metric", "approach"):
        if not isinstance(data[key], str) or not data[key].strip() or len(data[key]) > MAX_TEXT:
            raise PlanError(f"{key} must be a non-empty string of at most {MAX_TEXT} characters")
    hints = data["target_hints"]
    if not isinstance(hints, list) or len(hints) > MAX_HINTS or not all(isinstance(h, str) and h for h in hints):
        raise PlanError(f"target_hints must be a list of at most {MAX_HINTS} names")
    hints_kept = tuple(h[:80] for h in hints)
    return Plan(data["task_type"], data["metric"].strip(), hints_kept, data["approach"].strip(), "llm")


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
