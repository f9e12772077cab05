"""`make bench`: the runner against peer AutoML systems on the practice competitions, at the same time budget.

    .venv/bin/python scripts/bench.py [--budget 60 | --budgets 60,300,600] [--memory-limit MB]
                                      [--competitions titanic,card-fraud] [--peers flaml,autogluon]
                                      [--comps-dir DIR] [--rebuild] [--dummy]

For each competition: build it if missing (../shared/bench for the four practice ones, scripts/bench_extra_comps.py
for the generalisation ones), run `python -m runner COMP/public --out OUT --metric M --time-budget B` as a user would,
run each peer (scripts/bench_peer.py in its own venv) at the same budget, one after another so none steals the other's
cores, grade every submission with the bench grader (invalid = no score), and print one table. Wall time and peak
memory are measured from outside the process: wall clock of the whole CLI, and the peak over time of the summed
proportional set size (PSS) of its process tree, sampled every 0.1 s, or the largest single process's max RSS if higher.

`--budgets 60,300,600` is a sweep: one table row per competition and budget, each with the runner's own stopping reason
(result.json's `stop_reason`). `--memory-limit MB` runs every solver under a real memory limit, the first that works of:
`systemd-run --scope -p MemoryMax=`, a cgroup (v2, else v1) created for the run, `prlimit --as` (address space, a
cruder bound); the table then names the method and the peak the kernel counted for the limited group.

`--dummy` replaces every solver by the sample submission copied as is (mle-bench's dummy agent): a plumbing check of
build, grading and table that must come out valid and weak.
Writes bench-results/<run>/ and bench-results/latest.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = Path(os.environ.get("KAGENT_SHARED_BENCH", REPO.parent / "shared" / "bench"))
PRACTICE = ("titanic", "house-prices", "telco-churn", "penguins")
EXTRA = ("card-fraud", "forest-species", "store-demand", "sensor-faults", "diabetes")
# the engine's reach (docs/engine-reach.md): free text, 1,500 sparse columns, 303k rows; built by bench_extra_comps.py
REACH = ("food-reviews", "tweet-device", "compound-activity", "flight-delays")
PEER_VENVS = {"flaml": REPO / ".venv-flaml", "autogluon": REPO / ".venv-autogluon"}
MEMORY_LIMIT_MB = 1024
WALL_SLACK_S = 10
SAMPLE_PERIOD_S = 0.1
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class Outcome:
    """One solver on one competition: how its process went and how its submission graded."""

    solver: str
    status: str = "not run"
    score: float | None = None
    valid: bool = False
    reason: str = ""
    wall_s: float | None = None
    peak_mb: float | None = None
    reported_peak_mb: float | None = None
    model: str = ""
    stop_reason: str = ""
    limit_mb: float | None = None
    limit_method: str = ""


@dataclass
class Row:
    competition: str
    metric: str
    higher_is_better: bool
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    budget: float | None = None  # set in a sweep (--budgets): the row's time budget


# ---------------------------------------------------------------- measuring a process tree


def _children_by_parent() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _process_memory_kb(pid: int) -> int:
    """PSS (shared pages split between sharers, as a container's memory limit roughly counts), else RSS."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0


def tree_memory_mb(root: int) -> float:
    tree = _children_by_parent()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _process_memory_kb(pid)
        todo.extend(tree.get(pid, []))
    return total / 1024


@dataclass
class Measured:
    returncode: int
    wall_s: float
    peak_mb: float
    timed_out: bool
    stderr_tail: str


def run_measured(
    cmd: Sequence[str], log: Path, timeout_s: float, cwd: Path = REPO, limit: MemoryLimit | None = None
) -> Measured:
    """Run cmd with stdout+stderr to log; wall clock and peak tree memory from outside; kill its group on timeout.
    With `limit`, the process tree runs under that memory limit (and `limit` gets the kernel's peak afterwards)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    launch = limit.wrap(cmd) if limit else list(cmd)
    env = {**os.environ, **limit.env()} if limit else None
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            launch,
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            preexec_fn=limit.join if limit and limit.group else None,  # noqa: PLW1509 - only writes cgroup.procs
        )
        peak, timed_out = 0.0, False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, tree_memory_mb(proc.pid))
            if time.monotonic() - started > timeout_s and not timed_out:
                timed_out = True
                os.killpg(proc.pid, 9)
            time.sleep(SAMPLE_PERIOD_S)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if limit:
        limit.finish()
    peak = max(peak, usage.ru_maxrss / 1024)
    lines = log.read_text(errors="replace").strip().splitlines()
    return Measured(proc.returncode, round(wall, 1), round(peak, 0), timed_out, lines[-1][:300] if lines else "")


# ---------------------------------------------------------------- a real memory limit

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class MemoryLimit:
    """A limit for one solver process tree: how it is enforced and, after the run, what the kernel measured."""

    mb: int
    method: str  # systemd | cgroup2 | cgroup1 | prlimit
    group: Path | None = None  # the cgroup directory made for this run (cgroup2 / cgroup1)
    peak_mb: float | None = None
    oom_killed: bool = False

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """The command as launched: systemd-run and prlimit wrap it; a cgroup is joined before exec instead."""
        if self.method == "systemd":
            return ["systemd-run", "--scope", "--quiet", "-p", f"MemoryMax={self.mb}M", "-p", "MemorySwapMax=0", *cmd]
        if self.method == "prlimit":
            return ["prlimit", f"--as={self.mb * 1024 * 1024}", *cmd]
        return list(cmd)

    def join(self) -> None:
        """Runs in the child between fork and exec: move it into the group, so the limit holds from the first byte."""
        if self.group is not None:
            (self.group / "cgroup.procs").write_text(str(os.getpid()))

    def env(self) -> dict[str, str]:
        """prlimit bounds address space, which the runner cannot read as a cgroup limit: tell it the ceiling."""
        return {"KAGENT_MEMORY_LIMIT_MB": str(self.mb)} if self.method == "prlimit" else {}

    def finish(self) -> None:
        """Read the kernel's peak and OOM count for the group, then remove it."""
        if self.group is None:
            return
        v2 = self.method == "cgroup2"
        peak = _read_int(self.group / ("memory.peak" if v2 else "memory.max_usage_in_bytes"))
        self.peak_mb = round(peak / 2**20, 0) if peak is not None else None
        if v2:
            events = (self.group / "memory.events").read_text() if (self.group / "memory.events").exists() else ""
            self.oom_killed = any(
                line.split()[:1] == ["oom_kill"] and line.split()[1] != "0" for line in events.splitlines()
            )
        else:
            self.oom_killed = bool(_read_int(self.group / "memory.failcnt")) and _oom_v1(self.group)
        for _ in range(50):  # the group can be removed once its last process has gone
            try:
                self.group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _oom_v1(group: Path) -> bool:
    try:
        control = (group / "memory.oom_control").read_text()
    except OSError:
        return False
    return any(line.startswith("oom_kill ") and line.split()[1] != "0" for line in control.splitlines())


def _systemd_scope_works() -> bool:
    if shutil.which("systemd-run") is None:
        return False
    probe = ["systemd-run", "--scope", "--quiet", "-p", "MemoryMax=64M", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _make_group(mb: int, tag: str) -> tuple[str, Path] | None:
    """A fresh cgroup with the limit set: v2 where the memory controller is enabled, else v1's memory hierarchy."""
    name = f"kagent-bench-{os.getpid()}-{tag}"
    v2_root = CGROUP_ROOT if (CGROUP_ROOT / "cgroup.controllers").exists() else CGROUP_ROOT / "unified"
    try:
        v2_memory = "memory" in (v2_root / "cgroup.subtree_control").read_text().split()
    except OSError:
        v2_memory = False
    if v2_memory:
        made = _try_group(v2_root / name, ("memory.max", mb * 2**20), {"memory.swap.max": 0})
        if made is not None:
            return "cgroup2", made
    if (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists():
        made = _try_group(
            CGROUP_ROOT / "memory" / name, ("memory.limit_in_bytes", mb * 2**20), {"memory.swappiness": 0}
        )
        if made is not None:
            return "cgroup1", made
    return None


def _try_group(path: Path, limit: tuple[str, int], optional: dict[str, int]) -> Path | None:
    """Make the group and set its limit (else remove it and give None); optional settings are best effort."""
    try:
        path.mkdir()
    except OSError:
        return None
    try:
        (path / limit[0]).write_text(str(limit[1]))
    except OSError:
        path.rmdir()
        return None
    for key, value in optional.items():
        with contextlib.suppress(OSError):  # e.g. no swap accounting: the limit itself holds
            (path / key).write_text(str(value))
    return path


def memory_limit(mb: int, tag: str) -> MemoryLimit:
    """The strongest memory limit this machine allows (see the module docstring)."""
    if _systemd_scope_works():
        return MemoryLimit(mb, "systemd")
    made = _make_group(mb, tag)
    if made is not None:
        return MemoryLimit(mb, made[0], group=made[1])
    if shutil.which("prlimit") is None:
        raise SystemExit("--memory-limit: no systemd scope, no writable cgroup and no prlimit on this machine")
    return MemoryLimit(mb, "prlimit")


# ---------------------------------------------------------------- building and grading


def grader_command(grader_python: str | None) -> list[str]:
    script = str(SHARED_BENCH / "competitions.py")
    if grader_python:
        return [grader_python, script]
    return [str(SHARED_BENCH / "bench-env"), "python", script]


def ensure_built(comps_dir: Path, names: Sequence[str], rebuild: bool, grader_python: str | None) -> None:
    missing = [n for n in names if rebuild or not (comps_dir / n / "meta.json").exists()]
    builders = {
        PRACTICE: grader_command(grader_python),
        EXTRA + REACH: [*grader_command(grader_python)[:-1], str(REPO / "scripts" / "bench_extra_comps.py")],
    }
    for known, builder in builders.items():
        todo = [n for n in missing if n in known]
        if todo:
            print(f"building {', '.join(todo)} in {comps_dir}", flush=True)
            subprocess.run([*builder, "build", str(comps_dir), *todo], check=True, stdout=subprocess.DEVNULL)
    unknown = [n for n in names if not (comps_dir / n / "meta.json").exists()]
    if unknown:
        raise SystemExit(f"unknown competition(s) {', '.join(unknown)}: not in {comps_dir} and no builder knows them")


def grade(comp_dir: Path, submission: Path, grader_python: str | None) -> dict[str, Any]:
    if not submission.exists():
        return {"score": None, "valid": False, "reason": "no submission.csv"}
    done = subprocess.run(
        [*grader_command(grader_python), "grade", str(comp_dir), str(submission)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"score": None, "valid": False, "reason": f"grader failed: {done.stderr.strip()[-200:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- solvers


def solver_command(
    solver: str, *, comp_dir: Path, meta: dict[str, Any], out: Path, budget: float, runner_python: str
) -> list[str]:
    public = str(comp_dir / "public")
    if solver == "ours":
        return [
            runner_python,
            "-m",
            "runner",
            public,
            "--out",
            str(out),
            "--metric",
            meta["metric"],
            "--time-budget",
            str(int(budget)),
        ]
    profile = [
        "--target",
        meta["target"],
        "--id-column",
        meta["id_column"],
        "--kind",
        meta["kind"],
        "--task",
        meta["task"],
        "--sample",
        meta["sample_file"],
    ]
    if meta.get("positive") is not None:
        profile += ["--positive", str(meta["positive"])]
    peer_python = str(PEER_VENVS[solver] / "bin" / "python")
    return [
        peer_python,
        str(REPO / "scripts" / "bench_peer.py"),
        solver,
        public,
        "--out",
        str(out),
        "--metric",
        meta["metric"],
        "--time-budget",
        str(budget),
        *profile,
    ]


def run_solver(
    solver: str, comp_dir: Path, meta: dict[str, Any], out: Path, args: argparse.Namespace, *, budget: float
) -> Outcome:
    outcome = Outcome(solver)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if solver == "dummy":
        shutil.copy(comp_dir / "public" / meta["sample_file"], out / "submission.csv")
        outcome.status, outcome.model = "succeeded", "sample submission"
    else:
        cmd = solver_command(
            solver, comp_dir=comp_dir, meta=meta, out=out, budget=budget, runner_python=args.runner_python
        )
        limit = memory_limit(args.memory_limit, f"{comp_dir.name}-{solver}") if args.memory_limit else None
        measured = run_measured(cmd, out / "process.log", timeout_s=3 * budget + 120, limit=limit)
        outcome.wall_s, outcome.peak_mb = measured.wall_s, measured.peak_mb
        outcome.status = "timed out" if measured.timed_out else f"exit {measured.returncode}"
        outcome.reason = measured.stderr_tail
        if limit is not None:
            outcome.limit_mb, outcome.limit_method = float(limit.mb), limit.method
            if limit.peak_mb is not None:
                outcome.peak_mb = limit.peak_mb  # what the limit counted (page cache included), not our sampling
            if limit.oom_killed:
                outcome.status = "OOM-killed"
        reported = _read_json(out / "result.json")
        outcome.reported_peak_mb = reported.get("peak_memory_mb")
        outcome.model = str(reported.get("model", ""))
        outcome.stop_reason = str(reported.get("stop_reason", ""))
        if reported.get("status") and measured.returncode == 0:
            outcome.status = str(reported["status"])
    graded = grade(comp_dir, out / "submission.csv", args.grader_python)
    outcome.score, outcome.valid = graded.get("score"), bool(graded.get("valid"))
    if not outcome.valid:
        outcome.reason = f"{graded.get('reason')}; {outcome.reason}".strip("; ")
    return outcome


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------- the table


def _codegen_note() -> str:
    """Which model bodies "ours" used: the runner's --codegen auto takes the LLM when one is configured."""
    from chalicelib.config import load_settings  # noqa: PLC0415 - lazy: only to say which bodies ran
    from chalicelib.llm import llm_configured  # noqa: PLC0415

    if not llm_configured(os.environ):
        return "Ours: template model bodies (no LLM configured)."
    where = os.environ.get("OPENAI_BASE_URL") or "api.openai.com"
    return f"Ours: LLM codegen with {load_settings(os.environ).llm_model} via {where}, templates as the floor."


def _score_text(o: Outcome | None) -> str:
    if o is None:
        return "—"
    return f"{o.score:.4f}" if o.valid and o.score is not None else "invalid"


def _versus(row: Row, mine: str, peer: str) -> str:
    a, b = row.outcomes.get(mine), row.outcomes.get(peer)
    if not a or not b or not a.valid:
        return "loss" if a and b and b.valid else "—"
    if not b.valid or a.score is None or b.score is None:
        return "win"
    gap = (a.score - b.score) if row.higher_is_better else (b.score - a.score)
    scale = max(abs(b.score), 1e-9)
    if abs(gap) <= 1e-3 * scale:
        return "tie"
    return f"win (+{abs(gap) / scale:.1%})" if gap > 0 else f"loss (−{abs(gap) / scale:.1%})"


def _wall_text(o: Outcome | None, budget: float) -> str:
    if o is None or o.wall_s is None:
        return "—"
    return f"{o.wall_s:.0f}" + (" ✗" if o.wall_s > budget + WALL_SLACK_S else "")


def _mem_text(o: Outcome | None) -> str:
    if o is None or o.peak_mb is None:
        return "—"
    ceiling = o.limit_mb or MEMORY_LIMIT_MB
    text = f"{o.peak_mb:.0f}" + (" ✗" if o.peak_mb > ceiling or o.status == "OOM-killed" else "")
    return text + (f" of {o.limit_mb:.0f} ({o.limit_method})" if o.limit_mb else "")


def render_table(rows: Sequence[Row], solvers: Sequence[str], budget: float) -> str:
    mine, peers = solvers[0], list(solvers[1:])
    sweep = any(row.budget is not None for row in rows)
    head = [
        "competition",
        *(["budget s"] if sweep else []),
        "metric",
        mine,
        *peers,
        *(f"{mine} vs {p}" for p in peers),
        "valid",
        "wall s",
        "peak MB",
        *(f"{p} wall s / MB" for p in peers),
        f"{mine} stopped because",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        o = row.outcomes.get(mine)
        direction = "↑" if row.higher_is_better else "↓"
        row_budget = row.budget if row.budget is not None else budget
        cells = [
            row.competition,
            *([f"{row_budget:.0f}"] if sweep else []),
            f"{row.metric} {direction}",
            _score_text(o),
            *(_score_text(row.outcomes.get(p)) for p in peers),
            *(_versus(row, mine, p) for p in peers),
            "yes" if o and o.valid else "NO",
            _wall_text(o, row_budget),
            _mem_text(o),
            *(f"{_wall_text(row.outcomes.get(p), row_budget)} / {_mem_text(row.outcomes.get(p))}" for p in peers),
            (o.stop_reason or "—").replace("|", "/") if o else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: Sequence[Row], solvers: Sequence[str], budget: float) -> list[str]:
    mine = solvers[0]
    out = [o for r in rows if (o := r.outcomes.get(mine))]
    lines = [f"{mine}: valid on {sum(o.valid for o in out)}/{len(out)}"]
    if any(o.wall_s is not None for o in out):
        slow = [
            _row_name(r)
            for r in rows
            if (o := r.outcomes.get(mine)) and (o.wall_s or 0) > (r.budget or budget) + WALL_SLACK_S
        ]
        heavy = [
            _row_name(r)
            for r in rows
            if (o := r.outcomes.get(mine)) and (o.peak_mb or 0) > (o.limit_mb or MEMORY_LIMIT_MB)
        ]
        lines.append(
            f"wall > budget+{WALL_SLACK_S} s: {', '.join(slow) or 'none'}; "
            f"peak over the memory limit: {', '.join(heavy) or 'none'}"
        )
    for peer in solvers[1:]:
        verdicts = [_versus(r, mine, peer) for r in rows]
        at_least = sum(v.startswith(("win", "tie")) for v in verdicts)
        lines.append(f"{mine} at least as good as {peer} on {at_least}/{len(rows)}")
    return lines


def _row_name(row: Row) -> str:
    return row.competition if row.budget is None else f"{row.competition}@{row.budget:.0f}s"


# ---------------------------------------------------------------- main


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def code_version() -> str:
    """The commit benchmarked, and whether runner/ had uncommitted changes (the bench runs the working tree)."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + (" + uncommitted runner/ changes" if _git("status", "--porcelain", "runner") else "")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=60.0, help="--time-budget for the runner and every peer (s)")
    p.add_argument("--budgets", default=None, help="a sweep, e.g. 60,300,600: one row per competition and budget")
    p.add_argument(
        "--memory-limit", type=int, default=None, metavar="MB", help="run every solver under this real memory limit"
    )
    p.add_argument("--competitions", default=",".join(PRACTICE + EXTRA + REACH), help="comma-separated names")
    p.add_argument("--peers", default="flaml", help="comma-separated: flaml, autogluon, or none")
    p.add_argument(
        "--comps-dir", type=Path, default=Path(os.environ.get("KAGENT_BENCH_DIR", Path.home() / "kagent-comps"))
    )
    p.add_argument("--results", type=Path, default=REPO / "bench-results")
    p.add_argument("--rebuild", action="store_true", help="rebuild competitions even if present")
    p.add_argument("--dummy", action="store_true", help="plumbing check: every solver submits the sample as is")
    p.add_argument("--ours", action=argparse.BooleanOptionalAction, default=True, help="run our runner (default)")
    p.add_argument("--runner-python", default=str(REPO / ".venv" / "bin" / "python"))
    p.add_argument(
        "--grader-python",
        default=None,
        help="grade and build with this Python instead of ../shared/bench/bench-env (needs pandas+sklearn)",
    )
    return p.parse_args(argv)


def choose_solvers(args: argparse.Namespace) -> list[str]:
    if args.dummy:
        return ["dummy"]
    peers = [p for p in args.peers.split(",") if p and p != "none"]
    for peer in peers:
        if peer not in PEER_VENVS:
            raise SystemExit(f"unknown peer {peer!r}: choose from {', '.join(PEER_VENVS)}")
        if not (PEER_VENVS[peer] / "bin" / "python").exists():
            raise SystemExit(
                f"peer {peer} has no venv at {PEER_VENVS[peer]}: `make bench` or `make bench-autogluon` creates it"
            )
    solvers = ["ours", *peers] if args.ours else peers
    if not solvers:
        raise SystemExit("nothing to run: --no-ours needs at least one peer")
    return solvers


def parse_budgets(args: argparse.Namespace) -> list[float | None]:
    """The budgets to run: [None] (the single --budget) unless --budgets names a sweep."""
    if not args.budgets:
        return [None]
    try:
        budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        raise SystemExit(
            f"--budgets wants seconds separated by commas, e.g. 60,300,600; got {args.budgets!r}"
        ) from None
    if not budgets or any(b <= 0 for b in budgets):
        raise SystemExit(f"--budgets wants positive seconds, got {args.budgets!r}")
    return list(budgets)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    budgets = parse_budgets(args)
    if args.memory_limit is not None and args.memory_limit < 64:
        raise SystemExit(f"--memory-limit is in MB and must be at least 64, got {args.memory_limit}")
    names = [n.strip() for n in args.competitions.split(",") if n.strip()]
    solvers = choose_solvers(args)
    args.comps_dir = args.comps_dir.expanduser().resolve()
    ensure_built(args.comps_dir, names, args.rebuild, args.grader_python)
    run_dir = args.results / time.strftime("run-%Y%m%d-%H%M%S")
    rows: list[Row] = []
    for name in names:
        comp_dir = args.comps_dir / name
        meta = json.loads((comp_dir / "meta.json").read_text())
        for sweep_budget in budgets:
            budget = args.budget if sweep_budget is None else sweep_budget
            row = Row(name, meta["metric"], bool(meta["higher_is_better"]), budget=sweep_budget)
            where = run_dir / name if sweep_budget is None else run_dir / name / f"{budget:.0f}s"
            for solver in solvers:
                print(f"[{time.strftime('%H:%M:%S')}] {_row_name(row)}: {solver} …", flush=True)
                outcome = run_solver(solver, comp_dir, meta, where / solver, args, budget=budget)
                row.outcomes[solver] = outcome
                print(
                    f"    {_score_text(outcome)} ({outcome.status}, {outcome.wall_s} s, {outcome.peak_mb} MB)"
                    + (f" — {outcome.reason}" if not outcome.valid else ""),
                    flush=True,
                )
            rows.append(row)
    table = render_table(rows, solvers, args.budget)
    notes = summary(rows, solvers, args.budget)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    budget_text = args.budgets if args.budgets else f"{args.budget:.0f}"
    limit_text = f", memory limit {args.memory_limit} MB" if args.memory_limit else ""
    header = (
        f"Budget {budget_text} s{limit_text}, {os.cpu_count()} cores, {when}, code {code_version()}; "
        "scores by ../shared/bench's grader (↑ higher is better, ↓ lower); wall = whole CLI process; "
        f"peak = process-tree memory; ✗ = over the budget+{WALL_SLACK_S} s or {MEMORY_LIMIT_MB} MB (or the limit). "
        f"{_codegen_note()}"
    )
    markdown = "\n".join([header, "", table, "", *(f"- {n}" for n in notes), ""])
    print("\n" + markdown)
    run_dir.mkdir(parents=True, exist_ok=True)
    for target in (run_dir / "table.md", args.results / "latest.md"):
        target.write_text(markdown)
    dump = [
        {
            "competition": r.competition,
            "budget": r.budget if r.budget is not None else args.budget,
            "metric": r.metric,
            "higher_is_better": r.higher_is_better,
            "outcomes": {k: asdict(v) for k, v in r.outcomes.items()},
        }
        for r in rows
    ]
    for target in (run_dir / "results.json", args.results / "latest.json"):
        target.write_text(
            json.dumps({"budget": args.budget, "memory_limit_mb": args.memory_limit, "rows": dump}, indent=1)
        )
    print(f"written: {args.results / 'latest.md'} and {run_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
