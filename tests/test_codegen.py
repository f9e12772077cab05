"""LLM codegen end to end: the fake OpenAI server scripts the answers, the real sandbox runs them, the real pipeline
selects by CV. Every run must end with a valid submission and a trace that tells what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chalicelib.llm import LLMClient, LLMConfig
from runner.codegen import CodegenBudget
from runner.codegen_step import LLMCandidates
from runner.pipeline import Candidate, RunOptions, SelectionContext, run_pipeline
from runner.sandbox import SandboxLimits, wall_support
from runner.scaffold import BodySource, CandidateError, evaluate
from tests.fake_openai import FakeOpenAI, error, ok
from tests.sandbox_bodies import LABEL_HUNT_BODY, MEMORY_BODY, TUNING_BODY

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

# The target follows diagonal stripes sin(5(a+b)): trees and linear models struggle on a few hundred rows; one
# engineered feature makes it easy.
WINNER = """\
import numpy as np
from sklearn.linear_model import LogisticRegression


def add_features(df):
    df = df.copy()
    df["wave"] = np.sin(5 * (df["a"] + df["b"]))
    return df[["wave"]]


def build_model(task):
    return LogisticRegression(C=10.0, max_iter=500)
"""

LOSER = """\
from sklearn.dummy import DummyClassifier


def build_model(task):
    return DummyClassifier(strategy="uniform")  # constant 0.5: cannot even help a blend
"""

RAISES = """\
from sklearn.linear_model import LogisticRegression


def build_model(task):
    raise RuntimeError("the model exploded")
"""

HANGS = """\
def build_model(task):
    while True:
        pass
"""

EATS_MEMORY = """\
def build_model(task):
    hog = bytearray(6 * 1024 ** 3)
    return hog
"""

FORBIDDEN = """\
import os
from sklearn.linear_model import LogisticRegression


def build_model(task):
    os.system("curl http://example.com")
    return LogisticRegression()
"""

CANARY_PROBE = """\
import os
print(os.environ.get("OPENAI_API_KEY"), open(f"/proc/{os.getppid()}/environ").read())
from sklearn.dummy import DummyClassifier


def build_model(task):
    return DummyClassifier()
"""


def fenced(code: str) -> str:
    return f"Here is an improved model.\n\n```python\n{code}```\nIt should do well."


def write_competition(root: Path, n_train: int = 240, n_test: int = 60, seed: int = 0) -> Path:
    """Diagonal stripes; the test answers are kept in `answers.csv` beside the folder (never read by the runner)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    frame = pd.DataFrame({"PassengerId": np.arange(1, n + 1), "a": rng.uniform(-2, 2, n), "b": rng.uniform(-2, 2, n)})
    frame["Survived"] = (np.sin(5 * (frame["a"] + frame["b"])) > 0).astype(int)
    root.mkdir(parents=True, exist_ok=True)
    frame.iloc[:n_train].to_csv(root / "train.csv", index=False)
    frame.iloc[n_train:].drop(columns="Survived").to_csv(root / "test.csv", index=False)
    pd.DataFrame({"PassengerId": frame["PassengerId"].iloc[n_train:], "Survived": 0}).to_csv(
        root / "gender_submission.csv", index=False
    )
    frame.iloc[n_train:][["PassengerId", "Survived"]].to_csv(root.parent / "answers.csv", index=False)
    return root


@pytest.fixture(scope="module")
def competition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_competition(tmp_path_factory.mktemp("comp") / "data")


def provider(server: FakeOpenAI, attempts: int = 3, max_retries: int = 2, wall_s: float = 15) -> LLMCandidates:
    config = LLMConfig(
        model="gpt-5-mini",
        api_key="sk-test-key",
        base_url=server.base_url,
        timeout_s=5,
        max_retries=max_retries,
        backoff_base_s=0.001,
        backoff_cap_s=0.01,
    )
    budget = CodegenBudget(attempts=attempts, tokens=100_000, wall_s=120, min_attempt_s=2, improve=False)
    return LLMCandidates(LLMClient(config), budget, SandboxLimits(wall_s=wall_s, memory_mb=1500))


def run(competition: Path, out: Path, candidates: LLMCandidates, budget: float = 20) -> dict:
    options = RunOptions(metric="accuracy", time_budget=budget, codegen="llm", extra_candidates=candidates)
    outcome = run_pipeline(competition, out, options)
    result = json.loads((out / "result.json").read_text())
    assert outcome.status == "succeeded", outcome.reason
    assert result["status"] == "succeeded"
    submission = pd.read_csv(out / "submission.csv")
    sample = pd.read_csv(competition / "gender_submission.csv")
    assert list(submission.columns) == list(sample.columns)
    assert submission["PassengerId"].tolist() == sample["PassengerId"].tolist()
    assert submission["Survived"].isin([0, 1]).all()
    return result


def trace_of(out: Path) -> str:
    return (out / "gpt_code_trace.txt").read_text()


def test_better_candidate_wins_after_429_and_503_retries_and_result_counts_tokens(competition: Path, tmp_path: Path):
    script = [error(429, "rate limited"), error(503), ok(fenced(WINNER), prompt_tokens=1500, completion_tokens=400)]
    with FakeOpenAI(script) as server:
        result = run(competition, tmp_path, provider(server, attempts=1))
    assert "llm1" in result["model"], result["candidates"]
    assert result["llm_retries"] == 2
    assert result["cv_score"] > 0.9
    assert (result["tokens_in"], result["tokens_out"], result["codegen_attempts"]) == (1500, 400, 1)
    assert result["estimated_cost_usd"] == pytest.approx((1500 * 0.25 + 400 * 2.0) / 1e6)
    trace = trace_of(tmp_path)
    assert "-- verdict: scored" in trace
    assert "chosen model: llm1" in trace or "llm1*" in trace
    request = server.requests[0]
    assert "Data preview" in request["messages"][1]["content"]
    assert "accuracy" in request["messages"][1]["content"]


def test_worse_candidate_loses_to_the_template(competition: Path, tmp_path: Path):
    with FakeOpenAI([ok(fenced(LOSER))]) as server:
        result = run(competition, tmp_path, provider(server, attempts=1))
    assert "llm1" not in result["model"]
    llm = next(c for c in result["candidates"] if c["name"] == "llm1")
    assert llm["cv_score"] < result["cv_score"]
    assert "-- verdict: scored" in trace_of(tmp_path)


def test_story_of_repairs_garbage_forbidden_syntax_error_crash_then_a_fix(competition: Path, tmp_path: Path):
    script = [
        ok("I'm sorry, as an AI I prefer not to write code today."),
        ok(fenced(FORBIDDEN)),
        ok("```python\ndef build_model(task):\n    return (\n```"),
        ok(fenced(RAISES)),
        ok(WINNER),  # no fences at all
    ]
    with FakeOpenAI(script) as server:
        result = run(competition, tmp_path, provider(server, attempts=5), budget=30)
    trace = trace_of(tmp_path)
    verdicts = [line for line in trace.splitlines() if line.startswith("-- verdict")]
    assert [v.split(":")[1].split()[0] for v in verdicts] == ["rejected", "rejected", "rejected", "crashed", "scored"]
    assert "import of 'os' is not allowed" in trace
    assert "SyntaxError at line" in trace
    assert "the model exploded" in trace
    assert result["codegen_attempts"] == 5
    assert "llm5" in result["model"]
    # each repair prompt carried the previous failure back to the model
    assert "is not allowed" in server.requests[2]["messages"][1]["content"]
    assert "the model exploded" in server.requests[4]["messages"][1]["content"]


def test_hanging_and_memory_hungry_bodies_are_killed_and_the_template_wins(competition: Path, tmp_path: Path):
    with FakeOpenAI([ok(fenced(HANGS)), ok(fenced(EATS_MEMORY))]) as server:
        result = run(competition, tmp_path, provider(server, attempts=2, wall_s=4), budget=35)
    trace = trace_of(tmp_path)
    assert "-- verdict: timed out" in trace
    assert "-- verdict: out of memory" in trace
    assert "llm" not in result["model"]


def test_500_past_the_retry_budget_ends_codegen_with_the_template(competition: Path, tmp_path: Path):
    with FakeOpenAI(default=error(500, "upstream down")) as server:
        result = run(competition, tmp_path, provider(server, attempts=3, max_retries=2))
    assert len(server.requests) == 3  # one attempt: 1 call + 2 retries, then codegen gives up
    assert "500" in result["codegen_stopped"]
    assert "llm" not in result["model"]
    assert "LLM call failed" in trace_of(tmp_path)
    assert "codegen stopped" in (tmp_path / "logs.txt").read_text()


def test_401_fails_codegen_at_once_with_the_reason_in_logs_and_result(competition: Path, tmp_path: Path):
    with FakeOpenAI([error(401, "Incorrect API key provided")]) as server:
        result = run(competition, tmp_path, provider(server, attempts=3))
    assert len(server.requests) == 1
    assert "authentication failed" in result["codegen_failure"]
    assert "authentication failed" in (tmp_path / "logs.txt").read_text()
    assert "llm" not in result["model"]


WALL = wall_support()
HOSTILE = {"memory": MEMORY_BODY, "label_hunt": LABEL_HUNT_BODY, "tuning": TUNING_BODY, "winner": WINNER}


def direct(bodies: dict[str, str]):
    """An extra-candidates provider that evaluates bodies exactly as LLM bodies are (untrusted, confined, honest
    scoring) without the LLM and the AST check in front: the scoring must hold on its own."""

    def provide(context: SelectionContext):
        assert context.workers is not None
        for name, source in bodies.items():
            body = BodySource(name, source, trusted=False)
            try:
                evaluation = evaluate(body, context.data, context.deadline, workers=context.workers)
            except CandidateError as exc:
                context.log(f"{name} failed: {exc}")
                continue
            yield Candidate(name, source, evaluation)

    return provide


def true_accuracy(competition: Path, out: Path) -> float:
    answers = pd.read_csv(competition.parent / "answers.csv")
    submission = pd.read_csv(out / "submission.csv")
    return float((submission["Survived"].to_numpy() == answers["Survived"].to_numpy()).mean())


@pytest.mark.skipif(not WALL.holds, reason=f"LLM bodies need the OS wall: {WALL.reason}")
@pytest.mark.parametrize("seed", [1, 2])
def test_an_llm_candidate_never_makes_the_submission_worse_than_the_templates(tmp_path: Path, seed: int):
    """Property: whatever bodies join the templates (cheats remembering labels across folds, hunting label files,
    smuggling tuned state; or a genuinely better one), the chosen submission grades at least as well against the
    hidden answers as the templates' own choice, and no cheat is chosen."""
    competition = write_competition(tmp_path / "comp" / "data", n_train=200, n_test=200, seed=seed)
    base, with_llm = tmp_path / "templates", tmp_path / "llm"

    def options(bodies: dict[str, str]) -> RunOptions:  # codegen llm either way: the templates get the same share
        return RunOptions(metric="accuracy", time_budget=120, codegen="llm", extra_candidates=direct(bodies))

    run_pipeline(competition, base, options({}))
    outcome = run_pipeline(competition, with_llm, options(HOSTILE))
    assert outcome.status == "succeeded", outcome.reason
    result = json.loads((with_llm / "result.json").read_text())
    scores = {c["name"]: c["cv_score"] for c in result["candidates"]}
    assert {"memory", "label_hunt", "tuning", "winner"} <= set(scores), scores
    templates_best = max(v for k, v in scores.items() if k not in HOSTILE)
    assert max(scores["memory"], scores["label_hunt"], scores["tuning"]) < templates_best
    assert not any(name in result["model"] for name in ("memory", "label_hunt", "tuning"))
    assert true_accuracy(competition, with_llm) >= true_accuracy(competition, base)
    assert "ms overhead per fit" in (with_llm / "logs.txt").read_text()


def cli(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "KAGENT_"))}
    env.update(env_extra, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_codegen_llm_without_an_llm_fails_clearly(competition: Path, tmp_path: Path):
    proc = cli([str(competition), "--out", str(tmp_path), "--codegen", "llm"], {})
    assert proc.returncode != 0
    assert "OPENAI_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "failed"


def test_cli_with_a_canary_key_never_writes_it_anywhere(competition: Path, tmp_path: Path):
    canary = "sk-canary-cli-5d5d5d"
    out = tmp_path / "out"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"approach": "engineer a periodic feature of a"}))
    with FakeOpenAI([ok(fenced(CANARY_PROBE)), ok(fenced(WINNER))]) as server:
        proc = cli(
            [
                str(competition),
                "--out",
                str(out),
                "--time-budget",
                "40",
                "--metric",
                "accuracy",
                "--codegen-attempts",
                "2",
                "--plan",
                str(plan),
            ],
            {"OPENAI_API_KEY": canary, "OPENAI_BASE_URL": server.base_url, "KAGENT_LLM_MODEL": "gpt-5-mini"},
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert server.headers[0]["authorization"] == f"Bearer {canary}"  # the key was used ...
    assert "periodic feature" in server.requests[0]["messages"][1]["content"]  # ... with the plan in the prompt
    written = [proc.stdout, proc.stderr, *(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())]
    assert not [text for text in written if canary in text]  # ... and never written
    result = json.loads((out / "result.json").read_text())
    assert result["codegen_attempts"] == 2
    assert "rejected" in (out / "gpt_code_trace.txt").read_text()
