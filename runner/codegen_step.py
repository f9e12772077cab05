"""Codegen's pipeline adapter: the LLM loop (runner.codegen) as the pipeline's `RunOptions.extra_candidates`.

`llm_candidates_from_env` is called where the run's options are built (the CLI, the cloud entrypoint): it reads the
LLM settings from the environment and returns the provider, or None when no LLM is configured. The pipeline calls
the provider with its SelectionContext (the data, the best template so far, its workers); each body the loop scores
comes back as a pipeline Candidate, evaluated on the templates' folds, and the selection treats it like a template.
runner.codegen knows nothing of the pipeline; this module depends on both and neither imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from chalicelib.config import OPENAI_API_KEY, load_settings
from chalicelib.llm import LLMClient, llm_config_from_env, llm_configured
from runner.codegen import CodegenBudget, LLMCodegen, Problem
from runner.pipeline import Candidate, SelectionContext
from runner.prompting import PromptContext, data_preview
from runner.sandbox import SandboxError, SandboxLimits, WallSupport, drop_secrets, protect_runner_process, wall_support
from runner.scaffold import DEFAULT_FOLDS, BodySource, Evaluation, evaluate
from runner.templates import TEMPLATES, template_source

DEFAULT_SANDBOX_LIMITS = SandboxLimits(wall_s=240.0, memory_mb=4096)


class LLMCandidates:
    """`RunOptions.extra_candidates`: LLM bodies evaluated in the pipeline's workers, as pipeline Candidates.

    `result_fields()` gives what result.json records about codegen (tokens, attempts, time, cost, failure reason).
    The uid bodies run as is runner.confine.sandbox_uid()'s (KAGENT_SANDBOX_USER, or a dedicated one when root).
    """

    def __init__(
        self,
        client: LLMClient,
        budget: CodegenBudget | None = None,
        limits: SandboxLimits | None = None,
        plan_text: str | None = None,
        *,
        wall: Callable[[], WallSupport] = wall_support,
    ) -> None:
        self.client = client
        self.budget = budget or CodegenBudget()
        self.limits = limits or DEFAULT_SANDBOX_LIMITS
        self.plan_text = plan_text
        self.wall = wall
        self.engine: LLMCodegen | None = None

    def __call__(self, context: SelectionContext) -> Iterator[Candidate]:
        self.engine = LLMCodegen(
            self.client, self.budget, self.limits, wall=self.wall, log=context.log, trace=context.trace
        )
        context.log(
            f"codegen with {self.client.config.model} via {_where(self.client.config.base_url)}: "
            f"up to {self.budget.attempts} attempts, {self.budget.tokens} tokens, {self.budget.wall_s:.0f} s"
        )
        for generated in self.engine.generate(self._problem(context)):
            yield Candidate(generated.name, generated.source, generated.evaluation)

    def result_fields(self) -> dict[str, Any]:
        if self.engine is None:
            return {"codegen_model": self.client.config.model, **self.client.usage.as_dict()}
        return self.engine.report.as_dict()

    def _problem(self, context: SelectionContext) -> Problem:
        data, metric = context.data, context.metric
        plan = self.plan_text or _plan_text(context.plan)
        prompt = PromptContext(
            preview=_preview(context),
            task={k: v for k, v in data.task.to_dict().items() if k != "higher_is_better"},
            metric=metric.name,
            direction=metric.direction,
            baseline_score=_finite(context.baseline.cv_score),
            baseline_name=f"template ({context.baseline.name})",
            baseline_code=_template_source(context.baseline.name),
            plan=plan,
        )
        return Problem(
            prompt=prompt,
            higher_is_better=metric.higher_is_better,
            baseline_score=_finite(context.baseline.cv_score),
            evaluate=lambda source, name, body_deadline, kill_deadline: self._evaluate(
                context, BodySource(name, source, trusted=False), body_deadline, kill_deadline
            ),
            deadline=context.deadline,
        )

    def _evaluate(
        self, context: SelectionContext, body: BodySource, deadline: float, kill_deadline: float
    ) -> tuple[Evaluation, float | None]:
        """The templates' folds (same seed, same split: comparable scores), every score computed by the runner."""
        if context.workers is None:
            raise SandboxError("no workers to evaluate the body in")
        evaluation = evaluate(
            body,
            context.data,
            deadline,
            workers=context.workers,
            n_folds=DEFAULT_FOLDS,
            log=context.log,
            hard_deadline=kill_deadline,
            memory_mb=self.limits.memory_mb,
        )
        return evaluation, _finite(evaluation.cv_score)


def _preview(context: SelectionContext) -> str:
    data = context.data
    frame = data.X.copy()
    target = f"target:{context.profile.label_column}"
    frame[target] = data.y
    if data.classes and data.task.is_classification:
        mapping = ", ".join(f"{code}={label}" for code, label in enumerate(data.classes[:20]))
        return data_preview(frame, [target]) + f"\nclass codes: {mapping}"
    return data_preview(frame, [target])


def _template_source(name: str) -> str | None:
    return template_source(name) if name in TEMPLATES else None


def _plan_text(plan: Mapping[str, Any] | None) -> str | None:
    if not plan:
        return None
    return "\n".join(f"{key}: {value}" for key, value in plan.items() if value not in (None, "", [], {}))


def _where(base_url: str | None) -> str:
    """The server, for logs: without any user:password a URL might carry."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def llm_candidates_from_env(
    env: MutableMapping[str, str],
    budget: CodegenBudget | None = None,
    plan_text: str | None = None,
    limits: SandboxLimits | None = None,
) -> LLMCandidates | None:
    """The LLM provider when OPENAI_API_KEY or OPENAI_BASE_URL is set, else None.

    Protects this process before any generated code can exist: non-dumpable, and the API key leaves the environment
    (the client holds it in memory), so neither a child nor /proc/<pid>/environ of a same-uid process shows it.
    """
    if not llm_configured(env):
        return None
    settings = load_settings(env)
    config = llm_config_from_env(env, settings.llm_model)
    protect_runner_process()
    drop_secrets(env, names=[OPENAI_API_KEY])
    return LLMCandidates(LLMClient(config), budget, limits, plan_text)
