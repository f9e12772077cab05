"""The wall: what a process that is about to run untrusted model code does to itself first.

`confine(Confinement(...))` runs in a single-threaded, freshly forked child, after it has read everything it needs
(its data, the labels of its training rows, its pipes) and before the body's source is loaded. Every step only ever
takes rights away; none can be undone from inside. Layers, in the order applied:

1. **uid switch** (`uid`/`gid`, only as root): no supplementary groups, real = effective = saved ids. The body can no
   longer read the runner's 0600 files, signal or ptrace the runner, nor write anywhere its owner could. Capabilities
   are dropped in every case (root that stays root keeps none).
2. **Process hygiene**: SIGKILL when the parent dies (PR_SET_PDEATHSIG), no core dumps, not dumpable (another body of
   the same uid cannot read this one's memory), the first victim of the OOM killer (oom_score_adj 1000).
3. **User + network namespace** (best effort; Docker's default profile and some kernels refuse it): no network
   interface at all, abstract unix sockets of the host out of reach. Capabilities inside the new namespace are
   dropped too.
4. **PR_SET_NO_NEW_PRIVS**: no setuid binary or file capability can ever raise privileges again.
5. **rlimits**: RLIMIT_AS (`memory_bytes`), RLIMIT_CPU (`cpu_seconds`), RLIMIT_FSIZE (`file_bytes`, 0 by default:
   a regular file cannot grow; pipes are not files), RLIMIT_NPROC (tasks of the uid now + `extra_tasks`: threads keep
   working, a fork bomb does not), RLIMIT_CORE/MEMLOCK/MSGQUEUE/RTPRIO/NICE 0, RLIMIT_NOFILE at most 4096. Hard limits
   equal soft ones, so none can be raised.
6. **Landlock** (best effort, ABI >= 1; this project's kernels have 7): read-only on `readable`, nothing writable,
   nothing else openable (other processes' /proc entries, /etc, the data folder, the label files...). ABI >= 4 also
   refuses every TCP bind/connect; ABI >= 6 scopes signals and abstract unix sockets to the body's own domain.
7. **seccomp** (libseccomp through pyseccomp; required unless `require_seccomp=False`): default allow, and EPERM for
   the calls in SECCOMP_REFUSED and SECCOMP_CONDITIONAL: sockets of every family and every socket call that could
   reach a peer (connect, bind, listen, accept, sendmsg/recvmsg, sendto with an address), execve, fork/vfork and clone
   without CLONE_THREAD or with a namespace flag, signals to any pid but its own, ptrace and cross-process memory,
   scheduling/rlimits of other processes, namespaces/mounts, opening files for writing/creating/truncating/appending,
   every path mutation, SysV IPC and POSIX message queues, memfd, io_uring, bpf, perf, userfaultfd, keys, the setuid
   family, modules/kexec/reboot, mknod, fcntl F_SETOWN/F_SETSIG, ioctl TIOCSTI... clone3 and openat2 fail with ENOSYS
   so that glibc falls back to the calls the filter can inspect (as Docker does). 32-bit and x32 system calls kill
   the process (libseccomp's bad-architecture action).
8. **Python audit hook** (second layer, for when a body reaches a Python API): refuses subprocess/os.system/exec/
   fork/spawn, every `socket.*` and network client event, `open` for writing or of a path outside `readable` (the
   only read restriction beside the uid where Landlock is missing, e.g. Fargate's 5.10 kernel), file mutations
   (remove, rename, mkdir, chmod, chown, link, symlink, truncate, utime, xattrs, shutil, tempfile), signals to other
   pids, rlimit changes, `ctypes.dlopen` of a library that is not already loaded, `ctypes.dlsym` through the
   interpreter's own handle or of process/exec/syscall entry points, and adding another audit hook. Hooks cannot be
   removed from Python code.

What still holds without a layer: without the uid switch (a user's own CLI run) seccomp and Landlock still stop
signals, ptrace, sockets and writes, and Landlock hides the runner's files and /proc entries; without the namespaces
seccomp still refuses every socket; without Landlock (an old kernel) seccomp still refuses every write, and reads are
limited to what the uid may read; without the audit hook seccomp and Landlock refuse the same things at the kernel.
Without seccomp there is no wall against processes and sockets: an LLM body must not run (callers check `support()`;
confine raises ConfinementError when it is required).

What a confined body still CAN do: read the files under `readable` (and nothing else where Landlock holds), use CPU
and memory up to the limits, start threads (up to the task limit), write to file descriptors it inherited (its
pipes), read its own memory (the data it was given), set its own scheduling priority/affinity, and signal itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import multiprocessing.context
import multiprocessing.dummy
import os
import platform
import resource
import signal
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SANDBOX_USER_ENV = "KAGENT_SANDBOX_USER"  # = chalicelib.config.SANDBOX_USER (the runner never imports app code here)
DEDICATED_UIDS = range(64999, 64000, -1)  # where sandbox_uid() looks for an unused uid when no user is named

# prctl / clone / capability constants (Linux uapi, identical on x86_64 and aarch64).
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_SECCOMP = 21
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CLONE_THREAD = 0x00010000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
NAMESPACE_FLAGS = (
    CLONE_NEWNS,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
    CLONE_NEWTIME,
)
F_SETOWN, F_SETSIG, F_SETLEASE, F_NOTIFY, F_SETOWN_EX = 8, 10, 1024, 1026, 15
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
SECCOMP_GET_ACTION_AVAIL = 2
REFUSAL_ERRNO = errno.EPERM  # what a refused call returns (tests set a distinctive one to tell the filter apart)
SECCOMP_RET_ERRNO = 0x00050000
MAX_OPEN_FILES = 4096
SUPPORTED_MACHINES = ("x86_64", "aarch64")  # where clone's flags are argument 0 and the filter was tested


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


WRITE_OPEN_FLAGS = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND)

# What seccomp refuses. Grouped for the docs and the tests; every name here gets an EPERM rule (unconditional unless
# SECCOMP_CONDITIONAL says otherwise). Names a kernel/arch lacks (fork/open on aarch64) are skipped.
SECCOMP_REFUSED: dict[str, tuple[str, ...]] = {
    "network": _names("socket socketpair connect bind listen accept accept4 sendmsg sendmmsg recvmsg recvmmsg"),
    "exec": ("execve", "execveat"),
    "processes": ("fork", "vfork", "setsid", "setpgid"),
    "signals": ("pidfd_send_signal", "pidfd_open", "pidfd_getfd"),
    "other processes": _names(
        "ptrace process_vm_readv process_vm_writev process_madvise kcmp migrate_pages setpriority ioprio_set"
    ),
    "namespaces and mounts": _names(
        "unshare setns mount umount2 pivot_root chroot open_tree move_mount fsopen fsconfig fsmount fspick "
        "mount_setattr"
    ),
    "file writes": _names(
        "creat truncate ftruncate fallocate mkdir mkdirat rmdir rename renameat renameat2 unlink unlinkat "
        "link linkat symlink symlinkat chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat utime "
        "utimes utimensat futimesat setxattr lsetxattr fsetxattr setxattrat removexattr lremovexattr "
        "fremovexattr removexattrat mknod mknodat name_to_handle_at open_by_handle_at open_tree_attr"
    ),
    "shared memory and IPC": _names(
        "shmget shmat shmctl msgget msgsnd msgrcv msgctl semget semop semtimedop semctl mq_open mq_unlink "
        "mq_timedsend mq_timedreceive mq_notify mq_getsetattr memfd_create memfd_secret"
    ),
    "kernel interfaces": _names(
        "io_uring_setup io_uring_enter io_uring_register bpf perf_event_open userfaultfd fanotify_init keyctl "
        "add_key request_key personality syslog acct quotactl quotactl_fd lookup_dcookie vhangup swapon "
        "swapoff ioperm iopl"
    ),
    "credentials": _names("setuid setgid setreuid setregid setresuid setresgid setgroups setfsuid setfsgid capset"),
    "system": _names(
        "reboot kexec_load kexec_file_load init_module finit_module delete_module settimeofday clock_settime "
        "clock_adjtime adjtimex sethostname setdomainname"
    ),
}
# Calls refused only for some arguments: (argument index, comparison, value[, mask]) — human-readable for the docs.
SECCOMP_CONDITIONAL: dict[str, str] = {
    "clone": "flags without CLONE_THREAD (a new process) or with any CLONE_NEW* flag",
    "kill": "any pid but its own",
    "tkill": "any tid but its own pid",
    "tgkill": "any thread group but its own",
    "rt_sigqueueinfo": "any pid but its own",
    "rt_tgsigqueueinfo": "any thread group but its own",
    "open": "O_WRONLY, O_RDWR, O_CREAT, O_TRUNC or O_APPEND",
    "openat": "O_WRONLY, O_RDWR, O_CREAT, O_TRUNC or O_APPEND",
    "prlimit64": "any pid but 0 (itself)",
    "move_pages": "any pid but 0 (itself)",
    "sendto": "a destination address (an inherited unconnected socket must not reach anyone)",
    "sched_setaffinity": "any pid but 0 (itself)",
    "sched_setscheduler": "any pid but 0 (itself)",
    "sched_setparam": "any pid but 0 (itself)",
    "sched_setattr": "any pid but 0 (itself)",
    "fcntl": "F_SETOWN, F_SETOWN_EX, F_SETSIG, F_SETLEASE, F_NOTIFY",
    "ioctl": "TIOCSTI, TIOCLINUX (typing into a terminal)",
}
# Calls newer than libseccomp 2.5.4 (Debian bookworm): their numbers are the same on every architecture (>= 424).
NEW_SYSCALLS = {"fchmodat2": 452, "setxattrat": 463, "removexattrat": 466, "open_tree_attr": 467}
SECCOMP_ENOSYS = ("clone3", "openat2")  # glibc falls back to clone/openat, which the filter can inspect

# The Python audit hook's refusals.
AUDIT_REFUSED = frozenset(
    _names(
        "os.system os.fork os.forkpty pty.spawn subprocess.Popen os.startfile os.remove os.rename os.rmdir "
        "os.mkdir os.chmod os.lchmod os.chown os.chflags os.lchflags os.link os.symlink "
        "os.truncate os.utime os.setxattr os.removexattr tempfile.mkstemp tempfile.mkdtemp resource.setrlimit "
        "resource.prlimit sqlite3.connect webbrowser.open ctypes.dlsym/handle"
    )
)
AUDIT_REFUSED_PREFIXES = _names(
    "os.exec os.spawn os.posix_spawn socket. http.client. urllib. ftplib. smtplib. poplib. imaplib. "
    "nntplib. telnetlib. shutil. syslog."
)
# Symbols no model code needs to reach through ctypes: processes, exec, raw system calls, loading, the interpreter.
DANGEROUS_SYMBOLS = frozenset(
    _names(
        "system popen fork vfork clone clone3 syscall execl execle execlp execv execve execvp execvpe fexecve "
        "posix_spawn posix_spawnp dlopen dlmopen dlsym dlvsym mprotect ptrace kill socket connect unshare "
        "prctl open openat fopen creat"
    )
)

DANGEROUS_SYMBOL_PREFIXES = ("_", "exec", "posix_spawn", "dl")  # internals (_Fork, __clone...), exec*, loaders


class ConfinementError(RuntimeError):
    """A layer the caller required could not be applied: the body must not run."""


class RefusedByConfinement(PermissionError):
    """Raised by the audit hook: the confined process may not do this."""


@dataclass(frozen=True)
class Confinement:
    uid: int | None = None  # switch to this uid/gid/no groups (only possible as root); None = stay
    gid: int | None = None
    memory_bytes: int = 4 * 2**30  # RLIMIT_AS
    cpu_seconds: int | None = None  # RLIMIT_CPU
    file_bytes: int = 0  # RLIMIT_FSIZE
    extra_tasks: int = 64  # RLIMIT_NPROC headroom for threads (numpy/LightGBM/OpenMP keep working)
    # Landlock read-only paths (python prefix(es), site-packages, runner code, /usr/lib...): see default_readable()
    readable: tuple[str, ...] = ()
    require_seccomp: bool = True  # False only for our own templates on a machine without the filter
    # Additions (see "Interface changes" in the design note); the defaults are the strict behaviour.
    landlock: bool = True  # False: skip Landlock (a test isolating another layer)
    userns: bool = True  # False: skip the user + network namespace
    audit_hook: bool = True  # False: skip the Python audit hook (a test isolating seccomp)


@dataclass(frozen=True)
class Support:  # what this machine offers, each with a one-line reason when not
    seccomp: bool
    seccomp_reason: str
    landlock_abi: int
    landlock_reason: str
    userns: bool
    can_switch_uid: bool


# --- small system helpers -------------------------------------------------------------------------------------------


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: Any) -> int:
    result = int(_libc().syscall(ctypes.c_long(number), *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _prctl(option: int, arg: int = 0) -> int:
    result = int(_libc().prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl({option}): {os.strerror(code)}")
    return result


def _is_linux() -> bool:
    return sys.platform.startswith("linux")


def _task_count() -> int:
    return len(os.listdir("/proc/self/task"))


def load_pyseccomp() -> Any:
    """The pyseccomp module (imports libseccomp through ctypes). Tests replace this to simulate a missing library.

    Its import runs `ldconfig -p` (ctypes.util.find_library): call `prepare()` in a zygote so children inherit it."""
    import pyseccomp  # noqa: PLC0415 - lazy: the runner must start where libseccomp is missing

    return pyseccomp


def prepare() -> None:
    """Load what confine() needs (pyseccomp, libc) in a parent that forks many children; errors are left for
    support()/confine() to report."""
    with contextlib.suppress(Exception):
        load_pyseccomp()
    if _is_linux():
        _libc()


# --- support --------------------------------------------------------------------------------------------------------


@functools.cache
def support() -> Support:
    """What this machine offers (cached). Safe in the parent: the only child it forks tries unshare and exits."""
    seccomp, seccomp_reason = _seccomp_support()
    abi, landlock_reason = _landlock_support()
    userns = _userns_support() if _is_linux() else False
    return Support(seccomp, seccomp_reason, abi, landlock_reason, userns, _can_switch_uid())


def _seccomp_support() -> tuple[bool, str]:
    if not _is_linux():
        return False, f"seccomp is Linux-only (this is {sys.platform})"
    if platform.machine() not in SUPPORTED_MACHINES:
        return False, f"the seccomp filter is built for {', '.join(SUPPORTED_MACHINES)}, not {platform.machine()}"
    try:
        load_pyseccomp()
    except (ImportError, OSError, RuntimeError) as exc:
        return False, f"pyseccomp/libseccomp unavailable: {exc}"
    action = ctypes.c_uint32(SECCOMP_RET_ERRNO)
    try:
        _syscall(_seccomp_syscall_number(), SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(action))
    except OSError as exc:
        return False, f"the kernel refuses seccomp filters: {exc.strerror}"
    return True, "available"


def _seccomp_syscall_number() -> int:
    return {"x86_64": 317, "aarch64": 277}[platform.machine()]


def _landlock_support() -> tuple[int, str]:
    if not _is_linux():
        return 0, f"Landlock is Linux-only (this is {sys.platform})"
    try:
        abi = _syscall(LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), LANDLOCK_CREATE_RULESET_VERSION)
    except OSError as exc:
        reason = {
            errno.ENOSYS: "the kernel has no Landlock (older than 5.13 or built without it)",
            errno.EOPNOTSUPP: "Landlock is disabled at boot (lsm= does not list it)",
        }.get(exc.errno or 0, f"landlock_create_ruleset failed: {exc.strerror}")
        return 0, reason
    return abi, f"ABI {abi}"


def _userns_support() -> bool:
    """Whether a child of this process may create a user + network namespace (a real attempt, in a forked child)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os._exit(0 if _libc().unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _can_switch_uid() -> bool:
    if not _is_linux() or os.geteuid() != 0:
        return False
    caps = _status_field("CapEff")
    return caps is not None and bool(int(caps, 16) & (1 << 6)) and bool(int(caps, 16) & (1 << 7))


def _status_field(name: str, pid: str = "self") -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


# --- sandbox uid ----------------------------------------------------------------------------------------------------


def sandbox_uid(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(uid, gid) to run bodies as: KAGENT_SANDBOX_USER's when root, else (root) a dedicated unused uid; None when
    not root (nobody to switch to). Raises ConfinementError for an unknown user name."""
    if environ is None:
        return _sandbox_uid_from_environment()
    return _resolve_sandbox_uid(environ.get(SANDBOX_USER_ENV, "").strip(), os.geteuid())


@functools.cache
def _sandbox_uid_from_environment() -> tuple[int, int] | None:
    return _resolve_sandbox_uid(os.environ.get(SANDBOX_USER_ENV, "").strip(), os.geteuid())


def _resolve_sandbox_uid(name: str, euid: int) -> tuple[int, int] | None:
    import pwd  # noqa: PLC0415 - lazy: POSIX only

    if euid != 0:
        return None
    if name:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ConfinementError(f"{SANDBOX_USER_ENV} names an unknown user: {name!r}") from None
        if entry.pw_uid == 0:
            raise ConfinementError(f"{SANDBOX_USER_ENV} names root ({name!r}): bodies never run as root")
        return entry.pw_uid, entry.pw_gid
    return _unused_uid()


def _unused_uid() -> tuple[int, int]:
    import grp  # noqa: PLC0415 - lazy: POSIX only
    import pwd  # noqa: PLC0415

    used_uids = {p.pw_uid for p in pwd.getpwall()} | _process_uids()
    used_gids = {g.gr_gid for g in grp.getgrall()}
    for uid in DEDICATED_UIDS:
        if uid not in used_uids and uid not in used_gids:
            return uid, uid
    raise ConfinementError("no unused uid left for the sandbox: set KAGENT_SANDBOX_USER")


def _process_uids() -> set[int]:
    uids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            field = _status_field("Uid", entry)
            if field:
                uids.add(int(field.split()[0]))
    return uids


# --- confine --------------------------------------------------------------------------------------------------------


def confine(c: Confinement) -> list[str]:
    """Apply the wall to this process (single-threaded, freshly forked). Returns the layers, in order, for the log:
    each entry is a layer applied, or "<layer> skipped: <reason>" for a best-effort layer this machine lacks.
    Raises ConfinementError when a required layer (uid switch, limits, seccomp when required) cannot be applied."""
    if not _is_linux():
        raise ConfinementError(f"confinement needs Linux (this is {sys.platform})")
    if _task_count() != 1:
        raise ConfinementError("confine() must run in a single-threaded process (fork first, start threads after)")
    try:
        return _confine(c)
    except OSError as exc:  # a step that cannot fail on a sane Linux did: never run the body half-walled
        raise ConfinementError(f"confinement failed: {exc}") from None


def _confine(c: Confinement) -> list[str]:
    seccomp_filter = _build_seccomp_or_none(c)  # before anything restricts reading the library
    single_process_multiprocessing()
    loaded_libraries = _loaded_libraries() if c.audit_hook else frozenset()
    readable_roots = tuple(os.path.realpath(p) for p in c.readable)  # /proc/self resolves to this process's entry
    layers: list[str] = []
    parent = os.getppid()
    with contextlib.suppress(OSError):  # while the file is still ours (a uid switch makes it root's)
        Path("/proc/self/oom_score_adj").write_text("1000")
    layers += _switch_user(c)
    layers += _interpreter_warning()
    if os.geteuid() == 0:
        layers.append("warning: still root (no uid switch asked for): RLIMIT_NPROC does not bind root")
    userns = _userns(c)
    layers += userns
    # RLIMIT_NPROC counts the tasks of the real uid; in a user namespace of its own only this process's tasks
    # count (each namespace level has its own count), elsewhere every task of the uid on the machine does.
    tasks = 1 if userns == [USERNS_LAYER] else _tasks_of_uid(os.getuid())
    _drop_capabilities()
    layers.append(_hygiene(parent))
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    layers.append("no_new_privs")
    layers.append(_rlimits(c, tasks))
    layers.append(_landlock_layer(c))
    layers.append(_seccomp_layer(seccomp_filter, c))
    if c.audit_hook:
        sys.addaudithook(_make_audit_hook(os.getpid(), loaded_libraries, readable_roots))
        layers.append("audit hook")
    return layers


def single_process_multiprocessing() -> None:
    """multiprocessing's locks become threading's: a confined process can start no other process, so a lock shared
    across processes (a POSIX semaphore: a file in /dev/shm, which the wall refuses) has nothing to share with.
    joblib's threading backend needs this (every ThreadPool makes a multiprocessing lock): scikit-learn's
    HistGradientBoosting bins its features through it."""
    base: Any = multiprocessing.context.BaseContext
    base.Lock = lambda self: threading.Lock()
    base.RLock = lambda self: threading.RLock()
    base.Semaphore = lambda self, value=1: threading.Semaphore(value)
    base.BoundedSemaphore = lambda self, value=1: threading.BoundedSemaphore(value)
    base.Condition = lambda self, lock=None: threading.Condition(lock)
    base.Event = lambda self: threading.Event()
    base.Barrier = lambda self, parties, action=None, timeout=None: threading.Barrier(parties, action, timeout)


def _switch_user(c: Confinement) -> list[str]:
    if c.uid is None:
        return []
    gid = c.uid if c.gid is None else c.gid
    if os.geteuid() != 0:
        if (c.uid, gid) == (os.geteuid(), os.getegid()):
            return []
        raise ConfinementError(f"cannot switch to uid {c.uid}: only root can (this process is uid {os.geteuid()})")
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(c.uid, c.uid, c.uid)
    except OSError as exc:
        raise ConfinementError(f"cannot switch to uid {c.uid}/gid {gid}: {exc.strerror}") from None
    if os.getresuid() != (c.uid,) * 3 or os.getresgid() != (gid,) * 3 or os.getgroups():
        raise ConfinementError(f"the switch to uid {c.uid}/gid {gid} did not take")
    return [f"uid {c.uid}:{gid}"]


def _interpreter_warning() -> list[str]:
    """After a uid switch the interpreter's own files may be out of reach (a Python installed under a 0700 home):
    then every import not done before confine() fails. Said in the log rather than discovered as a body's error."""
    stdlib = sysconfig.get_paths()["stdlib"]
    if os.access(stdlib, os.R_OK | os.X_OK):
        return []
    return [f"warning: uid {os.getuid()} cannot read {stdlib}: only modules imported before confine() will load"]


def _userns(c: Confinement) -> list[str]:
    if not c.userns:
        return []
    if _libc().unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return [f"{USERNS_LAYER} skipped: unshare refused ({os.strerror(ctypes.get_errno())})"]
    return [USERNS_LAYER]


USERNS_LAYER = "user+network namespace"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> None:
    """No capability left (root that stays root, or the full set a new user namespace grants)."""
    with contextlib.suppress(OSError):
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    if _libc().capset(ctypes.byref(header), (_CapData * 2)()) != 0:
        raise ConfinementError(f"cannot drop capabilities: {os.strerror(ctypes.get_errno())}")


def _hygiene(parent: int) -> str:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after every credential change (which clears it)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    _prctl(PR_SET_DUMPABLE, 0)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return "pdeathsig, no core, not dumpable"


def _rlimits(c: Confinement, tasks_now: int) -> str:
    tasks = tasks_now + c.extra_tasks
    limits = [
        (resource.RLIMIT_AS, c.memory_bytes, "AS"),
        (resource.RLIMIT_FSIZE, c.file_bytes, "FSIZE"),
        (resource.RLIMIT_NPROC, tasks, "NPROC"),
        (resource.RLIMIT_MEMLOCK, 0, "MEMLOCK"),
        (resource.RLIMIT_MSGQUEUE, 0, "MSGQUEUE"),
        (resource.RLIMIT_RTPRIO, 0, "RTPRIO"),  # no real-time scheduling that would starve the machine
        (resource.RLIMIT_NICE, 0, "NICE"),  # no raising its own priority
        (resource.RLIMIT_NOFILE, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], MAX_OPEN_FILES), "NOFILE"),
    ]
    if c.cpu_seconds is not None:
        limits.append((resource.RLIMIT_CPU, c.cpu_seconds, "CPU"))
    applied = []
    for which, wanted, name in limits:
        value = _at_most_hard(which, wanted)
        try:
            resource.setrlimit(which, (value, value))
        except (OSError, ValueError) as exc:
            raise ConfinementError(f"cannot set RLIMIT_{name} to {value}: {exc}") from None
        applied.append(f"{name}={value}")
    return "rlimits " + " ".join(applied)


def _at_most_hard(which: int, value: int) -> int:
    hard = resource.getrlimit(which)[1]
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def _tasks_of_uid(uid: int) -> int:
    """Threads of every process whose real uid is `uid` (what RLIMIT_NPROC counts)."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _status_fields(entry, ("Uid", "Threads"))
            if len(fields) == 2 and int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
    return max(total, 1)


def _status_fields(pid: str, names: tuple[str, ...]) -> dict[str, str]:
    """Some fields of /proc/<pid>/status, read once ({} for a process that is gone)."""
    found: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in names:
                    found[name] = value.strip()
                    if len(found) == len(names):
                        break
    except OSError:
        return {}
    return found


# --- Landlock: its three system calls through ctypes. PyPI offers no maintained binding (`landlock` has only
# 1.0.0.devN pre-releases, `py-landlock` is at 0.1.1); the kernel ABI is small and stable: a ruleset of handled
# rights, one path_beneath rule per readable path, then restrict_self. -----------------------------------------------

LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
# Every filesystem right the kernel knows, by ABI: 1 = bits 0..12, 2 adds REFER, 3 TRUNCATE, 5 IOCTL_DEV.
LANDLOCK_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
LANDLOCK_NET_ALL = 0b11  # ABI >= 4: BIND_TCP, CONNECT_TCP
LANDLOCK_SCOPE_ALL = 0b11  # ABI >= 6: abstract unix sockets, signals


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _landlock_layer(c: Confinement) -> str:
    if not c.landlock:
        return "landlock skipped: not asked for"
    abi, reason = _landlock_support()
    if abi < 1:
        return f"landlock skipped: {reason}"
    try:
        opened = apply_landlock(abi, c.readable)
    except OSError as exc:
        raise ConfinementError(f"Landlock failed: {exc.strerror}") from None
    return f"landlock ABI {abi} ({opened} readable paths)"


def apply_landlock(abi: int, readable: Iterable[str]) -> int:
    """Restrict this thread (and what it starts) to reading `readable`; returns how many of them exist."""
    attr = _RulesetAttr(
        LANDLOCK_FS_BY_ABI[min(abi, 5)],
        LANDLOCK_NET_ALL if abi >= 4 else 0,
        LANDLOCK_SCOPE_ALL if abi >= 6 else 0,
    )
    ruleset = _syscall(LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0)
    try:
        count = sum(_landlock_allow_read(ruleset, path) for path in readable)
        _syscall(LANDLOCK_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
    return count


def _landlock_allow_read(ruleset: int, path: str) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False  # a missing path grants nothing
    try:
        is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
        access = ACCESS_FS_READ_FILE | (ACCESS_FS_READ_DIR if is_dir else 0)
        rule = _PathBeneathAttr(access, fd)
        _syscall(LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0)
    finally:
        os.close(fd)
    return True


def default_readable(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """What a body needs to read after confinement: the interpreter and its packages (lazy imports), shared
    libraries, CPU/memory facts OpenMP and BLAS read, and its own /proc entry. Never a working or data folder."""
    paths = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        str(Path(sys.executable).resolve().parent),
        str(Path(__file__).resolve().parent),  # the runner package (lazy imports of its modules)
    }
    paths.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    paths.update(SYSTEM_READABLE)
    paths.update(extra)
    return tuple(sorted(p for p in paths if p and os.path.exists(p)))


SYSTEM_READABLE = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/local/lib",
    "/usr/share/zoneinfo",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/null",
    "/dev/urandom",
)


# --- seccomp --------------------------------------------------------------------------------------------------------


def _build_seccomp_or_none(c: Confinement) -> Any:
    """The filter, built before any layer restricts reading libseccomp; None when unavailable and not required."""
    try:
        return build_seccomp_filter(load_pyseccomp(), os.getpid())
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        if c.require_seccomp:
            raise ConfinementError(f"seccomp is required but unavailable: {exc}") from None
        return _Unavailable(str(exc))


@dataclass(frozen=True)
class _Unavailable:
    reason: str


def build_seccomp_filter(sc: Any, pid: int) -> Any:
    """Default allow; REFUSAL_ERRNO for SECCOMP_REFUSED and SECCOMP_CONDITIONAL; ENOSYS for SECCOMP_ENOSYS."""
    f = sc.SyscallFilter(sc.ALLOW)
    deny = sc.ERRNO(REFUSAL_ERRNO)
    for names in SECCOMP_REFUSED.values():
        for name in names:
            _add(sc, f, deny, name)
    for name in SECCOMP_ENOSYS:
        _add(sc, f, sc.ERRNO(errno.ENOSYS), name)
    for name, args in _conditional_rules(sc, pid):
        _add(sc, f, deny, name, *args)
    return f


def _conditional_rules(sc: Any, pid: int) -> list[tuple[str, tuple[Any, ...]]]:
    masked, low32 = sc.MASKED_EQ, 0xFFFFFFFF
    rules: list[tuple[str, tuple[Any, ...]]] = [("clone", (sc.Arg(0, masked, CLONE_THREAD, 0),))]
    rules += [("clone", (sc.Arg(0, masked, flag, flag),)) for flag in NAMESPACE_FLAGS]
    rules += [(name, (sc.Arg(0, sc.NE, pid),)) for name in ("kill", "tkill", "tgkill", "rt_sigqueueinfo")]
    rules += [("rt_tgsigqueueinfo", (sc.Arg(0, sc.NE, pid),))]
    rules += [("open", (sc.Arg(1, masked, flag, flag),)) for flag in WRITE_OPEN_FLAGS]
    rules += [("openat", (sc.Arg(2, masked, flag, flag),)) for flag in WRITE_OPEN_FLAGS]
    rules += [("sendto", (sc.Arg(4, sc.NE, 0),))]
    own_pid_only = (
        "prlimit64",
        "move_pages",
        "sched_setaffinity",
        "sched_setscheduler",
        "sched_setparam",
        "sched_setattr",
    )
    rules += [(name, (sc.Arg(0, sc.NE, 0),)) for name in own_pid_only]
    rules += [
        ("fcntl", (sc.Arg(1, masked, low32, cmd),)) for cmd in (F_SETOWN, F_SETOWN_EX, F_SETSIG, F_SETLEASE, F_NOTIFY)
    ]
    rules += [("ioctl", (sc.Arg(1, masked, low32, cmd),)) for cmd in (TIOCSTI, TIOCLINUX)]
    return rules


def syscall_number(sc: Any, name: str) -> int | None:
    """The native number of a system call, also for calls newer than the system's libseccomp; None if unknown."""
    number = int(sc.resolve_syscall(sc.Arch.NATIVE, name))
    if number == -1:  # __NR_SCMP_ERROR: libseccomp 2.5 does not know the name
        return NEW_SYSCALLS.get(name)
    return number


def _add(sc: Any, f: Any, action: int, name: str, *args: Any) -> None:
    number = syscall_number(sc, name)
    if number is not None:  # negative pseudo numbers (a call this architecture lacks) are ignored by libseccomp
        f.add_rule(action, number, *args)


def _seccomp_layer(seccomp_filter: Any, c: Confinement) -> str:
    if isinstance(seccomp_filter, _Unavailable):
        return f"seccomp skipped: {seccomp_filter.reason}"
    try:
        seccomp_filter.load()
    except OSError as exc:
        if c.require_seccomp:
            raise ConfinementError(f"cannot load the seccomp filter: {exc.strerror}") from None
        return f"seccomp skipped: cannot load the filter ({exc.strerror})"
    return "seccomp"


# --- the audit hook -------------------------------------------------------------------------------------------------


def _loaded_libraries() -> frozenset[str]:
    """Paths and file names of the shared objects mapped now: the only ones ctypes may still open."""
    paths: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip()
            if path.startswith("/") and ".so" in path:
                paths.add(path)
    names = {os.path.basename(path) for path in paths} | {os.path.realpath(path) for path in paths}
    return frozenset(names | paths)


def _make_audit_hook(
    pid: int, loaded: frozenset[str], readable: tuple[str, ...]
) -> Callable[[str, tuple[Any, ...]], None]:
    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "sys.addaudithook":
            raise RuntimeError("confined: no further audit hooks")
        reason = audit_refusal(event, args, pid, loaded, readable)
        if reason:
            raise RefusedByConfinement(errno.EPERM, f"confined: {reason}")

    return hook


def audit_refusal(
    event: str, args: tuple[Any, ...], pid: int, loaded: frozenset[str], readable: tuple[str, ...] | None = None
) -> str | None:
    """Why the audit hook refuses this event (None: allowed). Pure, so that it can be tested without a hook.
    `readable`: the real paths Python code may open for reading (None: any), Landlock's list again for machines
    without Landlock (there it is the only layer on reads beside the uid; C code opening files is not seen)."""
    if event in AUDIT_REFUSED or event.startswith(AUDIT_REFUSED_PREFIXES):
        return event
    if event == "open":
        return _open_refusal(args, readable)
    if event in ("os.kill", "os.killpg"):
        return None if event == "os.kill" and args and args[0] == pid else f"{event} {args[0] if args else ''}"
    if event == "ctypes.dlopen":
        name = args[0] if args else None
        if name is None or (str(name) not in loaded and os.path.basename(str(name)) not in loaded):
            return f"ctypes.dlopen of {name!r} (not loaded before confinement)"
    if event == "ctypes.dlsym" and len(args) >= 2:
        return _dlsym_refusal(args[0], args[1])
    return None


def _open_refusal(args: tuple[Any, ...], readable: tuple[str, ...] | None) -> str | None:
    path, mode, flags = (*args, None, None, None)[:3]
    if isinstance(path, int):
        return None  # wrapping a descriptor the process already holds
    writes = isinstance(mode, str) and any(ch in mode for ch in "wax+")
    if isinstance(flags, int) and any(flags & flag for flag in WRITE_OPEN_FLAGS):
        writes = True
    if writes:
        return f"open {path!r} for writing"
    if readable is not None and isinstance(path, (str, bytes, os.PathLike)) and not _under(path, readable):
        return f"open {path!r}: not among the readable paths"
    return None


def _under(path: str | bytes | os.PathLike[Any], roots: tuple[str, ...]) -> bool:
    real = os.path.realpath(os.fsdecode(path))
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def _dlsym_refusal(library: Any, name: Any) -> str | None:
    if getattr(library, "_name", "") is None or library is getattr(ctypes, "pythonapi", None):
        return f"ctypes.dlsym {name!r} through the interpreter's own handle"
    if isinstance(name, str) and (name in DANGEROUS_SYMBOLS or name.startswith(DANGEROUS_SYMBOL_PREFIXES)):
        return f"ctypes.dlsym {name!r}"
    return None
