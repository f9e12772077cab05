"""The Plan step's Kaggle and OpenAI credentials: SSM SecureString parameters in deployed stages (moto SSM), the
environment in the local stage; a missing parameter is a note on the plan, never an error."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError
from chalice.test import Client
from moto import mock_aws

from chalicelib import aws, wiring
from chalicelib.credentials import PlanSecrets, read_ssm_secrets
from chalicelib.kaggle_meta import CompetitionMeta, KaggleCredentials, PlanRefused
from chalicelib.run_request import RunRequest
from chalicelib.runs import RunStore, Status
from tests.fake_openai import FakeOpenAI, ok
from tests.moto_env import app_client, cached_client, service_environment

pytestmark = pytest.mark.aws

PREFIX = "/kagent/test"
SECRETS = {"OPENAI_API_KEY": "sk-canary-from-ssm", "KAGGLE_USERNAME": "canary-user", "KAGGLE_KEY": "canary-kaggle-key"}
LLM_PLAN = {"task_type": "binary", "metric": "accuracy", "target_hints": ["Survived"], "approach": "LightGBM"}


def put_parameters(**values: str) -> None:
    for name, value in values.items():
        cached_client("ssm").put_parameter(Name=f"{PREFIX}/{name}", Value=value, Type="SecureString", Overwrite=True)


class KaggleSeen:
    """A stand-in for kaggle_meta.fetch_meta that records the credentials it was given."""

    def __init__(self, refuse: bool = False) -> None:
        self.auths: list[KaggleCredentials] = []
        self.refuse = refuse

    def __call__(self, slug: str, auth: KaggleCredentials) -> CompetitionMeta:
        self.auths.append(auth)
        if self.refuse:
            raise PlanRefused(f"accept the rules at https://www.kaggle.com/c/{slug}/rules, then retry")
        return CompetitionMeta(slug=slug, evaluation_metric="Categorization Accuracy", files=("train.csv",))


@pytest.fixture
def llm():
    with FakeOpenAI(default=ok(json.dumps(LLM_PLAN))) as server:
        yield server


@contextmanager
def stage(monkeypatch, tmp_path, llm, kaggle: KaggleSeen, **env: str) -> Iterator[Client]:
    """The app against moto, the Plan step's Kaggle calls going to `kaggle`, its LLM to the fake server."""
    service_environment(monkeypatch, **env)
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)  # not a secret: where the (fake) OpenAI API is
    with mock_aws(), app_client(tmp_path, state_machine=False, sender=False) as client:
        wiring.service().plan_tools = functools.partial(wiring.plan_tools, fetch=kaggle)
        yield client


@pytest.fixture
def deployed(monkeypatch, tmp_path, llm):
    kaggle = KaggleSeen()
    with stage(monkeypatch, tmp_path, llm, kaggle, KAGENT_SSM_PREFIX=PREFIX) as client:
        yield client, kaggle


def new_run() -> Any:
    request = RunRequest(url="https://www.kaggle.com/competitions/titanic", slug="titanic", email="a@example.com")
    return RunStore(aws.runs_table()).admit(request, max_running=2)


def plan(client: Client, run: Any) -> dict[str, Any]:
    return client.lambda_.invoke("plan", {"run_id": run.run_id}).payload


def count_ssm_reads() -> list[int]:
    calls: list[int] = []
    aws.client("ssm").meta.events.register("before-call.ssm.GetParameters", lambda **_: calls.append(1))
    return calls


def test_a_deployed_plan_step_uses_the_llm_and_kaggle_with_credentials_read_once_from_ssm(deployed, llm, caplog):
    client, kaggle = deployed
    put_parameters(**SECRETS)
    reads = count_ssm_reads()
    caplog.set_level(logging.INFO)  # (botocore logs response bodies at DEBUG, as for every AWS call)

    first, second = new_run(), new_run()
    answers = [plan(client, first), plan(client, second)]

    assert [answer["source"] for answer in answers] == ["llm", "llm"]
    assert len(reads) == 1, "the parameters are read once per container"
    assert {header["authorization"] for header in llm.headers} == {f"Bearer {SECRETS['OPENAI_API_KEY']}"}
    assert [(auth.username, auth.key) for auth in kaggle.auths] == [
        (SECRETS["KAGGLE_USERNAME"], SECRETS["KAGGLE_KEY"])
    ] * 2
    stored = RunStore(aws.runs_table()).get(first.run_id)
    assert stored.status is Status.PLANNED and stored.plan["note"] == ""
    for name in SECRETS:
        assert name not in os.environ, f"{name} was written to os.environ"
    leaked = [
        v for v in SECRETS.values() if v in caplog.text or v in json.dumps(stored.plan) + repr(wiring.plan_secrets())
    ]
    assert not leaked, "a secret reached a log, the stored plan or a repr"


def test_the_rules_pre_check_runs_in_the_cloud_with_the_ssm_credentials(monkeypatch, tmp_path, llm):
    kaggle = KaggleSeen(refuse=True)
    with stage(monkeypatch, tmp_path, llm, kaggle, KAGENT_SSM_PREFIX=PREFIX) as client:
        put_parameters(KAGGLE_USERNAME=SECRETS["KAGGLE_USERNAME"], KAGGLE_KEY=SECRETS["KAGGLE_KEY"])
        run = new_run()
        with pytest.raises(PlanRefused, match=r"kaggle\.com/c/titanic/rules"):
            plan(client, run)
        assert kaggle.auths[0].username == SECRETS["KAGGLE_USERNAME"]
        assert RunStore(aws.runs_table()).get(run.run_id).status is Status.QUEUED  # MarkFailed takes it from here
        assert llm.requests == [], "no LLM call before the rules are accepted"


@pytest.mark.parametrize(
    ("present", "source", "kaggle_asked", "missing"),
    [
        ({}, "heuristic", False, ["OPENAI_API_KEY", "KAGGLE_USERNAME", "KAGGLE_KEY"]),
        ({"OPENAI_API_KEY": SECRETS["OPENAI_API_KEY"]}, "llm", False, ["KAGGLE_USERNAME", "KAGGLE_KEY"]),
        ({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, "heuristic", True, ["OPENAI_API_KEY"]),
    ],
)
def test_missing_parameters_are_not_an_error_and_the_plan_says_which(
    deployed, monkeypatch, present, source, kaggle_asked, missing
):
    client, kaggle = deployed
    if "OPENAI_API_KEY" not in present:
        monkeypatch.delenv("OPENAI_BASE_URL")  # else the (keyless) fake server would still count as an LLM
    put_parameters(**present)
    run = new_run()

    answer = plan(client, run)

    assert answer["source"] == source and bool(kaggle.auths) == kaggle_asked
    note = RunStore(aws.runs_table()).get(run.run_id).plan["note"]
    assert all(f"{PREFIX}/{name}" in note for name in missing), note
    assert "missing" in note


def test_the_local_stage_takes_the_environments_credentials_and_never_asks_ssm(monkeypatch, tmp_path, llm):
    kaggle = KaggleSeen()
    with stage(monkeypatch, tmp_path, llm, kaggle, KAGENT_STAGE="local", KAGENT_SSM_PREFIX="") as client:
        put_parameters(**SECRETS)  # present in "SSM", but the local stage does not look there
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-shell")
        monkeypatch.setenv("KAGGLE_USERNAME", "shell-user")
        monkeypatch.setenv("KAGGLE_KEY", "shell-key")
        reads = count_ssm_reads()

        answer = plan(client, new_run())

        assert answer["source"] == "llm" and not reads
        assert {header["authorization"] for header in llm.headers} == {"Bearer sk-from-the-shell"}
        assert kaggle.auths[0].username == "shell-user"


class RefusingSsm:
    def __init__(self) -> None:
        self.calls = 0

    def get_parameters(self, **kwargs: Any) -> Any:
        self.calls += 1
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetParameters")


def test_an_ssm_refusal_plans_without_credentials_and_is_asked_again_next_time(monkeypatch):
    monkeypatch.setenv("KAGENT_SSM_PREFIX", PREFIX)
    wiring.reset(clients=False)
    refusing = RefusingSsm()
    monkeypatch.setattr(aws, "client", lambda service: refusing)
    try:
        first = wiring.plan_secrets()
        wiring.plan_secrets()
    finally:
        wiring.reset(clients=False)
    assert refusing.calls == 2, "a failed read is not cached for the container's life"
    assert first.values == {} and "AccessDeniedException" in first.note and "planning without" in first.note


def test_read_ssm_secrets_names_every_missing_parameter_and_hides_values():
    with mock_aws():
        ssm = cached_client("ssm")
        ssm.put_parameter(Name=f"{PREFIX}/OPENAI_API_KEY", Value="sk-x", Type="SecureString")
        ssm.put_parameter(Name=f"{PREFIX}/KAGGLE_KEY", Value="  ", Type="SecureString")  # blank counts as missing
        found = read_ssm_secrets(ssm, PREFIX + "/")
    assert found == PlanSecrets(
        values={"OPENAI_API_KEY": "sk-x"}, missing=(f"{PREFIX}/KAGGLE_USERNAME", f"{PREFIX}/KAGGLE_KEY")
    )
    assert "sk-x" not in repr(found) and "sk-x" not in found.note
