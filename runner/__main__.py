"""The runner CLI (a user-facing contract: keep it exactly).

`python -m runner DATA --out OUT [--metric METRIC] [--time-budget SECONDS] [--codegen template|llm|auto] [--seed N]`
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the time budget counts from process start, before the heavy imports below

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from runner.codegen import CodegenBudget  # noqa: E402
from runner.metrics import METRIC_NAMES  # noqa: E402
from runner.pipeline import CODEGEN_MODES, RunOptions, run_pipeline  # noqa: E402


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"runner: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m runner", description="Train on a Kaggle competition's files; write submission.csv."
    )
    parser.add_argument("data", type=Path, help="competition folder or .zip (train.csv, test.csv, sample submission)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--metric", help=f"one of {', '.join(METRIC_NAMES)} (inferred when omitted)")
    parser.add_argument("--time-budget", type=float, default=300.0, help="seconds for the whole run (default 300)")
    # checked by the pipeline (not argparse) so that a wrong value also leaves a failed result.json
    parser.add_argument(
        "--codegen", default="auto", help=f"{'|'.join(CODEGEN_MODES)}: model bodies from (default auto)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=None,
        metavar="MB",
        help="plan for at most this much memory (default: the cgroup's limit, else $KAGENT_MEMORY_LIMIT_MB, else RAM)",
    )
    llm = parser.add_argument_group("LLM codegen budgets (with --codegen llm|auto and an LLM configured)")
    llm.add_argument("--codegen-attempts", type=int, default=5, help="LLM answers asked for (default 5)")
    llm.add_argument("--codegen-tokens", type=int, default=150_000, help="tokens in+out for codegen (default 150000)")
    llm.add_argument("--codegen-time", type=float, default=900.0, help="seconds for codegen, within --time-budget")
    llm.add_argument("--plan", type=Path, help="a plan for the prompt: the Plan step's JSON, or plain text")
    return parser


def _read_plan(path: Path | None) -> dict[str, Any] | None:
    """A plan file: a JSON object (as the Plan step stores it) or free text (the approach)."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(_fail(f"cannot read the plan file {path}: {exc}")) from None
    try:
        plan = json.loads(text)
    except ValueError:
        return {"approach": text.strip()[:4000]}
    if not isinstance(plan, dict):
        raise SystemExit(_fail(f"the plan file {path} must hold a JSON object or plain text"))
    return plan


def _fail(message: str) -> int:
    sys.stderr.write(f"runner: {message}\n")
    return 2


def _progress_printer() -> Callable[[str], None] | None:
    if not sys.stderr.isatty():
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.codegen_attempts, args.codegen_tokens) < 1 or not args.codegen_time > 0:
        return _fail("--codegen-attempts, --codegen-tokens and --codegen-time must be positive")
    if args.memory_limit is not None and not args.memory_limit >= 64:
        return _fail(f"--memory-limit is in MB and must be at least 64, got {args.memory_limit:g}")
    budget = CodegenBudget(attempts=args.codegen_attempts, tokens=args.codegen_tokens, wall_s=args.codegen_time)
    options = RunOptions(
        metric=args.metric,
        time_budget=args.time_budget,
        codegen=args.codegen,
        seed=args.seed,
        started_at=STARTED,
        plan=_read_plan(args.plan),
        codegen_budget=budget,
        memory_limit_mb=args.memory_limit,
    )
    outcome = run_pipeline(args.data, args.out, options, log=_progress_printer())
    if outcome.status != "succeeded":
        sys.stderr.write(f"runner: {outcome.reason}\n")
        return outcome.exit_code
    score = outcome.result.get("cv_score")
    print(f"submission: {args.out / 'submission.csv'}  (CV {outcome.result.get('metric')} = {score})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
