"""Find a competition's files: a folder or a `.zip` as Kaggle delivers it (zips inside zips too).

Kaggle names the sample submission in many ways (`sample_submission.csv`, `sampleSubmission.csv`,
`gender_submission.csv`, `submission_format.csv`, ...); train and test are `train.csv` and `test.csv` (sometimes zipped
themselves). Anything else is an extra file that the runner ignores (it is listed so the log can say so).
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import InputError

MAX_ZIP_DEPTH = 4
MAX_UNZIPPED_BYTES = 8 * 1024**3  # a zip bomb guard far above any tabular competition this runner can train on
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv")
_SAMPLE_WORDS = re.compile(r"sample|submission|submit|format", re.IGNORECASE)


@dataclass(frozen=True)
class CompetitionFiles:
    """Where the competition's files are after unpacking, and the metric its optional `metadata.json` names."""

    root: Path
    train: Path
    test: Path
    sample: Path
    extra: tuple[Path, ...] = field(default_factory=tuple)
    metric: str | None = None


def locate_competition(path: Path, workdir: Path) -> CompetitionFiles:
    """Unpack `path` (folder or zip) into `workdir` as needed and find train, test and the sample submission."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"data not found: {path}")
    unpacked = Path(workdir) / "data"
    if path.is_dir():
        root = path
        _unzip_nested(root, unpacked, depth=0)
    elif zipfile.is_zipfile(path):
        _extract(path, unpacked)
        root = unpacked
        _unzip_nested(unpacked, unpacked, depth=1)
    elif path.suffix.lower() == ".zip":
        raise InputError(f"{path.name} is not a valid zip file (corrupt or truncated)")
    else:
        raise InputError(f"data must be a folder or a .zip, got the file {path.name}")
    files = _candidate_files(root, unpacked)
    return _classify(root, files)


def _extract(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            total = sum(info.file_size for info in zf.infolist())
            if total > MAX_UNZIPPED_BYTES:
                raise InputError(f"{archive.name} unpacks to {total / 1024**3:.1f} GB, more than this runner accepts")
            target.mkdir(parents=True, exist_ok=True)
            base = target.resolve()
            for info in zf.infolist():
                destination = (target / info.filename).resolve()
                if not destination.is_relative_to(base):
                    raise InputError(f"{archive.name} contains an unsafe path: {info.filename}")
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, destination.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise InputError(f"{archive.name} is not a valid zip file ({exc})") from None


def _unzip_nested(scan: Path, unpacked: Path, depth: int) -> None:
    """Extract every zip under `scan` into `unpacked` (never writing into the user's folder)."""
    if depth > MAX_ZIP_DEPTH:
        return
    for archive in sorted(scan.rglob("*.zip")):
        if not archive.is_file() or _is_hidden(archive, scan):
            continue
        target = unpacked / f"{archive.stem}__unzipped"
        if target.exists():
            continue
        if not zipfile.is_zipfile(archive):
            raise InputError(f"{archive.name} is not a valid zip file (corrupt or truncated)")
        _extract(archive, target)
        _unzip_nested(target, target, depth + 1)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in path.relative_to(root).parts)


def _candidate_files(root: Path, unpacked: Path) -> list[Path]:
    roots = [root] if root == unpacked or not unpacked.exists() else [root, unpacked]
    files: list[Path] = []
    for base in roots:
        files.extend(p for p in base.rglob("*") if p.is_file() and not _is_hidden(p, base))
    return sorted(set(files), key=lambda p: (len(p.parts), str(p)))


def _table_stem(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in _TABLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _classify(root: Path, files: list[Path]) -> CompetitionFiles:
    tables = [(p, stem) for p in files if (stem := _table_stem(p)) is not None]
    train = _first(p for p, stem in tables if stem == "train")
    test = _first(p for p, stem in tables if stem == "test")
    samples = [p for p, stem in tables if stem not in ("train", "test") and _SAMPLE_WORDS.search(stem)]
    sample = min(samples, key=_sample_rank) if samples else None
    missing = [name for name, found in (("train.csv", train), ("test.csv", test)) if found is None]
    if sample is None:
        missing.append("a sample submission (e.g. sample_submission.csv)")
    if missing:
        seen = ", ".join(p.name for p in files[:8]) or "no files"
        raise InputError(f"missing {' and '.join(missing)} in {root.name} (found: {seen})")
    assert train is not None and test is not None and sample is not None
    metadata = _first(p for p in files if p.name.lower() == "metadata.json")
    chosen = {train, test, sample, metadata}
    extra = tuple(p for p in files if p not in chosen and p.suffix.lower() != ".zip")
    return CompetitionFiles(root, train, test, sample, extra, _metadata_metric(metadata))


def _sample_rank(path: Path) -> tuple[int, int]:
    """Prefer names saying submission (`gender_submission.csv`) over ones only saying sample (`train_sample.csv`)."""
    name = path.name.lower()
    return (0 if "submission" in name or "submit" in name else 1, len(path.parts))


def _first(paths: Iterable[Path]) -> Path | None:
    return next(iter(paths), None)


def _metadata_metric(metadata: Path | None) -> str | None:
    if metadata is None:
        return None
    try:
        content = json.loads(metadata.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{metadata.name} is not valid JSON ({exc})") from None
    metric = content.get("metric") if isinstance(content, dict) else None
    if metric is not None and not isinstance(metric, str):
        raise InputError(f"{metadata.name}: 'metric' must be a string, got {metric!r}")
    return metric or None
