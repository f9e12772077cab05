"""Locust: the k6 scenario (POST /run at 10 -> 25 -> 50 req/s) plus GET /runs/{id} polling of the admitted runs.

    pip install locust==2.47.0
    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000                 # the local stack
    KAGENT_LOAD_AUTH=sigv4 AWS_REGION=eu-west-1 AWS_PROFILE=... \
        locust -f loadtest/locustfile.py --headless --host https://<api-id>.execute-api.<region>.amazonaws.com/api

Each simulated user runs one iteration per second: a POST /run (its own email address), then a GET /runs/{id} of a
run admitted so far, so N users are N POST/s plus N GET/s; the shape holds N at each rate of KAGENT_LOAD_RATES for
KAGENT_LOAD_STAGE_S seconds, then stops. Environment: KAGENT_LOAD_COMPETITION (competition URL), KAGENT_LOAD_RATES
("10,25,50"), KAGENT_LOAD_STAGE_S (60), KAGENT_LOAD_EMAIL_DOMAIN (example.com), KAGENT_LOAD_AUTH (none | sigv4: deployed
stages use IAM authorization; credentials come from the usual AWS settings). A 202 and a clean 429 (JSON error and a
Retry-After) count as successes, anything else as a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
from typing import Any
from urllib.parse import urlencode

from locust import HttpUser, LoadTestShape, constant_throughput, task

COMPETITION = os.environ.get("KAGENT_LOAD_COMPETITION", "https://www.kaggle.com/competitions/titanic")
RATES = [int(rate) for rate in os.environ.get("KAGENT_LOAD_RATES", "10,25,50").split(",") if rate.strip()]
STAGE_S = float(os.environ.get("KAGENT_LOAD_STAGE_S", "60"))
EMAIL_DOMAIN = os.environ.get("KAGENT_LOAD_EMAIL_DOMAIN", "example.com")
AUTH = os.environ.get("KAGENT_LOAD_AUTH", "none")
if AUTH not in ("none", "sigv4"):
    raise SystemExit(f"KAGENT_LOAD_AUTH must be none or sigv4, got {AUTH!r}")
if not RATES or min(RATES) < 1 or not 0 < STAGE_S <= 3600:
    raise SystemExit("KAGENT_LOAD_RATES must be positive whole numbers; KAGENT_LOAD_STAGE_S in (0, 3600]")

_admitted: list[str] = []
_lock = threading.Lock()
_serial = itertools.count()


def sigv4_headers(method: str, url: str) -> dict[str, str]:
    """Headers signing `method url` for API Gateway (execute-api) with the default AWS credentials."""
    import botocore.session  # noqa: PLC0415 - only for deployed stages
    from botocore.auth import SigV4Auth  # noqa: PLC0415
    from botocore.awsrequest import AWSRequest  # noqa: PLC0415

    session = botocore.session.get_session()
    credentials = session.get_credentials()
    if credentials is None:
        raise SystemExit("KAGENT_LOAD_AUTH=sigv4 needs AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID/...)")
    request = AWSRequest(method=method, url=url, data=b"")
    SigV4Auth(credentials, "execute-api", session.get_config_variable("region")).add_auth(request)
    return dict(request.headers.items())


class RunSubmitter(HttpUser):
    wait_time = constant_throughput(1)

    def _headers(self, method: str, url: str) -> dict[str, str]:
        return sigv4_headers(method, url) if AUTH == "sigv4" else {}

    def _url(self, path: str) -> str:
        return f"{(self.host or '').rstrip('/')}{path}"

    @task
    def submit_then_poll(self) -> None:
        self.post_run()
        self.poll_run()

    def post_run(self) -> None:
        query = urlencode({"url": COMPETITION, "email": f"locust{next(_serial)}@{EMAIL_DOMAIN}"})
        url = self._url(f"/run?{query}")
        headers = self._headers("POST", url)
        with self.client.post(url, headers=headers, name="POST /run", catch_response=True) as response:
            body = _json(response.text)
            if response.status_code == 202 and isinstance(body.get("run_id"), str):
                with _lock:
                    _admitted.append(body["run_id"])
                response.success()
            elif response.status_code == 429 and body.get("error") and _positive(response.headers.get("Retry-After")):
                response.success()
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    def poll_run(self) -> None:
        with _lock:
            if not _admitted:
                return
            run_id = random.choice(_admitted)
        url = self._url(f"/runs/{run_id}")
        with self.client.get(url, headers=self._headers("GET", url), name="GET /runs/{id}", catch_response=True) as r:
            status = _json(r.text).get("status")
            if r.status_code == 200 and status in ("QUEUED", "PLANNED", "RUNNING", "VALIDATED", "SUCCEEDED", "FAILED"):
                r.success()
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")


class RampingArrivalRate(LoadTestShape):
    """Hold RATES[i] users (= POST/s) for STAGE_S seconds each, then stop."""

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        for index, rate in enumerate(RATES):
            if elapsed < STAGE_S * (index + 1):
                return rate, float(rate)
        return None


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _positive(raw: str | None) -> bool:
    return raw is not None and raw.isdigit() and int(raw) > 0
