"""Submission validator (standard library only): does a submission match its sample submission exactly?

Checks: identical header, same row count, the same set of ids (first column) with no duplicates, no empty or NaN
cells, numbers where the sample has numbers, probabilities within [0, 1] where the sample holds probabilities (values
in [0, 1], not all whole numbers). Every problem is reported, each precisely; row numbers count data rows from 1.

`str` arguments are CSV text (the ValidateOutput Lambda reads from S3); `pathlib.Path` arguments are files.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

MAX_PROBLEMS_PER_KIND = 10
_MISSING = {"", "nan", "na", "n/a", "null", "none", "inf", "-inf", "infinity", "-infinity"}


@dataclass(frozen=True)
class SubmissionProblem:
    """One thing wrong with a submission.csv (not runner.codegen.Problem: what the codegen loop is asked to solve)."""

    message: str
    row: int | None = None  # data row number, 1-based; None for file-level problems

    def __str__(self) -> str:
        return self.message if self.row is None else f"row {self.row}: {self.message}"


class InvalidSubmissionError(ValueError):
    """Raised by `check_submission`; `problems` holds every SubmissionProblem found."""

    def __init__(self, problems: list[SubmissionProblem]) -> None:
        self.problems = problems
        head = "; ".join(str(p) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(f"invalid submission: {head}{more}")


def check_submission(submission: str | Path, sample: str | Path, *, id_column: str | None = None) -> None:
    """Raise InvalidSubmissionError unless the submission is valid."""
    problems = validate_submission(submission, sample, id_column=id_column)
    if problems:
        raise InvalidSubmissionError(problems)


def validate_submission(
    submission: str | Path, sample: str | Path, *, id_column: str | None = None
) -> list[SubmissionProblem]:
    """All problems of `submission` measured against `sample` (empty list: valid).

    `id_column`: the sample's id column when known; otherwise the first column named like an id whose sample values
    are unique, else the first column with unique values, else the first column.
    """
    sub_rows, sub_problem = _parse(submission, "submission")
    sample_rows, sample_problem = _parse(sample, "sample submission")
    if sub_problem or sample_problem:
        return [p for p in (sub_problem, sample_problem) if p]
    header, rows = sub_rows[0], sub_rows[1:]
    sample_header, sample_body = sample_rows[0], sample_rows[1:]
    problems: list[SubmissionProblem] = []
    if header != sample_header:
        problems.append(SubmissionProblem(f"header is {_show(header)}, expected {_show(sample_header)}"))
    if len(rows) != len(sample_body):
        problems.append(SubmissionProblem(f"{len(rows)} data rows, expected {len(sample_body)}"))
    problems += _check_widths(rows, len(sample_header))
    id_index = _id_index(sample_header, sample_body, id_column)
    problems += _check_ids(rows, sample_body, sample_header[id_index], id_index)
    problems += _check_cells(rows, header if header == sample_header else sample_header, sample_body, id_index)
    return problems


def _parse(source: str | Path, label: str) -> tuple[list[list[str]], SubmissionProblem | None]:
    try:
        text = source.read_text(encoding="utf-8-sig") if isinstance(source, Path) else source.lstrip("\ufeff")
    except (OSError, UnicodeDecodeError) as exc:
        return [], SubmissionProblem(f"{label} cannot be read: {exc}")
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        return [], SubmissionProblem(f"{label} is not valid CSV: {exc}")
    if not rows:
        return [], SubmissionProblem(f"{label} is empty")
    return rows, None


def _show(header: list[str]) -> str:
    return ",".join(header)


def _check_widths(rows: list[list[str]], width: int) -> list[SubmissionProblem]:
    found = [
        SubmissionProblem(f"{len(row)} cells, expected {width}", i)
        for i, row in enumerate(rows, 1)
        if len(row) != width
    ]
    return _capped(found, "rows with the wrong number of cells")


def _id_index(header: list[str], sample_body: list[list[str]], id_column: str | None) -> int:
    if id_column is not None and id_column in header:
        return header.index(id_column)

    def unique(index: int) -> bool:
        values = [row[index] for row in sample_body if index < len(row)]
        return len(set(values)) == len(values) == len(sample_body)

    named = [i for i, name in enumerate(header) if "id" in name.lower() and unique(i)]
    distinct = [i for i in range(len(header)) if unique(i)]
    return (named or distinct or [0])[0]


def _check_ids(
    rows: list[list[str]], sample_body: list[list[str]], id_name: str, id_index: int
) -> list[SubmissionProblem]:
    expected = {row[id_index] for row in sample_body if id_index < len(row)}
    seen: dict[str, int] = {}
    duplicates, unexpected = [], []
    for number, row in enumerate(rows, 1):
        identifier = row[id_index] if id_index < len(row) else ""
        if identifier in seen:
            first = seen[identifier]
            duplicates.append(SubmissionProblem(f"{id_name} {identifier} appears twice (first at row {first})", number))
            continue
        seen[identifier] = number
        if identifier not in expected:
            unexpected.append(SubmissionProblem(f"{id_name} {identifier} is not in the sample submission", number))
    missing_ids = [row[id_index] for row in sample_body if id_index < len(row) and row[id_index] not in seen]
    problems = _capped(duplicates, "duplicated ids") + _capped(unexpected, "unexpected ids")
    if missing_ids:
        shown = ", ".join(missing_ids[:5]) + (", ..." if len(missing_ids) > 5 else "")
        problems.append(SubmissionProblem(f"{len(missing_ids)} ids of the sample submission are missing: {shown}"))
    return problems


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _column_kinds(header: list[str], sample_body: list[list[str]], id_index: int) -> list[str]:
    """Per column: 'probability', 'number' or 'text', from the sample's values."""
    kinds = []
    for index in range(len(header)):
        values = [row[index] for row in sample_body if index < len(row)]
        numbers = [_number(v) for v in values]
        if index == id_index or not values or any(n is None for n in numbers):
            kinds.append("text")
        elif all(0 <= n <= 1 for n in numbers if n is not None) and any(n is not None and n != int(n) for n in numbers):
            kinds.append("probability")
        else:
            kinds.append("number")
    return kinds


def _check_cells(
    rows: list[list[str]], header: list[str], sample_body: list[list[str]], id_index: int
) -> list[SubmissionProblem]:
    kinds = _column_kinds(header, sample_body, id_index)
    empty, not_numbers, out_of_range = [], [], []
    for number, row in enumerate(rows, 1):
        for index, cell in enumerate(row[: len(header)]):
            column = header[index]
            if cell.strip().lower() in _MISSING:
                empty.append(SubmissionProblem(f"{column} is empty or not a number ({cell!r})", number))
            elif kinds[index] != "text" and (value := _number(cell)) is None:
                not_numbers.append(SubmissionProblem(f"{column} must be a number, got {cell!r}", number))
            elif kinds[index] == "probability" and value is not None and not 0 <= value <= 1:
                out_of_range.append(SubmissionProblem(f"{column} must be a probability in [0, 1], got {cell}", number))
    return (
        _capped(empty, "empty cells")
        + _capped(not_numbers, "cells that are not numbers")
        + _capped(out_of_range, "probabilities out of range")
    )


def _capped(problems: list[SubmissionProblem], what: str) -> list[SubmissionProblem]:
    if len(problems) <= MAX_PROBLEMS_PER_KIND:
        return problems
    rest = len(problems) - MAX_PROBLEMS_PER_KIND
    return [*problems[:MAX_PROBLEMS_PER_KIND], SubmissionProblem(f"... and {rest} more {what}")]
