"""Where a competition's files come from: a local mirror, then the S3 cache, then Kaggle (which then fills the cache).

What `fetch` returns is a folder or a zip exactly as Kaggle delivers it; `runner.data.locate_competition` unzips it and
finds train/test/sample. The S3 cache keeps Kaggle's bundle under `data-cache/<slug>/` with a `manifest.json` written
last, so a half-filled cache is never mistaken for a complete one.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

CACHE_PREFIX = "data-cache"
MANIFEST = "manifest.json"
METADATA = "metadata.json"
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")

Download = Callable[[str, Path], Path]
Log = Callable[[str], None]


class DataSourceError(Exception):
    """No source could deliver the competition; the message says why in one line."""


@dataclass(frozen=True)
class FetchedData:
    path: Path  # a folder or a zip, as Kaggle delivers it
    origin: str  # "mirror" | "cache" | "kaggle"


def check_slug(slug: str) -> str:
    """Slugs become S3 keys and file names: only letters, digits, hyphens and underscores pass."""
    if not _SLUG.match(slug):
        raise DataSourceError(f"not a Kaggle competition slug: {slug!r}")
    return slug


def find_in_mirror(mirror: Path, slug: str, workdir: Path) -> Path | None:
    """`<mirror>/<slug>/` or `<mirror>/<slug>.zip` (with an optional `<mirror>/<slug>.metadata.json` beside it)."""
    folder = mirror / slug
    if folder.is_dir():
        return folder
    archive = mirror / f"{slug}.zip"
    if not archive.is_file():
        return None
    sidecar = mirror / f"{slug}.{METADATA}"
    if not sidecar.is_file():
        return archive
    # A zip with its metadata beside it: stage both in one folder so the locator sees the metric.
    staged = workdir / "mirror" / slug
    staged.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(archive, staged / archive.name)
    shutil.copyfile(sidecar, staged / METADATA)
    return staged


class S3DataCache:
    """Kaggle's files for a slug under `<prefix>/<slug>/` in the artifacts bucket."""

    def __init__(self, s3: Any, bucket: str, prefix: str = CACHE_PREFIX) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix.strip("/")

    def key(self, slug: str, name: str) -> str:
        return f"{self._prefix}/{slug}/{name}"

    def get(self, slug: str, dest: Path) -> Path | None:
        """Download the cached files into `dest` and return it; None when the slug is not (completely) cached."""
        manifest = self._read_manifest(slug)
        if manifest is None:
            return None
        dest.mkdir(parents=True, exist_ok=True)
        for entry in manifest:
            target = dest / entry["name"]
            self._s3.download_file(self._bucket, self.key(slug, entry["name"]), str(target))
            if target.stat().st_size != entry["size"]:
                raise DataSourceError(f"cached file {entry['name']} of {slug} has the wrong size; delete the cache")
        return dest

    def put(self, slug: str, files: list[Path]) -> None:
        for path in files:
            self._s3.upload_file(str(path), self._bucket, self.key(slug, path.name))
        manifest = [{"name": path.name, "size": path.stat().st_size} for path in files]
        body = json.dumps({"slug": slug, "files": manifest}).encode()
        self._s3.put_object(Bucket=self._bucket, Key=self.key(slug, MANIFEST), Body=body)

    def _read_manifest(self, slug: str) -> list[dict[str, Any]] | None:
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=self.key(slug, MANIFEST))["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            return None
        files = json.loads(body).get("files") or []
        if not all(isinstance(f, dict) and _is_plain_name(f.get("name")) for f in files):
            raise DataSourceError(f"the cache manifest of {slug} is malformed; delete {self.key(slug, MANIFEST)}")
        return files or None


class DataCache(Protocol):
    """Where Kaggle's bundles are kept between runs: the S3 cache (cloud) or a local folder (the CLI)."""

    def get(self, slug: str, dest: Path) -> Path | None: ...
    def put(self, slug: str, files: list[Path]) -> None: ...


class LocalDataCache:
    """The CLI's cache: Kaggle's files for a slug under `<root>/<slug>/`, with the S3 cache's manifest written last
    (so a half-filled folder is never taken for a complete one)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def get(self, slug: str, dest: Path) -> Path | None:
        folder = self._root / slug
        try:
            files = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files") or []
        except (OSError, ValueError):
            return None
        if not files or not all(isinstance(f, dict) and _is_plain_name(f.get("name")) for f in files):
            return None
        dest.mkdir(parents=True, exist_ok=True)
        for entry in files:
            source = folder / entry["name"]
            if not source.is_file() or source.stat().st_size != entry.get("size"):
                return None
            shutil.copyfile(source, dest / entry["name"])
        return dest

    def put(self, slug: str, files: list[Path]) -> None:
        folder = self._root / slug
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)
        for path in files:
            shutil.copyfile(path, folder / path.name)
        manifest = [{"name": path.name, "size": path.stat().st_size} for path in files]
        (folder / MANIFEST).write_text(json.dumps({"slug": slug, "files": manifest}), encoding="utf-8")


def _is_plain_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and name == Path(name).name and name not in (".", "..")


class DataSource:
    """Mirror → S3 cache → Kaggle. Any source may be absent (None)."""

    def __init__(
        self,
        *,
        mirror: Path | None = None,
        cache: DataCache | None = None,
        download: Download | None = None,
        log: Log | None = None,
    ) -> None:
        self._mirror = mirror
        self._cache = cache
        self._download = download
        self._log = log or (lambda message: None)

    def fetch(self, slug: str, workdir: Path) -> FetchedData:
        check_slug(slug)
        if self._mirror is not None:
            found = find_in_mirror(self._mirror, slug, workdir)
            if found is not None:
                self._log(f"data for {slug} from the local mirror: {found}")
                return FetchedData(found, "mirror")
        cached = self._from_cache(slug, workdir / "cache" / slug)
        if cached is not None:
            self._log(f"data for {slug} from the {'S3 ' if isinstance(self._cache, S3DataCache) else ''}cache")
            return FetchedData(cached, "cache")
        if self._download is None:
            where = f" in the mirror {self._mirror}" if self._mirror else ""
            raise DataSourceError(f"no data for competition {slug!r}{where} and no Kaggle download configured")
        folder = workdir / "kaggle" / slug
        downloaded = self._download(slug, folder)
        self._log(f"data for {slug} downloaded from Kaggle: {downloaded.name} ({downloaded.stat().st_size} bytes)")
        self._fill_cache(slug, downloaded)
        return FetchedData(folder, "kaggle")

    def _from_cache(self, slug: str, dest: Path) -> Path | None:
        if self._cache is None:
            return None
        try:
            return self._cache.get(slug, dest)
        except Exception as error:  # an unreadable cache is a miss, not a failed run
            self._log(f"could not read the S3 cache for {slug}: {type(error).__name__}: {error}")
            shutil.rmtree(dest, ignore_errors=True)
            return None

    def _fill_cache(self, slug: str, downloaded: Path) -> None:
        if self._cache is None:
            return
        try:
            self._cache.put(slug, [downloaded])
            self._log(f"S3 cache filled for {slug}")
        except Exception as error:  # a cache we could not fill must not fail the run
            self._log(f"could not fill the S3 cache for {slug}: {type(error).__name__}: {error}")
