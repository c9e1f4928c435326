"""The HTTP API (DESIGN §5) on Powertools' APIGatewayHttpResolver.

Routes parse the request, call one use case in ``shared.logic.service`` and shape the
answer; they hold no logic of their own. Every failure leaves as
``{"error": {"code", "message", "details"}}`` (``functions/api/errors.py``).

- The tenant is what the Lambda authorizer put in ``requestContext.authorizer.lambda``;
  without it every route but the public ones answers 401 (defence in depth: API Gateway
  should never let such a request through).
- ``Services`` are built once per container, at the first request that needs them, from
  ``Settings.from_env()`` and ``SWITCHYARD_BACKEND`` (``aws`` unless set); tests and the
  local stack hand in their own with ``set_services``.
- The async submit path never builds a model provider, so never imports ``anthropic``.
- One request at a time per process, as in a Lambda container: Powertools keeps the
  current event on the resolver class. A local gateway serving requests concurrently runs
  the handler in several processes (or one request at a time).
"""

from __future__ import annotations

import re
import time
import traceback
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFound
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Header, Query

from functions import PerContainer, run_sync
from functions.api import errors
from functions.api.models import (
    AgentList,
    ErrorResponse,
    EventPage,
    Health,
    JobView,
    PipelineList,
    RunAccepted,
    RunList,
    RunView,
    ThreadView,
)
from shared.errors import AuthError, ConfigError, NotFoundError, SwitchyardError
from shared.logic import jobs, service
from shared.logic.service import Services
from shared.logic.usage import usage_report
from shared.models.api import ApprovalBody, JobApprovalBody, JobCreate, RunCreate
from shared.models.job import JobDetail
from shared.models.run import Run, RunStatus, Shape
from shared.models.usage import MAX_WINDOW_DAYS, UsageQuery, UsageReport
from shared.observability import count, get_logger, new_metrics, redact

API_VERSION = "1.0.0"
PREFIX = "/v1"
# Routes API Gateway serves without the authorizer (infra and the local gateway read this).
PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {("GET", f"{PREFIX}/health"), ("GET", f"{PREFIX}/openapi.json")}
)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

logger = get_logger("api")
metrics = new_metrics("api")

app = APIGatewayHttpResolver(enable_validation=True, debug=False)

_openapi: str | None = None


# ---- composition ---------------------------------------------------------------------------


def _build_services() -> Services:
    from shared.logic.webhooks import completion_hook
    from shared.wiring import build_services, load_settings

    settings = load_settings()
    return build_services(
        settings,
        # Sync runs finish inside the request: their webhooks go from here.
        on_complete=completion_hook(settings),
        service_name="api",
    )


_services: PerContainer[Services] = PerContainer(_build_services)


def set_services(svc: Services | None) -> None:
    """Use ``svc`` for every request from now on (``None``: build from the environment)."""
    _services.set(svc)


def get_services() -> Services:
    return _services.get()


# ---- entry ---------------------------------------------------------------------------------


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One API Gateway (HTTP API, payload 2.0) event → its response."""
    started = time.perf_counter()
    http = event.get("requestContext", {}).get("http", {})
    method = str(http.get("method", "GET")).upper()
    path = str(http.get("path") or event.get("rawPath") or "/")
    request_id = event.get("requestContext", {}).get("requestId")
    logger.append_keys(request_id=request_id)
    response = _refuse_early(event, method, path)
    if response is None:
        try:
            response = app.resolve(event, context)
        except Exception as exc:  # outside any route (a malformed event): still our shape
            _log_failure("unhandled error", exc)
            response = errors.raw_error(
                "internal_error", "internal error", {"request_id": request_id}
            )
    logger.info(
        "request",
        extra={
            "method": method,
            "path": path,
            "status": response.get("statusCode"),
            "tenant": _tenant_of(event),
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return response


def _refuse_early(event: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """Refusals that come before routing and validation: no tenant (401), a body over the
    limit (413, even if it is not JSON) or not sent as JSON (415)."""
    if (method, path) not in PUBLIC_ROUTES and _tenant_of(event) is None:
        return errors.raw_error("unauthorized", "missing or invalid credentials")
    body = event.get("body")
    if body:
        size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())
        if size > errors.MAX_BODY_BYTES:
            return errors.raw_error(
                "payload_too_large",
                f"request body over {errors.MAX_BODY_BYTES} bytes",
                {"limit_bytes": errors.MAX_BODY_BYTES},
            )
        media = _header(event, "content-type").split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            return errors.raw_error(
                "unsupported_media_type",
                "send the body as JSON, with Content-Type: application/json",
                {"content_type": media[:100]},
            )
    return None


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


def _tenant_of(event: dict[str, Any]) -> str | None:
    authorizer = event.get("requestContext", {}).get("authorizer") or {}
    tenant = (authorizer.get("lambda") or {}).get("tenant")
    return tenant if isinstance(tenant, str) and tenant else None


def _tenant() -> str:
    tenant = _tenant_of(app.current_event.raw_event)
    if tenant is None:  # _refuse_early already answered; kept for routes called otherwise
        raise AuthError("missing or invalid credentials")
    return tenant


def _request_id() -> str | None:
    value = app.current_event.raw_event.get("requestContext", {}).get("requestId")
    return str(value) if value else None


def _checked_id(value: str, kind: str) -> str:
    if not _ID.match(value):
        raise NotFoundError(f"{kind} {value[:64]!r} not found")
    return value


# ---- error handlers ------------------------------------------------------------------------


def _invalid(exc: RequestValidationError) -> Response[Any]:
    return errors.from_validation(exc.errors())


def _unsupported(exc: RequestUnsupportedContentType) -> Response[Any]:
    return errors.error_response("unsupported_media_type", "send the body as application/json")


def _known(exc: SwitchyardError) -> Response[Any]:
    response = errors.from_switchyard(exc, _request_id())
    if response.status_code >= 500:
        _log_failure("request failed", exc, code=exc.code)
    else:
        logger.info("request refused", extra={"code": exc.code, "reason": exc.message})
    return response


@app.not_found
def _no_route(exc: RouteNotFound) -> Response[Any]:
    event = app.current_event
    return errors.error_response(
        "not_found", f"no route {event.http_method} {event.path}", status=404
    )


def _unexpected(exc: Exception) -> Response[Any]:
    _log_failure("unexpected error", exc)
    return errors.internal_error(_request_id())


def _log_failure(message: str, exc: BaseException, **fields: str) -> None:
    """Log the stack for us, masked: an exception's text may quote a secret."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    logger.error(
        message, extra={**fields, "error_type": type(exc).__name__, "stack": redact(stack)}
    )


app.exception_handler(RequestValidationError)(_invalid)
app.exception_handler(RequestUnsupportedContentType)(_unsupported)
app.exception_handler(SwitchyardError)(_known)
app.exception_handler(Exception)(_unexpected)


# ---- routes --------------------------------------------------------------------------------

_ERROR_TEXT = {
    400: "Malformed JSON or a bad query, path or header parameter",
    401: "Missing, unknown or revoked API key",
    404: "Unknown run, thread or job, or another tenant's",
    409: "Conflict with the current state of the run, thread or job, or an Idempotency-Key reused",
    413: "Body over 1 MB",
    422: "The body breaks the schema, names an unknown agent or pipeline, or a cursor is malformed",
    503: "The pipeline is not deployed in this stack (pipeline_not_deployed), or storage or "
    "Step Functions trouble (unavailable: retry)",
}
_AUTH: list[dict[str, list[str]]] = [{"apiKey": []}]


def _content(model: type) -> dict[str, Any]:
    return {content_types.APPLICATION_JSON: {"model": model}}


def _doc(
    model: type,
    status: int = 200,
    text: str = "OK",
    *,
    errors_: tuple[int, ...] = (400, 401, 404),
    extra: dict[int, Any] | None = None,
) -> dict[int, Any]:
    documented: dict[int, Any] = {status: {"description": text, "content": _content(model)}}
    documented.update(extra or {})
    for code in errors_:
        documented[code] = {"description": _ERROR_TEXT[code], "content": _content(ErrorResponse)}
    return documented


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers=headers or {},
    )


_IDEMPOTENCY_KEY = Header(
    alias="idempotency-key",
    min_length=1,
    max_length=255,
    pattern=r"^[\x21-\x7e]+$",
    description="Any printable ASCII up to 255 characters, unique per logical request",
)


def _view(run: Run) -> dict[str, Any]:
    return RunView.of(run).model_dump(mode="json")


def _accepted(run: Run, *, promoted: bool) -> dict[str, Any]:
    location = f"{PREFIX}/runs/{run.run_id}"
    return RunAccepted.model_validate(
        {
            **run.model_dump(include={"run_id", "status", "agent", "shape", "thread_id"}),
            "created_at": run.created_at,
            "promoted": promoted,
            "links": {"self": location, "events": f"{location}/events"},
        }
    ).model_dump(mode="json", by_alias=True)


@app.post(
    f"{PREFIX}/runs",
    summary="Submit a run",
    description=(
        "202 with the run id for async runs and for sync runs handed to a worker at the end "
        "of the request's time budget; 200 with the finished run for sync runs. "
        "`Idempotency-Key` makes a retry return the same run (409 if the body differs)."
    ),
    responses=_doc(
        RunView,
        200,
        "A sync run, finished",
        errors_=(400, 401, 409, 413, 422),
        extra={202: {"description": "Accepted", "content": _content(RunAccepted)}},
    ),
    tags=["runs"],
    security=_AUTH,
)
def create_run(
    body: RunCreate,
    idempotency_key: Annotated[str | None, _IDEMPOTENCY_KEY] = None,
) -> Response[Any]:
    tenant = _tenant()
    submitted = run_sync(
        service.create_run(get_services(), tenant, body, idempotency_key=idempotency_key)
    )
    run = submitted.run
    headers = {"Location": f"{PREFIX}/runs/{run.run_id}"}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    else:
        count(metrics, "RunsSubmitted", shape=run.shape.value)
        if submitted.promoted:
            count(metrics, "SyncRunsPromoted")
    if run.shape is Shape.SYNC and run.status.is_terminal:
        return _json(_view(run), 200, headers)
    return _json(_accepted(run, promoted=submitted.promoted), 202, headers)


@app.get(
    f"{PREFIX}/runs/<run_id>",
    summary="Get a run",
    responses=_doc(RunView, errors_=(401, 404)),
    tags=["runs"],
    security=_AUTH,
)
def get_run(run_id: str) -> Response[Any]:
    tenant = _tenant()
    run = run_sync(service.get_run(get_services(), tenant, _checked_id(run_id, "run")))
    return _json(_view(run))


@app.get(
    f"{PREFIX}/runs",
    summary="List runs, newest first",
    responses=_doc(RunList, errors_=(400, 401, 422)),
    tags=["runs"],
    security=_AUTH,
)
def list_runs(
    status: Annotated[RunStatus | None, Query()] = None,
    agent: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    thread_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=1024)] = None,
) -> Response[Any]:
    tenant = _tenant()
    page = run_sync(
        service.list_runs(
            get_services(),
            tenant,
            status=status,
            agent=agent,
            thread_id=thread_id,
            limit=limit,
            cursor=cursor,
        )
    )
    return _json(page.model_dump(mode="json"))


@app.get(
    f"{PREFIX}/runs/<run_id>/events",
    summary="A run's events after a cursor; optionally long-poll",
    description=(
        "Events in order, each with its `seq`; pass `next_after` back as `after` to continue. "
        "With `wait` (seconds, at most 20) the call holds until at least one event exists."
    ),
    responses=_doc(EventPage, errors_=(400, 401, 404)),
    tags=["runs"],
    security=_AUTH,
)
def run_events(
    run_id: str,
    after: Annotated[int, Query(ge=0, description="Return events with seq > after")] = 0,
    wait: Annotated[float, Query(ge=0, le=service.MAX_WAIT_S)] = 0.0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response[Any]:
    tenant = _tenant()
    events = run_sync(
        service.wait_events(
            get_services(),
            tenant,
            _checked_id(run_id, "run"),
            after=after,
            wait_s=wait,
            limit=limit,
        )
    )
    body = {
        "events": [e.model_dump(mode="json") for e in events],
        "next_after": events[-1].seq if events else after,
    }
    return _json(body)


@app.post(
    f"{PREFIX}/runs/<run_id>/cancel",
    summary="Cancel a run (cooperative)",
    description="202: the run stops at its next step boundary. 409 if it already finished.",
    responses=_doc(RunView, 202, "Cancellation requested", errors_=(401, 404, 409)),
    tags=["runs"],
    security=_AUTH,
)
def cancel_run(run_id: str) -> Response[Any]:
    tenant = _tenant()
    run = run_sync(service.cancel_run(get_services(), tenant, _checked_id(run_id, "run")))
    return _json(_view(run), 202)


@app.post(
    f"{PREFIX}/runs/<run_id>/approval",
    summary="Approve or reject a run's pending tool calls",
    description="202: the run is queued to continue. 409 unless it is awaiting approval.",
    responses=_doc(RunView, 202, "Decision recorded", errors_=(400, 401, 404, 409, 413, 422)),
    tags=["runs"],
    security=_AUTH,
)
def approve_run(run_id: str, body: ApprovalBody) -> Response[Any]:
    tenant = _tenant()
    run = run_sync(service.approve_run(get_services(), tenant, _checked_id(run_id, "run"), body))
    return _json(_view(run), 202)


@app.get(
    f"{PREFIX}/threads/<thread_id>",
    summary="A thread: its runs and conversation",
    responses=_doc(ThreadView, errors_=(401, 404)),
    tags=["threads"],
    security=_AUTH,
)
def get_thread(thread_id: str) -> Response[Any]:
    tenant = _tenant()
    thread = run_sync(service.get_thread(get_services(), tenant, _checked_id(thread_id, "thread")))
    return _json(thread)


@app.get(
    f"{PREFIX}/agents",
    summary="Agents and their tools' input schemas",
    responses=_doc(AgentList, errors_=(401,)),
    tags=["agents"],
    security=_AUTH,
)
def list_agents() -> Response[Any]:
    _tenant()
    return _json({"agents": [agent.describe() for agent in get_services().registry]})


@app.get(
    f"{PREFIX}/pipelines",
    summary="Pipelines, their stages, and whether this stack deployed them",
    responses=_doc(PipelineList, errors_=(401,)),
    tags=["pipelines"],
    security=_AUTH,
)
def list_pipelines() -> Response[Any]:
    _tenant()
    return _json({"pipelines": jobs.list_pipelines(get_services())})


def _job_view(detail: JobDetail) -> dict[str, Any]:
    return JobView.of(detail).model_dump(mode="json")


@app.post(
    f"{PREFIX}/jobs",
    summary="Start a pipeline job",
    description=(
        "201 with the job (`running`, every stage `pending`) once its Step Functions execution "
        "is started. `Idempotency-Key` makes a retry return the same job, as it is now, with "
        "200 and `Idempotent-Replayed: true` (409 if the body differs). An unknown pipeline is "
        "422 `unknown_pipeline`; one this stack has not deployed is 503 "
        "`pipeline_not_deployed`."
    ),
    responses=_doc(
        JobView,
        201,
        "Started",
        errors_=(400, 401, 409, 413, 422, 503),
        extra={200: {"description": "Idempotent replay", "content": _content(JobView)}},
    ),
    tags=["jobs"],
    security=_AUTH,
)
def start_job(
    body: JobCreate,
    idempotency_key: Annotated[str | None, _IDEMPOTENCY_KEY] = None,
) -> Response[Any]:
    tenant = _tenant()
    svc = get_services()
    try:
        job, created = run_sync(jobs.start_job(svc, tenant, body, idempotency_key=idempotency_key))
    except ConfigError:  # defined, but this stack has no state machine for it
        logger.warning("pipeline not deployed", extra={"pipeline": body.pipeline})
        return errors.error_response(
            "pipeline_not_deployed",
            f"pipeline {body.pipeline!r} is defined but not deployed in this stack: "
            "deploy the stack again with the module that defines it",
            {"pipeline": body.pipeline, "deployed": sorted(svc.settings.pipeline_arns)},
        )
    headers = {"Location": f"{PREFIX}/jobs/{job.job_id}"}
    if created:
        count(metrics, "JobsStarted", pipeline=job.pipeline)
    else:
        headers["Idempotent-Replayed"] = "true"
    detail = run_sync(jobs.get_job(svc, tenant, job.job_id))
    return _json(_job_view(detail), 201 if created else 200, headers)


@app.get(
    f"{PREFIX}/jobs/<job_id>",
    summary="Get a job: status, stages, pending approvals, output or error",
    responses=_doc(JobView, errors_=(401, 404)),
    tags=["jobs"],
    security=_AUTH,
)
def get_job(job_id: str) -> Response[Any]:
    tenant = _tenant()
    detail = run_sync(jobs.get_job(get_services(), tenant, _checked_id(job_id, "job")))
    return _json(_job_view(detail))


@app.post(
    f"{PREFIX}/jobs/<job_id>/approval",
    summary="Approve or reject what a job waits on (a gate, or a stage's paused run)",
    description=(
        "202: the decision is recorded and the job carries on (approve) or its stage fails "
        "with `ApprovalRejected` (reject). With more than one approval pending, name the one "
        "with `stage`. 409 if nothing is pending (or not at `stage`), it was decided already, "
        "or the job has ended."
    ),
    responses=_doc(JobView, 202, "Decision recorded", errors_=(400, 401, 404, 409, 413, 422)),
    tags=["jobs"],
    security=_AUTH,
)
def approve_job(job_id: str, body: JobApprovalBody) -> Response[Any]:
    tenant = _tenant()
    detail = run_sync(
        jobs.decide_job_approval(get_services(), tenant, _checked_id(job_id, "job"), body)
    )
    return _json(_job_view(detail), 202)


@app.post(
    f"{PREFIX}/jobs/<job_id>/cancel",
    summary="Cancel a job",
    description=(
        "Stops the job's execution: the answer is the job, now `cancelled`. Stage runs still "
        "executing are asked to cancel and stop at their next step boundary. 409 if the job "
        "has already ended."
    ),
    responses=_doc(JobView, 200, "Cancelled", errors_=(401, 404, 409)),
    tags=["jobs"],
    security=_AUTH,
)
def cancel_job(job_id: str) -> Response[Any]:
    tenant = _tenant()
    detail = run_sync(jobs.cancel_job(get_services(), tenant, _checked_id(job_id, "job")))
    return _json(_job_view(detail))


@app.get(
    f"{PREFIX}/usage",
    summary="Tokens and cost of the tenant's agents, grouped by agent or tenant",
    description=(
        f"The tenant's usage counters over [`from`, `to`) (default: the last 24 hours; at most "
        f"{MAX_WINDOW_DAYS} days), counted in whole UTC hours: `from` is rounded down and `to` "
        "up to the hour, and the answer gives the window counted. The caller's tenant only, "
        "summed per group; groups by `cost_usd` descending, then `key`. `runs` counts the runs "
        "whose first model call fell in the window."
    ),
    responses=_doc(UsageReport, errors_=(400, 401, 503)),
    tags=["usage"],
    security=_AUTH,
)
def get_usage(query: Annotated[UsageQuery, Query()]) -> Response[Any]:
    tenant = _tenant()
    report = run_sync(
        usage_report(
            get_services().usage.counters,
            tenant,
            group_by=query.group_by,
            start=query.from_,
            end=query.to,
        )
    )
    return _json(report.model_dump(mode="json", by_alias=True))


@app.get(
    f"{PREFIX}/health",
    summary="Liveness (no auth)",
    responses=_doc(Health, errors_=()),
    tags=["meta"],
)
def health() -> Response[Any]:
    return _json({"status": "ok", "version": API_VERSION})


@app.get(
    f"{PREFIX}/openapi.json",
    summary="This document (no auth)",
    tags=["meta"],
)
def openapi() -> Response[Any]:
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json()
    )


def openapi_json() -> str:
    global _openapi
    if _openapi is None:
        from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

        _openapi = app.get_openapi_json_schema(
            title="Switchyard API",
            version=API_VERSION,
            description="Run AI agents durably on AWS. Errors: {error: {code, message, details}}.",
            security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer <key>")},
        )
    return _openapi
