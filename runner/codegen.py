"""Model bodies from an LLM: prompt → extract → AST check → CV in the workers → repair or improve, within budgets.

The loop never trusts the generated code. It runs no LLM body at all unless the OS wall can be raised here
(`runner.sandbox.wall_support()`: seccomp, and Landlock or a separate uid): otherwise it logs the one-line reason
and the run keeps the templates. A body that fails the check is rejected without running; one that passes is
evaluated by runner.scaffold.evaluate like the templates, each fold and the final fit in a fresh, confined child of
the zygote (runner.sandbox) that never sees a label of a row it predicts, its `reuse_params_` ignored; the CV score
is computed by the runner from the predictions alone. The pipeline compares every candidate with the templates by
the same folds and scores, so a body cannot win by cheating its score. Every attempt is written to the code trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chalicelib.llm import ChatResult, LLMClient, LLMError, LLMPermanentError
from runner.bodycheck import check_body, extract_code
from runner.prompting import Attempt, PromptContext, build_messages
from runner.sandbox import SandboxError, SandboxLimits, WallSupport, trim, wall_support
from runner.scaffold import CandidateError
from runner.score import Score

TRACE_PROMPT_CHARS = 4000
TRACE_RESPONSE_CHARS = 6000


@dataclass(frozen=True)
class CodegenBudget:
    """Limits of one codegen run: LLM answers asked for, tokens spent (in + out), wall time of the whole loop."""

    attempts: int = 5
    tokens: int = 150_000
    wall_s: float = 900.0
    max_output_tokens: int = 8000
    improve: bool = True  # keep asking for improvements of the best body while budget remains
    min_attempt_s: float = 10.0  # no new attempt with less time than this left


@dataclass
class CodegenReport:
    """What result.json says about codegen."""

    model: str
    attempts: int = 0
    scored: int = 0
    best_score: float | None = None
    stopped: str = ""  # why the loop ended
    failure: str | None = None  # a permanent LLM failure (bad key, unknown model), no OS wall, a worker failure
    codegen_s: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "codegen_model": self.model,
            "codegen_attempts": self.attempts,
            "codegen_scored": self.scored,
            "codegen_best_cv": self.best_score,
            "codegen_stopped": self.stopped,
            "codegen_failure": self.failure,
            "codegen_s": round(self.codegen_s, 2),
            **self.usage,
        }


@dataclass(frozen=True)
class Problem:
    """What the loop needs from the engine, in engine-neutral terms (built by runner.codegen_step)."""

    prompt: PromptContext
    higher_is_better: bool  # the metric's direction: scores compare as runner.score.Score
    baseline_score: float | None
    # evaluate(source, name, body_deadline, kill_deadline) -> (evaluation, CV score computed by the runner); raises
    # CandidateError (with the worker's reply) when the body fails, SandboxError when the workers do
    evaluate: Callable[[str, str, float, float], tuple[Any, float | None]]
    deadline: float  # time.monotonic() instant by which codegen must be finished

    def score(self, value: float | None) -> Score:
        return Score(value, self.higher_is_better)


@dataclass(frozen=True)
class Generated:
    """A body that ran in the workers and has a CV score; `evaluation` is the scaffold's, computed by the runner."""

    number: int
    name: str
    source: str
    score: float | None
    evaluation: Any


class LLMCodegen:
    def __init__(
        self,
        client: LLMClient,
        budget: CodegenBudget | None = None,
        limits: SandboxLimits | None = None,
        *,
        wall: Callable[[], WallSupport] = wall_support,
        log: Callable[[str], None] = lambda line: None,
        trace: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.client = client
        self.trace_sink = trace
        self.budget = budget or CodegenBudget()
        self.limits = limits or SandboxLimits()
        self.wall = wall
        self.log = log
        self.trace: list[str] = []  # also streamed to the sink (gpt_code_trace.txt) as it happens
        self.report = CodegenReport(model=client.config.model)
        self.history: list[Attempt] = []

    def generate(self, problem: Problem) -> Iterator[Generated]:
        """Yield each body that scored, best-effort within the budgets; failures are recorded, never raised."""
        started = time.monotonic()
        deadline = min(problem.deadline, started + self.budget.wall_s)
        try:
            yield from self._loop(problem, deadline)
        except Exception as exc:  # codegen may fail; it must never take the run (and the template's submission) down
            self._stop(f"codegen error: {type(exc).__name__}: {trim(str(exc), 300)}", failure=True)
        finally:
            self.report.codegen_s = time.monotonic() - started
            self.report.usage = self.client.usage.as_dict()
            self._trace(f"== codegen ended: {self.report.stopped}")

    def _loop(self, problem: Problem, deadline: float) -> Iterator[Generated]:
        wall = self.wall()
        if not wall.holds:
            self._stop(f"LLM bodies never run without the OS wall: {wall.reason}", failure=True)
            return
        best: Attempt | None = None  # the best LLM body so far, the one to improve
        mode, focus = "new", None
        for number in range(1, self.budget.attempts + 1):
            reason = self._out_of_budget(deadline)
            if reason:
                self._stop(reason)
                return
            attempt, generated = self._attempt(number, problem, deadline, (mode, focus))
            if attempt is None:  # the LLM (or the workers) failed for good; _attempt recorded why
                return
            self.history.append(attempt)
            if generated is not None:
                best = attempt if best is None else max(best, attempt, key=lambda a: problem.score(a.score))
                yield generated
            if attempt.score is None:
                mode, focus = "repair", attempt
            elif self.budget.improve and best is not None:
                mode, focus = "improve", best
            else:
                mode, focus = "new", None
        self._stop(f"attempt budget ({self.budget.attempts}) used")

    def _attempt(
        self, number: int, problem: Problem, deadline: float, step: tuple[str, Attempt | None]
    ) -> tuple[Attempt | None, Generated | None]:
        mode, focus = step
        messages = build_messages(problem.prompt, self.history, mode, focus)
        self.report.attempts = number
        self._trace(f"== attempt {number} ({mode}{f' of attempt {focus.number}' if focus else ''})")
        self._trace("-- prompt (trimmed)\n" + trim(messages[-1]["content"], TRACE_PROMPT_CHARS))
        reply = self._ask(messages, deadline)
        if reply is None:
            return None, None
        self._trace(
            f"-- response ({reply.prompt_tokens} tokens in, {reply.completion_tokens} out, "
            f"finish {reply.finish_reason})\n" + trim(reply.text, TRACE_RESPONSE_CHARS)
        )
        code = extract_code(reply.text)
        self._trace("-- extracted code\n" + (code or "(none)"))
        check = check_body(code)
        if not check.ok:
            cut = " (the answer was cut at the output token limit: keep the module short)"
            detail = check.message + (cut if reply.finish_reason == "length" else "")
            return self._verdict(Attempt(number, "rejected", detail, None, code)), None
        return self._run(number, code, problem, deadline)

    def _ask(self, messages: list[dict[str, str]], deadline: float) -> ChatResult | None:
        try:
            left = self.budget.tokens - self.client.usage.prompt_tokens - self.client.usage.completion_tokens
            limit = min(self.budget.max_output_tokens, max(1000, left))
            return self.client.chat(messages, max_output_tokens=limit, deadline=deadline)
        except LLMError as exc:
            self._trace(f"-- LLM call failed: {exc.reason}")
            self._stop(f"LLM failed: {exc.reason}", failure=isinstance(exc, LLMPermanentError))
            return None

    def _run(
        self, number: int, code: str, problem: Problem, deadline: float
    ) -> tuple[Attempt | None, Generated | None]:
        """Evaluate the body (its folds in fresh confined workers); its time is the sandbox wall time at most."""
        started = time.monotonic()
        limit = max(1.0, min(self.limits.wall_s, deadline - started))
        name = f"llm{number}"
        try:
            evaluation, score = problem.evaluate(code, name, started + max(1.0, 0.9 * limit - 1.0), started + limit)
        except CandidateError as exc:
            reply = exc.reply
            if reply is not None and reply.log_tail:
                self._trace("-- worker output (trimmed)\n" + reply.log_tail)
            verdict = reply.verdict if reply is not None else "crashed"
            detail = f"{exc}\n{reply.detail}" if reply is not None and reply.detail else str(exc)
            return self._verdict(Attempt(number, verdict, detail, None, code)), None
        except SandboxError as exc:
            self._stop(f"the workers failed: {exc}", failure=True)
            return None, None
        if score is None:
            return self._verdict(Attempt(number, "bad_output", "no usable CV score", None, code)), None
        elapsed = time.monotonic() - started
        attempt = self._verdict(Attempt(number, "scored", f"in {elapsed:.1f} s", score, code))
        self.report.scored += 1
        self.report.best_score = max(problem.score(self.report.best_score), problem.score(score)).value
        return attempt, Generated(number, name, code, score, evaluation)

    def _verdict(self, attempt: Attempt) -> Attempt:
        label = f"scored {attempt.score:.6g}" if attempt.score is not None else attempt.verdict.replace("_", " ")
        detail = trim(attempt.detail, 1500)
        self._trace(f"-- verdict: {label}" + (f"\n{detail}" if detail else ""))
        self.log(f"codegen attempt {attempt.number}: {label}" + _first_line(attempt.detail))
        return attempt

    def _out_of_budget(self, deadline: float) -> str | None:
        used = self.client.usage.prompt_tokens + self.client.usage.completion_tokens
        if used >= self.budget.tokens:
            return f"token budget ({self.budget.tokens}) used: {used} tokens"
        if deadline - time.monotonic() < self.budget.min_attempt_s:
            return "codegen time budget used"
        return None

    def _stop(self, reason: str, failure: bool = False) -> None:
        self.report.stopped = reason
        if failure:
            self.report.failure = reason
        self.log(f"codegen stopped: {reason}")

    def _trace(self, text: str) -> None:
        self.trace.append(text)
        self.trace_sink(text)

    def trace_text(self) -> str:
        return "\n".join(self.trace) + "\n"


def _first_line(detail: str) -> str:
    lines = [line for line in detail.strip().splitlines() if line.strip()]
    return f" ({lines[-1].strip()[:160]})" if lines else ""
