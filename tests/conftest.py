"""Fixtures several test modules share; pytest hands them to every test under tests/, so no test imports another's.

Plain helpers stay importable modules, and a test module imports only those, never another test module
(tests/test_test_layout.py checks it):
- tests/moto_env.py: the AWS resources Terraform would create, in moto; the Chalice app over them.
- tests/fake_kaggle.py, tests/fake_openai.py: fake Kaggle and OpenAI servers on 127.0.0.1.
- tests/competitions.py: small Kaggle-format competitions built from scikit-learn's datasets.
- tests/sfn_harness.py: the real statemachine.asl.json run in moto's Step Functions.
- tests/fake_clock.py: a fake monotonic clock whose sleep advances it.
- tests/api_calls.py: calls to the HTTP API (as chalice.test.Client and as API Gateway delivers them), the IAM
  identities, and the URLs and addresses POST /run must refuse.
- tests/step_artifacts.py: the execution input the step Lambdas get and the artifacts runner_main leaves in S3.
- tests/runner_task.py: the Fargate entrypoint's fake engine, stored plan, planned run and task environment.
- tests/sandbox_bodies.py: model bodies that cheat or tune, and a tiny dataset and FitRequest to run them on.
- tests/hcl.py: Terraform read with python-hcl2, and a fake `terraform output -json`.
- tests/sources.py: the repository's Python read with ast (`require`, `parse`, app.py's Lambdas).
- tests/hostile/: hostile model bodies and the launcher that runs the real runner CLI under them.
Warning filters live in pyproject.toml ([tool.pytest.ini_options] filterwarnings).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.fake_kaggle import TINY_COMPETITION, FakeKaggle
from tests.moto_env import app_over_moto as app_over_moto_context
from tests.moto_env import create_bucket, create_runs_table, fake_credentials


@pytest.fixture
def app_over_moto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Makes the real Chalice app in `chalice.test.Client` over moto, for this test:
    `app_over_moto(state_machine=True, sender=True, **environment)` (tests/moto_env.py `app_over_moto`)."""
    with ExitStack() as stack:

        def make(*, state_machine: bool = True, sender: bool = True, **env: str) -> Any:
            return stack.enter_context(
                app_over_moto_context(monkeypatch, tmp_path, state_machine=state_machine, sender=sender, **env)
            )

        yield make


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The runner's AWS in moto: the runs table (yielded) and the artifacts bucket, fake credentials."""
    from moto import mock_aws  # noqa: PLC0415 - lazy: moto only for the tests that ask for this fixture

    from chalicelib import wiring  # noqa: PLC0415

    fake_credentials(monkeypatch)
    with mock_aws():
        table = create_runs_table()
        create_bucket()
        wiring.reset()
        yield table
    wiring.reset()


@pytest.fixture
def kaggle(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKaggle]:
    """The fake Kaggle API on 127.0.0.1, the official client pointed at it, serving the competition `tiny`."""
    fake = FakeKaggle().start()
    fake.patch_endpoint(monkeypatch)
    fake.add_competition("tiny", TINY_COMPETITION)
    yield fake
    fake.stop()
