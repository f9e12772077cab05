"""The runner CLI (a user-facing contract: keep it exactly).

`python -m runner DATA [--out OUT] [--metric METRIC] [--time-budget SECONDS] [--codegen template|llm|auto] [--seed N]
[--submit]` — DATA is a competition folder or .zip, a Kaggle competition slug (`titanic`) or its URL.

A slug or URL is downloaded with the official Kaggle client (KAGGLE_USERNAME/KAGGLE_KEY or KAGGLE_API_TOKEN) through
the cloud runner's DataSource: the KAGENT_DATA_MIRROR folder first, then a local cache (KAGENT_CACHE_DIR, default
~/.cache/kagent/data), then Kaggle. Progress goes to stderr whatever it is: a live `rich` line on a terminal, one plain
line per change elsewhere (pipes, notebooks, CI). Heavy modules are imported after the arguments are parsed, so
`--help` and a bad option answer at once.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the time budget counts from process start, before the heavy imports

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from chalicelib.run_report import SUCCEEDED, read_or_none  # noqa: E402
from chalicelib.vocabulary import EXIT_BAD_INPUT, EXIT_OK, METRIC_NAMES, RESULT_FILE  # noqa: E402

# What the engine accepts, kept here so that parsing needs no numpy/scikit-learn (METRIC_NAMES comes from the stdlib
# vocabulary; tests/test_cli.py checks that CODEGEN_MODES equals runner.pipeline.CODEGEN_MODES). The help lists them;
# the engine checks them (not argparse), so that a wrong value also leaves a failed result.json, as every failed run
# does.
CODEGEN_MODES = ("template", "llm", "auto")
LLM_MODES = ("llm", "auto")  # the modes that use an LLM when one is configured
CACHE_DIR_ENV = "KAGENT_CACHE_DIR"
MIRROR_ENV = "KAGENT_DATA_MIRROR"
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"runner: {message}\n")
        raise SystemExit(2)


class _Help(argparse.HelpFormatter):
    """Every option's default in its help, unless there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.default is not None
            and action.default is not False
            and action.default != argparse.SUPPRESS
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m runner",
        description="Train on a Kaggle competition; write submission.csv, report.html and result.json.",
        formatter_class=_Help,
    )
    parser.add_argument(
        "data", help="a competition folder or .zip (train, test, sample submission), a Kaggle slug or a competition URL"
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: kagent-runs/<competition>)")
    parser.add_argument(
        "--metric",
        metavar="{" + ",".join(METRIC_NAMES) + "}",
        help="metric to optimise (default: the competition's, else inferred from the target)",
    )
    parser.add_argument("--time-budget", type=float, default=300, metavar="SECONDS", help="for the whole run")
    parser.add_argument(
        "--codegen",
        default="auto",
        metavar="{" + ",".join(CODEGEN_MODES) + "}",
        help="model bodies from the built-in templates, an LLM, or an LLM when one is configured",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed")
    parser.add_argument(
        "--submit", action="store_true", help="send submission.csv to Kaggle and wait (bounded) for the public score"
    )
    parser.add_argument(
        "--competition", metavar="SLUG", help="the Kaggle competition to submit to when DATA is a folder or .zip"
    )
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=None,
        metavar="MB",
        help="plan for at most this much memory (default: the cgroup's limit, else $KAGENT_MEMORY_LIMIT_MB, else RAM)",
    )
    llm = parser.add_argument_group("LLM codegen budgets (with --codegen llm|auto and an LLM configured)")
    llm.add_argument("--codegen-attempts", type=int, default=5, metavar="N", help="LLM answers asked for")
    llm.add_argument("--codegen-tokens", type=int, default=150_000, metavar="N", help="tokens in+out for codegen")
    llm.add_argument(
        "--codegen-time", type=float, default=900, metavar="SECONDS", help="for codegen, within --time-budget"
    )
    llm.add_argument("--plan", type=Path, metavar="FILE", help="a plan for the prompt: the Plan step's JSON, or text")
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
    return EXIT_BAD_INPUT


def competition_of(data: str) -> str | None:
    """The slug DATA names when it is not a local path: a bare slug or a www.kaggle.com competition URL. Anything
    else is a path (a missing one fails in the engine, with a failed result.json)."""
    if Path(data).exists():
        return None
    if data.startswith(("http://", "https://")):
        from chalicelib.run_request import InvalidRequest, parse_slug  # noqa: PLC0415  # lazy: URLs only

        try:
            return parse_slug(data)
        except InvalidRequest as error:
            raise SystemExit(_fail(f"{data} is not a Kaggle competition URL: {error.message}")) from None
    return data if _SLUG.match(data) else None


def fetch_competition(slug: str, workdir: Path, log: Callable[[str], None]) -> Path:
    """The competition's files through the cloud runner's DataSource and Kaggle client (mirror, cache, Kaggle)."""
    from runner.datasource import DataSource, DataSourceError, LocalDataCache  # noqa: PLC0415  # lazy: only for a slug
    from runner.kaggle_client import KaggleCredentials, KaggleDownloader, KaggleError  # noqa: PLC0415  # lazy: Kaggle only

    cache_dir = Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "kagent" / "data")
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    source = DataSource(
        mirror=Path(mirror) if mirror else None,
        cache=LocalDataCache(cache_dir),
        download=KaggleDownloader(KaggleCredentials.from_env(os.environ), log=log).download,
        log=log,
    )
    try:
        return source.fetch(slug, workdir).path
    except (KaggleError, DataSourceError) as error:
        raise SystemExit(_fail(str(error))) from None


class Display:
    """Progress on stderr: a live rich line on a terminal (log lines scroll above it), plain lines elsewhere."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._live: Any = None
        self._console: Any = None

    @contextmanager
    def running(self) -> Iterator[Display]:
        if not self.tty:
            yield self
            return
        from rich.console import Console  # noqa: PLC0415  # lazy: only on a terminal
        from rich.live import Live  # noqa: PLC0415  # lazy: only on a terminal
        from rich.spinner import Spinner  # noqa: PLC0415  # lazy: only on a terminal

        self._console = Console(file=self.stream)
        with Live(
            Spinner("dots", text="starting"), console=self._console, refresh_per_second=8, transient=True
        ) as live:
            self._live = live
            try:
                yield self
            finally:
                self._live = None

    def progress(self, line: str) -> None:
        if self._live is not None:
            from rich.spinner import Spinner  # noqa: PLC0415  # lazy: only on a terminal

            self._live.update(Spinner("dots", text=line))
        else:
            print(f"[kagent] {line}", file=self.stream, flush=True)

    def log(self, line: str) -> None:
        """The pipeline's log lines: shown on a terminal (above the live line); in a pipe they are in logs.txt."""
        if self._console is not None:
            self._console.print(line, markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.codegen_attempts, args.codegen_tokens) < 1 or not args.codegen_time > 0:
        return _fail("--codegen-attempts, --codegen-tokens and --codegen-time must be positive")
    if args.memory_limit is not None and not args.memory_limit >= 64:
        return _fail(f"--memory-limit is in MB and must be at least 64, got {args.memory_limit:g}")
    slug = competition_of(args.data)
    target = args.competition or slug
    if args.submit and not target:
        return _fail("--submit needs the competition: give its slug or URL as DATA, or --competition SLUG")
    if args.competition and not _SLUG.match(args.competition):
        return _fail(f"--competition must be a Kaggle slug, got {args.competition!r}")
    out = args.out or Path("kagent-runs") / (slug or Path(args.data).stem or "run")
    display = Display()
    with display.running():
        return _run(args, slug, target, out, display)


def _run(args: argparse.Namespace, slug: str | None, target: str | None, out: Path, display: Display) -> int:
    from runner.progress import Progress, line_sink  # noqa: PLC0415  # lazy: after parsing (fast --help)

    progress = Progress(budget_s=args.time_budget, started=STARTED, sinks=(line_sink(display.progress),))
    with tempfile.TemporaryDirectory(prefix="kagent-cli-") as workdir:
        data = Path(args.data)
        if slug is not None:
            progress.phase("downloading", slug)
            data = fetch_competition(slug, Path(workdir), display.log)
        return _train(args, data, target, out, display=display, progress=progress)


def _train(
    args: argparse.Namespace, data: Path, target: str | None, out: Path, *, display: Display, progress: Any
) -> int:
    from runner.codegen import CodegenBudget  # noqa: PLC0415  # lazy: pandas/sklearn (fast --help)
    from runner.codegen_step import llm_candidates_from_env  # noqa: PLC0415  # lazy: pandas/sklearn (fast --help)
    from runner.pipeline import RunOptions, run_pipeline  # noqa: PLC0415  # lazy: pandas/sklearn (fast --help)
    from runner.report import ReportCollector, plain_leaderboard, run_cost, write_report  # noqa: PLC0415  # lazy: after training

    collector = ReportCollector()

    def observe(event: str, **fields: Any) -> None:
        progress(event, **fields)
        collector(event, **fields)

    plan = _read_plan(args.plan)
    budget = CodegenBudget(attempts=args.codegen_attempts, tokens=args.codegen_tokens, wall_s=args.codegen_time)
    # the LLM settings (OPENAI_*) are read here, once; --codegen template never looks at them
    try:
        llm = llm_candidates_from_env(os.environ, budget) if args.codegen in LLM_MODES else None
    except ValueError as error:  # a malformed setting (chalicelib.config.ConfigError), like a bad --plan file
        return _fail(f"LLM settings: {error}")
    options = RunOptions(
        metric=args.metric,
        time_budget=args.time_budget,
        codegen=args.codegen,
        seed=args.seed,
        started_at=STARTED,
        plan=plan,
        extra_candidates=llm,
        memory_limit_mb=args.memory_limit,
        progress=observe,
    )
    outcome = run_pipeline(data, out, options, log=display.log if display.tty else None)
    if outcome.status != SUCCEEDED:
        sys.stderr.write(f"runner: {outcome.reason}\n")
        return outcome.exit_code
    progress.phase("reporting")
    files = write_report(
        out,
        collector,
        slug=target,
        cost=lambda result: run_cost(result, seconds=time.monotonic() - STARTED, task=None),
        log=lambda message, **_: display.log(message),
    )
    submitted = _submit(target, out, outcome.result, progress) if args.submit and target else None
    _print_summary(out, outcome.result, files.report if files else None, submitted, plain_leaderboard)
    return EXIT_OK


def _submit(slug: str, out: Path, result: dict[str, Any], progress: Any) -> dict[str, Any]:
    from runner.kaggle_client import KaggleCredentials, KaggleSubmitter  # noqa: PLC0415  # lazy: Kaggle only
    from runner.output import merge_into_result  # noqa: PLC0415  # lazy: only after a submission

    progress.phase("submitting", slug)
    score = result.get("cv_score")
    message = f"kagent CLI: {result.get('model', 'model')}" + (
        f", CV {result.get('metric')} {score:.5g}" if isinstance(score, int | float) else ""
    )
    outcome = KaggleSubmitter(KaggleCredentials.from_env(os.environ)).submit(slug, out / "submission.csv", message)
    submission = outcome.as_dict()
    merge_into_result(out / "result.json", {"kaggle_submission": submission})
    return submission


def _print_summary(
    out: Path,
    result: dict[str, Any],
    report: Path | None,
    submitted: dict[str, Any] | None,
    table: Callable[[list[Any]], str],
) -> None:
    from runner.progress import round_score  # noqa: PLC0415  # lazy: after parsing (fast --help)

    rows = result.get("leaderboard") or []
    saved = read_or_none((out / RESULT_FILE).read_bytes)
    rows = (saved.leaderboard if saved is not None else None) or rows
    if rows:
        print(table(rows))
    score = result.get("cv_score")
    shown = round_score(score) if isinstance(score, int | float) else None
    print(f"submission: {out / 'submission.csv'}  (CV {result.get('metric')} = {shown})")
    if report is not None:
        print(f"report: {report}")
    if submitted is not None:
        if submitted.get("status") == "scored":
            print(f"Kaggle: submitted, public score {round_score(submitted.get('public_score'))}")
        else:
            print(f"Kaggle: {submitted.get('status')}: {submitted.get('reason', '')}")


if __name__ == "__main__":
    raise SystemExit(main())
