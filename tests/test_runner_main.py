"""The Fargate entrypoint end to end against moto (S3, DynamoDB) and the fake Kaggle server.

The engine is injected here (tests/runner_task.py's FakeEngine writes what the real one writes) so these tests pin the
entrypoint's own contract: statuses, artifact keys, the data cache, failure reasons, SIGTERM.
tests/test_runner_main_engine.py runs the real engine.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import boto3
import pytest

from chalicelib.runs import Run, RunStore, Status
from chalicelib.vocabulary import SAMPLE_FILE
from runner import runner_main
from tests.moto_env import BUCKET, REGION
from tests.runner_task import COMPETITION, PLAN, SAMPLE, FakeEngine, keys_of, planned_run, stored, task_env

pytestmark = pytest.mark.aws


def mirror_with(tmp_path: Path, slug: str = "tiny") -> str:
    folder = tmp_path / "mirror" / slug
    folder.mkdir(parents=True)
    for name, content in COMPETITION.items():
        (folder / name).write_bytes(content)
    return str(tmp_path / "mirror")


def s3_text(key: str) -> str:
    return boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def test_a_good_run_uploads_every_artifact_and_records_score_and_keys(cloud, kaggle, capsys) -> None:
    run = planned_run(cloud)
    env = task_env(run, kaggle)

    code = runner_main.main(env=env, engine=FakeEngine())

    assert code == 0
    assert not {"KAGGLE_USERNAME", "KAGGLE_KEY"} & set(env)  # read once, then dropped from the environment
    after = stored(cloud, run.run_id)
    assert after.status is Status.RUNNING  # ValidateOutput and MarkSucceeded move it on
    assert [s for s in ("QUEUED", "PLANNED", "RUNNING") if s in after.timestamps] == ["QUEUED", "PLANNED", "RUNNING"]
    assert after.timestamps["QUEUED"] <= after.timestamps["PLANNED"] <= after.timestamps["RUNNING"]
    prefix = f"{run.run_id}/"
    uploaded = {"submission.csv", "logs.txt", "gpt_code_trace.txt", "result.json", "report.html", SAMPLE_FILE}
    assert keys_of(run.run_id) == uploaded
    assert (after.s3_key, after.sample_key, after.result_key, after.s3_prefix) == (
        prefix + "submission.csv",
        prefix + SAMPLE_FILE,
        prefix + "result.json",
        prefix,
    )
    assert (after.cv_score, after.metric, after.error) == (0.75, "accuracy", None)
    assert s3_text(prefix + SAMPLE_FILE).encode() == SAMPLE
    logs = s3_text(prefix + "logs.txt")
    assert "engine: training" in logs and "downloaded from Kaggle" in logs
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(line["run_id"] == run.run_id for line in lines)


def test_the_engine_gets_the_stored_plan_and_the_time_budget(cloud, tmp_path) -> None:
    run = planned_run(cloud)
    engine = FakeEngine()

    runner_main.main(env=task_env(run, KAGENT_DATA_MIRROR=mirror_with(tmp_path)), engine=engine)

    (request,) = engine.calls
    assert request.plan == PLAN
    assert request.metric is None  # no metadata.json: the engine takes the plan's metric
    assert request.time_budget_s == 30


def test_a_second_run_of_the_same_competition_reads_the_cache_not_kaggle(cloud, kaggle) -> None:
    first, second = planned_run(cloud), planned_run(cloud)

    codes = [runner_main.main(env=task_env(run, kaggle), engine=FakeEngine()) for run in (first, second)]

    assert codes == [0, 0]
    assert kaggle.file_downloads["tiny"] == 1
    assert "from the S3 cache" in s3_text(f"{second.run_id}/logs.txt")


def test_kaggle_refusal_fails_the_run_with_the_actionable_reason_and_uploads_logs(cloud, kaggle) -> None:
    kaggle.rules_not_accepted.add("tiny")
    run = planned_run(cloud)
    engine = FakeEngine()

    code = runner_main.main(env=task_env(run, kaggle), engine=engine)

    assert code == runner_main.EXIT_RUN_FAILED
    after = stored(cloud, run.run_id)
    assert after.status is Status.FAILED
    assert after.error == "accept the rules at https://www.kaggle.com/c/tiny/rules, then retry"
    assert engine.calls == []
    assert keys_of(run.run_id) == {"logs.txt"}
    assert "accept the rules" in s3_text(f"{run.run_id}/logs.txt")


def test_engine_failure_records_its_reason_and_uploads_logs_and_trace(cloud, tmp_path) -> None:
    run = planned_run(cloud)

    code = runner_main.main(
        env=task_env(run, KAGENT_DATA_MIRROR=mirror_with(tmp_path)), engine=FakeEngine(fail="no candidate trained")
    )

    assert code == runner_main.EXIT_RUN_FAILED
    after = stored(cloud, run.run_id)
    assert (after.status, after.error, after.s3_key) == (Status.FAILED, "no candidate trained", None)
    assert keys_of(run.run_id) == {"logs.txt", "gpt_code_trace.txt", "result.json", SAMPLE_FILE}


def test_an_engine_crash_is_recorded_with_the_phase_and_error(cloud, tmp_path) -> None:
    run = planned_run(cloud)

    code = runner_main.main(
        env=task_env(run, KAGENT_DATA_MIRROR=mirror_with(tmp_path)), engine=FakeEngine(raise_=MemoryError("oom"))
    )

    assert code == runner_main.EXIT_RUN_FAILED
    assert stored(cloud, run.run_id).error == "runner error while training: MemoryError: oom"
    assert "logs.txt" in keys_of(run.run_id)


def test_sigterm_records_the_reason_uploads_what_exists_and_exits_non_zero(cloud, tmp_path) -> None:
    run = planned_run(cloud)
    before = signal.getsignal(signal.SIGTERM)

    code = runner_main.main(
        env=task_env(run, KAGENT_DATA_MIRROR=mirror_with(tmp_path)), engine=FakeEngine(sigterm=True)
    )

    assert code == runner_main.EXIT_TERMINATED
    after = stored(cloud, run.run_id)
    assert after.status is Status.FAILED
    assert after.error == "stopped by SIGTERM while training (the task was stopped or timed out)"
    assert {"logs.txt", "gpt_code_trace.txt"} <= keys_of(run.run_id)
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is scoped to the run


def test_a_terminal_run_is_left_untouched_and_no_work_is_done(cloud, tmp_path) -> None:
    run = planned_run(cloud)
    RunStore(cloud).fail(run.run_id, "cancelled by the user")
    engine = FakeEngine()

    code = runner_main.main(env=task_env(run, KAGENT_DATA_MIRROR=mirror_with(tmp_path)), engine=engine)

    assert code == runner_main.EXIT_NOT_RUNNABLE
    after = stored(cloud, run.run_id)
    assert (after.status, after.error) == (Status.FAILED, "cancelled by the user")
    assert engine.calls == []
    assert keys_of(run.run_id) == set()


def test_a_retried_task_takes_over_a_run_already_running(cloud, tmp_path) -> None:
    run = planned_run(cloud)
    RunStore(cloud).transition(run.run_id, Status.RUNNING)

    code = runner_main.main(env=task_env(run, KAGENT_DATA_MIRROR=mirror_with(tmp_path)), engine=FakeEngine())

    assert code == 0
    assert stored(cloud, run.run_id).s3_key == f"{run.run_id}/submission.csv"


def test_an_unknown_run_id_exits_without_work(cloud, tmp_path) -> None:
    ghost = Run(
        "00000000-0000-4000-8000-000000000000", "https://www.kaggle.com/competitions/tiny", "tiny", "", Status.QUEUED
    )

    assert runner_main.main(env=task_env(ghost), engine=FakeEngine()) == runner_main.EXIT_NOT_RUNNABLE


def test_missing_run_id_is_a_one_line_configuration_error(capsys) -> None:
    code = runner_main.main(env={"URL": "https://www.kaggle.com/competitions/tiny"})

    assert code == runner_main.EXIT_BAD_INPUT
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["message"] == "runner configuration: the runner task needs RUN_ID in its environment"


def test_a_disarmed_guard_notes_sigterm_without_interrupting_the_wrap_up() -> None:
    with runner_main.SigtermGuard() as guard:
        guard.armed = False
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # let the handler run
        assert guard.received
    with pytest.raises(runner_main.Terminated), runner_main.SigtermGuard():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)


def test_a_metric_in_metadata_json_is_passed_to_the_engine(cloud, tmp_path) -> None:
    run = planned_run(cloud)
    mirror = mirror_with(tmp_path)
    (Path(mirror) / "tiny" / "metadata.json").write_text(json.dumps({"metric": "roc_auc"}))
    engine = FakeEngine()

    runner_main.main(env=task_env(run, KAGENT_DATA_MIRROR=mirror), engine=engine)

    assert engine.calls[0].metric == "roc_auc"
