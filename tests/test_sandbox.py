"""The sandbox layer on its own: bodies that work, raise, hang, eat memory, or try to read the runner's secrets.

The canary bodies here would never pass the AST check; they go straight to the sandbox because the sandbox must hold
even for code that gets past the check (defence in depth).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runner.contract import TaskSpec
from runner.sandbox import (
    Sandbox,
    SandboxError,
    SandboxLimits,
    clean_env,
    drop_secrets,
    resolve_sandbox_user,
)
from runner.scaffold import Evaluation, PreparedData

pytestmark = pytest.mark.slow

GOOD_BODY = """\
from sklearn.linear_model import LogisticRegression


def build_model(task):
    return LogisticRegression(max_iter=200)
"""

CANARIES = {
    "OPENAI_API_KEY": "sk-canary-openai-7f3a",
    "KAGGLE_USERNAME": "canary-kaggle-user-91bd",
    "KAGGLE_KEY": "canary-kaggle-key-55e1",
    "KAGGLE_API_TOKEN": "canary-kaggle-token-c0de",
    "AWS_ACCESS_KEY_ID": "canary-aws-access-key-id-0001",
    "AWS_SECRET_ACCESS_KEY": "canary-aws-secret-e9e9",
    "AWS_SESSION_TOKEN": "canary-aws-session-4b4b",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/canary-uri-2a2a",
}

CANARY_BODY = """\
import os

found = {"oom_score_adj": open("/proc/self/oom_score_adj").read().strip(), "environ": dict(os.environ)}
for path in ("/proc/self/environ", f"/proc/{os.getppid()}/environ", f"/proc/{os.getppid()}/cmdline", "/proc/1/environ"):
    try:
        with open(path, "rb") as handle:
            found[path] = handle.read().decode("utf-8", "replace")
    except Exception as exc:
        found[path] = f"{type(exc).__name__}"
print("CANARY-PROBE", found, flush=True)

from sklearn.linear_model import LogisticRegression


def build_model(task):
    return LogisticRegression(max_iter=200)
"""


def tiny_data(n: int = 80, seed: int = 0) -> PreparedData:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (X["a"] + 0.3 * rng.normal(size=n) > 0).astype("int64").to_numpy()
    X_test = pd.DataFrame({"a": rng.normal(size=20), "b": rng.normal(size=20)})
    task = TaskSpec(type="binary", metric="roc_auc", seed=0, n_rows=n, numeric=["a", "b"], n_classes=2, n_jobs=1)
    return PreparedData(X, y, X_test, [str(i) for i in range(20)], task, ["0", "1"])


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox.create(SandboxLimits(wall_s=30, memory_mb=2048))
    tiny_data().save(box.data_dir)
    box.seal_data()
    yield box
    box.close()


def test_good_body_is_evaluated_and_read_back_without_pickle(sandbox: Sandbox):
    result = sandbox.run(GOOD_BODY, {"n_folds": 3})
    assert result.verdict == "ok", result.detail
    evaluation = Evaluation.load(result.output_dir)
    assert 0.5 < evaluation.cv_score <= 1.0
    assert evaluation.test_predictions.shape == (20, 2)


def test_body_that_raises_is_crashed_with_its_traceback(sandbox: Sandbox):
    body = "def build_model(task):\n    raise ValueError('no model for you')\n"
    result = sandbox.run(body)
    assert result.verdict == "crashed"
    assert "no model for you" in result.detail


def test_body_that_never_returns_is_killed_at_the_wall_time(sandbox: Sandbox):
    body = "def build_model(task):\n    while True:\n        pass\n"
    result = sandbox.run(body, wall_s=3)
    assert result.verdict == "timed_out"
    assert "within 3 s" in result.detail  # counted from the body's start, not the worker's imports
    assert result.elapsed_s < 3 + 30


def test_body_that_forks_a_sleeper_leaves_nothing_behind(sandbox: Sandbox, tmp_path: Path):
    marker = tmp_path / "survivor"
    marker.parent.chmod(0o777)
    body = textwrap.dedent(
        f"""\
        import os, time
        if os.fork() == 0:
            time.sleep(3)
            open({str(marker)!r}, "w").write("alive")
            os._exit(0)
        def build_model(task):
            while True:
                pass
        """
    )
    result = sandbox.run(body, wall_s=1.5)
    assert result.verdict == "timed_out"
    time.sleep(3.5)
    assert not marker.exists(), "a process of the killed body survived the process-group kill"


def test_body_that_eats_memory_is_stopped_by_the_memory_limit():
    with Sandbox.create(SandboxLimits(wall_s=30, memory_mb=1200)) as box:
        tiny_data().save(box.data_dir)
        box.seal_data()
        body = "def build_model(task):\n    hog = bytearray(4 * 1024 ** 3)\n    return hog\n"
        result = box.run(body)
    assert result.verdict == "out_of_memory", result.detail


def test_child_environment_is_built_from_scratch(tmp_path: Path):
    env = clean_env(tmp_path, threads=1)
    assert not [name for name in env if name.startswith(("AWS_", "OPENAI_", "KAGGLE_"))]
    assert env["HOME"] == str(tmp_path)


def test_drop_secrets_removes_every_secret_name_and_keeps_the_rest():
    env = {**CANARIES, "PATH": "/bin", "KAGENT_STAGE": "dev"}
    dropped = drop_secrets(env)
    assert set(dropped) == set(CANARIES)
    assert env == {"PATH": "/bin", "KAGENT_STAGE": "dev"}


def test_unknown_sandbox_user_is_a_clear_error():
    if os.geteuid() != 0:
        assert resolve_sandbox_user("no-such-user-kagent") is None  # only root switches users
        return
    with pytest.raises(SandboxError, match="KAGENT_SANDBOX_USER"):
        resolve_sandbox_user("no-such-user-kagent")


DRIVER = """\
import json, os, shutil, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from runner.sandbox import Sandbox, SandboxLimits, drop_secrets, protect_runner_process
from tests.test_sandbox import tiny_data

assert protect_runner_process()
drop_secrets(os.environ)
out = Path(sys.argv[1])
with Sandbox.create(SandboxLimits(wall_s=60, memory_mb=2048)) as box:
    tiny_data().save(box.data_dir)
    box.seal_data()
    result = box.run(sys.stdin.read(), {{"n_folds": 2}})
    shutil.copytree(box.root / "run001", out / "workdir")
print(json.dumps({{"verdict": result.verdict, "detail": result.detail, "log": result.log_tail}}))
"""


def test_canaries_in_the_runner_environment_never_reach_anything_written(tmp_path: Path):
    """The runner starts with the secrets in its environment (so in /proc/<pid>/environ); the body hunts them."""
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, **CANARIES, "PYTHONPATH": repo}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER.format(repo=repo), str(tmp_path)],
        input=CANARY_BODY,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["verdict"] == "ok", outcome["detail"]
    assert "CANARY-PROBE" in outcome["log"], "the probe did not run, so the test proves nothing"
    assert "PermissionError" in outcome["log"]  # /proc/<runner>/environ refused
    assert "'oom_score_adj': '1000'" in outcome["log"]  # short of memory, the kernel kills the body, not the runner
    written = [proc.stdout, proc.stderr]
    written += [p.read_bytes().decode("utf-8", "replace") for p in (tmp_path / "workdir").rglob("*") if p.is_file()]
    leaks = [name for name, value in CANARIES.items() if any(value in text for text in written)]
    assert leaks == [], f"canaries leaked: {leaks}"


def test_protecting_the_runner_makes_it_non_dumpable():
    code = "from runner.sandbox import protect_runner_process as p; import ctypes; print(p())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ("True" if sys.platform.startswith("linux") else "False")


def test_network_claim_in_the_log_matches_what_the_body_can_reach(sandbox: Sandbox):
    """Where user namespaces exist the worker cuts the network; either way its log line must tell the truth."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    body = textwrap.dedent(
        f"""\
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
            print("PROBE reached the runner's listener")
        except OSError as exc:
            print("PROBE no network:", type(exc).__name__)
        from sklearn.dummy import DummyClassifier
        def build_model(task):
            return DummyClassifier()
        """
    )
    try:
        result = sandbox.run(body, {"n_folds": 2})
    finally:
        listener.close()
    assert result.verdict == "ok", result.detail
    if "sandbox: network cut" in result.log_tail:
        assert "PROBE no network" in result.log_tail
    else:
        assert "PROBE reached the runner's listener" in result.log_tail


def test_links_planted_by_a_body_are_refused_and_never_followed_on_cleanup(tmp_path: Path):
    target = tmp_path / "runner-file.txt"
    target.write_text("the runner's own file")
    target.chmod(0o644)
    body = textwrap.dedent(
        f"""\
        import os
        os.makedirs("evaluation", exist_ok=True)
        os.symlink({str(target)!r}, "evaluation/planted")
        os.symlink({str(target)!r}, "cleanup-trap")
        from sklearn.dummy import DummyClassifier
        def build_model(task):
            return DummyClassifier()
        """
    )
    with Sandbox.create(SandboxLimits(wall_s=30, memory_mb=2048)) as box:
        tiny_data().save(box.data_dir)
        box.seal_data()
        result = box.run(body, {"n_folds": 2})
    assert result.verdict == "bad_output"
    assert "link" in result.detail
    assert (target.stat().st_mode & 0o777) == 0o644
    assert target.read_text() == "the runner's own file"


def _world_can_run(executable: str) -> bool:
    path = Path(os.path.realpath(executable))
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root runner switches the body to another user")
def test_sandbox_user_runs_the_body_as_that_uid_or_fails_clearly():
    nobody = pwd.getpwnam("nobody")
    with Sandbox.create(SandboxLimits(wall_s=30, memory_mb=2048), user=nobody) as box:
        tiny_data().save(box.data_dir)
        box.seal_data()
        if not _world_can_run(sys.executable):  # e.g. a pyenv under /root: the user cannot even start Python
            with pytest.raises(SandboxError, match="cannot start the sandbox worker as nobody"):
                box.run(GOOD_BODY, {"n_folds": 2})
            return
        result = box.run(GOOD_BODY, {"n_folds": 2})
        assert result.verdict == "ok", result.detail
        assert (result.output_dir / "evaluation.json").stat().st_uid == nobody.pw_uid


SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


@pytest.mark.skipif(
    os.geteuid() != 0 or not SYSTEM_PYTHON.exists() or not _world_can_run(str(SYSTEM_PYTHON)),
    reason="needs a root runner and a system Python of the same version that another user can start",
)
def test_body_runs_as_the_sandbox_user_and_still_cannot_read_the_runner():
    """A world-readable venv over the same site-packages stands in for the image's /usr/local Python."""
    venv_root = Path(tempfile.mkdtemp(prefix="kagent-test-venv-"))  # under /tmp: other users can traverse it
    try:
        venv_root.chmod(0o755)
        python = _world_readable_venv(venv_root / "venv")
        nobody = pwd.getpwnam("nobody")
        with Sandbox.create(SandboxLimits(wall_s=60, memory_mb=2048), user=nobody, python=python) as box:
            tiny_data().save(box.data_dir)
            box.seal_data()
            result = box.run(CANARY_BODY, {"n_folds": 2})
            assert result.verdict == "ok", result.detail + result.log_tail
            assert (result.output_dir / "evaluation.json").stat().st_uid == nobody.pw_uid
    finally:
        shutil.rmtree(venv_root, ignore_errors=True)
    assert f"'/proc/{os.getpid()}/environ': 'PermissionError'" in result.log_tail


def _world_readable_venv(venv: Path) -> str:
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (next(venv.glob("lib/python*/site-packages")) / "kagent.pth").write_text(f"{site}\n")
    for path in [venv, *venv.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o005)
    return str(venv / "bin" / "python")
