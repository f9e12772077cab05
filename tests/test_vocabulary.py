"""Every shared name is defined once, in chalicelib/vocabulary.py: a scan of app.py, chalicelib, runner and scripts
fails when one is defined again (a metric-name tuple, `def rules_url`, an execution-ARN replace, an S3 key literal,
a reason cap, a secret list, an exit code, a Kaggle reason). The scanner itself is tested on seeded sources, so a
scan that finds nothing means there is nothing to find, not that the scanner is blind."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chalicelib import vocabulary as v

REPO = Path(__file__).resolve().parent.parent
VOCABULARY = REPO / "chalicelib" / "vocabulary.py"
SCANNED = [REPO / "app.py", *sorted((REPO / "chalicelib").rglob("*.py")), *sorted((REPO / "runner").rglob("*.py"))]
SCANNED += sorted((REPO / "scripts").rglob("*.py"))

ARTIFACT_FILES = {*v.RUN_ARTIFACTS, v.SAMPLE_FILE}
ENV_NAMES = {*v.KAGGLE_CREDENTIAL_NAMES, v.KAGGLE_CONFIG_DIR, v.OPENAI_API_KEY, v.OPENAI_BASE_URL}
SHARED_FUNCTIONS = {
    "rules_url",
    "competition_url",
    "submissions_url",
    "execution_arn",
    "artifact_key",
    "submission_key",
    "sample_key",
    "result_key",
    "kaggle_status",
    "higher_is_better",
    "direction_text",
}
CAP_NAMES = ("MAX_REASON_CHARS", "STORED_REASON_MAX_CHARS", "EMAIL_REASON_MAX_CHARS")
# Sentences whose one definition is the vocabulary's (a copy elsewhere drifts from it).
SHARED_TEXTS = ("Kaggle credentials rejected", "Kaggle credentials missing", "accept the rules at ")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _strings(node: ast.expr) -> list[str]:
    """The string constants of a tuple/list/set literal, or of frozenset(...)/set(...)/tuple(...) of one."""
    collection = ("frozenset", "set", "tuple", "list")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args and node.func.id in collection:
        return _strings(node.args[0])
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _assignments(tree: ast.AST) -> Iterator[tuple[ast.stmt, list[str], ast.expr]]:
    """(statement, names assigned, value) for every `NAME = value` and `NAME: T = value`, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            names += [t.attr for t in node.targets if isinstance(t, ast.Attribute)]
            yield node, names, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
            yield node, [node.target.id], node.value


def scan(source: str, path: str = "<source>") -> list[Finding]:
    """Re-definitions of the vocabulary in `source` (see the module docstring)."""
    tree = ast.parse(source)
    found: list[Finding] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(Finding(path, getattr(node, "lineno", 0), what))

    for node, names, value in _assignments(tree):
        listed = set(_strings(value))
        if len(listed & set(v.METRIC_NAMES)) >= 2:
            flag(node, f"metric names listed again ({', '.join(names)})")
        if set(v.TASK_TYPES) <= listed:
            flag(node, f"task types listed again ({', '.join(names)})")
        if len(listed & v.SANDBOX_SECRET_NAMES) >= 2:
            flag(node, f"secret names listed again ({', '.join(names)})")
        if isinstance(value, ast.Dict):
            pairs = {
                (k.value, d.value)
                for k, d in zip(value.keys, value.values, strict=True)
                if isinstance(k, ast.Constant) and isinstance(d, ast.Constant)
            }
            if len(pairs & set(v.METRIC_ALIASES.items())) >= 2:
                flag(node, f"metric aliases defined again ({', '.join(names)})")
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            if value.value in ARTIFACT_FILES:
                flag(node, f"artifact name {value.value!r} defined again ({', '.join(names)})")
            if value.value in ENV_NAMES:
                flag(node, f"environment name {value.value!r} defined again ({', '.join(names)})")
        for name in names:
            if name in CAP_NAMES or name.endswith("SECRET_NAMES"):
                flag(node, f"{name} assigned outside the vocabulary")
            if name.startswith("EXIT_") and isinstance(value, ast.Constant | ast.BinOp | ast.Tuple):
                flag(node, f"exit code {name} assigned outside the vocabulary")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in SHARED_FUNCTIONS:
            flag(node, f"def {node.name} outside the vocabulary")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if ":execution:" in node.value:
                flag(node, "an execution ARN built outside the vocabulary (':execution:')")
            for text in SHARED_TEXTS:
                if text in node.value:
                    flag(node, f"the reason {text!r} written outside the vocabulary")
        if isinstance(node, ast.JoinedStr):
            head = node.values[0] if node.values else None
            if isinstance(head, ast.Constant) and str(head.value).startswith(f"https://{v.KAGGLE_HOST}/"):
                flag(node, "a Kaggle URL built outside the vocabulary (competition_url, rules_url, submissions_url)")
            tail = node.values[-1] if node.values else None
            if (
                isinstance(tail, ast.Constant)
                and isinstance(tail.value, str)
                and any(tail.value.endswith("/" + name) for name in ARTIFACT_FILES)
                and len(node.values) > 1
            ):
                flag(node, f"an S3 key built outside the vocabulary ({tail.value!r})")
    return found


def test_the_code_defines_no_shared_name_twice() -> None:
    assert VOCABULARY.is_file()
    findings = [
        finding
        for path in SCANNED
        if path != VOCABULARY
        for finding in scan(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]
    assert not findings, "define these once, in chalicelib/vocabulary.py:\n" + "\n".join(map(str, findings))


def test_the_scan_covers_the_code_it_claims_to() -> None:
    scanned = {str(p.relative_to(REPO)) for p in SCANNED}
    assert {"app.py", "chalicelib/service.py", "runner/cloud.py", "runner/pipeline.py", "scripts/demo.py"} <= scanned


SEEDED = """
METRICS = ("rmse", "roc_auc", "f1")
ALIASES = {"auc": "roc_auc", "log_loss": "logloss"}
KINDS = ["binary", "multiclass", "regression"]
SECRET_NAMES = frozenset({"OPENAI_API_KEY", "KAGGLE_KEY"})
MAX_REASON_CHARS = 500
EXIT_FAILED = 1
TOKEN = "KAGGLE_API_TOKEN"
RESULT = "result.json"

def rules_url(slug):
    return f"https://www.kaggle.com/c/{slug}/rules"

def arn(machine, name):
    return machine.replace(":stateMachine:", ":execution:", 1) + ":" + name

def key(run_id):
    return f"{run_id}/submission.csv"

def refuse():
    return "Kaggle credentials rejected (401): check your key"

def page(slug):
    return f"https://www.kaggle.com/competitions/{slug}/leaderboard"
"""


def test_the_scan_finds_every_kind_of_redefinition_seeded_in_a_source() -> None:
    found = [f.what for f in scan(SEEDED)]
    expected = [
        "metric names listed again (METRICS)",
        "metric aliases defined again (ALIASES)",
        "task types listed again (KINDS)",
        "secret names listed again (SECRET_NAMES)",
        "SECRET_NAMES assigned outside the vocabulary",
        "MAX_REASON_CHARS assigned outside the vocabulary",
        "exit code EXIT_FAILED assigned outside the vocabulary",
        "environment name 'KAGGLE_API_TOKEN' defined again (TOKEN)",
        "artifact name 'result.json' defined again (RESULT)",
        "def rules_url outside the vocabulary",
        "an execution ARN built outside the vocabulary (':execution:')",
        "an S3 key built outside the vocabulary ('/submission.csv')",
        "the reason 'Kaggle credentials rejected' written outside the vocabulary",
        "a Kaggle URL built outside the vocabulary (competition_url, rules_url, submissions_url)",
    ]
    missing = [what for what in expected if what not in found]
    assert not missing, f"the scanner missed {missing}; it found {found}"


@pytest.mark.parametrize(
    "clean",
    [
        "from chalicelib.vocabulary import METRIC_NAMES, rules_url\nNAMES = METRIC_NAMES\n",
        'SANDBOX_TYPES = ("binary", "multiclass")\nSTAGE = "result"\nlog = f"wrote {path} result.json"\n',
        "def key(run_id):\n    return artifact_key(run_id, RESULT_FILE)\n",
    ],
)
def test_the_scan_leaves_uses_of_the_vocabulary_alone(clean: str) -> None:
    assert scan(clean) == []


def test_the_scan_fails_the_real_code_when_a_duplicate_is_re_added() -> None:
    """Append a copy of one definition to a real module's source: the scan of that module must then report it."""
    cloud = (REPO / "runner" / "cloud.py").read_text(encoding="utf-8")
    assert scan(cloud) == []
    assert [f.what for f in scan(cloud + '\nRESULT = "result.json"\n')] == [
        "artifact name 'result.json' defined again (RESULT)"
    ]


# -- the vocabulary's own promises ------------------------------------------------------------------------------------


def test_the_vocabulary_imports_only_the_standard_library() -> None:
    tree = ast.parse(VOCABULARY.read_text(encoding="utf-8"))
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported - set(sys.stdlib_module_names) - {"__future__"}, imported
    ours = "('chalicelib.', 'runner')"
    code = f"import sys, chalicelib.vocabulary; print(sorted(m for m in sys.modules if m.startswith({ours})))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "['chalicelib.vocabulary']"


def test_every_metric_has_a_direction_and_every_alias_names_a_metric() -> None:
    assert set(v.HIGHER_IS_BETTER) == set(v.METRIC_NAMES)
    assert set(v.METRIC_ALIASES.values()) <= set(v.METRIC_NAMES)
    assert v.direction_text(v.higher_is_better("roc_auc")) == "higher is better"
    assert v.direction_text(v.higher_is_better("rmse")) == "lower is better"


def test_the_runner_implements_exactly_the_vocabularys_metrics() -> None:
    from runner.metrics import METRICS  # noqa: PLC0415 - numpy/scikit-learn only for this test

    assert tuple(METRICS) == v.METRIC_NAMES
    assert {name: m.higher_is_better for name, m in METRICS.items()} == dict(v.HIGHER_IS_BETTER)


def test_the_sandbox_strips_every_kaggle_credential_and_the_llm_key() -> None:
    assert {"OPENAI_API_KEY", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"} == v.SANDBOX_SECRET_NAMES
    assert set(v.SSM_SECRET_NAMES) < v.SANDBOX_SECRET_NAMES  # a token is an alternative, not an SSM parameter


def test_exit_codes_mean_one_thing_each_and_keep_the_documented_numbers() -> None:
    codes = {name: getattr(v, name) for name in dir(v) if name.startswith("EXIT_")}
    assert codes == {
        "EXIT_OK": 0,
        "EXIT_RUN_FAILED": 1,
        "EXIT_BAD_INPUT": 2,
        "EXIT_NOT_RUNNABLE": 3,
        "EXIT_TERMINATED": 128 + signal.SIGTERM,
    }
    assert len(set(codes.values())) == len(codes)


def test_the_two_reason_caps_keep_their_values() -> None:
    assert (v.STORED_REASON_MAX_CHARS, v.EMAIL_REASON_MAX_CHARS) == (4000, 2000)


@pytest.mark.parametrize(
    ("status", "message", "meaning"),
    [
        (401, "Unauthenticated", v.KAGGLE_CREDENTIALS),
        (403, "You must accept this competition's rules before you'll be able to download files", v.KAGGLE_RULES),
        (400, "Please accept the competition rules", v.KAGGLE_RULES),
        (404, "Not found", v.KAGGLE_NOT_FOUND),
        (429, "Too many requests", v.KAGGLE_BUSY),
        (503, "", v.KAGGLE_BUSY),
        (403, "Permission denied", v.KAGGLE_FORBIDDEN),
        (400, "bad request", v.KAGGLE_OTHER),
        (None, "connection reset", v.KAGGLE_OTHER),
    ],
)
def test_kaggle_answers_mean_the_same_whatever_was_asked(status: int | None, message: str, meaning: str) -> None:
    assert v.kaggle_status(status, message) == meaning


def test_urls_and_keys() -> None:
    assert v.rules_url("titanic") == "https://www.kaggle.com/c/titanic/rules"
    assert v.competition_url("titanic") == "https://www.kaggle.com/competitions/titanic"
    assert v.submissions_url("titanic") == "https://www.kaggle.com/competitions/titanic/submissions"
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:kagent-test-runs"
    assert v.execution_arn(machine, "r1") == "arn:aws:states:us-east-1:123456789012:execution:kagent-test-runs:r1"
    assert (v.submission_key("r1"), v.sample_key("r1"), v.result_key("r1")) == (
        "r1/submission.csv",
        "r1/sample_submission.csv",
        "r1/result.json",
    )
    assert v.artifact_key("r1", v.LOGS_FILE) == v.run_prefix("r1") + "logs.txt"
