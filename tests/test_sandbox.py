"""Where bodies run (runner.sandbox + runner.zygote), attacked: bodies that cheat their score, look for labels, keep
state across folds, hang, leave processes behind, eat memory, or hunt the runner's secrets.

The bodies here and in tests/sandbox_bodies.py would never pass the AST check; they go straight to the workers because
honest scoring and the workers must hold even for code that gets past the check. Untrusted bodies run only where the OS
wall can be raised (runner.confine); the tests that need it skip with the machine's one-line reason elsewhere.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runner.metrics import get_metric
from runner.sandbox import (
    MAX_RESPAWNS,
    SandboxError,
    SandboxLimits,
    Workers,
    clean_env,
    drop_secrets,
    wall_support,
)
from runner.scaffold import BodySource, CandidateError, PreparedData, evaluate
from tests.sandbox_bodies import GOOD_BODY, LABEL_HUNT_BODY, MEMORY_BODY, TUNING_BODY, request, tiny_data

pytestmark = pytest.mark.slow

WALL = wall_support()
needs_wall = pytest.mark.skipif(not WALL.holds, reason=f"untrusted bodies need the OS wall: {WALL.reason}")

CANARIES = {
    "OPENAI_API_KEY": "sk-canary-openai-7f3a",
    "KAGGLE_USERNAME": "canary-kaggle-user-91bd",
    "KAGGLE_KEY": "canary-kaggle-key-55e1",
    "AWS_ACCESS_KEY_ID": "canary-aws-access-key-id-0001",
    "AWS_SECRET_ACCESS_KEY": "canary-aws-secret-e9e9",
}


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return tiny_data()


@pytest.fixture(scope="module")
def workers(data: PreparedData):
    with Workers.start(SandboxLimits(memory_mb=1500), threads=1) as started:
        started.load(data.X, data.X_test)
        yield started


def score(body: str, data: PreparedData, workers: Workers, trusted: bool, name: str = "body") -> float:
    return evaluate(BodySource(name, body, trusted), data, time.monotonic() + 120, workers=workers).cv_score


# ---------------------------------------------------------------- honest scoring


@pytest.mark.parametrize("trusted", [True, pytest.param(False, marks=needs_wall)])
def test_a_body_that_remembers_labels_by_index_or_content_cannot_win_cv(data, workers, trusted):
    """Fresh process per fold, rows shuffled, index reset: what a fold remembers dies with it."""
    honest = score(GOOD_BODY, data, workers, trusted=True, name="honest")
    cheat = score(MEMORY_BODY, data, workers, trusted=trusted, name="memory")
    assert honest > 0.8
    assert cheat <= 0.6, f"the memory body scored {cheat}: state or labels survived between folds"


def test_what_the_body_predicts_comes_back_in_the_callers_row_order(data, workers):
    """The rows reach the body shuffled, and the predictions are put back in the caller's order."""
    body = textwrap.dedent(
        """\
        import numpy as np
        from sklearn.base import BaseEstimator, ClassifierMixin

        class Echo(BaseEstimator, ClassifierMixin):
            def fit(self, X, y):
                assert list(X.index) == list(range(len(X))), "the index was not reset"
                self.classes_ = np.array([0, 1])
                return self

            def predict_proba(self, X):
                assert list(X.index) == list(range(len(X))), "the index was not reset"
                p = 1 / (1 + np.exp(-X["a"].to_numpy()))
                return np.column_stack([1 - p, p])

            def predict(self, X):
                return self.predict_proba(X).argmax(axis=1)

        def build_model(task):
            return Echo()
        """
    )
    reply = workers.fit_predict(request(data, body, trusted=True, seed=3))
    assert reply.ok, reply.detail
    expected = 1 / (1 + np.exp(-data.X["a"].to_numpy()[100:]))
    assert np.allclose(reply.predictions[:, 1], expected)


@needs_wall
def test_no_labels_file_or_descriptor_is_visible_to_a_body(data, workers):
    reply = workers.fit_predict(request(data, LABEL_HUNT_BODY))
    assert reply.ok, reply.detail + reply.log_tail
    assert "LABEL-HUNT found nothing" in reply.log_tail


@pytest.mark.parametrize(("trusted", "later"), [(True, 0.7), pytest.param(False, 0.2, marks=needs_wall)])
def test_reuse_params_are_honoured_for_templates_and_ignored_for_llm_bodies(data, workers, trusted, later):
    evaluation = evaluate(
        BodySource("tuning", TUNING_BODY, trusted), data, time.monotonic() + 120, workers=workers, n_folds=3
    )
    seen = sorted({round(float(p), 3) for p in evaluation.oof[:, 1]})
    assert seen == sorted({0.2, later})
    assert np.allclose(evaluation.test_predictions[:, 1], later)  # the final fit


def test_predictions_that_game_the_metric_are_refused_or_normalised(data, workers):
    """Probabilities above 1 are refused; rows that do not sum to 1 are normalised before the runner scores them."""
    body = textwrap.dedent(
        """\
        import numpy as np
        from sklearn.dummy import DummyClassifier

        class Loud(DummyClassifier):
            def predict_proba(self, X):
                return np.full((len(X), 2), SCALE)

        SCALE = {scale}

        def build_model(task):
            return Loud()
        """
    )
    refused = workers.fit_predict(request(data, body.format(scale=5.0), trusted=True))
    assert refused.verdict == "bad_output" and "outside [0, 1]" in refused.detail
    normalised = workers.fit_predict(request(data, body.format(scale=1.0), trusted=True))
    assert normalised.ok and np.allclose(normalised.predictions, 0.5)
    assert get_metric("logloss").score(data.y[100:], normalised.predictions) == pytest.approx(np.log(2))


# ---------------------------------------------------------------- containment and failure modes


def test_good_body_scores_and_a_body_that_raises_is_crashed_with_its_error(data, workers):
    assert score(GOOD_BODY, data, workers, trusted=True) > 0.8
    reply = workers.fit_predict(request(data, "def build_model(task):\n    raise ValueError('no model today')\n", True))
    assert reply.verdict == "crashed" and "no model today" in reply.detail


@pytest.mark.parametrize("trusted", [True, pytest.param(False, marks=needs_wall)])
def test_a_body_that_hangs_is_killed_at_its_wall_time_and_its_group_is_empty(data, workers, trusted):
    body = textwrap.dedent(
        """\
        import os, time
        print("PROBE", os.getpid(), os.getpgid(0), flush=True)
        time.sleep(1000)
        def build_model(task):
            return None
        """
    )
    started = time.monotonic()
    reply = workers.fit_predict(request(data, body, trusted, wall_s=3))
    assert reply.verdict == "timed_out" and time.monotonic() - started < 15
    assert reply.group_empty
    probe = re.search(r"PROBE (\d+) (\d+)", reply.log_tail)
    assert probe, reply.log_tail
    pid, pgid = map(int, probe.groups())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def unconfined_python(folder: Path) -> str:
    """An interpreter stand-in whose zygote cannot import runner.confine: the machine without the wall."""
    script = folder / "python-without-wall"
    script.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c "
        "\"import sys, runpy; sys.modules['runner.confine'] = None; "
        "runpy.run_module('runner.zygote', run_name='__main__')\"\n"
    )
    script.chmod(0o755)
    return str(script)


def test_without_the_wall_templates_run_unconfined_and_a_daemon_they_leave_is_killed(data, tmp_path: Path):
    """Our templates run unconfined where the wall is missing; even there nothing outlives a request (the zygote is
    the subreaper of whatever escapes the process group with setsid), and an LLM body is refused outright."""
    body = textwrap.dedent(
        """\
        import os, time
        child = os.fork()
        if child == 0:
            os.setsid()
            time.sleep(1000)
            os._exit(0)
        print("DAEMON", child, flush=True)
        from sklearn.dummy import DummyClassifier
        def build_model(task):
            return DummyClassifier()
        """
    )
    with Workers.start(SandboxLimits(memory_mb=1500), threads=1, python=unconfined_python(tmp_path)) as own:
        own.load(data.X, data.X_test)
        reply = own.fit_predict(request(data, body, trusted=True))
        assert reply.ok, reply.detail + reply.log_tail
        assert "unconfined (runner.confine is not available" in reply.log_tail and reply.group_empty
        found = re.search(r"DAEMON (\d+)", reply.log_tail)
        assert found, reply.log_tail
        daemon = int(found.group(1))
        with pytest.raises(ProcessLookupError):
            os.kill(daemon, 0)
        refused = own.fit_predict(request(data, "print('BODY-RAN', flush=True)\n" + GOOD_BODY, trusted=False))
        assert refused.verdict == "refused" and "not available" in refused.detail
        assert "BODY-RAN" not in refused.log_tail


def test_a_body_that_eats_memory_is_stopped_by_the_memory_limit(data, workers):
    body = "def build_model(task):\n    hog = bytearray(4 * 1024 ** 3)\n    return hog\n"
    reply = workers.fit_predict(request(data, body, trusted=True, memory_mb=600))
    assert reply.verdict == "out_of_memory", reply.detail


@needs_wall
def test_an_llm_body_runs_confined_and_as_another_uid_when_the_runner_is_root(data, workers):
    body = "import os\nprint('UID', os.getuid(), flush=True)\n" + GOOD_BODY
    reply = workers.fit_predict(request(data, body))
    assert reply.ok, reply.detail
    assert "to confine): confined:" in reply.log_tail and "seccomp" in reply.log_tail
    found = re.search(r"UID (\d+)", reply.log_tail)
    assert found, reply.log_tail
    uid = int(found.group(1))
    assert (uid != 0) if os.geteuid() == 0 else (uid == os.geteuid())


def test_an_llm_body_never_runs_without_its_wall(monkeypatch: pytest.MonkeyPatch):
    """Without runner.confine (another OS, a missing library), the worker refuses an untrusted request before loading
    the body, the runner reports why, and only our templates still run (unconfined, one fresh process per fold)."""
    import runner  # noqa: PLC0415
    from runner.zygote import ConfinementUnavailable, _confine  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "runner.confine", None)
    monkeypatch.delattr(runner, "confine", raising=False)
    spec = {"uid": None, "gid": None, "memory_bytes": 2**30, "cpu_seconds": 60}
    with pytest.raises(ConfinementUnavailable, match="not available"):
        _confine({"confine": {**spec, "required": True}})
    assert _confine({"confine": {**spec, "required": False}}).startswith("unconfined")
    support = wall_support()
    assert not support.holds and "not available" in support.reason


def test_the_zygote_environment_is_built_from_scratch(tmp_path: Path):
    env = clean_env(tmp_path, threads=2)
    assert not [name for name in env if name.startswith(("AWS_", "OPENAI_", "KAGGLE_"))]
    assert env["HOME"] == str(tmp_path) and env["OMP_NUM_THREADS"] == "2" and env["OPENBLAS_NUM_THREADS"] == "1"


def test_drop_secrets_removes_every_secret_name_and_keeps_the_rest():
    env = {**CANARIES, "PATH": "/bin", "KAGENT_STAGE": "dev"}
    dropped = drop_secrets(env)
    assert set(dropped) == set(CANARIES)
    assert env == {"PATH": "/bin", "KAGENT_STAGE": "dev"}


def test_canaries_in_the_runner_environment_never_reach_a_body(data, monkeypatch: pytest.MonkeyPatch):
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    body = "import os\nprint('ENV', sorted(os.environ.items()), flush=True)\n" + GOOD_BODY
    with Workers.start(SandboxLimits(memory_mb=1500), threads=1) as own:
        own.load(data.X, data.X_test)
        reply = own.fit_predict(request(data, body, trusted=not WALL.holds))
    assert reply.ok, reply.detail
    assert "ENV" in reply.log_tail
    assert not [name for name, value in CANARIES.items() if value in reply.log_tail]


def test_protecting_the_runner_makes_it_non_dumpable():
    code = "from runner.sandbox import protect_runner_process as p; import ctypes; print(p())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ("True" if sys.platform.startswith("linux") else "False")


def test_a_broken_worker_fails_clearly_and_the_caller_sees_a_candidate_error(data):
    with Workers.start(SandboxLimits(memory_mb=1500), threads=1) as own:
        own.load(data.X, data.X_test)
        body = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n" + GOOD_BODY
        with pytest.raises(CandidateError, match=r"signal SIGSEGV"):
            evaluate(BodySource("segv", body, True), data, time.monotonic() + 60, workers=own)


SANDBOX_USER_PROBE = """\
import re, sys
import numpy as np
from runner.sandbox import FitRequest, SandboxLimits, Workers
from tests.sandbox_bodies import GOOD_BODY, request, tiny_data

data = tiny_data()
with Workers.start(SandboxLimits(memory_mb=1500), threads=1) as workers:
    workers.load(data.X, data.X_test)
    reply = workers.fit_predict(request(data, "import os\\nprint('UID', os.getuid(), flush=True)\\n" + GOOD_BODY))
print(reply.verdict, re.search(r"UID (\\d+)", reply.log_tail).group(1) if reply.ok else reply.detail)
"""


@needs_wall
@pytest.mark.skipif(os.geteuid() != 0, reason="only a root runner switches bodies to another user")
def test_kagent_sandbox_user_names_the_uid_bodies_run_as():
    import pwd  # noqa: PLC0415

    nobody = pwd.getpwnam("nobody")
    env = {**os.environ, "KAGENT_SANDBOX_USER": "nobody", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", SANDBOX_USER_PROBE], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", str(nobody.pw_uid)]


ORDER_SENSITIVE_BODY = """\
from sklearn.linear_model import SGDClassifier


def build_model(task):
    return SGDClassifier(loss="log_loss", shuffle=False, max_iter=2, tol=None, random_state=0)
"""


def test_a_requests_shuffle_depends_on_the_request_alone_not_on_what_ran_before(data: PreparedData):
    """Rows reach a body shuffled, but by the request itself: a template's result is the same whatever ran before it
    (and still differs between seeds)."""
    with (
        Workers.start(SandboxLimits(memory_mb=1500), threads=1) as first,
        Workers.start(SandboxLimits(memory_mb=1500), threads=1) as second,
    ):
        for own in (first, second):
            own.load(data.X, data.X_test)
        first.fit_predict(request(data, GOOD_BODY, trusted=True))  # something else ran first here
        alone = second.fit_predict(request(data, ORDER_SENSITIVE_BODY, trusted=True))
        after = first.fit_predict(request(data, ORDER_SENSITIVE_BODY, trusted=True))
        reseeded = first.fit_predict(request(data, ORDER_SENSITIVE_BODY, trusted=True, seed=7))
    assert alone.ok and after.ok and reseeded.ok, (alone.detail, after.detail, reseeded.detail)
    assert np.array_equal(alone.predictions, after.predictions)
    assert not np.array_equal(alone.predictions, reseeded.predictions)


SLOW_BODY = "import time\ntime.sleep(3)\n" + GOOD_BODY


def kill_zygote(workers: Workers) -> None:
    assert workers.proc is not None
    os.killpg(workers.proc.pid, signal.SIGKILL)
    workers.proc.wait(timeout=10)


def test_a_zygote_that_died_between_requests_is_restarted_on_the_same_features(data: PreparedData):
    with Workers.start(SandboxLimits(memory_mb=1500), threads=1) as own:
        own.load(data.X, data.X_test)
        before = own.fit_predict(request(data, GOOD_BODY, trusted=True))
        first_zygote = own.proc.pid if own.proc else None
        kill_zygote(own)  # as the kernel's OOM killer would
        after = own.fit_predict(request(data, GOOD_BODY, trusted=True))
        assert own.respawns == 1 and own.proc is not None and own.proc.pid != first_zygote
    assert before.ok and after.ok, (before.detail, after.detail)
    assert np.array_equal(before.predictions, after.predictions)  # the same features, the same answer


def test_a_zygote_that_dies_mid_request_fails_that_request_only_and_restarts_are_bounded(data: PreparedData):
    with Workers.start(SandboxLimits(memory_mb=1500), threads=1) as own:
        own.load(data.X, data.X_test)
        killer = threading.Timer(1.0, kill_zygote, args=(own,))
        killer.start()
        with pytest.raises(SandboxError, match="worker zygote failed"):
            own.fit_predict(request(data, SLOW_BODY, trusted=True))
        killer.join()
        assert own.fit_predict(request(data, GOOD_BODY, trusted=True)).ok  # the next request gets a new zygote
        for _ in range(MAX_RESPAWNS - 1):
            kill_zygote(own)
            assert own.fit_predict(request(data, GOOD_BODY, trusted=True)).ok
        kill_zygote(own)
        with pytest.raises(SandboxError, match=f"died {MAX_RESPAWNS + 1} times; it is not restarted again"):
            own.fit_predict(request(data, GOOD_BODY, trusted=True))
        assert own.respawns == MAX_RESPAWNS
