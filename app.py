"""kagent's Chalice app: the /run API, the step Lambdas of the state machine, the reconciler and the sweeper.

Each handler parses its input, calls one `chalicelib.service.Service` method and returns; the Service is built lazily
from Settings (chalicelib.wiring.service), so importing this module touches neither boto3 nor the network.
Deployed stages require IAM (SigV4) authorization on the routes; `chalice local` admits every request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chalice import Chalice, IAMAuthorizer, Rate, Response
from chalice.app import Request

from chalicelib import config, wiring
from chalicelib.local_check import stop_plain_chalice_local
from chalicelib.run_request import idempotency_caller
from chalicelib.service import Reply, Service

stop_plain_chalice_local()  # `chalice local` without `make local`: one line saying so, instead of 500s
app = Chalice(app_name="kagent")
iam = IAMAuthorizer()

EXECUTION_STATUS_CHANGE = {
    "source": ["aws.states"],
    "detail-type": ["Step Functions Execution Status Change"],
    "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"]},
}
SWEEP_EVERY_MINUTES = 5


def _service() -> Service:
    """The Service (built on first use); the local executor gets the step handlers below to call in-process."""
    return wiring.service(steps=step_handlers)


def step_handlers() -> dict[str, Callable[[Any, Any], Any]]:
    """The step Lambdas and event handlers by function name, as Chalice deploys them (the module's entry points)."""
    registered = [(f.name, f.handler_string) for f in app.pure_lambda_functions]
    registered += [(source.name, source.handler_string) for source in app.event_sources]
    return {name: globals()[handler.rpartition(".")[2]] for name, handler in registered}


def _response(reply: Reply) -> Response:
    headers = {"Content-Type": "application/json"}
    headers.update(reply.headers)
    return Response(body=reply.body, status_code=reply.status, headers=dict(headers))


def _current() -> Request:
    request = app.current_request
    if request is None:  # only inside a route, where Chalice always sets it
        raise RuntimeError("no current request")
    return request


def _json_body() -> Any:
    request = _current()
    if not request.raw_body:
        return None
    try:
        return json.loads(request.raw_body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: '[' * 100000 nests too deep
        return None  # query parameters may still carry the fields; otherwise the 400 names the missing one


def _base_url() -> str:
    request = _current()
    context = request.context or {}
    domain = context.get("domainName")
    if domain and "amazonaws.com" in domain:
        return f"https://{domain}/{context.get('stage', 'api')}"
    host = request.headers.get("host")
    return f"{'https' if domain else 'http'}://{host}" if host else ""


# curl -X POST "$API/run?url=...&email=..." sends no body; -d sends a form content type; JSON bodies work too.
BODY_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded"]


def _caller() -> str:
    """Who is asking: the IAM identity API Gateway verified (one constant locally); a run belongs to its caller."""
    return idempotency_caller(_current().context, local=config.settings().is_local)


@app.route("/run", methods=["POST"], authorizer=iam, content_types=BODY_TYPES)
def start_run() -> Response:
    request = _current()
    reply = _service().submit(
        request.query_params, _json_body(), request.headers.get("idempotency-key"), _base_url(), caller=_caller()
    )
    return _response(reply)


@app.route("/runs", methods=["GET"], authorizer=iam)
def list_runs() -> Response:
    query: dict[str, str] = dict(_current().query_params or {})
    return _response(_service().list_runs(_caller(), query.get("limit"), query.get("cursor")))


@app.route("/runs/{run_id}", methods=["GET"], authorizer=iam)
def get_run(run_id: str) -> Response:
    return _response(_service().describe(run_id, caller=_caller()))


@app.route("/runs/{run_id}", methods=["DELETE"], authorizer=iam)
def cancel_run(run_id: str) -> Response:
    return _response(_service().cancel(run_id, _caller()))


@app.lambda_function(name="plan")
def plan(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _service().plan(event)


@app.lambda_function(name="validate_output")
def validate_output(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _service().validate_output(event)


@app.lambda_function(name="mark_succeeded")
def mark_succeeded(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _service().mark_succeeded(event)


@app.lambda_function(name="mark_failed")
def mark_failed(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _service().mark_failed(event)


@app.on_cw_event(EXECUTION_STATUS_CHANGE, name="reconcile")
def reconcile(event: Any) -> dict[str, Any]:
    return _service().reconcile(event.detail)


@app.schedule(Rate(SWEEP_EVERY_MINUTES, unit=Rate.MINUTES), name="sweep")
def sweep(event: Any) -> dict[str, Any]:
    """The safety net under the reconciler: no run stays in flight, or holds its slot, after its workflow ended."""
    return _service().sweep()
