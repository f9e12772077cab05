"""The codegen loop's decisions (repair, improve, budgets, no body without the wall) and the prompts, fast: a
scripted evaluation stands in for the workers (tests/test_sandbox.py covers those), the fake OpenAI server for the
LLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chalicelib.llm import LLMClient, LLMConfig
from runner.codegen import CodegenBudget, LLMCodegen, Problem
from runner.codegen_step import _where
from runner.prompting import MAX_PREVIEW_CHARS, Attempt, PromptContext, build_messages, data_preview
from runner.sandbox import FitReply, SandboxError, SandboxLimits, WallSupport, trim
from runner.scaffold import CandidateError
from tests.fake_openai import FakeOpenAI, Reply, error, ok

BODY = "from sklearn.dummy import DummyClassifier\n\n\ndef build_model(task):\n    return DummyClassifier()\n"


class ScriptedSandbox:
    """Answers each evaluation with the next scripted (verdict, score); records the sources it was given."""

    def __init__(self, root: Path, outcomes: list[tuple[str, float | None]]) -> None:
        self.outcomes = list(outcomes)
        self.sources: list[str] = []

    def evaluate(self, source: str, name: str, deadline: float, kill_deadline: float) -> tuple[float, float | None]:
        self.sources.append(source)
        verdict, score = self.outcomes.pop(0)
        if verdict != "ok":
            detail = f"Traceback ...\nValueError: failure {len(self.sources)}"
            reply = FitReply(verdict, detail, None, {}, 0.1, "")  # type: ignore[arg-type]
            raise CandidateError(f"{name}: ValueError: failure {len(self.sources)}", reply)
        assert score is not None
        return score, score


WALL = WallSupport(True, "")


def problem(deadline_s: float = 60, box: ScriptedSandbox | None = None) -> Problem:
    context = PromptContext(preview="train: 10 rows", task={"type": "binary"}, metric="roc_auc", direction="higher")
    return Problem(
        prompt=context,
        higher_is_better=True,
        baseline_score=0.80,
        evaluate=(box or ScriptedSandbox(Path("."), [])).evaluate,
        deadline=time.monotonic() + deadline_s,
    )


def make(server: FakeOpenAI, box: ScriptedSandbox, **budget: object) -> LLMCodegen:
    config = LLMConfig(model="gpt-5-mini", api_key="k", base_url=server.base_url, max_retries=0)
    return LLMCodegen(
        LLMClient(config),
        CodegenBudget(**{"attempts": 4, "min_attempt_s": 0.0, **budget}),  # type: ignore[arg-type]
        SandboxLimits(wall_s=5),
        wall=lambda: WALL,
    )


def fenced(code: str) -> str:
    return f"```python\n{code}```"


def test_failed_run_is_repaired_then_scored_bodies_are_improved(tmp_path: Path):
    box = ScriptedSandbox(tmp_path, [("crashed", None), ("ok", 0.85), ("ok", 0.83)])
    with FakeOpenAI([ok(fenced(BODY))] * 3) as server:
        codegen = make(server, box, attempts=3)
        generated = list(codegen.generate(problem(box=box)))
    assert [g.score for g in generated] == [0.85, 0.83]
    prompts = [r["messages"][1]["content"] for r in server.requests]
    assert "Attempt 1 crashed" in prompts[1] and "failure 1" in prompts[1]
    assert "Attempt 2 scored CV 0.85" in prompts[2]  # improve the best
    assert "attempt 1: crashed" in prompts[2]  # the history travels along
    assert codegen.report.best_score == 0.85
    assert codegen.report.stopped == "attempt budget (3) used"


def test_rejected_code_never_reaches_the_sandbox(tmp_path: Path):
    box = ScriptedSandbox(tmp_path, [("ok", 0.9)])
    with FakeOpenAI([ok(fenced("import os\n" + BODY)), ok("no code, sorry"), ok(fenced(BODY))]) as server:
        codegen = make(server, box, attempts=3)
        generated = list(codegen.generate(problem(box=box)))
    assert len(box.sources) == 1
    assert [g.number for g in generated] == [3]
    assert "import of 'os' is not allowed" in server.requests[1]["messages"][1]["content"]


def test_token_budget_stops_before_the_next_call(tmp_path: Path):
    box = ScriptedSandbox(tmp_path, [("ok", 0.9)] * 3)
    with FakeOpenAI([ok(fenced(BODY), prompt_tokens=900, completion_tokens=300)] * 3) as server:
        codegen = make(server, box, attempts=3, tokens=1000)
        list(codegen.generate(problem(box=box)))
    assert len(server.requests) == 1
    assert codegen.report.stopped.startswith("token budget (1000) used")


def test_time_budget_stops_the_loop(tmp_path: Path):
    box = ScriptedSandbox(tmp_path, [])
    with FakeOpenAI([]) as server:
        codegen = make(server, box, min_attempt_s=30.0)
        assert list(codegen.generate(problem(deadline_s=5))) == []
    assert server.requests == []
    assert codegen.report.stopped == "codegen time budget used"


def test_permanent_llm_error_is_a_failure_with_the_reason(tmp_path: Path):
    box = ScriptedSandbox(tmp_path, [])
    with FakeOpenAI([error(404, "The model does not exist")]) as server:
        codegen = make(server, box)
        assert list(codegen.generate(problem())) == []
    assert "not found (404)" in (codegen.report.failure or "")
    assert "LLM call failed" in codegen.trace_text()


def test_truncated_answer_is_named_in_the_repair_prompt(tmp_path: Path):
    box = ScriptedSandbox(tmp_path, [])
    cut = Reply(content="```python\ndef build_model(task):\n    return (", finish_reason="length")
    with FakeOpenAI([cut, ok("no code")]) as server:
        codegen = make(server, box, attempts=2)
        list(codegen.generate(problem()))
    repair = server.requests[1]["messages"][1]["content"]
    assert "SyntaxError" in repair
    assert "cut at the output token limit" in repair


def test_data_preview_stays_bounded_on_wide_and_wordy_data():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"col_{i}_{'x' * 40}": rng.normal(size=50) for i in range(300)})
    frame["essay"] = ["word " * 2000] * 50
    frame["y"] = rng.normal(size=50)
    preview = data_preview(frame, ["y"])
    assert len(preview) <= MAX_PREVIEW_CHARS + 100
    assert "more feature columns" in preview
    assert "word word word" not in preview[-200:] or len(preview) < MAX_PREVIEW_CHARS


def test_long_traceback_is_trimmed_to_head_and_tail():
    text = "Traceback (most recent call last):\n" + "  frame\n" * 5000 + "ValueError: the cause"
    short = trim(text, 500)
    assert len(short) < 600
    assert short.startswith("Traceback") and short.endswith("ValueError: the cause")


def test_messages_carry_the_plan_and_a_system_prompt():
    context = PromptContext(
        preview="p", task={"type": "regression"}, metric="rmse", direction="lower is better", plan="use log target"
    )
    messages = build_messages(context, [Attempt(1, "timed_out", "killed after 60 s")], "new")
    assert messages[0]["role"] == "system"
    assert "use log target" in messages[1]["content"]
    assert "attempt 1: timed_out" in messages[1]["content"]


def test_without_the_os_wall_no_llm_body_runs_and_the_reason_is_recorded(tmp_path: Path):
    """Where the seccomp filter cannot be installed, codegen stops before asking the LLM: the run keeps the
    templates and result.json says why."""
    box = ScriptedSandbox(tmp_path, [("ok", 0.99)])
    with FakeOpenAI([ok(fenced(BODY))]) as server:
        config = LLMConfig(model="m", api_key="k", base_url=server.base_url)
        no_wall = WallSupport(False, "seccomp: libseccomp is not installed")
        codegen = LLMCodegen(LLMClient(config), CodegenBudget(min_attempt_s=0), wall=lambda: no_wall)
        assert list(codegen.generate(problem(box=box))) == []
    assert codegen.report.failure == "LLM bodies never run without the OS wall: seccomp: libseccomp is not installed"
    assert server.requests == [] and box.sources == []


def test_unusable_workers_fail_codegen_not_the_run(tmp_path: Path):
    def broken(source: str, name: str, deadline: float, kill_deadline: float) -> tuple[float, float | None]:
        raise SandboxError("no sandbox user: KAGENT_SANDBOX_USER names an unknown user: 'nobody-here'")

    with FakeOpenAI([ok(fenced(BODY))]) as server:
        config = LLMConfig(model="m", api_key="k", base_url=server.base_url)
        codegen = LLMCodegen(LLMClient(config), CodegenBudget(min_attempt_s=0), wall=lambda: WALL)
        assert list(codegen.generate(Problem(**{**problem().__dict__, "evaluate": broken}))) == []
    assert "unknown user" in (codegen.report.failure or "")
    assert len(server.requests) == 1


PROVIDER_PROBE = """\
import json, os
from runner.codegen_step import llm_candidates_from_env
env = dict(os.environ)
provider = llm_candidates_from_env(env)
print(json.dumps({
    "model": provider.client.config.model,
    "base_url": provider.client.config.base_url,
    "key_in_env": "OPENAI_API_KEY" in env,
    "key_held": provider.client.config.api_key,
    "none_without_llm": llm_candidates_from_env({}) is None,
}))
"""


@pytest.mark.slow  # a subprocess: building the provider makes the process non-dumpable
def test_provider_from_env_holds_the_key_drops_it_from_the_env_and_reads_the_model():
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "OPENAI_API_KEY": "sk-held",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "KAGENT_LLM_MODEL": "qwen2.5-coder:7b",
        "KAGENT_SANDBOX_USER": "sandbox",
    }
    done = subprocess.run([sys.executable, "-c", PROVIDER_PROBE], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen == {
        "model": "qwen2.5-coder:7b",
        "base_url": "http://127.0.0.1:9/v1",
        "key_in_env": False,
        "key_held": "sk-held",
        "none_without_llm": True,
    }


def test_logged_server_address_never_carries_credentials():
    assert _where("http://user:s3cret@llm.internal:8000/v1") == "http://llm.internal:8000/v1"
    assert _where(None) == "api.openai.com"


def test_an_unexpected_error_in_codegen_is_recorded_not_raised(tmp_path: Path):
    box = ScriptedSandbox(tmp_path, [])

    def disk_full(source: str, name: str, deadline: float, kill_deadline: float) -> tuple[float, float | None]:
        raise OSError(28, "No space left on device")

    with FakeOpenAI([ok(fenced(BODY))]) as server:
        codegen = make(server, box)
        broken = Problem(**{**problem().__dict__, "evaluate": disk_full})
        assert list(codegen.generate(broken)) == []
    assert "No space left on device" in (codegen.report.failure or "")
