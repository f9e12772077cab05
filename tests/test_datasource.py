"""Where competition data comes from: the local mirror, the S3 cache (moto), then Kaggle, which fills the cache."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from runner.datasource import CACHE_PREFIX, DataSource, DataSourceError, S3DataCache, find_in_mirror
from runner.kaggle_client import KaggleCredentials, KaggleDownloader, RetryPolicy
from tests.fake_kaggle import FakeKaggle, zip_bytes
from tests.moto_env import BUCKET, REGION, create_bucket, fake_credentials

FILES = {"train.csv": b"id,x,y\n1,0.5,0\n", "test.csv": b"id,x\n2,0.1\n", "sample_submission.csv": b"id,y\n2,0\n"}


class CountingDownload:
    """Stands in for Kaggle: writes `<slug>.zip` like the real client and counts calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, slug: str, dest: Path) -> Path:
        self.calls.append(slug)
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"{slug}.zip"
        path.write_bytes(zip_bytes(FILES))
        return path


@pytest.fixture
def s3(monkeypatch):
    fake_credentials(monkeypatch)
    with mock_aws():
        create_bucket()
        yield boto3.client("s3", region_name=REGION)


def test_mirror_folder_is_used_without_downloading(tmp_path) -> None:
    (tmp_path / "mirror" / "tiny").mkdir(parents=True)
    download = CountingDownload()

    fetched = DataSource(mirror=tmp_path / "mirror", download=download).fetch("tiny", tmp_path / "work")

    assert fetched.path == tmp_path / "mirror" / "tiny"
    assert fetched.origin == "mirror"
    assert download.calls == []


def test_mirror_zip_is_returned_as_kaggle_delivers_it(tmp_path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.zip").write_bytes(zip_bytes(FILES))

    assert find_in_mirror(mirror, "tiny", tmp_path / "work") == mirror / "tiny.zip"


def test_mirror_zip_with_metadata_beside_it_is_staged_together(tmp_path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.zip").write_bytes(zip_bytes(FILES))
    (mirror / "tiny.metadata.json").write_text(json.dumps({"metric": "accuracy"}))

    staged = find_in_mirror(mirror, "tiny", tmp_path / "work")

    assert staged is not None and staged.is_dir()
    assert sorted(p.name for p in staged.iterdir()) == ["metadata.json", "tiny.zip"]


def test_slug_missing_from_mirror_falls_through_to_download(tmp_path) -> None:
    (tmp_path / "mirror").mkdir()
    download = CountingDownload()

    fetched = DataSource(mirror=tmp_path / "mirror", download=download).fetch("tiny", tmp_path / "work")

    assert fetched.origin == "kaggle"
    assert download.calls == ["tiny"]
    assert (fetched.path / "tiny.zip").is_file()


@pytest.mark.aws
def test_download_fills_the_cache_and_the_next_fetch_uses_it(s3, tmp_path) -> None:
    download = CountingDownload()
    cache = S3DataCache(s3, BUCKET)

    first = DataSource(cache=cache, download=download).fetch("tiny", tmp_path / "run1")
    second = DataSource(cache=cache, download=download).fetch("tiny", tmp_path / "run2")

    assert (first.origin, second.origin) == ("kaggle", "cache")
    assert download.calls == ["tiny"]
    with zipfile.ZipFile(second.path / "tiny.zip") as archive:
        assert archive.read("train.csv") == FILES["train.csv"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{CACHE_PREFIX}/tiny/")["Contents"])
    assert keys == [f"{CACHE_PREFIX}/tiny/manifest.json", f"{CACHE_PREFIX}/tiny/tiny.zip"]


@pytest.mark.aws
def test_cache_without_a_manifest_counts_as_a_miss(s3, tmp_path) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{CACHE_PREFIX}/tiny/tiny.zip", Body=b"half-uploaded")
    download = CountingDownload()

    fetched = DataSource(cache=S3DataCache(s3, BUCKET), download=download).fetch("tiny", tmp_path / "work")

    assert fetched.origin == "kaggle"
    assert download.calls == ["tiny"]


@pytest.mark.aws
def test_a_cache_that_cannot_be_filled_does_not_fail_the_fetch(s3, tmp_path) -> None:
    messages: list[str] = []
    cache = S3DataCache(s3, "no-such-bucket")

    fetched = DataSource(cache=cache, download=CountingDownload(), log=messages.append).fetch("tiny", tmp_path)

    assert fetched.origin == "kaggle"
    assert any("could not read the S3 cache" in m for m in messages)
    assert any("could not fill the S3 cache" in m for m in messages)


@pytest.mark.aws
def test_a_manifest_naming_paths_outside_the_folder_is_refused(s3, tmp_path) -> None:
    body = json.dumps({"files": [{"name": "../../etc/passwd", "size": 1}]})
    s3.put_object(Bucket=BUCKET, Key=f"{CACHE_PREFIX}/tiny/manifest.json", Body=body)

    with pytest.raises(DataSourceError, match="malformed"):
        S3DataCache(s3, BUCKET).get("tiny", tmp_path)


@pytest.mark.aws
def test_real_kaggle_client_downloads_once_for_two_fetches(s3, monkeypatch, tmp_path) -> None:
    fake = FakeKaggle().start()
    fake.patch_endpoint(monkeypatch)
    try:
        fake.add_competition("tiny", FILES)
        kaggle = KaggleDownloader(
            KaggleCredentials(fake.username, fake.key), retry=RetryPolicy(base_delay_s=0), rng=random.Random(0)
        )
        source = DataSource(cache=S3DataCache(s3, BUCKET), download=kaggle.download)

        origins = [source.fetch("tiny", tmp_path / f"run{i}").origin for i in range(2)]
    finally:
        fake.stop()

    assert origins == ["kaggle", "cache"]
    assert fake.file_downloads["tiny"] == 1


@pytest.mark.parametrize("slug", ["", "../etc", "a/b", "x" * 101, "-leading"])
def test_unsafe_slugs_are_refused(slug: str, tmp_path) -> None:
    with pytest.raises(DataSourceError, match="not a Kaggle competition slug"):
        DataSource(download=CountingDownload()).fetch(slug, tmp_path)


def test_no_source_at_all_names_the_problem(tmp_path) -> None:
    with pytest.raises(DataSourceError, match="no data for competition 'tiny'"):
        DataSource(mirror=tmp_path).fetch("tiny", tmp_path / "work")
