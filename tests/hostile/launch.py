"""Run the real runner CLI the way the hostile suite needs, and report what the run left behind.

    python -m tests.hostile.launch REPORT.json [--outer-filter] [--skip-check] -- DATA --out OUT --codegen llm ...

- becomes a child subreaper first: every process the run starts, even a daemon that double-forks or calls setsid,
  is re-parented here when its parent dies, so after the CLI exits whatever is still alive below this process was
  started by the run and survived it. Those are listed in the report, then killed;
- `--outer-filter` installs a seccomp filter before the CLI starts that refuses unshare/setns/mount and
  clone(CLONE_NEWUSER) with EPERM and clone3 with ENOSYS, as Docker's default profile does (Fargate): user and
  network namespaces are then unavailable to the runner and to everything below it;
- `--skip-check` runs the CLI through tests/hostile/cli.py, which replaces the AST check (runner.bodycheck) with one
  that accepts everything, so that the bodies reach the OS wall. Test-only: nothing in runner/ reads a switch for it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWUSER = 0x10000000
GRACE_S = 1.5  # a daemon's first heartbeat has time to show


def install_outer_filter() -> None:
    import pyseccomp as sc  # noqa: PLC0415 - only with --outer-filter

    outer = sc.SyscallFilter(sc.ALLOW)
    for name in ("unshare", "setns", "mount"):
        outer.add_rule(sc.ERRNO(errno.EPERM), name)
    outer.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    outer.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if os.geteuid() == 0:
        outer.set_attr(sc.Attr.CTL_NNP, 0)  # as runc loads the profile: no no_new_privs imposed on the container
    outer.load()


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def describe(pid: int) -> dict[str, object]:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {"pid": pid, "gone": True}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "pid": pid,
        "cmdline": cmdline[:300],
        "uid": int(fields.get("Uid", "-1").split()[0]),
        "state": fields.get("State", "").strip(),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("report", type=Path)
    parser.add_argument("--outer-filter", action="store_true")
    parser.add_argument("--skip-check", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--entry", help="a module to run instead of the CLI (tests/hostile/unwalled.py)")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    runner_args = argv[split + 1 :]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit(f"launch: cannot become a child subreaper: {os.strerror(ctypes.get_errno())}")
    if args.outer_filter:
        install_outer_filter()
    entry = args.entry or ("tests.hostile.cli" if args.skip_check else "runner")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", entry, *runner_args])
    try:
        code: int | str = proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = "timeout"
    elapsed = time.monotonic() - started
    time.sleep(GRACE_S)
    survivors = [describe(pid) for pid in descendants(os.getpid())]
    for pid in [s["pid"] for s in survivors]:
        with contextlib.suppress(OSError):
            os.kill(int(pid), signal.SIGKILL)  # type: ignore[call-overload]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # reap what was re-parented here
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.05)
        except ChildProcessError:
            break
    report = {"exit_code": code, "elapsed_s": round(elapsed, 2), "survivors": survivors}
    args.report.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
