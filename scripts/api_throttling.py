"""Apply a deployed stage's API Gateway throttling after `chalice deploy` (Chalice itself has no setting for it).

    python scripts/api_throttling.py --stage dev     # after: recordresources.py && chalice deploy --stage dev

The rate (steady requests per second) and burst come from Terraform (`api_throttling_rate_limit`,
`api_throttling_burst_limit`) through scripts/recordresources.py into the stage's `_api_throttling` entry of
`.chalice/config.json`; the REST API's id from Chalice's own `.chalice/deployed/<stage>.json`. They become the stage's
default method throttling (`/*/*/throttling/...`): past them API Gateway answers 429 before any Lambda runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scripts.recordresources import CONFIG_PATH, THROTTLING_KEY


class ThrottlingError(Exception):
    """The config or the deployment record cannot be used; the message says which and why."""


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ThrottlingError(f"{path}: no such file ({what})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ThrottlingError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ThrottlingError(f"{path}: expected a JSON object")
    return data


def stage_limits(config: dict[str, Any], stage: str) -> tuple[str, float, int]:
    """(API Gateway stage name, rate limit, burst limit) of a deployed Chalice stage."""
    entry = config.get("stages", {}).get(stage)
    if not isinstance(entry, dict):
        raise ThrottlingError(f"stage {stage!r} is not in the Chalice config: run scripts/recordresources.py first")
    limits = entry.get(THROTTLING_KEY)
    if not isinstance(limits, dict) or not {"rate_limit", "burst_limit"} <= set(limits):
        raise ThrottlingError(f"stage {stage!r} has no {THROTTLING_KEY}: rerun scripts/recordresources.py")
    return str(entry.get("api_gateway_stage", "api")), float(limits["rate_limit"]), int(limits["burst_limit"])


def rest_api_id(deployed: dict[str, Any], stage: str) -> str:
    for resource in deployed.get("resources", []):
        if isinstance(resource, dict) and resource.get("resource_type") == "rest_api" and resource.get("rest_api_id"):
            return str(resource["rest_api_id"])
    raise ThrottlingError(f"stage {stage!r}: Chalice recorded no REST API (was `chalice deploy --stage {stage}` run?)")


def apply(apigateway: Any, api_id: str, api_stage: str, rate: float, burst: int) -> None:
    apigateway.update_stage(
        restApiId=api_id,
        stageName=api_stage,
        patchOperations=[
            {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": f"{rate:g}"},
            {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": str(burst)},
        ],
    )


def main(argv: list[str] | None = None, apigateway: Any = None) -> int:
    parser = argparse.ArgumentParser(description="Apply the stage's API Gateway throttling after chalice deploy.")
    parser.add_argument("--stage", required=True, help="the deployed Chalice stage (Terraform's `stage`)")
    parser.add_argument("--config", default=str(CONFIG_PATH), help="the generated Chalice config")
    args = parser.parse_args(argv)
    config_path = Path(args.config)
    # lazy: botocore only when the stage is really throttled
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        api_stage, rate, burst = stage_limits(_read_json(config_path, "the generated Chalice config"), args.stage)
        deployed_path = config_path.parent / "deployed" / f"{args.stage}.json"
        api_id = rest_api_id(_read_json(deployed_path, "written by chalice deploy"), args.stage)
        if apigateway is None:
            import boto3  # noqa: PLC0415 - lazy: boto3 only for a deployed stage

            apigateway = boto3.client("apigateway")
        apply(apigateway, api_id, api_stage, rate, burst)
    except ThrottlingError as exc:
        print(f"api_throttling: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"api_throttling: API Gateway refused the update: {exc}", file=sys.stderr)
        return 1
    print(f"API {api_id} stage {api_stage}: throttled at {rate:g} requests/s, bursts of {burst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
