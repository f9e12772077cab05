"""What the user sees of a run (issue 14): GET /runs/{id} with live progress, presigned links, cost and the Kaggle
submission; the success email as HTML with the leaderboard and the inline chart, and its plain-text alternative."""

from __future__ import annotations

import email
import json
from email import policy

import pytest
from moto import mock_aws

from chalicelib import aws
from chalicelib.notify import CHART_CID, Email, InlineImage, OutboxMailer, SesMailer, success_email
from chalicelib.run_report import RunReport
from chalicelib.run_request import (
    ANONYMOUS_CALLER,  # the test client sends no IAM identity
    InvalidRequest,
    RunRequest,
    parse_run_request,
)
from chalicelib.runs import Run, RunStore, Status
from tests.moto_env import BUCKET, SENDER, cached_client, sent_emails, service_environment
from tests.step_artifacts import execution_input, put, runner_finished

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # the bytes only travel; nothing decodes them here
REQUEST = RunRequest(url="https://www.kaggle.com/competitions/titanic", slug="titanic", email="alice@example.com")
LEADERBOARD = [
    {
        "name": "blend(lightgbm_gbdt*0.70+linear*0.30)",
        "cv_score": 0.83512,
        "cv_std": 0.011,
        "folds": 5,
        "role": "chosen",
    },
    {"name": "lightgbm_gbdt", "cv_score": 0.8312, "cv_std": 0.02, "folds": 5, "role": "in blend"},
    {"name": "linear", "cv_score": 0.79, "cv_std": 0.03, "folds": 5, "role": "in blend"},
    {"name": "<script>alert(1)</script>", "cv_score": 0.5, "cv_std": None, "folds": 1, "role": ""},
]
RESULT = RunReport(
    status="succeeded",
    cv_score=0.83512,
    metric="accuracy",
    model="blend(lightgbm_gbdt*0.70+linear*0.30)",
    metric_direction="higher is better",
    leaderboard=LEADERBOARD,
)
COST = {"llm_tokens_in": 1200, "llm_tokens_out": 300, "vcpu_seconds": 240.0, "gb_seconds": 480.0, "total_usd": 0.0042}


def a_run(**fields) -> Run:
    base = {
        "run_id": "0b0e7f0c-59f5-4a8e-8f9e-3f1b2c3d4e5f",
        "url": REQUEST.url,
        "slug": "titanic",
        "email": "bob@example.com",
        "status": Status.SUCCEEDED,
        "timestamps": {"QUEUED": "2026-01-01T00:00:00.000Z", "SUCCEEDED": "2026-01-01T00:04:05.000Z"},
        "cv_score": 0.835123456,
        "metric": "accuracy",
        "cost": COST,
    }
    return Run(**(base | fields))


# -- the email ---------------------------------------------------------------------------------------------------


def test_the_success_email_is_html_with_leaderboard_chart_and_report_link_and_a_text_alternative():
    message = success_email(
        a_run(), "https://s3/sub?sig", 3600, report_link="https://s3/report.html?sig", result=RESULT, chart=PNG
    )

    assert message.html is not None
    assert f'src="cid:{CHART_CID}"' in message.html
    assert message.images == (InlineImage(CHART_CID, PNG, "cv_chart.png"),)
    for row in LEADERBOARD[:3]:
        assert row["name"] in message.html and row["name"] in message.body
    assert "&lt;script&gt;" in message.html and "<script>" not in message.html  # names are escaped
    assert 'href="https://s3/report.html?sig"' in message.html and "https://s3/report.html?sig" in message.body
    assert "0.835123" in message.body and "0.83512" in message.html  # rounded, never 16 digits
    assert "<- chosen" in message.body and "± 0.011" in message.body
    assert "$0.0042" in message.body and "240 vCPU-s" in message.body
    assert "Submit it at https://www.kaggle.com/competitions/titanic/submit" in message.body  # submit not asked


@pytest.mark.parametrize(
    ("submission", "expected"),
    [
        ({"status": "scored", "public_score": 0.81234}, "Submitted to Kaggle: public score 0.81234"),
        ({"status": "refused", "reason": "Kaggle's daily submission limit is reached"}, "daily submission limit"),
        ({"status": "submitted", "reason": "no public score within 300 s"}, "no public score within 300 s"),
    ],
)
def test_the_email_says_what_became_of_the_kaggle_submission(submission, expected):
    message = success_email(a_run(submit=True, kaggle_submission=submission), "https://s3/sub", 3600, result=RESULT)
    assert expected in message.body and expected.split(":")[0] in (message.html or "")


def test_the_outbox_keeps_text_html_and_the_chart_bound_to_its_content_id(tmp_path):
    message = success_email(a_run(), "https://s3/sub?sig", 3600, result=RESULT, chart=PNG)
    OutboxMailer(tmp_path).send(message)

    [path] = tmp_path.glob("*.eml")
    parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and "lightgbm_gbdt" in text.get_content()
    assert html is not None and f"cid:{CHART_CID}" in html.get_content()
    [image] = [part for part in parsed.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == f"<{CHART_CID}>"
    assert image.get_content() == PNG


@pytest.mark.aws
def test_ses_sends_the_chart_as_a_raw_mime_message_and_plain_html_through_send_email(monkeypatch):
    service_environment(monkeypatch)
    with mock_aws():
        ses = cached_client("ses")
        ses.verify_email_identity(EmailAddress=SENDER)
        mailer = SesMailer(ses, SENDER)
        mailer.send(success_email(a_run(), "https://s3/sub", 3600, result=RESULT, chart=PNG))
        mailer.send(Email("bob@example.com", "no chart", "text", html="<p>html</p>"))
        raw, plain = sent_emails()
    parsed = email.message_from_string(raw.raw_data, policy=policy.default)
    assert parsed["To"] == "bob@example.com"
    assert [p.get_content() for p in parsed.walk() if p.get_content_type() == "image/png"] == [PNG]
    assert plain.body == "<p>html</p>"  # moto keeps the HTML part of SendEmail


# -- POST /run submit, GET /runs/{id} ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), ("true", True), ("1", True), ("false", False), (None, False)]
)
def test_submit_is_a_boolean_field_of_the_request(value, expected):
    params = {"url": REQUEST.url, "email": REQUEST.email} | ({} if value is None else {"submit": value})
    assert parse_run_request(params).submit is expected


@pytest.mark.parametrize("value", ["maybe", 2, ["true"]])
def test_a_malformed_submit_is_refused_naming_the_field(value):
    with pytest.raises(InvalidRequest) as caught:
        parse_run_request({"url": REQUEST.url, "email": REQUEST.email, "submit": value})
    assert caught.value.field == "submit"


@pytest.fixture
def client(app_over_moto):
    return app_over_moto(KAGENT_MAX_RUNNING="3", state_machine=False)


@pytest.mark.aws
def test_post_run_with_submit_true_stores_it_on_the_run(client):
    reply = client.http.post(
        "/run",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"url": REQUEST.url, "email": REQUEST.email, "submit": True}),
    )
    assert reply.status_code in (202, 503), reply.body  # 503: no state machine here; the run exists either way
    run_id = json.loads(reply.body)["run_id"]
    run = RunStore(aws.runs_table()).get(run_id)
    assert run is not None and run.submit is True
    view = json.loads(client.http.get(f"/runs/{run_id}").body)
    assert view["submit"] is True


@pytest.mark.aws
def test_get_run_shows_live_progress_and_no_links_before_the_runner_uploaded(client):
    store = RunStore(aws.runs_table())
    run = store.admit(REQUEST, max_running=3, caller=ANONYMOUS_CALLER)
    store.transition(run.run_id, Status.RUNNING)
    progress = {"phase": "training", "candidate": 2, "candidates": 5, "candidate_name": "lightgbm_gbdt"}
    assert store.record_progress(run.run_id, progress | {"best_cv": 0.81, "elapsed_s": 42, "remaining_s": 120})

    view = json.loads(client.http.get(f"/runs/{run.run_id}").body)

    assert view["status"] == "RUNNING"
    assert view["progress"]["phase"] == "training" and view["progress"]["candidate_name"] == "lightgbm_gbdt"
    assert (view["progress"]["best_cv"], view["progress"]["remaining_s"]) == (0.81, 120)
    assert view["links"] == {"report_url": None, "logs_url": None, "result_url": None, "trace_url": None}


@pytest.mark.aws
def test_a_finished_run_links_report_logs_result_and_trace_and_emails_the_chart(client):
    store = RunStore(aws.runs_table())
    run = store.admit(REQUEST, max_running=3, caller=ANONYMOUS_CALLER)
    runner_finished(store, run)
    prefix = f"{run.run_id}/"
    put(prefix + "result.json", RESULT.to_json())
    put(prefix + "report.html", "<html>report</html>")
    put(prefix + "logs.txt", "log")
    put(prefix + "gpt_code_trace.txt", "trace")
    cached_client("s3").put_object(Bucket=BUCKET, Key=prefix + "cv_chart.png", Body=PNG)
    names = {"report_key": "report.html", "logs_key": "logs.txt", "trace_key": "gpt_code_trace.txt"}
    store.record(run.run_id, chart_key=prefix + "cv_chart.png", cost=COST, **{k: prefix + v for k, v in names.items()})
    client.lambda_.invoke("validate_output", execution_input(run))
    client.lambda_.invoke("mark_succeeded", execution_input(run))

    view = json.loads(client.http.get(f"/runs/{run.run_id}").body)

    for link, name in (("report_url", "report.html"), ("logs_url", "logs.txt"), ("result_url", "result.json")):
        assert f"{prefix}{name}" in view["links"][link] and "X-Amz-Signature" in view["links"][link]
    assert view["cost"]["total_usd"] == 0.0042
    [mail] = [m for m in sent_emails() if run.run_id in getattr(m, "raw_data", "")]
    parsed = email.message_from_string(mail.raw_data, policy=policy.default)
    html = parsed.get_body(("html",))
    assert html is not None and "lightgbm_gbdt" in html.get_content() and f"{prefix}report.html" in html.get_content()
    assert [p.get_content() for p in parsed.walk() if p.get_content_type() == "image/png"] == [PNG]
