"""The memory the runner may use, and how much it uses: read from the kernel, never guessed.

The ceiling is the smallest of: the cgroup limit of this process (v2 `memory.max`, else v1 `memory.limit_in_bytes`:
what a Fargate task or a `systemd-run -p MemoryMax=` scope enforces), the address-space rlimit (`prlimit --as`), and an
explicit `--memory-limit` / `KAGENT_MEMORY_LIMIT_MB`. With none of them, the machine's RAM. Usage is the cgroup's
current charge when there is a limited cgroup (what the OOM killer counts), else this process tree's resident memory.

`MemoryWatch` samples usage in a thread so the peak is known even when the kernel keeps no peak counter, and the
pipeline can ask, between candidates, whether it is near the ceiling.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chalicelib.config import MEMORY_LIMIT_MB

ENV_LIMIT = MEMORY_LIMIT_MB
CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 2**60  # cgroup v1 writes a huge number for "no limit"
MB = 2**20


@dataclass(frozen=True)
class Ceiling:
    mb: float
    source: str  # cgroup2 | cgroup1 | rlimit | option | env | machine
    group: Path | None = None  # the limited cgroup directory, when the ceiling comes from one

    def to_dict(self) -> dict[str, object]:
        return {"memory_ceiling_mb": round(self.mb, 1), "memory_ceiling_source": self.source}


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _own_groups(proc_cgroup: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    """`/proc/self/cgroup` as {controller: path}; the v2 unified entry is under ""."""
    groups: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return groups
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                groups[controller] = parts[2]
    return groups


def cgroup_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Ceiling | None:
    """The tightest memory limit on this process's cgroup or its ancestors (a limit on a parent binds too)."""
    groups = _own_groups(proc_cgroup)
    found: list[Ceiling] = []
    candidates = []
    if "" in groups:
        v2_root = root if (root / "cgroup.controllers").exists() else root / "unified"
        candidates.append(("cgroup2", v2_root, groups[""], "memory.max"))
    if "memory" in groups:
        candidates.append(("cgroup1", root / "memory", groups["memory"], "memory.limit_in_bytes"))
    for source, base, relative, name in candidates:
        directory = base / relative.lstrip("/")
        while True:
            value = _read_int(directory / name)
            if value is not None and value < _UNLIMITED:
                found.append(Ceiling(value / MB, source, directory))
            if directory == base or base not in directory.parents:
                break
            directory = directory.parent
    return min(found, key=lambda c: c.mb) if found else None


def machine_mb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MB
    except (ValueError, OSError):
        return 4096.0


def memory_ceiling(option_mb: float | None = None, env: Mapping[str, str] | None = None) -> Ceiling:
    """The memory this run must stay under (see the module docstring)."""
    env = os.environ if env is None else env
    found: list[Ceiling] = []
    group = cgroup_limit()
    if group is not None:
        found.append(group)
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
        found.append(Ceiling(soft / MB, "rlimit"))
    if option_mb:
        found.append(Ceiling(float(option_mb), "option"))
    raw = env.get(ENV_LIMIT, "").strip()
    if raw:
        with contextlib.suppress(ValueError):  # a malformed hint must not sink the run; the kernel's limits hold
            found.append(Ceiling(float(raw), "env"))
    if not found:
        return Ceiling(machine_mb(), "machine")
    return min(found, key=lambda c: c.mb)


def usage_mb(ceiling: Ceiling) -> float:
    """What counts against the ceiling now: the cgroup's working set (its charge less the inactive file cache, which
    the kernel reclaims before it kills: what `docker stats` shows), else the resident memory of this process tree."""
    if ceiling.group is not None:
        v2 = ceiling.source == "cgroup2"
        value = _read_int(ceiling.group / ("memory.current" if v2 else "memory.usage_in_bytes"))
        if value is not None:
            inactive = _stat(ceiling.group / "memory.stat", "inactive_file" if v2 else "total_inactive_file")
            return max(0, value - inactive) / MB
    return _tree_rss_mb(os.getpid())


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _tree_rss_mb(root: int) -> float:
    page = os.sysconf("SC_PAGE_SIZE")
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        todo.extend(children.get(pid, []))
    return total / MB


class MemoryWatch:
    """Samples usage every `period` seconds in a daemon thread; `peak_mb` is the largest sample (or the largest
    single process's max RSS, when larger)."""

    def __init__(self, ceiling: Ceiling, period: float = 0.25) -> None:
        self.ceiling = ceiling
        self.peak_mb = usage_mb(ceiling)
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)

    def start(self) -> MemoryWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.sample()

    def sample(self) -> float:
        now = usage_mb(self.ceiling)
        self.peak_mb = max(self.peak_mb, now)
        return now

    def share(self) -> float:
        """Current usage as a share of the ceiling."""
        return self.sample() / max(1.0, self.ceiling.mb)

    def stop(self) -> dict[str, object]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        peak = max(self.peak_mb, _rusage_peak_mb())
        return {
            **self.ceiling.to_dict(),
            "memory_peak_mb": round(peak, 1),
            "memory_peak_share": round(peak / max(1.0, self.ceiling.mb), 3),
        }


def _rusage_peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


_CURRENT: MemoryWatch | None = None


def start_watch(option_mb: float | None = None) -> MemoryWatch:
    """Start this run's watch (the pipeline does, once); `current_watch` hands it to the planners."""
    global _CURRENT  # noqa: PLW0603 - one watch per runner process, as there is one memory ceiling
    if _CURRENT is not None:
        _CURRENT.stop()
    _CURRENT = MemoryWatch(memory_ceiling(option_mb)).start()
    return _CURRENT


def current_watch() -> MemoryWatch:
    """This run's watch; outside a run (tests, tools) a fresh unstarted one on the ceiling found now."""
    return _CURRENT if _CURRENT is not None else MemoryWatch(memory_ceiling())
