"""POST /run and GET /runs rejections through chalice.test.Client: cases that change nothing share one moto world."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.api_calls import BAD_EMAILS, BAD_URLS, EMAIL, TITANIC, executions, post_run
from tests.moto_env import app_over_moto

pytestmark = pytest.mark.aws


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch, app_over_moto(monkeypatch, tmp_path_factory.mktemp("p")) as c:
        yield c


@pytest.mark.parametrize("url", BAD_URLS)
def test_post_run_rejects_bad_urls_with_400_naming_url(shared_client, url):
    response = post_run(shared_client, url=url)
    assert response.status_code == 400
    assert response.json_body["field"] == "url"
    assert response.json_body["error"]
    assert executions() == []


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_post_run_rejects_bad_emails_with_400_naming_email(shared_client, email):
    response = post_run(shared_client, email=email)
    assert response.status_code == 400
    assert response.json_body["field"] == "email"


@pytest.mark.parametrize(
    ("path", "field"),
    [("/run", "url"), (f"/run?url={quote(TITANIC)}", "email"), (f"/run?email={EMAIL}", "url")],
)
def test_post_run_names_the_missing_field(shared_client, path, field):
    response = shared_client.http.post(path)
    assert response.status_code == 400
    assert response.json_body["field"] == field


def test_post_run_with_a_body_that_is_not_json_names_the_missing_field(shared_client):
    response = shared_client.http.post("/run", headers={"content-type": "application/json"}, body="{not json")
    assert response.status_code == 400
    assert response.json_body["field"] == "url"


@pytest.mark.parametrize("run_id", ["0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f", "%23slots", "nope"])
def test_get_unknown_run_is_404(shared_client, run_id):
    response = shared_client.http.get(f"/runs/{run_id}")
    assert response.status_code == 404
    assert response.json_body["error"]
