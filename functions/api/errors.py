"""Exceptions → HTTP responses, all in one shape: ``{"error": {code, message, details}}``.

The status comes from the error's stable ``code`` (``shared.errors``), so a new error type
with a known code maps without touching this table. Anything unexpected is a 500 whose body
says nothing about the cause (no exception text, no stack): the cause goes to the log, and
the body carries the request id to find it there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from shared.errors import (
    JobStoreError,
    JournalError,
    QueueError,
    SwitchyardError,
    UsageStoreError,
    WorkflowError,
)

# Above this, API Gateway still accepts the request (10 MB) but we refuse it: see docs/api.md.
MAX_BODY_BYTES = 1024 * 1024

STATUS_BY_CODE: dict[str, int] = {
    "invalid_json": 400,
    "invalid_parameter": 400,
    "unauthorized": 401,
    "not_found": 404,
    "run_not_found": 404,
    "conflict": 409,
    "invalid_state": 409,
    "run_exists": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_request": 422,
    "unknown_agent": 422,
    "unknown_pipeline": 422,
    # Reserved: provider rate limits delay runs (shared/gateway), they are never refused;
    # the API's own throttling is API Gateway's, answered before this code runs.
    "rate_limited": 429,
    "unavailable": 503,
    "pipeline_not_deployed": 503,
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    code: str,
    message: str,
    details: Any = None,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[Any]:
    return Response(
        status_code=status or STATUS_BY_CODE.get(code, 500),
        content_type=content_types.APPLICATION_JSON,
        body=error_body(code, message, details),
        headers=dict(headers or {}),
    )


def raw_error(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """An API Gateway (payload 2.0) response, for refusals made before routing."""
    return {
        "statusCode": STATUS_BY_CODE.get(code, 500),
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps(error_body(code, message, details), separators=(",", ":")),
        "isBase64Encoded": False,
    }


def from_switchyard(exc: SwitchyardError, request_id: str | None) -> Response[Any]:
    status = STATUS_BY_CODE.get(exc.code)
    if status is not None:
        return error_response(exc.code, exc.message, _json_safe(exc.details), status=status)
    if isinstance(exc, JournalError | QueueError | JobStoreError | WorkflowError | UsageStoreError):
        # Storage, queue or Step Functions trouble: worth a retry with the same
        # Idempotency-Key.
        return error_response(
            "unavailable",
            "the service is temporarily unavailable; retry (with the same Idempotency-Key)",
            {"request_id": request_id},
            headers={"Retry-After": "1"},
        )
    return internal_error(request_id)


def internal_error(request_id: str | None) -> Response[Any]:
    return error_response("internal_error", "internal error", {"request_id": request_id})


def from_validation(errors: Sequence[Any]) -> Response[Any]:
    """Powertools' request validation errors: where they are says which status applies.

    Unparseable or missing JSON is 400 ``invalid_json``; a bad query, path or header
    parameter is 400 ``invalid_parameter``; a body that parses but breaks the schema is 422
    ``invalid_request``. Details list each problem's location and message, never its input.
    """
    problems = [_problem(e) for e in errors if isinstance(e, Mapping)]
    if any(p["type"] == "json_invalid" for p in problems):
        return error_response("invalid_json", "the request body is not valid JSON")
    if any(p["loc"] == ["body"] and p["type"] == "missing" for p in problems):
        return error_response("invalid_json", "a JSON request body is required")
    if any(p["loc"][:1] != ["body"] for p in problems):
        params = [p for p in problems if p["loc"][:1] != ["body"]]
        names = ", ".join(str(p["loc"][-1]) for p in params)
        return error_response("invalid_parameter", f"invalid parameter: {names}", params)
    return error_response("invalid_request", "the request body is invalid", problems)


def _problem(error: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "loc": [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
        "type": str(error.get("type", "invalid")),
        "msg": str(error.get("msg", "invalid value")),
    }


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value
