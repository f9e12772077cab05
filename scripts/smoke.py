"""First-deploy smoke test: one signed run on a deployed stage, followed to its end.

    .venv/bin/python scripts/smoke.py --stage dev --email me@example.com
    .venv/bin/python scripts/smoke.py --api https://<id>.execute-api.<region>.amazonaws.com/api/ --email me@example.com

What the offline rehearsal cannot show, this checks on the real stage: IAM (SigV4) authorization on POST /run and
GET /runs/{id} (signed with botocore and your credentials, as `aws` would), the state machine starting the Fargate
runner, and the email (SES). It posts a tiny competition (Titanic unless --url), prints each status as the run moves,
and ends on SUCCEEDED (exit 0) or FAILED (exit 1, with the run's reason); then check the mailbox. The API URL comes
from --api or from what `chalice deploy --stage <stage>` recorded (.chalice/deployed/<stage>.json, as `chalice url`
reads it). Exit codes: 0 succeeded, 1 failed, 2 bad input or refused request, 3 still running at --timeout.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "https://www.kaggle.com/competitions/titanic"
TERMINAL = {"SUCCEEDED", "FAILED"}
_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class SmokeError(Exception):
    """Bad input or a refused request: one line, exit 2."""


@dataclass(frozen=True)
class Signer:
    """SigV4 for execute-api with the caller's credentials (botocore: env, profile, SSO, instance role)."""

    credentials: Any
    region: str

    def headers(self, method: str, url: str, extra: Mapping[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth  # noqa: PLC0415 - lazy: botocore only when a request is signed
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415

        request = AWSRequest(method=method, url=url, headers=dict(extra))
        SigV4Auth(self.credentials, "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())


def api_url(stage: str | None, api: str | None, repo: Path = REPO) -> str:
    if api:
        url = api
    else:
        deployed = repo / ".chalice" / "deployed" / f"{stage}.json"
        if not deployed.is_file():
            raise SmokeError(
                f"no {deployed.relative_to(repo)}: run `chalice deploy --stage {stage}` first, or pass --api"
            )
        resources = json.loads(deployed.read_text(encoding="utf-8")).get("resources", [])
        urls = [item["rest_api_url"] for item in resources if item.get("resource_type") == "rest_api"]
        if not urls:
            raise SmokeError(f"{deployed.relative_to(repo)} records no REST API")
        url = urls[0]
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in {"https", "http"} or not parsed.netloc:
        raise SmokeError(f"--api must be an http(s) URL, got {url!r}")
    return url if url.endswith("/") else url + "/"


def region_of(url: str, fallback: str | None) -> str:
    """The API's region from its host name, else the session's."""
    match = _API_HOST.match(urllib.parse.urlsplit(url).hostname or "")
    region = match.group(1) if match else fallback
    if not region:
        raise SmokeError("no region: the API URL names none and none is configured (export AWS_DEFAULT_REGION)")
    return region


def session_signer(url: str, region: str | None) -> Signer:
    import botocore.session  # noqa: PLC0415 - lazy: botocore only for a deployed stage

    session = botocore.session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise SmokeError("no AWS credentials: configure a profile or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    return Signer(credentials.get_frozen_credentials(), region_of(url, region or session.get_config_variable("region")))


Send = Callable[[str, str, Mapping[str, str]], tuple[int, dict[str, Any]]]


def http_send(timeout_s: float = 30.0) -> Send:
    def send(method: str, url: str, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        body = b"" if method == "POST" else None
        request = urllib.request.Request(url, method=method, headers=dict(headers), data=body)  # noqa: S310 - checked
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310 - the user's own API URL
                return answer.status, decode(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, decode(error.read())
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise SmokeError(f"{method} {url}: {getattr(error, 'reason', error)}") from None

    return send


def decode(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except json.JSONDecodeError:
        return {"error": body[:200].decode("utf-8", "replace")}
    return data if isinstance(data, dict) else {"body": data}


def refused(status: int, body: Mapping[str, Any], what: str) -> SmokeError:
    hint = {
        403: " (the signature or execute-api:Invoke was refused: check the credentials' account and the API's region)",
        429: " (KAGENT_MAX_RUNNING runs are in flight: wait for one to finish)",
    }.get(status, "")
    message = body.get("error") or body.get("message") or body.get("Message") or json.dumps(body)[:200]
    return SmokeError(f"{what} answered {status}: {message}{hint}")


def start(api: str, competition: str, email: str, signer: Signer, send: Send) -> dict[str, Any]:
    query = urllib.parse.urlencode({"url": competition, "email": email})
    url = f"{api}run?{query}"
    headers = signer.headers("POST", url, {"Idempotency-Key": f"smoke-{uuid.uuid4()}"})
    status, body = send("POST", url, headers)
    if status != 202 or "run_id" not in body:
        raise refused(status, body, "POST /run")
    return body


def follow(
    api: str,
    run: Mapping[str, Any],
    signer: Signer,
    send: Send,
    *,
    timeout_s: float,
    poll_s: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """GET the run until it is SUCCEEDED or FAILED (its body), or None at the timeout. Prints each new status."""
    url = run.get("status_url") or f"{api}runs/{run['run_id']}"
    if not str(url).startswith(("http://", "https://")):
        url = urllib.parse.urljoin(api, str(url).lstrip("/"))
    deadline = clock() + timeout_s
    seen = ""
    while True:
        status, body = send("GET", url, signer.headers("GET", url, {}))
        if status != 200:
            raise refused(status, body, f"GET {urllib.parse.urlsplit(url).path}")
        current = str(body.get("status", ""))
        if current != seen:
            say(f"  {current}")
            seen = current
        if current in TERMINAL:
            return body
        if clock() >= deadline:
            return None
        sleep(poll_s)


def report(final: Mapping[str, Any], email: str) -> tuple[int, str]:
    if final.get("status") == "SUCCEEDED":
        lines = [
            f"run {final.get('run_id')} SUCCEEDED: {final.get('metric')} {final.get('cv_score')} (cross-validated)"
        ]
        lines.append(f"check {email} for the email with the submission link")
    else:
        lines = [f"run {final.get('run_id')} FAILED: {final.get('error')}"]
        lines.append(f"check {email} for the failure email; the runbook (README, deploy) says where to look next")
    if final.get("email_error"):
        lines.append(f"but the email was refused: {final['email_error']} (SES sandbox: verify the recipient too)")
    return (0 if final.get("status") == "SUCCEEDED" else 1), "\n".join(lines)


def main(argv: list[str] | None = None, send: Send | None = None, signer: Signer | None = None) -> int:
    parser = argparse.ArgumentParser(description="One signed run on a deployed stage, followed to its end.")
    parser.add_argument("--stage", help="the deployed stage (its API URL from .chalice/deployed/<stage>.json)")
    parser.add_argument("--api", help="the API URL instead (what `chalice url --stage <stage>` prints)")
    parser.add_argument("--email", required=True, help="where the run's email goes (SES sandbox: a verified address)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the competition (default: {DEFAULT_URL})")
    parser.add_argument("--region", help="signing region when the API URL names none")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to follow the run (default 3600)")
    parser.add_argument("--poll", type=float, default=20.0, help="seconds between status reads (default 20)")
    args = parser.parse_args(argv)
    try:
        if not args.stage and not args.api:
            raise SmokeError("name the stage (--stage dev) or the API (--api URL)")
        if "@" not in args.email:
            raise SmokeError(f"--email must be an email address, got {args.email!r}")
        if args.timeout <= 0 or args.poll <= 0:
            raise SmokeError("--timeout and --poll must be positive")
        api = api_url(args.stage, args.api)
        signer = signer or session_signer(api, args.region)
        send = send or http_send()
        print(f"POST {api}run  url={args.url}  email={args.email}  (SigV4, {signer.region})")
        run = start(api, args.url, args.email, signer, send)
        print(f"run {run['run_id']} admitted; following it (up to {args.timeout:.0f} s):")
        final = follow(api, run, signer, send, timeout_s=args.timeout, poll_s=args.poll, say=print)
    except SmokeError as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 2
    if final is None:
        print(f"smoke: run {run['run_id']} still running after {args.timeout:.0f} s", file=sys.stderr)
        return 3
    code, text = report(final, args.email)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
