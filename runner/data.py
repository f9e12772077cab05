"""Find a competition's files: a folder or a `.zip` as Kaggle delivers it (zips inside zips too).

Kaggle names the sample submission in many ways (`sample_submission.csv`, `sampleSubmission.csv`,
`gender_submission.csv`, `submission_format.csv`, ...); train and test are `train.csv` and `test.csv` (sometimes zipped
themselves). Anything else is an extra file that the runner ignores (it is listed so the log can say so).

Unpacking spends one budget of bytes and one of files across every archive, nested ones included, so a zip of zips
cannot multiply the allowance. train, test and the sample that are not UTF-8 (Kaggle ships some Latin-1 and cp1252
competitions) are converted once to UTF-8 copies in the workdir, with the encoding charset-normalizer detects (Latin-1
when it cannot tell), and a note saying so; everything downstream then reads UTF-8.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import io
import json
import logging
import re
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from runner.errors import InputError

MAX_ZIP_DEPTH = 4
# Zip bomb guards, for all the archives of one competition together: far above any tabular competition this runner
# can train on, and below the Fargate task's 20-30 GiB of ephemeral storage.
MAX_UNZIPPED_BYTES = 8 * 1024**3
MAX_UNZIPPED_FILES = 10_000
_CHUNK = 8 * 1024**2
_DETECT_WINDOW = 1024**2  # bytes around the first invalid UTF-8 byte that charset-normalizer looks at
FALLBACK_ENCODING = "latin_1"  # decodes any bytes

log = logging.getLogger("runner.data")
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
    notes: tuple[str, ...] = ()  # what the log should say: tables converted from another encoding


@dataclass
class _Budget:
    """What is left of the bytes and files every archive of a competition may unpack to, together."""

    bytes_left: int
    files_left: int

    def take(self, archive: Path, infos: list[zipfile.ZipInfo]) -> None:
        files = [info for info in infos if not info.is_dir()]
        size = sum(info.file_size for info in files)
        if size > self.bytes_left:
            raise InputError(
                f"{archive.name} unpacks to {size / 1024**3:.2f} GB, past what is left of the "
                f"{MAX_UNZIPPED_BYTES / 1024**3:.1f} GB this runner unpacks for one competition (nested archives "
                f"included): {self.bytes_left / 1024**3:.2f} GB"
            )
        if len(files) > self.files_left:
            raise InputError(
                f"{archive.name} holds {len(files)} files, past what is left of the {MAX_UNZIPPED_FILES} files this "
                f"runner unpacks for one competition (nested archives included): {self.files_left}"
            )
        self.bytes_left -= size
        self.files_left -= len(files)


def locate_competition(path: Path, workdir: Path) -> CompetitionFiles:
    """Unpack `path` (folder or zip) into `workdir` as needed and find train, test and the sample submission."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"data not found: {path}")
    unpacked = Path(workdir) / "data"
    budget = _Budget(MAX_UNZIPPED_BYTES, MAX_UNZIPPED_FILES)
    if path.is_dir():
        root = path
        _unzip_nested(root, unpacked, depth=0, budget=budget)
    elif zipfile.is_zipfile(path):
        _extract(path, unpacked, budget)
        root = unpacked
        _unzip_nested(unpacked, unpacked, depth=1, budget=budget)
    elif path.suffix.lower() == ".zip":
        raise InputError(f"{path.name} is not a valid zip file (corrupt or truncated)")
    else:
        raise InputError(f"data must be a folder or a .zip, got the file {path.name}")
    files = _candidate_files(root, unpacked)
    return as_utf8(_classify(root, files), Path(workdir) / "utf8")


def _extract(archive: Path, target: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            budget.take(archive, zf.infolist())
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


def _unzip_nested(scan: Path, unpacked: Path, depth: int, budget: _Budget) -> None:
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
        _extract(archive, target, budget)
        _unzip_nested(target, target, depth + 1, budget)


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


# -- encodings ---------------------------------------------------------------------------------------------------------


def as_utf8(files: CompetitionFiles, target: Path) -> CompetitionFiles:
    """`files` with train, test and the sample as UTF-8: unchanged when they already are, else converted copies under
    `target` (gzipped tables come out plain), each conversion noted."""
    converted: dict[str, Path] = {}
    notes: list[str] = []
    for role in ("train", "test", "sample"):
        path: Path = getattr(files, role)
        found = non_utf8_encoding(path)
        if found is None:
            continue
        encoding, detected = found
        copy = target / role / (path.name[:-3] if path.name.lower().endswith(".gz") else path.name)
        used = _transcode(path, copy, encoding)
        how = "detected by charset-normalizer" if detected and used == encoding else "the fallback: no better fit"
        notes.append(f"{path.name} is not UTF-8: read as {used} ({how}) and converted to UTF-8")
        log.warning(notes[-1])
        converted[role] = copy
    if not converted:
        return files
    return dataclasses.replace(files, notes=files.notes + tuple(notes), **converted)  # type: ignore[arg-type]


def _open(path: Path) -> BinaryIO:
    if path.name.lower().endswith(".gz"):
        return cast(BinaryIO, gzip.open(path, "rb"))
    return path.open("rb")


def non_utf8_encoding(path: Path) -> tuple[str, bool] | None:
    """None when `path` is UTF-8 throughout; else the encoding it most likely is and whether charset-normalizer found
    it (Latin-1 when nothing fits better). Binary bytes no encoding fits are an InputError."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with _open(path) as source:
            while chunk := source.read(_CHUNK):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    start = max(0, error.start - _DETECT_WINDOW // 2)
                    return _detect(path, chunk[start : start + _DETECT_WINDOW])
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:  # the file ends inside a multi-byte character
        return FALLBACK_ENCODING, False
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path.name} is unreadable: {exc}") from None
    return None


def _detect(path: Path, sample: bytes) -> tuple[str, bool]:
    from charset_normalizer import from_bytes  # noqa: PLC0415 - lazy: only for the rare table that is not UTF-8

    best = from_bytes(sample).best()
    encoding = best.encoding if best is not None else None
    if encoding is not None and encoding not in ("utf_8", "ascii"):  # (it just failed as UTF-8)
        return str(encoding), True
    if b"\x00" in sample:  # no 8-bit text holds NUL bytes, and no 16- or 32-bit encoding fitted
        raise InputError(f"{path.name} is unreadable: binary bytes that no text encoding fits")
    return FALLBACK_ENCODING, False


def _transcode(source: Path, target: Path, encoding: str) -> str:
    """Write `source` decoded with `encoding` as UTF-8 to `target`; Latin-1 when `encoding` fails further on."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for attempt in (encoding, FALLBACK_ENCODING):
        try:
            with (
                _open(source) as raw,
                io.TextIOWrapper(raw, encoding=attempt, newline="") as text,
                target.open("w", encoding="utf-8", newline="") as sink,
            ):
                shutil.copyfileobj(text, sink, _CHUNK)
            return attempt
        except UnicodeDecodeError:
            continue
    raise AssertionError("Latin-1 decodes any bytes")  # pragma: no cover
