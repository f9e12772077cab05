"""The entrypoint as the container runs it: a separate process, stopped with a real SIGTERM mid-download.

AWS is a moto server on 127.0.0.1; Kaggle is the fake Kaggle server, whose address the launcher puts in kagglesdk's
environment map (kagglesdk has no endpoint variable) before calling runner.runner_main.main().
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from chalicelib.runs import RunStore, Status
from runner import runner_main
from tests.fake_kaggle import FakeKaggle
from tests.moto_env import BUCKET, REGION, TABLE
from tests.runner_task import COMPETITION, PLAN, Request

pytestmark = [pytest.mark.slow, pytest.mark.aws]

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = (
    "import sys; from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint; "
    "_env_to_endpoint[KaggleEnv.PROD] = sys.argv[1]; "
    "from runner.runner_main import main; sys.exit(main())"
)


def test_sigterm_mid_download_records_the_reason_uploads_logs_and_exits_143(tmp_path: Path) -> None:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    kaggle = FakeKaggle(file_delay_s=60).start()
    kaggle.add_competition("tiny", COMPETITION)
    process: subprocess.Popen[str] | None = None
    try:
        host, port = moto.get_host_and_port()
        aws_env = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        dynamodb = session.resource("dynamodb", endpoint_url=aws_env["AWS_ENDPOINT_URL"])
        s3 = session.client("s3", endpoint_url=aws_env["AWS_ENDPOINT_URL"])
        table = dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3.create_bucket(Bucket=BUCKET)
        store = RunStore(table)
        run = store.admit(Request("https://www.kaggle.com/competitions/tiny", "tiny"), max_running=2)
        store.transition(run.run_id, Status.PLANNED, plan=PLAN)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            **aws_env,
            "RUN_ID": run.run_id,
            "URL": run.url,
            "EMAIL": run.email,
            "KAGENT_RUNS_TABLE": TABLE,
            "KAGENT_ARTIFACTS_BUCKET": BUCKET,
            "KAGGLE_USERNAME": kaggle.username,
            "KAGGLE_KEY": kaggle.key,
        }
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, kaggle.url],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert kaggle.download_started.wait(60), "the runner never reached the Kaggle download"
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)

        assert process.returncode == runner_main.EXIT_TERMINATED, err[-2000:]
        after = store.get(run.run_id)
        assert after is not None and after.status is Status.FAILED
        assert (
            after.error == "stopped by SIGTERM while fetching the competition data (the task was stopped or timed out)"
        )
        logs = s3.get_object(Bucket=BUCKET, Key=f"{run.run_id}/logs.txt")["Body"].read().decode()
        assert "stopped by SIGTERM" in logs
        assert '"level": "error"' in out  # the JSON log on stdout says it too
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        kaggle.stop()
        moto.stop()
