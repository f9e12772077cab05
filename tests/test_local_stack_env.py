"""The local stack's settings (the shell wins over the local defaults) and its outbox, without starting anything."""

from __future__ import annotations

import socket
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from chalicelib.notify import CopyingMailer, Email, OutboxMailer
from scripts import local_stack
from scripts.recordresources import LOCAL_DEFAULTS

LINK = "http://127.0.0.1:5000/kagent-local-artifacts/r1/submission.csv?X-Amz-Signature=" + "ab12" * 40 + "&x=1"


def test_the_shell_overrides_the_local_defaults_and_the_rest_is_filled_in() -> None:
    env = local_stack.stack_environment({"KAGENT_MAX_RUNNING": "1", "KAGENT_OUTBOX": "", "PATH": "/bin"}, 5123)
    assert env["KAGENT_MAX_RUNNING"] == "1"
    assert env["KAGENT_RUN_TIME_BUDGET_S"] == LOCAL_DEFAULTS["KAGENT_RUN_TIME_BUDGET_S"]
    assert env["KAGENT_OUTBOX"] == str(local_stack.REPO / ".local" / "outbox")
    assert env["KAGENT_DATA_MIRROR"] == str(local_stack.REPO / "examples" / "mirror")
    assert env["PATH"] == "/bin"


def test_the_app_reaches_the_emulator_with_fake_credentials_whatever_the_shell_has() -> None:
    shell = {"AWS_ACCESS_KEY_ID": "AKIAREAL", "AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": "t", "AWS_ENDPOINT_URL": "x"}
    env = local_stack.stack_environment(shell, 5123)
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5123"
    assert env["MOTO_PORT"] == "5123"
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert "AWS_PROFILE" not in env and "AWS_SESSION_TOKEN" not in env


def test_a_relative_mirror_is_taken_from_the_repository_root() -> None:
    env = local_stack.stack_environment({"KAGENT_DATA_MIRROR": "elsewhere/mirror"}, 5123)
    assert env["KAGENT_DATA_MIRROR"] == str(local_stack.REPO / "elsewhere" / "mirror")


@pytest.mark.parametrize("raw", ["http", "0", "70000", "-1"])
def test_a_bad_port_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(local_stack.StackError, match="PORT must be a port number"):
        local_stack.port_from({"PORT": raw}, "PORT", 8000)
    assert local_stack.port_from({}, "PORT", 8000) == 8000


def test_arguments_are_refused_with_a_one_line_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert local_stack.main(["--port", "9000"]) == 2
    assert "set PORT / MOTO_PORT" in capsys.readouterr().err


def test_chalice_local_serves_the_local_stage_on_loopback_without_autoreload() -> None:
    command = local_stack.chalice_command(8123)
    assert command[-8:] == ["local", "--stage", "local", "--host", "127.0.0.1", "--port", "8123", "--no-autoreload"]


def test_an_outbox_email_is_an_eml_file_with_the_link_on_one_line(tmp_path: Path) -> None:
    body = f"Your run succeeded.\n\nDownload submission.csv:\n{LINK}\n"
    OutboxMailer(tmp_path, "kagent@example.com").send(Email("me@example.com", "ready", body))
    (path,) = tmp_path.glob("*.eml")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert (message["From"], message["To"], message["Subject"]) == ("kagent@example.com", "me@example.com", "ready")
    assert LINK in path.read_text(encoding="utf-8").splitlines()
    content = message.get_body(("plain",))
    assert content is not None and content.get_content() == body


class Recorder:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def send(self, email: Email) -> None:
        self.log.append(self.name)


def test_the_copy_is_filed_before_the_real_mailer_sends() -> None:
    log: list[str] = []
    CopyingMailer(Recorder(log, "ses"), Recorder(log, "outbox")).send(Email("me@example.com", "s", "b"))
    assert log == ["outbox", "ses"]


def test_a_port_in_use_is_reported_naming_the_variable_to_change() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(local_stack.StackError, match=f"port {port} on 127.0.0.1 is in use: .* set MOTO_PORT"):
            local_stack.check_free(port, "MOTO_PORT")
