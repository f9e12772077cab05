"""report.html: one self-contained page about a run — what was trained, how well, on what, at what cost.

`ReportCollector` listens to the pipeline's progress events (`prepared`, `chosen`) and keeps what result.json does not
hold: the column roles, the target, every candidate's fold scores, the chosen body's code and its out-of-fold
predictions. `write_report` turns that and result.json into `report.html` (Jinja2, autoescaped; charts drawn with
matplotlib's Agg canvas and inlined as base64 PNGs) plus `cv_chart.png` (for the email), and records the run's cost in
result.json.

Feature importance is measured in this (the parent) process from data and predictions only — model bodies may run in
confined child processes and their fitted models never come back: a surrogate (a small gradient-boosted model of the
runner's own) is fitted to the chosen model's out-of-fold predictions and its permutation importance is reported with
its fidelity (how well it reproduces those predictions). No body code runs here.
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.config import TASK_CPU_UNITS, TASK_MEMORY_MIB
from chalicelib.run_report import RunReport
from chalicelib.vocabulary import CV_CHART_FILE as CV_CHART
from chalicelib.vocabulary import HIGHER_IS_BETTER, RESULT_FILE, competition_url, direction_text
from chalicelib.vocabulary import REPORT_FILE as REPORT
from runner.progress import round_score

TEMPLATES_DIR = Path(__file__).resolve().parent / "report_templates"
TOP_FEATURES = 15
IMPORTANCE_ROWS = 4000
IMPORTANCE_FEATURES = 60
IMPORTANCE_TIME_S = 20.0
MAX_CODE_CHARS = 60_000

# Fargate on-demand prices (us-east-1, Linux/x86) — override with the environment variables named in `cost_settings`.
FARGATE_VCPU_HOUR_USD = 0.04048
FARGATE_GB_HOUR_USD = 0.004445
VCPU_HOUR_USD = "KAGENT_FARGATE_VCPU_HOUR_USD"
GB_HOUR_USD = "KAGENT_FARGATE_GB_HOUR_USD"


# -- what the pipeline tells ---------------------------------------------------------------------------------------


@dataclass
class TargetRecord:
    """One target of the competition as the pipeline saw it."""

    profile: Any  # runner.profile.Profile
    roles: Any = None  # runner.features.ColumnRoles
    data: Any = None  # runner.scaffold.PreparedData
    chosen: Any = None  # runner.scaffold.Evaluation
    evaluations: list[Any] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


class ReportCollector:
    """A progress callback keeping, per target, what the report needs (see module docstring)."""

    def __init__(self) -> None:
        self.targets: list[TargetRecord] = []

    def __call__(self, event: str, **fields: Any) -> None:
        if event == "prepared":
            self.targets.append(TargetRecord(fields["profile"], fields.get("roles"), fields.get("data")))
        elif event == "chosen":
            record = self._record_for(fields["profile"])
            record.data = fields.get("data", record.data)
            record.chosen = fields["chosen"]
            record.evaluations = list(fields.get("evaluations") or [])
            record.sources = dict(fields.get("sources") or {})

    def _record_for(self, profile: Any) -> TargetRecord:
        for record in self.targets:
            if record.profile is profile or record.profile.label_column == profile.label_column:
                return record
        self.targets.append(TargetRecord(profile))
        return self.targets[-1]


# -- cost ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FargateTask:
    vcpu: float
    memory_gb: float
    vcpu_hour_usd: float = FARGATE_VCPU_HOUR_USD
    gb_hour_usd: float = FARGATE_GB_HOUR_USD


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a non-negative number, got {raw!r}")
    return value


def fargate_task(env: Mapping[str, str]) -> FargateTask:
    """The task's size (from the task definition's environment) and Fargate's prices, each overridable."""
    return FargateTask(
        vcpu=_positive(env, TASK_CPU_UNITS, 1024) / 1024,
        memory_gb=_positive(env, TASK_MEMORY_MIB, 2048) / 1024,
        vcpu_hour_usd=_positive(env, VCPU_HOUR_USD, FARGATE_VCPU_HOUR_USD),
        gb_hour_usd=_positive(env, GB_HOUR_USD, FARGATE_GB_HOUR_USD),
    )


def run_cost(result: Mapping[str, Any], *, seconds: float, task: FargateTask | None) -> dict[str, Any]:
    """LLM tokens and dollars (result.json's codegen fields) and, on Fargate, vCPU- and GB-seconds at its prices."""
    tokens_in = int(result.get("tokens_in") or 0)
    tokens_out = int(result.get("tokens_out") or 0)
    llm_usd = result.get("estimated_cost_usd")
    cost: dict[str, Any] = {
        "llm_model": result.get("llm_model") or result.get("codegen_model"),
        "llm_tokens_in": tokens_in,
        "llm_tokens_out": tokens_out,
        "llm_usd": round(float(llm_usd), 4) if isinstance(llm_usd, int | float) else (0.0 if not tokens_in else None),
        "seconds": round(seconds, 1),
    }
    total = cost["llm_usd"]
    if task is not None:
        vcpu_s, gb_s = task.vcpu * seconds, task.memory_gb * seconds
        compute = vcpu_s / 3600 * task.vcpu_hour_usd + gb_s / 3600 * task.gb_hour_usd
        cost.update(
            vcpu=task.vcpu,
            memory_gb=task.memory_gb,
            vcpu_seconds=round(vcpu_s, 1),
            gb_seconds=round(gb_s, 1),
            vcpu_hour_usd=task.vcpu_hour_usd,
            gb_hour_usd=task.gb_hour_usd,
            compute_usd=round(compute, 4),
        )
        total = None if total is None else total + compute
    cost["total_usd"] = round(total, 4) if total is not None else None
    return {name: value for name, value in cost.items() if value is not None}  # the run item stores no nulls


# -- feature importance ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Importance:
    features: list[tuple[str, float, float]]  # (name, mean drop, std), largest first
    fidelity: float | None  # surrogate's R² (or accuracy) against the model's held-out predictions
    fidelity_name: str
    method: str


def surrogate_importance(
    data: Any, chosen: Any, *, seed: int = 0, top: int = TOP_FEATURES, time_limit_s: float = IMPORTANCE_TIME_S
) -> Importance | None:
    """Permutation importance of a surrogate fitted to the chosen model's out-of-fold predictions (see docstring)."""
    import numpy as np  # noqa: PLC0415 - lazy: the report module is imported by the CLI before the heavy engine
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor  # noqa: PLC0415
    from sklearn.inspection import permutation_importance  # noqa: PLC0415

    started = time.monotonic()
    X = data.X
    oof = np.asarray(chosen.oof, dtype=float)
    values = oof.reshape(len(oof), -1)
    rows = np.flatnonzero(np.isfinite(values).all(axis=1))
    if len(rows) < 50 or X.shape[1] == 0:
        return None
    rng = np.random.default_rng(seed)
    if len(rows) > IMPORTANCE_ROWS:
        rows = rng.choice(rows, IMPORTANCE_ROWS, replace=False)
    columns = _candidate_columns(X, values, rows)
    frame = _surrogate_frame(X.iloc[rows][columns].reset_index(drop=True))
    classify = values.shape[1] > 2
    target = values[rows].argmax(axis=1) if classify else values[rows][:, -1]
    split = int(len(rows) * 0.75)
    order = rng.permutation(len(rows))
    fit, held = order[:split], order[split:]
    model_class = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    surrogate = model_class(max_iter=80, learning_rate=0.1, categorical_features="from_dtype", random_state=seed)
    surrogate.fit(frame.iloc[fit], target[fit])
    fidelity = float(surrogate.score(frame.iloc[held], target[held]))
    repeats = 3 if time.monotonic() - started < time_limit_s / 3 else 1
    measured = permutation_importance(
        surrogate, frame.iloc[held], target[held], n_repeats=repeats, random_state=seed, n_jobs=1
    )
    ranked = sorted(
        zip(columns, measured.importances_mean, measured.importances_std, strict=True),
        key=lambda item: -item[1],
    )
    features = [(str(name), float(mean), float(std)) for name, mean, std in ranked[:top]]
    return Importance(
        features=features,
        fidelity=fidelity,
        fidelity_name="accuracy" if classify else "R²",
        method="permutation importance of a surrogate fitted to the chosen model's out-of-fold predictions",
    )


def _surrogate_frame(frame: Any) -> Any:
    """Categories the surrogate can bin natively (at most 250 levels); larger ones become their codes (numbers); sparse
    columns (at most IMPORTANCE_FEATURES of them, on a sample of rows) dense, as histogram boosting needs."""
    frame = frame.copy()
    for column in frame.columns:
        series = frame[column]
        if hasattr(series, "sparse"):
            frame[column] = series.sparse.to_dense()
        elif hasattr(series, "cat") and len(series.cat.categories) > 250:
            frame[column] = series.cat.codes.astype("float64").where(series.notna())
    return frame


def _candidate_columns(X: Any, values: Any, rows: Any) -> list[str]:
    """All columns, or the IMPORTANCE_FEATURES most correlated with the predictions when there are more."""
    import numpy as np  # noqa: PLC0415 - lazy: numpy only when the report is built

    columns = [str(c) for c in X.columns]
    if len(columns) <= IMPORTANCE_FEATURES:
        return columns
    signal = values[rows][:, -1]
    scores = []
    for column in columns:
        series = X[column].iloc[rows]
        numeric = series.cat.codes if hasattr(series, "cat") else series
        x = np.asarray(numeric, dtype=float)
        ok = np.isfinite(x)
        corr = np.corrcoef(x[ok], signal[ok])[0, 1] if ok.sum() > 2 and np.std(x[ok]) > 0 else 0.0
        scores.append(abs(corr) if np.isfinite(corr) else 0.0)
    keep = sorted(range(len(columns)), key=lambda i: -scores[i])[:IMPORTANCE_FEATURES]
    return [columns[i] for i in sorted(keep)]


# -- charts --------------------------------------------------------------------------------------------------------


def _png(figure: Any) -> bytes:
    # lazy: matplotlib only when a figure is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _short(name: str, limit: int = 42) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def cv_chart(rows: list[dict[str, Any]], metric: str, direction: str) -> bytes:
    """CV per candidate: each fold a dot, the mean a diamond with ± one standard deviation; the chosen in colour."""
    from matplotlib.figure import Figure  # noqa: PLC0415 - lazy: matplotlib only when a figure is drawn

    shown = [row for row in rows if row.get("cv_score") is not None][:14]
    figure = Figure(figsize=(7.5, 0.45 * max(3, len(shown)) + 1.2))
    axes = figure.add_subplot()
    for position, row in enumerate(reversed(shown)):
        colour = "#d9480f" if row["role"] == "chosen" else ("#1c7ed6" if row["role"] == "in blend" else "#495057")
        folds = row.get("fold_scores") or []
        axes.scatter(folds, [position] * len(folds), s=18, color=colour, alpha=0.45, zorder=2)
        axes.errorbar(
            row["cv_score"], position, xerr=row.get("cv_std") or 0, fmt="D", color=colour, capsize=4, zorder=3
        )
    axes.set_yticks(range(len(shown)), [_short(row["name"]) for row in reversed(shown)])
    axes.set_xlabel(f"CV {metric} ({direction}); dots: folds, diamond: mean ± std")
    axes.grid(axis="x", alpha=0.3)
    axes.set_title("Cross-validated score per candidate")
    return _png(figure)


def importance_chart(importance: Importance) -> bytes:
    from matplotlib.figure import Figure  # noqa: PLC0415 - lazy: matplotlib only when a figure is drawn

    features = list(reversed(importance.features))
    figure = Figure(figsize=(7.5, 0.35 * max(3, len(features)) + 1.2))
    axes = figure.add_subplot()
    axes.barh(
        range(len(features)),
        [f[1] for f in features],
        xerr=[f[2] for f in features],
        color="#1c7ed6",
        capsize=2,
    )
    axes.set_yticks(range(len(features)), [_short(f[0], 36) for f in features])
    axes.set_xlabel("drop in the surrogate's fit when the feature is shuffled")
    axes.set_title("Top feature importances of the chosen model")
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def target_chart(profile: Any, data: Any) -> bytes | None:
    import numpy as np  # noqa: PLC0415 - lazy: numpy/matplotlib only when a figure is drawn
    from matplotlib.figure import Figure  # noqa: PLC0415

    if data is None:
        return None
    y = np.asarray(data.y)
    figure = Figure(figsize=(7.5, 2.6))
    axes = figure.add_subplot()
    if profile.task_type == "regression":
        finite = y[np.isfinite(y)]
        axes.hist(finite, bins=40, color="#495057")
        axes.set_xlabel(profile.label_column)
    else:
        counts = np.bincount(y.astype(int), minlength=len(profile.classes))[:20]
        labels = [_short(str(c), 16) for c in profile.classes[: len(counts)]]
        axes.bar(range(len(counts)), counts, color="#495057")
        axes.set_xticks(range(len(counts)), labels, rotation=30 if len(counts) > 6 else 0)
    axes.set_ylabel("train rows")
    axes.set_title(f"Target distribution: {profile.label_column}")
    return _png(figure)


def _data_uri(png: bytes | None) -> str | None:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else None


# -- the page ------------------------------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _role(name: str, chosen: str) -> str:
    if name == chosen:
        return "chosen"
    return "in blend" if f"{name}*" in chosen else ""


def leaderboard(result: Mapping[str, Any], collector: ReportCollector | None, higher: bool) -> list[dict[str, Any]]:
    """One row per candidate (and the blend, when one was chosen), best first."""
    chosen_names = str(result.get("model") or "").split(" | ")
    rows: list[dict[str, Any]] = []
    records = [r for r in (collector.targets if collector else []) if r.chosen is not None]
    if records:
        for record in records:
            evaluations = list(record.evaluations)
            if all(e.name != record.chosen.name for e in evaluations):
                evaluations.append(record.chosen)
            target = record.profile.label_column if len(records) > 1 else None
            for evaluation in evaluations:
                folds = [s for s in (_finite(v) for v in evaluation.fold_scores) if s is not None]
                rows.append(
                    {
                        "name": evaluation.name,
                        "target": target,
                        "cv_score": _finite(evaluation.cv_score),
                        "fold_scores": folds,
                        "cv_std": _std(folds),
                        "folds": evaluation.n_folds,
                        "elapsed_s": round(float(evaluation.elapsed), 1),
                        "role": _role(evaluation.name, record.chosen.name),
                    }
                )
    else:
        chosen = chosen_names[0] if chosen_names else ""
        for candidate in result.get("candidates") or []:
            folds = [s for s in (_finite(v) for v in candidate.get("fold_scores") or []) if s is not None]
            rows.append(
                {
                    "name": str(candidate.get("name")),
                    "target": None,
                    "cv_score": _finite(candidate.get("cv_score")),
                    "fold_scores": folds,
                    "cv_std": _finite(candidate.get("cv_std")) if candidate.get("cv_std") is not None else _std(folds),
                    "folds": candidate.get("folds"),
                    "elapsed_s": candidate.get("elapsed_s"),
                    "role": _role(str(candidate.get("name")), chosen),
                }
            )
        if chosen and all(row["name"] != chosen for row in rows):
            rows.append(
                {
                    "name": chosen,
                    "target": None,
                    "cv_score": _finite(result.get("cv_score")),
                    "fold_scores": [],
                    "cv_std": None,
                    "folds": result.get("cv_folds"),
                    "elapsed_s": None,
                    "role": "chosen",
                }
            )
    sign = -1 if higher else 1
    rows.sort(key=lambda r: (r["target"] or "", r["cv_score"] is None, sign * (r["cv_score"] or 0.0)))
    return rows


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def fmt(value: Any, digits: int = 5) -> str:
    """Scores and numbers rounded for reading (5 significant digits), '—' for none."""
    if value is None:
        return "—"
    if isinstance(value, float):
        rounded = round_score(value, digits)
        return "—" if rounded is None else f"{rounded:g}"
    return str(value)


def _profile_view(record: TargetRecord | None, result: Mapping[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "n_train": result.get("n_train"),
        "n_test": result.get("n_test"),
        "task_type": result.get("task_type"),
        "target": result.get("label_column"),
        "roles": {},
        "classes": [],
        "summary": None,
    }
    if record is None:
        return view
    if record.roles is not None:
        view["roles"] = {name: len(cols) for name, cols in vars(record.roles).items() if cols}
    profile = record.profile
    if record.data is not None and profile.task_type != "regression":
        import numpy as np  # noqa: PLC0415 - lazy: numpy only when the report is built

        counts = np.bincount(np.asarray(record.data.y).astype(int), minlength=len(profile.classes))
        total = max(1, int(counts.sum()))
        view["classes"] = [
            {"label": str(label), "count": int(count), "share": count / total}
            for label, count in list(zip(profile.classes, counts, strict=False))[:20]
        ]
    elif record.data is not None:
        import numpy as np  # noqa: PLC0415 - lazy: numpy only when the report is built

        y = np.asarray(record.data.y, dtype=float)
        y = y[np.isfinite(y)]
        if len(y):
            view["summary"] = {
                "min": float(y.min()),
                "median": float(np.median(y)),
                "mean": float(y.mean()),
                "max": float(y.max()),
            }
    return view


def _chosen_code(record: TargetRecord | None) -> list[dict[str, str]]:
    if record is None or record.chosen is None:
        return []
    name = record.chosen.name
    used = [n for n in record.sources if n == name or f"{n}*" in name]
    return [{"name": n, "code": record.sources[n][:MAX_CODE_CHARS]} for n in used]


def render(context: Mapping[str, Any]) -> str:
    # lazy: jinja2 only when the report is rendered
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape  # noqa: PLC0415

    environment = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["fmt"] = fmt
    return environment.get_template("report.html.j2").render(**context)


@dataclass(frozen=True)
class ReportFiles:
    report: Path
    chart: Path | None


def write_report(
    out: Path,
    collector: ReportCollector | None,
    *,
    slug: str | None = None,
    url: str | None = None,
    run_id: str | None = None,
    cost: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
    log: Callable[..., None] | None = None,
) -> ReportFiles | None:
    """Write report.html and cv_chart.png into `out` and the cost into result.json; None (logged) if it fails —
    a run whose submission is written is not failed by its report."""
    say = log or (lambda *args, **kwargs: None)
    try:
        return _write_report(out, collector, slug=slug, url=url, run_id=run_id, cost=cost, log=say)
    except Exception as error:
        say(f"report.html not written: {type(error).__name__}: {error}", level="error")
        return None


def _write_report(
    out: Path,
    collector: ReportCollector | None,
    *,
    slug: str | None,
    url: str | None,
    run_id: str | None,
    cost: Callable[[Mapping[str, Any]], dict[str, Any]] | None,
    log: Callable[..., None],
) -> ReportFiles:
    result_path = out / RESULT_FILE
    report = RunReport.read(result_path)
    if cost is not None:
        report = report.updated({"cost": cost(report.as_dict())})
        report.write(result_path)
    metric = report.metric or ""
    higher = HIGHER_IS_BETTER.get(metric, True)
    direction = direction_text(higher)
    rows = leaderboard(report.as_dict(), collector, higher)
    # the email (built on the Lambda side, which has no metric table) shows the leaderboard as ranked here
    shown = [{k: v for k, v in row.items() if k != "fold_scores"} for row in rows]
    report = report.updated({"leaderboard": shown, "metric_direction": direction})
    report.write(result_path)
    result = report.as_dict()
    record = next((r for r in (collector.targets if collector else []) if r.chosen is not None), None)
    chart = cv_chart(rows, metric, direction) if rows else None
    importance: Importance | None = None
    importance_note = ""
    if record is not None and record.data is not None:
        try:
            importance = surrogate_importance(record.data, record.chosen)
        except Exception as error:  # importance is extra: say why it is missing
            importance_note = f"not measured: {type(error).__name__}: {error}"
            log(f"feature importance {importance_note}", level="warning")
        if importance is None and not importance_note:
            importance_note = "not measured: too few out-of-fold predictions or no features"
    else:
        importance_note = "not measured: the run's data was not kept for the report"
    context = {
        "slug": slug or "",
        "url": url or (competition_url(slug) if slug else ""),
        "run_id": run_id,
        "result": defaultdict(lambda: None, result),  # a field the run did not record reads as none
        "status": result.get("status"),
        "metric": metric,
        "direction": direction,
        "rows": rows,
        "cv_chart": _data_uri(chart),
        "importance": importance,
        "importance_chart": _data_uri(importance_chart(importance)) if importance and importance.features else None,
        "importance_note": importance_note,
        "target_chart": _data_uri(target_chart(record.profile, record.data)) if record else None,
        "profile": _profile_view(record, result),
        "code": _chosen_code(record),
        "cost": result.get("cost"),
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    page = out / REPORT
    page.write_text(render(context), encoding="utf-8")
    chart_path = None
    if chart:
        chart_path = out / CV_CHART
        chart_path.write_bytes(chart)
    log(f"wrote {page.name} ({page.stat().st_size // 1024} KB)" + (f" and {CV_CHART}" if chart_path else ""))
    return ReportFiles(page, chart_path)


def plain_leaderboard(rows: list[Mapping[str, Any]], limit: int = 10) -> str:
    """The leaderboard as fixed-width text (the CLI and plain-text email)."""
    lines = [f"{'candidate':<44} {'CV mean':>10} {'± std':>9} {'folds':>5} {'time':>7}"]
    for row in rows[:limit]:
        mark = {"chosen": " ← chosen", "in blend": " (in blend)"}.get(str(row.get("role")), "")
        elapsed = row.get("elapsed_s")
        lines.append(
            f"{_short(str(row['name']), 44):<44} {fmt(row.get('cv_score')):>10} {fmt(row.get('cv_std'), 2):>9} "
            f"{row.get('folds') or '—':>5} {(f'{elapsed:.1f}s' if isinstance(elapsed, int | float) else '—'):>7}{mark}"
        )
    return "\n".join(lines)


__all__ = ["CV_CHART", "REPORT", "ReportCollector", "fargate_task", "run_cost", "write_report"]
