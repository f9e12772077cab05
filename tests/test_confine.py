"""The wall (runner/confine.py), attacked for real: every refusal is an attempt in a confined, forked child.

Each run forks a "zygote" (like the runner's: it may first drop to an unprivileged user or sit under an outer seccomp
filter) that forks the child; the child confines itself and tries. Three settings run the whole battery:
- root-to-sandbox: the zygote is root, confine() switches the child to a test user (containers, CI);
- unprivileged: the zygote itself is that user, confine() switches nothing (a user's own CLI run);
- nested-no-userns: root-to-sandbox under an outer filter that refuses unshare and clone(CLONE_NEWUSER), as Docker's
  default profile does (Fargate): the namespaces are skipped, everything else must still hold.
Attempts go through Python (the audit hook answers first: "hook") and through raw system calls via a libc function
resolved before confinement (only the kernel layers answer: an errno name), so each layer is seen holding on its own.
Modules the children use are imported here: after a uid switch the interpreter's files may be unreadable.
"""

from __future__ import annotations

import contextlib
import ctypes
import encodings.idna  # noqa: F401 - host names are encoded with it: imported before any uid switch
import errno
import functools
import json
import os
import pwd
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from runner import confine as cf
from runner.confine import Confinement, ConfinementError, RefusedByConfinement

if not sys.platform.startswith("linux"):
    pytest.skip("the wall (seccomp, Landlock, namespaces) is Linux-only", allow_module_level=True)

try:
    import pyseccomp as sc
except (ImportError, OSError, RuntimeError) as exc:  # pragma: no cover - a machine without libseccomp
    sc = None
    SECCOMP_MISSING = f"pyseccomp/libseccomp unavailable: {exc}"
else:
    SECCOMP_MISSING = ""

needs_seccomp = pytest.mark.skipif(sc is None, reason=SECCOMP_MISSING or "seccomp available")

ROOT = Path(__file__).resolve().parent.parent
TEST_USER = f"kagent-wall-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"  # one per xdist worker: each removes its own
CHILD_TIMEOUT_S = 30.0
IS_ROOT = os.geteuid() == 0
X86_64 = os.uname().machine == "x86_64"

LIBC = ctypes.CDLL(None, use_errno=True)
SYSCALL = LIBC.syscall  # resolved now: after confinement the audit hook refuses looking up new libc symbols
SYSCALL.restype = ctypes.c_long
LIBC_CONNECT = LIBC.connect
LIBC_UNSHARE = LIBC.unshare
GETPID = LIBC.getpid

# x86_64 / asm-generic values the raw attempts use.
AT_FDCWD = -100
IPC_CREAT = 0o1000
PTRACE_TRACEME, PTRACE_ATTACH = 0, 16
SIGCHLD = 17
CLONE_VM, CLONE_SIGHAND = 0x100, 0x800
DISTINCT_ERRNO = errno.ENOTRECOVERABLE  # what the filter answers in the sweep, so the kernel's own EPERM can't pass


# --- attempts ---------------------------------------------------------------------------------------------------------


def outcome(attempt: Callable[[], Any]) -> str:
    """'ok', 'hook' (the audit hook refused), or the errno / exception name the attempt ended with."""
    try:
        attempt()
    except RefusedByConfinement:
        return "hook"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    except Exception as exc:
        return type(exc).__name__
    return "ok"


def _arg(value: Any) -> Any:
    if isinstance(value, bytes):
        return ctypes.c_char_p(value)
    if isinstance(value, int):
        return ctypes.c_long(value)
    return value


def raw(name: str, *args: Any) -> str:
    """A system call by number, beneath Python and its audit hook: 'ok' or the errno name. A process-creating call
    that succeeded exits at once in the new process."""
    number = cf.syscall_number(sc, name)
    if number is None or number < 0:
        return "absent"
    ctypes.set_errno(0)
    result = SYSCALL(ctypes.c_long(number), *[_arg(a) for a in args])
    if result == 0 and name in ("fork", "vfork", "clone") and GETPID() != _PID[0]:
        os._exit(0)
    return "ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


_PID = [0]  # the confined child's pid, to recognise the copy a successful fork/clone would make


# --- the settings and the fork harness --------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


@pytest.fixture(scope="session")
def test_user() -> Iterator[User | None]:
    """An unprivileged user (created with useradd when root; removed again if this session created it)."""
    if not IS_ROOT:
        yield None
        return
    created = (
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
            capture_output=True,
            check=False,
        ).returncode
        == 0
        if shutil.which("useradd")
        else False
    )
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        pytest.skip("cannot create a test user (no useradd)")
    yield User(TEST_USER, entry.pw_uid, entry.pw_gid)
    if created:
        subprocess.run(["userdel", TEST_USER], capture_output=True, check=False)


@dataclass(frozen=True)
class Setting:
    name: str
    user: User | None  # the unprivileged identity the child ends up with (None: this process's own, non-root)
    zygote_is_user: bool  # the zygote drops to the user itself (confine() switches nothing)
    outer_filter: bool  # an outer seccomp filter refusing user namespaces, like Docker's default profile

    def confinement(self, **overrides: Any) -> Confinement:
        switch = self.user is not None and not self.zygote_is_user
        base = Confinement(
            uid=self.user.uid if switch and self.user else None,
            gid=self.user.gid if switch and self.user else None,
            readable=cf.default_readable(),
        )
        return replace(base, **overrides)

    def zygote_setup(self) -> None:
        if self.outer_filter:
            install_outer_filter()
        if self.zygote_is_user and self.user is not None:
            os.setgroups([])
            os.setresgid(self.user.gid, self.user.gid, self.user.gid)
            os.setresuid(self.user.uid, self.user.uid, self.user.uid)


SETTINGS = ("root-to-sandbox", "unprivileged", "nested-no-userns")


@pytest.fixture(params=SETTINGS)
def setting(request: pytest.FixtureRequest, test_user: User | None) -> Setting:
    name = request.param
    if name == "root-to-sandbox" and not IS_ROOT:
        pytest.skip("switching uid needs root; the unprivileged setting covers this machine")
    return Setting(name, test_user, zygote_is_user=name == "unprivileged", outer_filter=name == "nested-no-userns")


def install_outer_filter() -> None:
    """What Docker's default profile does to namespaces: unshare/setns/mount refused, clone(CLONE_NEWUSER) refused,
    clone3 ENOSYS. Loaded as root without no_new_privs (as runc does), or with it when not root."""
    outer = sc.SyscallFilter(sc.ALLOW)
    for name in ("unshare", "setns", "mount"):
        outer.add_rule(sc.ERRNO(errno.EPERM), name)
    outer.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, cf.CLONE_NEWUSER, cf.CLONE_NEWUSER))
    outer.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if os.geteuid() == 0:
        outer.set_attr(sc.Attr.CTL_NNP, 0)
    outer.load()


@dataclass
class Run:
    result: dict[str, Any]  # what the child's body returned ({} when it died), plus "layers" or "error"
    child_status: int | None  # the child's exit code, or -signal
    zygote_alive: bool


def run_confined(
    setting: Setting,
    body: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    confinement: Confinement | None = None,
    setup: Callable[[], dict[str, Any]] | None = None,
    timeout: float = CHILD_TIMEOUT_S,
) -> Run:
    """zygote (setting) → child: setup() → confine() → body(setup's dict). Bounded in time; both killed on timeout."""
    conf = confinement if confinement is not None else setting.confinement()
    read_fd, write_fd = os.pipe()
    zygote = os.fork()
    if zygote == 0:  # pragma: no cover - runs in the zygote
        _zygote(setting, conf, body, setup, read_fd, write_fd)
    os.close(write_fd)
    data = _read_all(read_fd, zygote, timeout)
    _, status = os.waitpid(zygote, 0)
    lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    child: dict[str, Any] = next((line for line in lines if "body" in line), {"body": {}})
    end: dict[str, Any] = next((line for line in lines if "zygote" in line), {})
    assert os.waitstatus_to_exitcode(status) == 0, f"zygote failed: {lines}"
    return Run(child["body"], end.get("child_status"), bool(end.get("zygote")))


def _zygote(setting: Setting, conf: Confinement, body: Any, setup: Any, read_fd: int, write_fd: int) -> None:
    code = 1
    try:
        os.close(read_fd)
        os.setpgid(0, 0)
        setting.zygote_setup()
        child = os.fork()
        if child == 0:
            _child(conf, body, setup, write_fd)
        _, status = os.waitpid(child, 0)
        os.write(
            write_fd, (json.dumps({"zygote": True, "child_status": os.waitstatus_to_exitcode(status)}) + "\n").encode()
        )
        code = 0
    finally:
        os._exit(code)


def _child(conf: Confinement, body: Any, setup: Any, write_fd: int) -> None:
    result: dict[str, Any] = {}
    try:
        context = setup() if setup else {}
        _PID[0] = os.getpid()
        result["layers"] = cf.confine(conf)
        result.update(body(context))
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    try:
        os.write(write_fd, (json.dumps({"body": result}, default=str) + "\n").encode())
    finally:
        os._exit(0)


def _read_all(fd: int, zygote: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(zygote, signal.SIGKILL)
                pytest.fail(f"the confined child did not finish within {timeout:.0f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
    finally:
        os.close(fd)


def ok_run(run: Run) -> dict[str, Any]:
    assert "error" not in run.result, run.result.get("error")
    assert run.child_status == 0 and run.zygote_alive, run
    return run.result


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A world-writable folder outside any confined process's `readable`: only the wall stops writes here."""
    path = Path(tempfile.mkdtemp(prefix="kagent-confine-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- the layers applied -----------------------------------------------------------------------------------------------


@needs_seccomp
def test_every_layer_is_applied_and_reported(setting: Setting) -> None:
    def setup() -> dict[str, Any]:
        return {"userns offered": cf._userns_support()}  # what support() would say in this setting's zygote

    result = ok_run(run_confined(setting, lambda ctx: ctx, setup=setup))
    layers = result["layers"]

    assert "no_new_privs" in layers and "seccomp" in layers and "audit hook" in layers
    assert any(layer.startswith("rlimits AS=") for layer in layers)
    if cf.support().landlock_abi >= 1:
        assert any(layer.startswith("landlock ABI") for layer in layers)
    if setting.name == "root-to-sandbox":
        assert f"uid {setting.user.uid}:{setting.user.gid}" in layers  # type: ignore[union-attr]
    if setting.outer_filter:
        assert any(layer.startswith("user+network namespace skipped: unshare refused") for layer in layers)
        assert result["userns offered"] is False
    elif cf.support().userns:
        assert "user+network namespace" in layers and result["userns offered"] is True


# --- network ----------------------------------------------------------------------------------------------------------

FAMILIES = {
    "AF_INET/stream": (socket.AF_INET, socket.SOCK_STREAM),
    "AF_INET/dgram": (socket.AF_INET, socket.SOCK_DGRAM),
    "AF_INET6/stream": (socket.AF_INET6, socket.SOCK_STREAM),
    "AF_UNIX/stream": (socket.AF_UNIX, socket.SOCK_STREAM),
    "AF_UNIX/dgram": (socket.AF_UNIX, socket.SOCK_DGRAM),
    "AF_NETLINK/raw": (socket.AF_NETLINK, socket.SOCK_RAW),
    "AF_PACKET/raw": (socket.AF_PACKET, socket.SOCK_RAW),
}


@needs_seccomp
def test_sockets_of_every_family_are_refused(setting: Setting) -> None:
    def body(_: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for label, (family, kind) in FAMILIES.items():
            out[f"python {label}"] = outcome(functools.partial(socket.socket, family, kind))
            out[f"raw {label}"] = raw("socket", family, kind, 0)
        out["python socketpair"] = outcome(socket.socketpair)
        out["raw socketpair"] = raw("socketpair", socket.AF_UNIX, socket.SOCK_STREAM, 0, ctypes.create_string_buffer(8))
        return out

    result = ok_run(run_confined(setting, body))

    for label in FAMILIES:
        assert result[f"python {label}"] == "hook", label
        assert result[f"raw {label}"] == "EPERM", label  # seccomp, beneath the hook
    # socketpair() raises its audit event only after the system call, which seccomp has already refused
    assert result["python socketpair"] == result["raw socketpair"] == "EPERM"


def _sockaddr_in(port: int) -> bytes:
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton("127.0.0.1") + bytes(8)


def _sockaddr_un(path: bytes) -> bytes:
    return struct.pack("=H", socket.AF_UNIX) + path + b"\0"


@needs_seccomp
def test_host_listeners_cannot_be_reached_even_through_inherited_sockets(setting: Setting, open_dir: Path) -> None:
    """TCP, unix-path and abstract unix listeners the test owns; the child tries new sockets (refused at creation)
    and sockets it inherited unconnected from before confinement (connect refused). Nothing may arrive."""
    tcp = socket.create_server(("127.0.0.1", 0))
    unix_path = str(open_dir / "listener.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(unix_path)
    os.chmod(unix_path, 0o777)
    abstract_name = f"\0kagent-confine-{os.getpid()}".encode()
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(abstract_name)
    listeners = [tcp, unix, abstract]
    for listener in listeners:
        listener.listen(8)
        listener.setblocking(False)
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    udp_port = udp.getsockname()[1]

    def setup() -> dict[str, Any]:
        return {
            "tcp": socket.socket(socket.AF_INET, socket.SOCK_STREAM),
            "unix": socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
            "abstract": socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
            "udp": socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        }

    def body(inherited: dict[str, Any]) -> dict[str, Any]:
        targets = {
            "tcp": _sockaddr_in(port),
            "unix": _sockaddr_un(unix_path.encode()),
            "abstract": _sockaddr_un(abstract_name),
        }
        out = {
            "python tcp": outcome(lambda: socket.create_connection(("127.0.0.1", port), timeout=2)),
            "python inherited tcp": outcome(lambda: inherited["tcp"].connect(("127.0.0.1", port))),
            "python inherited unix": outcome(lambda: inherited["unix"].connect(unix_path)),
            "urllib": outcome(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)),
            "python inherited udp sendto": outcome(lambda: inherited["udp"].sendto(b"x", ("127.0.0.1", udp_port))),
        }
        udp_address = _sockaddr_in(udp_port)
        out["raw inherited udp sendto"] = raw("sendto", inherited["udp"].fileno(), b"x", 1, 0, udp_address, 16)
        for name, address in targets.items():
            ctypes.set_errno(0)
            result = LIBC_CONNECT(inherited[name].fileno(), address, len(address))
            out[f"raw inherited {name}"] = "ok" if result == 0 else errno.errorcode[ctypes.get_errno()]
        return out

    try:
        result = ok_run(run_confined(setting, body, setup=setup))
        arrived: list[Any] = []
        for listener in listeners:
            with contextlib.suppress(BlockingIOError):
                arrived.append(listener.accept())
        with contextlib.suppress(BlockingIOError):
            arrived.append(udp.recvfrom(64))
    finally:
        for listener in [*listeners, udp]:
            listener.close()

    assert arrived == []
    pythons = ("python tcp", "python inherited tcp", "python inherited unix", "urllib", "python inherited udp sendto")
    assert {result[k] for k in pythons} == {"hook"}
    for name in ("tcp", "unix", "abstract", "udp sendto"):
        assert result[f"raw inherited {name}"] == "EPERM", name  # seccomp refuses connect() / sendto(address)


# --- processes --------------------------------------------------------------------------------------------------------


@needs_seccomp
def test_exec_and_new_processes_are_refused_but_threads_work(setting: Setting) -> None:
    def body(_: dict[str, Any]) -> dict[str, Any]:
        hits: list[int] = []
        threads = [threading.Thread(target=lambda i=i: hits.append(i)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        thread_flags = cf.CLONE_THREAD | CLONE_SIGHAND | CLONE_VM
        return {
            "threads": len(hits),
            "python execv": outcome(lambda: os.execv("/bin/true", ["true"])),
            "python fork": outcome(os.fork),
            "python subprocess": outcome(lambda: subprocess.run(["true"], check=False)),
            "python system": outcome(lambda: os.system("true")),
            "python posix_spawn": outcome(lambda: os.posix_spawn("/bin/true", ["true"], {})),
            "raw execve": raw("execve", b"/bin/true", 0, 0),
            "raw execveat": raw("execveat", AT_FDCWD, b"/bin/true", 0, 0, 0),
            "raw fork": raw("fork") if X86_64 else "EPERM",
            "raw vfork": raw("vfork") if X86_64 else "EPERM",
            "raw clone process": raw("clone", SIGCHLD, 0, 0, 0, 0),
            "raw clone thread in a new user namespace": raw("clone", thread_flags | cf.CLONE_NEWUSER, 0, 0, 0, 0),
            "raw clone3": raw("clone3", 0, 0),
        }

    result = ok_run(run_confined(setting, body))

    assert result["threads"] == 16
    for name in ("python execv", "python fork", "python subprocess", "python system", "python posix_spawn"):
        assert result[name] == "hook", name
    for name in ("raw execve", "raw execveat", "raw fork", "raw vfork", "raw clone process"):
        assert result[name] == "EPERM", name
    assert result["raw clone thread in a new user namespace"] == "EPERM"  # the kernel alone would say EINVAL
    assert result["raw clone3"] == "ENOSYS"  # glibc falls back to clone, which the filter can inspect


@needs_seccomp
def test_signals_ptrace_and_process_memory_of_others_are_refused(setting: Setting) -> None:
    """The victim runs as the very uid of the confined child, and in the unprivileged setting so does the parent:
    only the wall stands between them."""
    victim_user = {"user": setting.user.uid, "group": setting.user.gid} if IS_ROOT and setting.user else {}
    victim = subprocess.Popen(["sleep", "60"], **victim_user)  # type: ignore[call-overload]

    def body(_: dict[str, Any]) -> dict[str, Any]:
        parent, me = os.getppid(), os.getpid()
        iov = ctypes.create_string_buffer(16)
        return {
            "python kill victim": outcome(lambda: os.kill(victim.pid, signal.SIGKILL)),
            "python kill parent": outcome(lambda: os.kill(parent, signal.SIGKILL)),
            "python killpg": outcome(lambda: os.killpg(parent, signal.SIGKILL)),
            "raw kill victim": raw("kill", victim.pid, signal.SIGKILL),
            "raw kill parent": raw("kill", parent, signal.SIGKILL),
            "raw kill everyone": raw("kill", -1, 0),
            "raw kill group": raw("kill", 0, 0),
            "raw tgkill victim": raw("tgkill", victim.pid, victim.pid, signal.SIGKILL),
            "raw tkill victim": raw("tkill", victim.pid, signal.SIGKILL),
            "raw rt_sigqueueinfo parent": raw("rt_sigqueueinfo", parent, signal.SIGKILL, iov),
            "raw pidfd_open": raw("pidfd_open", parent, 0),
            "raw ptrace attach": raw("ptrace", PTRACE_ATTACH, parent, 0, 0),
            "raw ptrace traceme": raw("ptrace", PTRACE_TRACEME, 0, 0, 0),
            "raw process_vm_readv": raw("process_vm_readv", parent, iov, 1, iov, 1, 0),
            "raw prlimit parent": raw("prlimit64", parent, resource.RLIMIT_NOFILE, 0, iov),
            "python prlimit parent": outcome(lambda: resource.prlimit(parent, resource.RLIMIT_NOFILE)),
            "read parent environ": outcome(lambda: Path(f"/proc/{parent}/environ").read_bytes()),
            "read parent mem": outcome(lambda: Path(f"/proc/{parent}/mem").open("rb").read(1)),
            "python kill self 0": outcome(lambda: os.kill(me, 0)),
            "raw kill self 0": raw("kill", me, 0),
            "raw tgkill self 0": raw("tgkill", me, me, 0),
        }

    try:
        run = run_confined(setting, body)
        victim_alive = victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
    result = ok_run(run)

    assert victim_alive and run.zygote_alive
    for name in ("python kill victim", "python kill parent", "python killpg", "python prlimit parent"):
        assert result[name] == "hook", name
    for name in result:
        if name.startswith("raw") and "self" not in name:
            assert result[name] == "EPERM", name
    assert result["read parent environ"] == result["read parent mem"] == "hook"  # and Landlock, and the uid, beneath
    assert result["python kill self 0"] == result["raw kill self 0"] == result["raw tgkill self 0"] == "ok"


@needs_seccomp
def test_namespaces_and_mounts_are_refused(setting: Setting) -> None:
    def body(_: dict[str, Any]) -> dict[str, Any]:
        ctypes.set_errno(0)
        libc_unshare = LIBC_UNSHARE(cf.CLONE_NEWUSER | cf.CLONE_NEWNET)
        return {
            "libc unshare": "ok" if libc_unshare == 0 else errno.errorcode[ctypes.get_errno()],
            "raw unshare user": raw("unshare", cf.CLONE_NEWUSER),
            "raw unshare mount": raw("unshare", cf.CLONE_NEWNS),
            "raw setns": raw("setns", 0, 0),
            "raw mount": raw("mount", b"none", b"/tmp", b"tmpfs", 0, 0),
            "raw umount2": raw("umount2", b"/tmp", 0),
            "raw chroot": raw("chroot", b"/"),
            "raw pivot_root": raw("pivot_root", b"/", b"/"),
            "raw fsopen": raw("fsopen", b"tmpfs", 0),
            "raw open_tree": raw("open_tree", AT_FDCWD, b"/tmp", 0),
        }

    result = ok_run(run_confined(setting, body))

    assert result == {"layers": result["layers"], **{k: "EPERM" for k in result if k != "layers"}}


# --- files ------------------------------------------------------------------------------------------------------------


@needs_seccomp
def test_no_file_can_be_written_created_truncated_or_changed_anywhere(setting: Setting, open_dir: Path) -> None:
    existing = open_dir / "existing.txt"
    existing.write_text("original")
    existing.chmod(0o666)
    shm_name = f"kagent-confine-{os.getpid()}"
    before_shm = set(os.listdir("/dev/shm"))

    def setup() -> dict[str, Any]:
        os.chdir(open_dir)
        return {"inherited": os.open(existing, os.O_WRONLY | os.O_APPEND)}

    def body(ctx: dict[str, Any]) -> dict[str, Any]:
        new = str(open_dir / "new.txt")
        flags_create = os.O_WRONLY | os.O_CREAT
        attempts: dict[str, Callable[[], Any]] = {
            "open w": lambda: open(new, "w").close(),
            "open x in cwd": lambda: open("in-cwd.txt", "x").close(),
            "open a existing": lambda: open(existing, "a").close(),
            "open r+ existing": lambda: open(existing, "r+").close(),
            "open w existing (truncate)": lambda: open(existing, "w").close(),
            "os.open O_CREAT": lambda: os.open(new, flags_create, 0o644),
            "open /dev/shm": lambda: open(f"/dev/shm/{shm_name}", "w").close(),
            "pathlib write_text": lambda: Path(new).write_text("x"),
            "tempfile": lambda: tempfile.mkstemp(dir=open_dir),
            "mkdir": lambda: os.mkdir(open_dir / "d"),
            "rename": lambda: os.rename(existing, open_dir / "moved"),
            "remove": lambda: os.remove(existing),
            "symlink": lambda: os.symlink(existing, open_dir / "link"),
            "link": lambda: os.link(existing, open_dir / "hard"),
            "chmod": lambda: os.chmod(existing, 0o777),
            "truncate": lambda: os.truncate(existing, 0),
            "mkfifo": lambda: os.mkfifo(open_dir / "fifo"),
            "shutil copy": lambda: shutil.copy(existing, open_dir / "copy"),
        }
        out = {f"python {name}": outcome(attempt) for name, attempt in attempts.items()}
        for label, flags in {
            "O_WRONLY": os.O_WRONLY,
            "O_RDWR": os.O_RDWR,
            "O_CREAT": os.O_CREAT,
            "O_TRUNC": os.O_TRUNC,
            "O_APPEND": os.O_APPEND,
        }.items():
            out[f"raw openat {label}"] = raw("openat", AT_FDCWD, str(existing).encode(), flags, 0o644)
        out["raw openat new in cwd"] = raw("openat", AT_FDCWD, b"raw-new.txt", flags_create, 0o644)
        out["raw openat /dev/shm"] = raw("openat", AT_FDCWD, f"/dev/shm/{shm_name}".encode(), flags_create, 0o600)
        out["raw creat"] = raw("creat", new.encode(), 0o644) if X86_64 else "EPERM"
        out["raw openat2"] = raw("openat2", AT_FDCWD, new.encode(), ctypes.create_string_buffer(24), 24)
        for name, args in {
            "mkdirat": (AT_FDCWD, b"raw-dir", 0o755),
            "renameat": (AT_FDCWD, str(existing).encode(), AT_FDCWD, b"raw-moved"),
            "unlinkat": (AT_FDCWD, str(existing).encode(), 0),
            "symlinkat": (str(existing).encode(), AT_FDCWD, b"raw-link"),
            "linkat": (AT_FDCWD, str(existing).encode(), AT_FDCWD, b"raw-hard", 0),
            "fchmodat": (AT_FDCWD, str(existing).encode(), 0o777),
            "fchmodat2": (AT_FDCWD, str(existing).encode(), 0o777, 0),
            "fchownat": (AT_FDCWD, str(existing).encode(), 0, 0, 0),
            "truncate": (str(existing).encode(), 0),
            "mknodat": (AT_FDCWD, b"raw-fifo", 0o10644, 0),
            "utimensat": (AT_FDCWD, str(existing).encode(), 0, 0),
        }.items():
            out[f"raw {name}"] = raw(name, *args)
        out["write to the inherited file"] = outcome(lambda: os.write(ctx["inherited"], b"appended"))
        return out

    result = ok_run(run_confined(setting, body, setup=setup))

    assert sorted(p.name for p in open_dir.iterdir()) == ["existing.txt"]
    assert existing.read_text() == "original" and existing.stat().st_mode & 0o777 == 0o666
    assert set(os.listdir("/dev/shm")) == before_shm
    for name, value in result.items():
        if name == "python mkfifo":
            assert value == "EPERM"  # no audit event for mkfifo: seccomp refuses mknodat
        elif name.startswith("python"):
            assert value == "hook", name
        elif name == "raw openat2":
            assert value == "ENOSYS"  # glibc falls back to openat, which the filter inspects
        elif name.startswith("raw"):
            assert value == "EPERM", name
    assert result["write to the inherited file"] == "EFBIG"  # RLIMIT_FSIZE=0: a file opened before cannot grow


@needs_seccomp
def test_sysv_ipc_message_queues_memfd_and_io_uring_are_refused(setting: Setting) -> None:
    def snapshot() -> list[str]:
        return [Path(f"/proc/sysvipc/{kind}").read_text() for kind in ("shm", "msg", "sem")]

    before = snapshot()

    def body(_: dict[str, Any]) -> dict[str, Any]:
        params = ctypes.create_string_buffer(120)
        return {
            "raw shmget": raw("shmget", 0, 4096, IPC_CREAT | 0o600),
            "raw msgget": raw("msgget", 0, IPC_CREAT | 0o600),
            "raw semget": raw("semget", 0, 1, IPC_CREAT | 0o600),
            "raw mq_open": raw("mq_open", b"kagent-confine", os.O_CREAT | os.O_RDWR, 0o600, 0),
            "python memfd_create": outcome(lambda: os.memfd_create("kagent")),
            "raw memfd_create": raw("memfd_create", b"kagent", 0),
            "raw io_uring_setup": raw("io_uring_setup", 8, params),
            "raw userfaultfd": raw("userfaultfd", 0),
            "raw bpf": raw("bpf", 0, 0, 0),
            "raw perf_event_open": raw("perf_event_open", params, 0, -1, -1, 0),
            "raw keyctl": raw("keyctl", 0, 0, 0),
        }

    result = ok_run(run_confined(setting, body))

    assert snapshot() == before
    assert {v for k, v in result.items() if k != "layers"} == {"EPERM"}


@needs_seccomp
def test_another_uids_0600_file_is_unreadable_after_the_switch(setting: Setting, open_dir: Path) -> None:
    if not IS_ROOT:
        pytest.skip("creating another uid's file needs root")
    secret = open_dir / "secret.txt"
    secret.write_text("runner-only")
    secret.chmod(0o600)
    public = open_dir / "public.txt"
    public.write_text("anyone")
    public.chmod(0o644)
    confinement = setting.confinement(readable=(*cf.default_readable(), str(open_dir)))  # Landlock lets both through

    def body(_: dict[str, Any]) -> dict[str, Any]:
        return {"secret": outcome(secret.read_text), "public": outcome(public.read_text)}

    result = ok_run(run_confined(setting, body, confinement=confinement))

    assert result["secret"] == "EACCES"  # the uid switch (or the unprivileged zygote) alone
    assert result["public"] == "ok"  # the same folder, readable: the test could fail


def _read_attempts(public: Path) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def body(_: dict[str, Any]) -> dict[str, Any]:
        return {
            "world-readable file outside readable": outcome(public.read_text),
            "/etc/passwd": outcome(Path("/etc/passwd").read_text),
            "parent's /proc status": outcome(Path(f"/proc/{os.getppid()}/status").read_text),
            "parent's /proc cmdline": outcome(Path(f"/proc/{os.getppid()}/cmdline").read_bytes),
            "own /proc status": outcome(Path("/proc/self/status").read_text),
            "the runner's code (readable)": outcome(lambda: Path(cf.__file__).read_bytes()),
            "list /": outcome(lambda: os.listdir("/")),
        }

    return body


READ_OUTSIDE = (
    "world-readable file outside readable",
    "/etc/passwd",
    "parent's /proc status",
    "parent's /proc cmdline",
)


@pytest.fixture
def public_file(open_dir: Path) -> Path:
    public = open_dir / "public.txt"
    public.write_text("anyone")
    public.chmod(0o644)
    return public


@needs_seccomp
def test_landlock_hides_everything_outside_readable(setting: Setting, public_file: Path) -> None:
    if cf.support().landlock_abi < 1:
        pytest.skip(f"no Landlock here: {cf.support().landlock_reason}")
    confinement = setting.confinement(audit_hook=False)  # Landlock alone

    result = ok_run(run_confined(setting, _read_attempts(public_file), confinement=confinement))

    for name in (*READ_OUTSIDE, "list /"):
        assert result[name] == "EACCES", name
    assert result["own /proc status"] == result["the runner's code (readable)"] == "ok"


@needs_seccomp
def test_without_landlock_the_audit_hook_still_keeps_python_reads_inside_readable(
    setting: Setting, public_file: Path
) -> None:
    """Fargate's kernel (5.10) has no Landlock: Python-level reads outside `readable` are refused by the hook."""
    confinement = setting.confinement(landlock=False)

    result = ok_run(run_confined(setting, _read_attempts(public_file), confinement=confinement))

    for name in READ_OUTSIDE:
        assert result[name] == "hook", name
    assert result["own /proc status"] == result["the runner's code (readable)"] == "ok"
    assert result["list /"] == "ok"  # names, not contents: directory listings are Landlock's alone


# --- limits -----------------------------------------------------------------------------------------------------------


def _vm_size_bytes() -> int:
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


@needs_seccomp
def test_address_space_and_task_limits_hold(setting: Setting) -> None:
    memory = _vm_size_bytes() + 768 * 2**20
    confinement = setting.confinement(memory_bytes=memory, extra_tasks=8)

    def body(_: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "as": resource.getrlimit(resource.RLIMIT_AS),
            "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
            "fsize": resource.getrlimit(resource.RLIMIT_FSIZE),
            "core": resource.getrlimit(resource.RLIMIT_CORE),
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
            "real-time priority": outcome(lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))),
            "higher priority": outcome(lambda: os.nice(-1)),
            "allocate 1.5 GiB": outcome(lambda: bytearray(3 * 2**29)),
            "raise AS": outcome(lambda: resource.setrlimit(resource.RLIMIT_AS, (2**40, 2**40))),
            "raw raise AS": raw("setrlimit", resource.RLIMIT_AS, ctypes.create_string_buffer(b"\xff" * 16, 16)),
        }
        release = threading.Event()
        started: list[threading.Thread] = []
        try:
            while len(started) < 200:
                thread = threading.Thread(target=release.wait, daemon=True)
                thread.start()
                started.append(thread)
        except RuntimeError as exc:
            out["thread error"] = str(exc)
        release.set()
        for thread in started:
            thread.join()
        out["threads started"] = len(started)
        return out

    result = ok_run(run_confined(setting, body, confinement=confinement))

    assert result["as"] == [memory, memory] and result["fsize"] == [0, 0] and result["core"] == [0, 0]
    assert result["nproc"][0] == result["nproc"][1] < 10_000
    assert result["nofile"][0] == result["nofile"][1] <= cf.MAX_OPEN_FILES
    assert result["real-time priority"] == result["higher priority"] == "EPERM"
    assert result["allocate 1.5 GiB"] == "MemoryError"
    assert result["raise AS"] == "hook" and result["raw raise AS"] == "EPERM"  # hard limit: the kernel refuses
    assert "can't start new thread" in result["thread error"]
    # RLIMIT_NPROC stopped them (the address space would have held ~90 thread stacks more)
    assert 1 <= result["threads started"] <= 8 + 4  # extra_tasks=8 (+ tasks of the uid that ended meanwhile)


# --- the audit hook ---------------------------------------------------------------------------------------------------


@needs_seccomp
def test_the_audit_hook_refuses_what_it_claims_and_allows_what_models_need(setting: Setting) -> None:
    def body(_: dict[str, Any]) -> dict[str, Any]:
        refused_attempts: dict[str, Callable[[], Any]] = {
            "subprocess": lambda: subprocess.Popen(["true"]),
            "os.system": lambda: os.system("true"),
            "os.fork": os.fork,
            "os.execv": lambda: os.execv("/bin/true", ["true"]),
            "os.posix_spawn": lambda: os.posix_spawn("/bin/true", ["true"], {}),
            "socket": socket.socket,
            "getaddrinfo": lambda: socket.getaddrinfo("localhost", 80),
            "urllib": lambda: urllib.request.urlopen("http://127.0.0.1:9/"),
            "open for writing": lambda: open("/tmp/kagent-confine-hook", "w").close(),
            "os.open for writing": lambda: os.open("/tmp/kagent-confine-hook", os.O_WRONLY | os.O_CREAT),
            "os.remove": lambda: os.remove("/tmp/nothing"),
            "os.mkdir": lambda: os.mkdir("/tmp/nothing"),
            "os.kill another pid": lambda: os.kill(1, 0),
            "tempfile": tempfile.mkstemp,
            "shutil": lambda: shutil.rmtree("/tmp/nothing"),
            "resource.setrlimit": lambda: resource.setrlimit(resource.RLIMIT_CPU, (1, 1)),
            "ctypes.CDLL(None)": lambda: ctypes.CDLL(None),
            "dlopen of a new library": lambda: ctypes.CDLL("libnss_dns.so.2"),
            "dlsym through the interpreter": lambda: ctypes.pythonapi.PyRun_SimpleString,
            "dlsym of system on an old handle": lambda: LIBC.system,
        }
        out = {name: outcome(attempt) for name, attempt in refused_attempts.items()}
        seen: list[str] = []
        out["sys.addaudithook"] = outcome(lambda: sys.addaudithook(lambda event, args: seen.append(event)))
        out["read a readable file"] = outcome(lambda: Path(cf.__file__).read_bytes())
        out["open an inherited fd for writing"] = outcome(lambda: open(os.dup(1), "wb").close())
        out["a libc function resolved before"] = outcome(GETPID)
        out["signal itself"] = outcome(lambda: os.kill(os.getpid(), 0))
        return {**out, "events the added hook saw": len(seen)}

    result = ok_run(run_confined(setting, body))

    allowed = {
        "read a readable file",
        "open an inherited fd for writing",
        "a libc function resolved before",
        "signal itself",
    }
    for name, value in result.items():
        if name in allowed:
            assert value == "ok", name
        elif name not in ("layers", "sys.addaudithook", "events the added hook saw"):
            assert value == "hook", name
    assert result["events the added hook saw"] == 0  # refused silently: a RuntimeError from a hook drops the new one


def test_audit_refusal_is_a_pure_decision() -> None:
    loaded = frozenset({"/usr/lib/libgomp.so.1", "libgomp.so.1"})
    assert cf.audit_refusal("open", ("/tmp/x", "r", os.O_RDONLY), 1, loaded) is None
    assert cf.audit_refusal("open", ("/tmp/x", None, os.O_RDWR), 1, loaded)
    assert cf.audit_refusal("open", (5, "wb", os.O_WRONLY), 1, loaded) is None
    assert cf.audit_refusal("ctypes.dlopen", ("libgomp.so.1",), 1, loaded) is None
    assert cf.audit_refusal("ctypes.dlopen", ("/other/libgomp.so.1",), 1, loaded) is None  # same soname
    assert cf.audit_refusal("ctypes.dlopen", ("libc.so.6",), 1, loaded)
    assert cf.audit_refusal("os.kill", (1, 9), 1, loaded) is None and cf.audit_refusal("os.kill", (2, 9), 1, loaded)
    assert cf.audit_refusal("socket.connect", (None, ("127.0.0.1", 1)), 1, loaded)
    assert cf.audit_refusal("import", ("numpy", None, [], [], []), 1, loaded) is None
    roots = ("/usr/lib", "/proc/1234")
    assert cf.audit_refusal("open", ("/usr/lib/x.so", "rb", os.O_RDONLY), 1, loaded, roots) is None
    assert cf.audit_refusal("open", ("/usr/lib", "rb", os.O_RDONLY), 1, loaded, roots) is None
    assert cf.audit_refusal("open", ("/usr/lib64/x.so", "rb", os.O_RDONLY), 1, loaded, roots)  # a sibling, not under
    assert cf.audit_refusal("open", ("/usr/lib/../../etc/passwd", "r", os.O_RDONLY), 1, loaded, roots)
    assert cf.audit_refusal("open", (b"/etc/passwd", "r", os.O_RDONLY), 1, loaded, roots)
    lightgbm = type("CDLL", (), {"_name": "/site-packages/lightgbm/lib/lib_lightgbm.so"})()
    assert cf.audit_refusal("ctypes.dlsym", (lightgbm, "LGBM_BoosterCreate"), 1, loaded) is None
    for symbol in ("system", "_Fork", "__clone", "execvpe", "posix_spawnp", "dlopen", "syscall"):
        assert cf.audit_refusal("ctypes.dlsym", (lightgbm, symbol), 1, loaded), symbol


# --- what happens without a layer -------------------------------------------------------------------------------------


@needs_seccomp
def test_seccomp_refuses_every_listed_call_by_itself(setting: Setting, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call in SECCOMP_REFUSED with zero arguments, answered by the filter's own (test-only) errno: no kernel
    EPERM can pass for the filter's. Landlock and the hook are off: the filter alone."""
    monkeypatch.setattr(cf, "REFUSAL_ERRNO", DISTINCT_ERRNO)
    names = [name for group in cf.SECCOMP_REFUSED.values() for name in group]
    confinement = setting.confinement(landlock=False, audit_hook=False)

    def body(_: dict[str, Any]) -> dict[str, Any]:
        me, pipe_r, pipe_w = os.getpid(), *os.pipe()
        buf = ctypes.create_string_buffer(64)
        out = {name: raw(name, 0, 0, 0, 0, 0, 0) for name in names}
        out |= {
            "kill parent": raw("kill", os.getppid(), 0),
            "kill self": raw("kill", me, 0),
            "tgkill self": raw("tgkill", me, me, 0),
            "openat read-only": raw("openat", AT_FDCWD, b"/etc/passwd", os.O_RDONLY, 0),
            "prlimit64 self": raw("prlimit64", 0, resource.RLIMIT_NOFILE, 0, buf),
            "prlimit64 parent": raw("prlimit64", os.getppid(), resource.RLIMIT_NOFILE, 0, buf),
            "fcntl F_GETFL": raw("fcntl", pipe_w, 3, 0),
            "sendto without address": raw("sendto", pipe_w, b"x", 1, 0, 0, 0),
            "sched_setaffinity self": raw("sched_setaffinity", 0, 8, buf),
            "sched_setaffinity parent": raw("sched_setaffinity", os.getppid(), 8, buf),
            "sched_setscheduler parent": raw("sched_setscheduler", os.getppid(), 5, buf),
            "fcntl F_SETOWN parent": raw("fcntl", pipe_r, cf.F_SETOWN, os.getppid()),
            "fcntl F_SETSIG": raw("fcntl", pipe_r, cf.F_SETSIG, 9),
            "ioctl TIOCSTI": raw("ioctl", pipe_r, cf.TIOCSTI | (1 << 32), buf),
        }
        for flag in cf.WRITE_OPEN_FLAGS:
            out[f"openat flag {flag:#o}"] = raw("openat", AT_FDCWD, b"/etc/passwd", flag, 0)
        return out

    result = ok_run(run_confined(setting, body, confinement=confinement))

    expected = errno.errorcode[DISTINCT_ERRNO]
    for name in names:
        assert result[name] in (expected, "absent"), name
    absent = [n for n in names if (cf.syscall_number(sc, n) or -1) < 0]
    assert [n for n in names if result[n] == "absent"] == absent
    for name in (
        "kill parent",
        "prlimit64 parent",
        "fcntl F_SETOWN parent",
        "fcntl F_SETSIG",
        "ioctl TIOCSTI",
        "sched_setaffinity parent",
        "sched_setscheduler parent",
    ):
        assert result[name] == expected, name
    for flag in cf.WRITE_OPEN_FLAGS:
        assert result[f"openat flag {flag:#o}"] == expected, flag
    assert result["kill self"] == result["tgkill self"] == result["prlimit64 self"] == result["fcntl F_GETFL"] == "ok"
    assert result["openat read-only"] == "ok"
    assert result["sendto without address"] == "ENOTSOCK"  # send() on a pipe: the filter let it through
    assert result["sched_setaffinity self"] in ("ok", "EINVAL")  # EINVAL: a cpu mask this machine cannot satisfy


@needs_seccomp
@pytest.mark.skipif(not X86_64, reason="x32 system calls exist only on x86_64")
def test_x32_system_calls_kill_the_process(setting: Setting) -> None:
    """The filter's rules are keyed on x86_64 numbers; the x32 ABI (number | 0x40000000) must not walk around them."""
    run = run_confined(setting, lambda _: {"x32 socket": str(SYSCALL(ctypes.c_long(0x40000000 | 41), 2, 1, 0))})

    assert run.child_status == -signal.SIGSYS and run.zygote_alive
    assert run.result == {}


@needs_seccomp
def test_confine_raises_when_seccomp_is_required_but_unavailable(
    setting: Setting, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> Any:
        raise ImportError("libseccomp.so.2: cannot open shared object file")

    monkeypatch.setattr(cf, "load_pyseccomp", missing)

    def body(_: dict[str, Any]) -> dict[str, Any]:
        return {"socket": outcome(socket.socket), "raw socket": raw("socket", socket.AF_INET, socket.SOCK_STREAM, 0)}

    required = run_confined(setting, body)
    optional = run_confined(setting, body, confinement=setting.confinement(require_seccomp=False))

    assert required.result["error"].startswith("ConfinementError: seccomp is required but unavailable")
    assert "layers" not in required.result  # nothing ran confined-but-unfiltered
    layers = ok_run(optional)["layers"]
    assert "seccomp" not in layers and any(layer.startswith("seccomp skipped: libseccomp.so.2") for layer in layers)
    assert optional.result["socket"] == "hook"  # the other layers still stand
    assert optional.result["raw socket"] in ("EPERM", "EACCES", "EAFNOSUPPORT", "ok")


def test_support_reports_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    found = cf.support()
    assert found.seccomp == (sc is not None) and found.seccomp_reason
    assert found.landlock_reason and (found.landlock_abi >= 1) == found.landlock_reason.startswith("ABI")
    assert found.can_switch_uid == IS_ROOT
    assert isinstance(found.userns, bool)

    def missing() -> Any:
        raise ImportError("no libseccomp")

    def no_landlock(*_: Any) -> int:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(cf, "load_pyseccomp", missing)
    monkeypatch.setattr(cf, "_syscall", no_landlock)
    cf.support.cache_clear()
    try:
        lacking = cf.support()
    finally:
        cf.support.cache_clear()
    assert not lacking.seccomp and "no libseccomp" in lacking.seccomp_reason
    assert lacking.landlock_abi == 0 and "disabled at boot" in lacking.landlock_reason


# --- misuse and lifecycle ---------------------------------------------------------------------------------------------


@needs_seccomp
def test_confine_refuses_a_multithreaded_process_and_a_uid_switch_without_root(setting: Setting) -> None:
    def start_thread() -> dict[str, Any]:
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
        return {}

    threaded = run_confined(setting, lambda _: {}, setup=start_thread)

    assert threaded.result["error"] == (
        "ConfinementError: confine() must run in a single-threaded process (fork first, start threads after)"
    )
    if setting.zygote_is_user or not IS_ROOT:
        switch = run_confined(setting, lambda _: {}, confinement=setting.confinement(uid=0, gid=0))
        assert switch.result["error"].startswith("ConfinementError: cannot switch to uid 0: only root can")


@needs_seccomp
def test_the_confined_child_dies_with_its_parent(setting: Setting) -> None:
    pid_r, pid_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - the short-lived parent
        try:
            os.setpgid(0, 0)
            setting.zygote_setup()
            child = os.fork()
            if child == 0:
                cf.confine(setting.confinement())
                os.write(pid_w, f"{os.getpid()}\n".encode())
                time.sleep(30)
            os.read(pid_r, 0)
            time.sleep(0.5)  # the child has confined itself (or failed) by now
        finally:
            os._exit(0)
    os.close(pid_w)
    ready, _, _ = select.select([pid_r], [], [], CHILD_TIMEOUT_S)
    line = os.read(pid_r, 64) if ready else b""
    os.close(pid_r)
    os.waitpid(middle, 0)
    assert line, "the child never reported its pid"
    child = int(line)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    assert not alive


def _alive(pid: int) -> bool:
    try:
        state = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state.split()[1]


def test_sandbox_uid_is_the_named_user_or_an_unused_one_and_only_for_root(test_user: User | None) -> None:
    assert cf._resolve_sandbox_uid("", 1000) is None
    assert cf._resolve_sandbox_uid("anything", 1000) is None
    with pytest.raises(ConfinementError, match="unknown user: 'no-such-user-kagent'"):
        cf._resolve_sandbox_uid("no-such-user-kagent", 0)
    with pytest.raises(ConfinementError, match="bodies never run as root"):
        cf._resolve_sandbox_uid("root", 0)
    if test_user is not None:
        assert cf.sandbox_uid({"KAGENT_SANDBOX_USER": test_user.name}) == (test_user.uid, test_user.gid)
    uid, gid = cf._resolve_sandbox_uid("", 0)  # type: ignore[misc]
    assert uid == gid and uid in cf.DEDICATED_UIDS
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)


# --- models still train -----------------------------------------------------------------------------------------------

ML_PROBE = """
import json, os, sys, time
import numpy as np, pandas as pd, lightgbm as lgb
from sklearn.ensemble import HistGradientBoostingClassifier
from runner import confine as cf

cf.prepare()
uid = int(sys.argv[1]) if sys.argv[1] != "none" else None
folder = sys.argv[2]  # world-writable, outside `readable`; holds labels.csv (world-readable)


def attempt(fn):
    try:
        fn()
    except BaseException as exc:
        return type(exc).__name__
    return "ok"

rng = np.random.default_rng(0)
X = rng.normal(size=(4000, 12)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
read_fd, write_fd = os.pipe()
pid = os.fork()
if pid == 0:
    out = {}
    try:
        out["layers"] = cf.confine(cf.Confinement(uid=uid, gid=uid, readable=cf.default_readable()))
        a = rng.normal(size=(1200, 1200)); b = a @ a
        out["matmul ok"] = bool(np.allclose(b[0, 0], a[0] @ a[:, 0]))
        m = lgb.LGBMClassifier(n_estimators=40, num_threads=2, verbose=-1).fit(X, y)
        out["lightgbm accuracy"] = float((m.predict(X) == y).mean())
        h = HistGradientBoostingClassifier(max_iter=30).fit(X, y)
        out["hgb accuracy"] = float(h.score(X, y))
        out["tasks"] = len(os.listdir("/proc/self/task"))
        frame = pd.DataFrame({"a": [1.0, 2.0]})
        writes = {
            "numpy save": lambda: np.save(f"{folder}/x.npy", X),
            "numpy open_memmap": lambda: np.lib.format.open_memmap(f"{folder}/m.npy", mode="w+", shape=(2,)),
            "numpy tofile": lambda: X.tofile(f"{folder}/x.bin"),
            "pandas to_csv": lambda: frame.to_csv(f"{folder}/x.csv"),
            "pandas to_parquet (pyarrow, C++ open)": lambda: frame.to_parquet(f"{folder}/x.parquet"),
            "lightgbm save_model (C++ open)": lambda: m.booster_.save_model(f"{folder}/model.txt"),
            "pandas read_csv of a label file": lambda: pd.read_csv(f"{folder}/labels.csv"),
            "pyarrow read of a label file": lambda: pd.read_csv(f"{folder}/labels.csv", engine="pyarrow"),
        }
        out["library attempts"] = {name: attempt(fn) for name, fn in writes.items()}
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    os.write(write_fd, json.dumps(out).encode())
    os._exit(0)
os.close(write_fd)
chunks = []
while chunk := os.read(read_fd, 65536):
    chunks.append(chunk)
os.waitpid(pid, 0)
print(b"".join(chunks).decode())
"""


@needs_seccomp
def test_numpy_lightgbm_and_hist_gradient_boosting_train_with_threads_when_confined(
    test_user: User | None, open_dir: Path
) -> None:
    """In a fresh interpreter (libgomp is not fork-safe once a parallel region ran, which this test process may have
    done): import like the zygote, fork, confine, train with several threads. The libraries' own file writers (some
    in C++, beneath the audit hook) and readers of a label file fail."""
    uid = str(test_user.uid) if test_user else "none"
    (open_dir / "labels.csv").write_text("id,target\n1,0\n2,1\n")
    (open_dir / "labels.csv").chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-c", ML_PROBE, uid, str(open_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert "error" not in out, out["error"]
    assert "seccomp" in out["layers"] and "audit hook" in out["layers"]
    assert out["matmul ok"] and out["lightgbm accuracy"] > 0.95 and out["hgb accuracy"] > 0.95
    assert out["tasks"] >= 2  # threads ran
    assert sorted(p.name for p in open_dir.iterdir()) == ["labels.csv"]
    refused = out["library attempts"]
    assert refused and all(result != "ok" for result in refused.values()), refused
