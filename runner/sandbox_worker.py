"""The sandbox's child: `python -m runner.sandbox_worker WORKDIR`.

It limits itself first (memory, core dumps, privileges, capabilities), and only then loads the prepared data, loads
the untrusted body through the contract and runs the scaffold's evaluation. It writes `status.json` and the evaluation
(JSON + npy, never pickle). Its environment was built from scratch by runner.sandbox; it holds no secrets.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MAX_FILE_BYTES = 2 * 1024**3


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def harden(memory_mb: int) -> None:
    """Limit this process before any untrusted code runs. Each step is best effort on non-Linux systems."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    limit = int(memory_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the runner dies → so do we
    # RLIMIT_AS bounds address space, not resident memory: if the container runs short, the kernel's OOM killer must
    # pick this process, never the runner that still has to write the template's submission.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    if os.geteuid() == 0:
        _drop_all_capabilities(libc)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    print(f"sandbox: network {'cut' if _cut_network(libc) else 'still reachable (no user namespaces here)'}")


def _cut_network(libc: ctypes.CDLL) -> bool:
    """Best effort: a new user + network namespace leaves the body no network at all (no exfiltration, no metadata
    endpoints). Needs a single-threaded process (we are, before numpy) and a kernel that allows user namespaces;
    the capabilities a new user namespace grants apply only to that empty namespace."""
    return bool(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0)


def _drop_all_capabilities(libc: ctypes.CDLL) -> None:
    """Root without capabilities cannot read a non-dumpable process's /proc/<pid>/environ or memory, nor ptrace it."""
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed: cannot drop capabilities")


def write_status(workdir: Path, status: dict[str, Any]) -> None:
    tmp = workdir / "status.json.tmp"
    tmp.write_text(json.dumps(status, default=str))
    tmp.replace(workdir / "status.json")


def run_job(job: dict[str, Any], source: str) -> dict[str, Any]:
    """Load data and body, evaluate with the scaffold, save the evaluation. Returns a small JSON summary."""
    import time  # noqa: PLC0415

    from runner.contract import load_body_from_source  # noqa: PLC0415 - only after harden()
    from runner.scaffold import PreparedData, evaluate  # noqa: PLC0415

    data = PreparedData.load(Path(job["data_dir"]))
    deadline = time.monotonic() + float(job["deadline_s"])
    if job.get("ready_file"):
        Path(job["ready_file"]).touch()  # the body's time starts now (runner.sandbox counts from here)
    body = load_body_from_source(source, str(job.get("name", "candidate")))
    evaluation = evaluate(body, data, deadline, n_folds=int(job.get("n_folds", 5)), log=_say)
    evaluation.save(Path(job["output_dir"]))
    return {"cv_score": evaluation.cv_score if evaluation.cv_score == evaluation.cv_score else None}


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m runner.sandbox_worker WORKDIR", file=sys.stderr)
        return 2
    workdir = Path(argv[1])
    job = json.loads((workdir / "job.json").read_text())
    source = (workdir / "body.py").read_text()
    harden(int(job["memory_mb"]))
    os.chdir(workdir)
    try:
        summary = run_job(job, source)
    except MemoryError:
        write_status(workdir, {"status": "error", "kind": "memory", "error": "MemoryError", "traceback": _tb()})
        return 1
    except BaseException as exc:  # the body may raise anything, SystemExit included
        kind = "memory" if _is_memory_error(exc) else "crash"
        write_status(
            workdir, {"status": "error", "kind": kind, "error": f"{type(exc).__name__}: {exc}", "traceback": _tb()}
        )
        return 1
    write_status(workdir, {"status": "ok", **summary})
    return 0


def _is_memory_error(exc: BaseException | None) -> bool:
    """The scaffold wraps body errors in its own one-line errors; the MemoryError is then in the chain or the text."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, MemoryError) or "MemoryError" in str(exc) or "Unable to allocate" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _tb() -> str:
    return traceback.format_exc(limit=20)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
