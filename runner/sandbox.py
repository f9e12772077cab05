"""Running an untrusted model body in a separate, limited process that cannot see the service's secrets.

Layers (the AST check in runner.codegen comes first; this is the part that holds when that check is fooled):
- a child process (`python -m runner.sandbox_worker WORKDIR`) in its own session, killed as a process group when its
  wall time runs out;
- an environment built from scratch (an allowlist: no OPENAI_*, KAGGLE_*, AWS_* ever reach it) and a temporary working
  directory as HOME, TMPDIR and cwd;
- the worker limits itself before it reads the body: RLIMIT_AS (memory), no core dumps, no new privileges, and when it
  starts as root it drops every capability (so it cannot read a non-dumpable process's /proc/<pid>/environ or memory);
  with KAGENT_SANDBOX_USER it is started as that user instead;
- the runner process makes itself non-dumpable (`protect_runner_process`), so /proc/<runner pid>/environ and /mem are
  unreadable by its children, and drops secrets from os.environ once their readers hold them in memory;
- the parent never unpickles what the child writes: a small JSON status and whatever the scaffold saves (JSON + npy
  loaded with allow_pickle=False).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent

# What a secret looks like in the runner's environment: exact names and prefixes.
SECRET_NAMES = frozenset({"OPENAI_API_KEY", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"})
SECRET_PREFIXES = ("AWS_", "OPENAI_", "KAGGLE_")

STATUS_FILE = "status.json"
JOB_FILE = "job.json"
BODY_FILE = "body.py"
LOG_FILE = "worker.log"
READY_FILE = "ready"
NOT_READY_FILE = "killed-before-ready"
OUTPUT_DIR = "evaluation"
MAX_STATUS_BYTES = 200_000
MAX_OUTPUT_BYTES = 1024**3

PR_SET_DUMPABLE = 4

Verdict = Literal["ok", "crashed", "timed_out", "out_of_memory", "bad_output"]


class SandboxError(RuntimeError):
    """The sandbox itself cannot run (misconfiguration), as opposed to a body that failed inside it."""


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 120.0  # the body's time, from when the worker is ready
    memory_mb: int = 4096
    startup_s: float = 30.0  # allowance for the worker's own start-up (imports, loading the data)
    log_tail_chars: int = 2000


@dataclass(frozen=True)
class SandboxResult:
    verdict: Verdict
    detail: str  # one paragraph: the error, trimmed to head and tail
    output_dir: Path  # the worker's output (valid only when verdict == "ok")
    elapsed_s: float
    log_tail: str  # what the body printed, trimmed

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def is_secret_name(name: str) -> bool:
    return name in SECRET_NAMES or name.startswith(SECRET_PREFIXES)


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
    """The child's whole environment, built from scratch: nothing is inherited."""
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
    }
    if threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    return env


def resolve_sandbox_user(name: str | None) -> pwd.struct_passwd | None:
    """The user to run bodies as (KAGENT_SANDBOX_USER), only when we are root and one is named."""
    if not name or os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise SandboxError(f"KAGENT_SANDBOX_USER names an unknown user: {name!r}") from None


@dataclass
class Sandbox:
    """Runs bodies against one prepared data directory. Create with `Sandbox.create`, close when done."""

    root: Path
    data_dir: Path
    limits: SandboxLimits
    user: pwd.struct_passwd | None = None
    python: str = sys.executable
    threads: int | None = None
    _counter: int = 0

    @classmethod
    def create(
        cls,
        limits: SandboxLimits | None = None,
        user: pwd.struct_passwd | None = None,
        python: str | None = None,
        threads: int | None = None,
    ) -> Sandbox:
        """A private root (mode 0711) with `data/` in it for the caller to fill, readable by the sandbox user."""
        root = Path(tempfile.mkdtemp(prefix="kagent-sandbox-"))
        root.chmod(0o711)
        data_dir = root / "data"
        data_dir.mkdir()
        return cls(
            root=root,
            data_dir=data_dir,
            limits=limits or SandboxLimits(),
            user=user,
            python=python or sys.executable,
            threads=threads,
        )

    def seal_data(self) -> None:
        """After the caller wrote data_dir: make it read-only and readable by the sandbox user."""
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)

    def close(self) -> None:
        # chmod follows links: a body could plant one pointing anywhere, so links are never touched (rmtree unlinks).
        for path in _tree_without_links(self.root):
            with contextlib.suppress(OSError):
                path.chmod(0o700 if path.is_dir() else 0o600)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        source: str,
        job: Mapping[str, object] | None = None,
        wall_s: float | None = None,
        hard_s: float | None = None,
    ) -> SandboxResult:
        """Run one body: write it and the job, start the worker, enforce the time limits, read the verdict.

        `wall_s` is the body's time, counted from when the worker is ready (imports and data loaded), so a slow
        start on a busy machine does not count against the body; `hard_s` caps the whole process (default: wall_s
        plus the start-up allowance).
        """
        self._counter += 1
        workdir = self.root / f"run{self._counter:03d}"
        workdir.mkdir(mode=0o700)
        (workdir / BODY_FILE).write_text(source)
        limit = float(wall_s if wall_s is not None else self.limits.wall_s)
        hard = float(hard_s if hard_s is not None else limit + self.limits.startup_s)
        spec = {
            "data_dir": str(self.data_dir),
            "output_dir": str(workdir / OUTPUT_DIR),
            "ready_file": str(workdir / READY_FILE),
            "memory_mb": self.limits.memory_mb,
            # The scaffold's own budget, counted from ready like `limit`, ending safely before the kill.
            "deadline_s": max(1.0, 0.9 * limit - 1.0),
            **(job or {}),
        }
        (workdir / JOB_FILE).write_text(json.dumps(spec))
        if self.user is not None:
            _chown_tree(workdir, self.user)
        started = time.monotonic()
        timed_out, returncode = self._spawn(workdir, limit, hard)
        elapsed = time.monotonic() - started
        log_tail = trim(_read_text(workdir / LOG_FILE), self.limits.log_tail_chars)
        verdict, detail = _verdict(workdir, timed_out, returncode, limit)
        if verdict == "ok":
            problem = _unsafe_output(workdir / OUTPUT_DIR)
            if problem:
                verdict, detail = "bad_output", problem
        return SandboxResult(verdict, detail, workdir / OUTPUT_DIR, round(elapsed, 2), log_tail)

    def _spawn(self, workdir: Path, limit: float, hard: float) -> tuple[bool, int | None]:
        uid = self.user.pw_uid if self.user else None
        gid = self.user.pw_gid if self.user else None
        with (workdir / LOG_FILE).open("wb") as log:
            proc = self._popen(workdir, log, uid, gid)
            try:
                return _wait(proc, workdir / READY_FILE, limit, hard)
            finally:
                _kill_group(proc)  # also reap anything the body left behind in its session

    def _popen(self, workdir: Path, log: IO[bytes], uid: int | None, gid: int | None) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                [self.python, "-m", "runner.sandbox_worker", str(workdir)],
                cwd=workdir,
                env=clean_env(workdir, self.threads),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                user=uid,
                group=gid,
                extra_groups=[] if self.user else None,
            )
        except OSError as exc:
            who = f" as {self.user.pw_name}" if self.user else ""
            raise SandboxError(f"cannot start the sandbox worker{who}: {exc}") from exc


def _wait(proc: subprocess.Popen[bytes], ready_file: Path, limit: float, hard: float) -> tuple[bool, int | None]:
    """(timed_out, returncode): `limit` seconds from ready, never more than `hard` seconds in all."""
    started = time.monotonic()
    kill_at = started + hard
    ready = False
    while True:
        returncode = proc.poll()
        if returncode is not None:
            return False, returncode
        now = time.monotonic()
        if not ready and ready_file.exists():
            ready = True
            kill_at = min(kill_at, now + limit)
        if now >= kill_at:
            _kill_group(proc)
            if not ready:
                (ready_file.parent / NOT_READY_FILE).touch()
            return True, None
        time.sleep(0.05)


def _tree_without_links(root: Path) -> list[Path]:
    found = [root]
    for folder, dirs, files in os.walk(root):  # followlinks=False
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not path.is_symlink():
                found.append(path)
    return found


def _unsafe_output(output_dir: Path) -> str | None:
    """The parent reads the output only if it is plain files of a sane size: no links planted by the body."""
    if output_dir.is_symlink() or not output_dir.is_dir():
        return "the sandbox wrote no output directory"
    total = 0
    for folder, dirs, files in os.walk(output_dir):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if path.is_symlink():
                return f"the sandbox output holds a link ({name}): refused"
            total += path.stat().st_size if path.is_file() else 0
    if total > MAX_OUTPUT_BYTES:
        return f"the sandbox output is {total // 2**20} MB, over the {MAX_OUTPUT_BYTES // 2**20} MB limit"
    return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _verdict(workdir: Path, timed_out: bool, returncode: int | None, limit: float) -> tuple[Verdict, str]:
    if timed_out and (workdir / NOT_READY_FILE).exists():
        return "timed_out", "the sandbox worker did not even start the body in time (the machine is overloaded?)"
    if timed_out:
        return "timed_out", f"the body did not finish within {limit:.0f} s and was killed"
    status = _read_status(workdir / STATUS_FILE)
    if status is None:
        return _verdict_without_status(returncode)
    if status.get("status") == "ok":
        return "ok", ""
    detail = trim(str(status.get("traceback") or status.get("error") or "unknown error"), 3000)
    kinds: dict[object, Verdict] = {"memory": "out_of_memory", "bad_output": "bad_output"}
    return kinds.get(status.get("kind"), "crashed"), detail


def _verdict_without_status(returncode: int | None) -> tuple[Verdict, str]:
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        if name == "SIGKILL":
            return "out_of_memory", "the worker was killed (SIGKILL), most likely out of memory"
        return "crashed", f"the worker died from signal {name}"
    return "crashed", f"the worker exited with code {returncode} without a status"


def _read_status(path: Path) -> dict[str, object] | None:
    if path.is_symlink():
        return {"status": "error", "error": "the worker's status file is a link: refused"}
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_STATUS_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_STATUS_BYTES:
        return {"status": "error", "error": "the worker's status file is oversized"}
    try:
        status = json.loads(raw)
    except ValueError:
        return {"status": "error", "error": "the worker's status file is not JSON"}
    return status if isinstance(status, dict) else {"status": "error", "error": "the worker's status is not an object"}


def _read_text(path: Path, limit: int = 1_000_000) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for item in [path, *path.rglob("*")]:
        os.chown(item, user.pw_uid, user.pw_gid)


def trim(text: str, limit: int) -> str:
    """Head and tail of a long text (tracebacks: the cause is at the end, the context at the start)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    half = max(1, (limit - 30) // 2)
    return f"{text[:half]}\n... [{len(text) - 2 * half} chars trimmed] ...\n{text[-half:]}"
