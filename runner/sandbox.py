"""The runner's side of where model bodies run: a warm zygote per prepared data set, a fresh child per request.

`Workers.start()` launches `python -m runner.zygote` (see runner/zygote.py) with an environment built from scratch
(an allowlist: no OPENAI_*, KAGGLE_*, AWS_* ever reach it), in its own session, talking over a unix socketpair;
`load(X, X_test)` hands it the features of the train and test rows (never a label). `fit_predict(request)` runs one
CV fold or the final fit in a fresh child forked from it:

- the training rows (and their labels) and the rows to predict are shuffled here with a per-request RNG; the labels
  travel only in a memfd passed to the child (the zygote never reads it); the labels of the rows to predict never
  leave this process;
- the child confines itself (runner.confine: uid, rlimits, Landlock, seccomp, audit hook) before it loads the body:
  required for untrusted (LLM) bodies, best effort for our templates; when the runner is root, bodies run as
  `runner.confine.sandbox_uid()` (KAGENT_SANDBOX_USER, or a dedicated unused uid);
- the zygote kills the child's process group at the wall time and checks that nothing is left;
- this process un-shuffles the predictions and checks them (shape, finite, probabilities normalised); every score is
  computed by the caller (runner.scaffold.evaluate) from predictions alone. Nothing is unpickled.

Also here: the runner protects itself (`protect_runner_process`: non-dumpable, so children cannot read its
/proc/<pid>/environ or memory) and drops secrets from os.environ once their readers hold them (`drop_secrets`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from chalicelib.vocabulary import SANDBOX_SECRET_NAMES
from runner.features import FeatureRows
from runner.zygote import ProtocolError, read_result, recv_message, send_message, write_job

REPO_ROOT = Path(__file__).resolve().parent.parent

# What a secret looks like in the runner's environment: exact names (vocabulary SANDBOX_SECRET_NAMES) and prefixes.
SECRET_PREFIXES = ("AWS_", "OPENAI_", "KAGGLE_")
PR_SET_DUMPABLE = 4
ZYGOTE_ERRORS = "zygote-stderr.txt"
MAX_RESPAWNS = 2  # a zygote that died (out of memory, killed from outside) is restarted this often per run, no more

Verdict = Literal["ok", "crashed", "timed_out", "out_of_memory", "bad_output", "refused"]


class SandboxError(RuntimeError):
    """The workers themselves cannot run (misconfiguration, a dead zygote), as opposed to a body that failed."""


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 120.0  # an untrusted body's whole evaluation (all its folds)
    memory_mb: int = 4096  # a child's address space on top of what the zygote mapped
    startup_s: float = 60.0  # the zygote's imports and data load
    log_tail_chars: int = 2000


@dataclass(frozen=True)
class FitRequest:
    """One fold (or the final fit): train on `train_rows` with `y_train`, predict `predict_rows`.

    Row positions index the train rows followed by the test rows (test row j is `n_train + j`); `y_train` is already
    in the form the body fits (transformed for the metric). `reuse` is applied with set_params before fitting.
    """

    name: str
    source: str
    trusted: bool  # our own template: confinement is best effort and its reuse_params_ are honoured
    task: Mapping[str, Any]
    train_rows: np.ndarray
    y_train: np.ndarray
    predict_rows: np.ndarray
    wall_s: float
    seed: int = 0
    reuse: Mapping[str, Any] = field(default_factory=dict)
    memory_mb: int | None = None  # the workers' limit when None


@dataclass(frozen=True)
class FitReply:
    verdict: Verdict
    detail: str  # one paragraph: the error, trimmed to head and tail
    predictions: np.ndarray | None  # in the request's predict_rows order (valid only when verdict == "ok")
    reuse: dict[str, Any]
    elapsed_s: float
    log_tail: str
    group_empty: bool = True
    body_s: float = 0.0  # the child's time from loading the body to its predictions

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def is_secret_name(name: str) -> bool:
    return name in SANDBOX_SECRET_NAMES or name.startswith(SECRET_PREFIXES)


def drop_secrets(environ: MutableMapping[str, str], names: Iterable[str] | None = None) -> list[str]:
    """Remove secrets (the given names, or every secret-looking name) from an environment; returns what was removed."""
    doomed = [n for n in environ if (n in set(names) if names is not None else is_secret_name(n))]
    for name in doomed:
        environ.pop(name, None)
    return sorted(doomed)


def protect_runner_process() -> bool:
    """Make this process non-dumpable: same-uid children can no longer read /proc/<pid>/environ, /mem, or ptrace it.

    Returns False where prctl is unavailable (not Linux); the other layers still hold there.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)


def clean_env(workdir: Path, threads: int | None = None) -> dict[str, str]:
    """The zygote's whole environment, built from scratch: nothing is inherited."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",
        "MPLCONFIGDIR": str(workdir),
        # glibc makes a 64 MB arena per thread; under RLIMIT_AS that turns threads into false out-of-memory errors.
        "MALLOC_ARENA_MAX": "2",
        # BLAS runs single-threaded in the workers (as the scaffold always limited it): no pool to break at fork.
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


@dataclass(frozen=True)
class WallSupport:
    """Whether untrusted bodies may run here, with the reason when not."""

    holds: bool
    reason: str


def wall_support() -> WallSupport:
    """Whether the wall an LLM body needs stands on this machine, or why not (a missing module included)."""
    try:
        # lazy: confine needs Linux modules; a missing one is reported, not fatal
        from runner import confine  # noqa: PLC0415
    except ImportError as exc:
        return WallSupport(False, f"the OS wall (runner.confine) is not available: {exc}")
    try:
        support = confine.support()
        uid = confine.sandbox_uid()
    except Exception as exc:
        return WallSupport(False, f"the OS wall cannot be checked: {type(exc).__name__}: {exc}")
    return wall_verdict(support, uid)


def wall_verdict(support: Any, uid: tuple[int, int] | None) -> WallSupport:
    """seccomp is required (no sockets, processes, writes); and something must keep a body from READING what its
    user can read (the labels, other processes' environment): Landlock, or a separate uid (the runner is root).
    Without either, a body runs as the user with every file of theirs in reach, so LLM bodies do not run."""
    if not support.seccomp:
        return WallSupport(False, str(support.seccomp_reason))
    if support.landlock_abi < 1 and uid is None:
        return WallSupport(
            False,
            f"no filesystem wall: Landlock is unavailable ({support.landlock_reason}) and the runner is not root, so a "
            "body would read whatever this user can (labels, keys); use Linux 5.13+ or run the runner as root",
        )
    return WallSupport(True, "")


def sandbox_identity() -> tuple[int, int] | None:
    """The (uid, gid) bodies run as: runner.confine.sandbox_uid() (always a separate uid when the runner is root)."""
    try:
        # lazy: confine needs Linux modules; a missing one is reported, not fatal
        from runner import confine  # noqa: PLC0415
    except ImportError:
        return None
    return confine.sandbox_uid()


class Workers:
    """One zygote and its children. `start()`, then `load()` the features, `fit_predict()` per request, `close()`."""

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        threads: int | None = None,
        python: str | None = None,
        identity: tuple[int, int] | Literal["auto"] | None = "auto",
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.threads = threads
        self.python = python or sys.executable
        self.identity_error = ""
        if identity == "auto":
            try:
                identity = sandbox_identity()
            except Exception as exc:  # e.g. KAGENT_SANDBOX_USER names no user: untrusted bodies are then refused
                identity, self.identity_error = None, f"no sandbox user: {exc}"
        self.identity = identity
        self.root = Path(tempfile.mkdtemp(prefix="kagent-workers-"))
        self.root.chmod(0o700)
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.n_train = 0
        self.n_rows = 0
        self.requests = 0
        self.respawns = 0
        self.overheads: list[float] = []  # seconds per request not spent inside the child
        self._features: tuple[pd.DataFrame, pd.DataFrame] | None = None  # what a restarted zygote is given again

    @classmethod
    def start(cls, limits: SandboxLimits | None = None, **kwargs: Any) -> Workers:
        workers = cls(limits, **kwargs)
        workers.spawn()
        return workers

    def spawn(self) -> None:
        """Start the zygote (its imports run while the caller goes on); `load` waits for it."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        home = self.root / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        try:
            with (self.root / ZYGOTE_ERRORS).open("wb") as errors:
                self.proc = subprocess.Popen(
                    [self.python, "-m", "runner.zygote"],
                    cwd=home,
                    env=clean_env(home, self.threads),
                    stdin=theirs.fileno(),
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            ours.close()
            raise SandboxError(f"cannot start the worker zygote: {exc}") from exc
        finally:
            theirs.close()
        self.sock = ours
        self._ready = False

    def load(self, X: pd.DataFrame, X_test: pd.DataFrame) -> None:
        """Give the zygote the features of the train rows then the test rows (no labels), and wait until it has them."""
        if self.sock is None:
            self.spawn()
        data = self.root / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        FeatureRows.from_frame(X).save(data, "X")  # sparse columns travel as one CSR block, never densified
        FeatureRows.from_frame(X_test).save(data, "X_test")
        try:
            deadline = time.monotonic() + self.limits.startup_s
            if not self._ready:
                self._expect("ready", deadline)
                self._ready = True
            send_message(self._socket(), {"op": "load", "dir": str(data)})
            self._expect("loaded", deadline)
        finally:
            shutil.rmtree(data, ignore_errors=True)
        self.n_train, self.n_rows = len(X), len(X) + len(X_test)
        self._features = (X, X_test)

    def _respawn_if_dead(self) -> None:
        """A zygote that died (the kernel's OOM killer, a kill from outside: bodies cannot signal it) fails the
        request it was serving; the next request starts a new one on the same features, at most MAX_RESPAWNS times."""
        if self.proc is not None and self.proc.poll() is not None:
            self._stop_zygote()  # it died between requests: noticed here, before this request is sent to it
        if self.sock is not None or self._features is None:
            return
        if self.respawns >= MAX_RESPAWNS:
            raise SandboxError(f"the worker zygote died {self.respawns + 1} times; it is not restarted again")
        self.respawns += 1
        self.spawn()
        self.load(*self._features)

    def fit_predict(self, request: FitRequest) -> FitReply:
        """Run one request in a fresh child; predictions come back in `request.predict_rows` order."""
        self._respawn_if_dead()
        self.requests += 1
        rng = np.random.default_rng(_shuffle_key(request))
        train_order = rng.permutation(len(request.train_rows))
        predict_order = rng.permutation(len(request.predict_rows))
        job = self._job(request, int(rng.integers(2**31)))
        arrays = [
            np.asarray(request.train_rows, dtype="int64")[train_order],
            np.asarray(request.y_train)[train_order],
            np.asarray(request.predict_rows, dtype="int64")[predict_order],
        ]
        started = time.monotonic()
        fd = _job_file()
        try:
            with os.fdopen(os.dup(fd), "wb") as handle:
                write_job(handle, job, arrays)
            send_message(self._socket(), {"op": "run", "wall_s": request.wall_s}, fds=[fd])
        except OSError as exc:  # the zygote died as the request was sent
            errors = self._errors()
            self._stop_zygote()
            raise SandboxError(f"the worker zygote failed ({type(exc).__name__}: {exc}){errors}") from None
        finally:
            os.close(fd)
        header, payload = self._expect("done", time.monotonic() + request.wall_s + 30.0)
        reply = self._reply(request, header, payload, predict_order)
        if reply.ok:  # what a request costs beyond the body's own work: fork, job, confinement, transfer, checks
            self.overheads.append(max(0.0, time.monotonic() - started - reply.body_s))
        return reply

    def _job(self, request: FitRequest, seed: int) -> dict[str, Any]:
        if self.identity_error and not request.trusted:
            raise SandboxError(self.identity_error)
        uid, gid = self.identity if self.identity else (None, None)
        confine = {
            "required": not request.trusted,
            "uid": uid,
            "gid": gid,
            "memory_bytes": (request.memory_mb or self.limits.memory_mb) * 2**20,
            "cpu_seconds": int(request.wall_s * max(1, self.threads or 1) + 30),
        }
        return {
            "name": request.name,
            "source": request.source,
            "task": dict(request.task),
            "reuse": dict(request.reuse),
            "seed": seed,
            "confine": confine,
        }

    def _reply(
        self, request: FitRequest, header: dict[str, Any], payload: bytes, predict_order: np.ndarray
    ) -> FitReply:
        elapsed = float(header.get("elapsed_s", 0.0))
        log_tail = trim(str(header.get("log", "")), self.limits.log_tail_chars)
        empty = bool(header.get("group_empty", False))

        def failed(verdict: Verdict, detail: str) -> FitReply:
            return FitReply(verdict, detail, None, {}, elapsed, log_tail, empty)

        if header.get("timed_out"):
            return failed("timed_out", f"{request.name} did not finish within {request.wall_s:.0f} s and was killed")
        if header.get("oversized"):
            return failed("bad_output", f"{request.name} wrote more than the worker's result limit")
        try:
            status, predictions = read_result(payload)
        except Exception as exc:  # whatever the child wrote is data, never trusted
            return failed(*_without_status(header, exc))
        if status.get("status") != "ok":
            kinds: dict[object, Verdict] = {"memory": "out_of_memory", "confine": "refused"}
            error = str(status.get("error") or "unknown error")
            return failed(kinds.get(status.get("kind"), "crashed"), trim(error, 3000))
        problem = _prediction_problem(predictions, len(request.predict_rows), request.task)
        if problem:
            return failed("bad_output", f"{request.name}: {problem}")
        assert predictions is not None
        restored = np.empty_like(predictions)
        restored[predict_order] = predictions
        if predictions.ndim == 2:
            restored = restored / restored.sum(axis=1, keepdims=True)
        reuse = status.get("reuse")
        body_s = status.get("body_s")
        body_s = float(body_s) if isinstance(body_s, (int, float)) else elapsed
        # an LLM body's reuse_params_ would carry what it learnt from one fold to the next: dropped
        kept = dict(reuse) if request.trusted and isinstance(reuse, dict) else {}
        return FitReply("ok", "", restored, kept, elapsed, log_tail, empty, body_s)

    def _expect(self, op: str, deadline: float) -> tuple[dict[str, Any], bytes]:
        sock = self._socket()
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            header, payload, _fds = recv_message(sock)
        except (TimeoutError, EOFError, OSError, ProtocolError) as exc:
            errors = self._errors()
            self._stop_zygote()
            raise SandboxError(f"the worker zygote failed ({type(exc).__name__}: {exc}){errors}") from None
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(None)
        if header.get("op") != op:
            raise SandboxError(f"the worker zygote answered {header.get('op')!r} instead of {op!r}")
        return header, payload

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise SandboxError("the worker zygote is not running")
        return self.sock

    def _errors(self) -> str:
        text = _read_text(self.root / ZYGOTE_ERRORS).strip()
        return f": {trim(text, 600)}" if text else ""

    def close(self) -> None:
        self._stop_zygote()
        self._features = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop_zygote(self) -> None:
        """Ask the zygote to exit, then kill its whole process group (it and any child still running)."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                send_message(self.sock, {"op": "exit"})
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shuffle_key(request: FitRequest) -> list[int]:
    """The shuffle is fixed by the request itself (seed, body, its rows), never by what ran before it: a template's
    result does not change when an earlier template does, so runs and benchmarks compare like with like."""
    rows = np.ascontiguousarray(request.train_rows, dtype="int64")
    return [request.seed, zlib.crc32(request.name.encode()), zlib.crc32(rows.tobytes()), len(request.predict_rows)]


def _job_file() -> int:
    """An anonymous in-memory file (a memfd on Linux; an unlinked temporary file elsewhere)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("kagent-job", os.MFD_CLOEXEC)
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - only its descriptor is kept
    fd = os.dup(handle.fileno())
    handle.close()
    return fd


def _prediction_problem(predictions: np.ndarray | None, rows: int, task: Mapping[str, Any]) -> str | None:
    if predictions is None:
        return "no predictions"
    classes = int(task.get("n_classes") or 0) if task.get("type") in ("binary", "multiclass") else 0
    expected = (rows, classes) if classes else (rows,)
    if predictions.shape != expected:
        return f"predictions have shape {predictions.shape}, expected {expected}"
    if predictions.dtype.kind != "f" or not np.isfinite(predictions).all():
        return "predictions contain NaN or inf"
    if classes:
        if ((predictions < -1e-9) | (predictions > 1 + 1e-9)).any():
            return "class probabilities outside [0, 1]"
        if (predictions.sum(axis=1) <= 0).any():
            return "a row of class probabilities sums to 0"
    return None


def _without_status(header: Mapping[str, Any], exc: Exception) -> tuple[Verdict, str]:
    signum = header.get("signal")
    if signum:
        name = signal.Signals(signum).name if signum in signal.valid_signals() else str(signum)
        if name == "SIGKILL":
            return "out_of_memory", "the worker was killed (SIGKILL), most likely out of memory"
        return "crashed", f"the worker died from signal {name}"
    code = header.get("exit_code")
    return "crashed", f"the worker exited with code {code} without a usable status ({exc})"


def _read_text(path: Path, limit: int = 1_000_000) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def trim(text: str, limit: int) -> str:
    """Head and tail of a long text (tracebacks: the cause is at the end, the context at the start)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    half = max(1, (limit - 30) // 2)
    return f"{text[:half]}\n... [{len(text) - 2 * half} chars trimmed] ...\n{text[-half:]}"
