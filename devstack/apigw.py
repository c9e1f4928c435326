"""API Gateway (HTTP API, payload format 2.0) in miniature, around the real handlers.

``api_event`` builds the event API Gateway sends the API function; ``Gateway.request`` does
what API Gateway does with a request: a public route goes straight to the API function; any
other needs the ``Authorization`` header (else 401, the authorizer is not even called), runs
the Lambda authorizer (``isAuthorized: false`` → 403, an exception → 500), and passes the
authorizer's context on as ``requestContext.authorizer.lambda``. Those gateway-made answers
have API Gateway's own body, ``{"message": ...}``; everything else is the API function's.

Used by the contract tests and, behind an HTTP server, by the local stack's gateway
(``devstack.gateway``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from functions.api.app import PUBLIC_ROUTES
from functions.api.handler import handler as api_handler
from functions.authorizer.handler import handler as authorizer_handler

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
QueryValue = str | int | float | list[str]
_UNSET: Any = object()

ACCOUNT = "123456789012"
API_ID = "local"
REGION = "us-east-1"


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str | None:
        """``error.code`` of an API error body (None for anything else)."""
        try:
            payload = self.json()
        except ValueError:
            return None
        error = payload.get("error") if isinstance(payload, dict) else None
        return error.get("code") if isinstance(error, dict) else None


def api_event(
    method: str,
    path: str,
    *,
    query: Mapping[str, QueryValue] | None = None,
    headers: Mapping[str, str] | None = None,
    body: str | bytes | None = None,
    authorizer: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    raw_query: str | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The event API Gateway sends for ``method path`` on the ``$default`` stage and route.
    ``raw_query`` (a request's query string as sent) takes the place of ``query``."""
    now = datetime.now(UTC)
    pairs: list[tuple[str, str]] = []
    if raw_query is not None:
        pairs = parse_qsl(raw_query, keep_blank_values=True)
    for name, value in (query or {}).items():
        values = value if isinstance(value, list) else [value]
        pairs.extend((name, str(v)) for v in values)
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    encoded = isinstance(body, bytes)
    if body is not None:
        size = len(body.encode()) if isinstance(body, str) else len(body)
        lowered.setdefault("content-length", str(size))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query if raw_query is not None else urlencode(pairs, quote_via=quote),
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
            "domainPrefix": API_ID,
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", "switchyard-tests"),
            },
            "requestId": request_id or uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if pairs:
        # API Gateway joins a repeated parameter's values with commas.
        joined: dict[str, list[str]] = {}
        for name, value in pairs:
            joined.setdefault(name, []).append(value)
        event["queryStringParameters"] = {k: ",".join(v) for k, v in joined.items()}
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if isinstance(body, bytes) else body
    if authorizer is not None:
        event["requestContext"]["authorizer"] = {"lambda": dict(authorizer)}
    return event


def authorizer_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The REQUEST authorizer event (payload 2.0) for an API event."""
    http = event["requestContext"]["http"]
    auth = event["headers"].get("authorization")
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": (
            f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/$default/"
            f"{http['method']}{event['rawPath']}"
        ),
        "identitySource": [auth] if auth else [],
        "routeKey": event["routeKey"],
        "rawPath": event["rawPath"],
        "rawQueryString": event["rawQueryString"],
        "headers": dict(event["headers"]),
        "queryStringParameters": dict(event.get("queryStringParameters") or {}),
        "requestContext": {k: v for k, v in event["requestContext"].items() if k != "authorizer"},
    }


def _gateway_answer(status: int, message: str) -> GatewayResponse:
    return GatewayResponse(
        status, {"content-type": "application/json"}, json.dumps({"message": message})
    )


@dataclass
class Gateway:
    api: Handler = api_handler
    authorizer: Handler = authorizer_handler
    public_routes: frozenset[tuple[str, str]] = PUBLIC_ROUTES
    default_headers: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = _UNSET,
        body: str | bytes | None = None,
        key: str | None = None,
        skip_authorizer: bool = False,
    ) -> GatewayResponse:
        """Send one request. ``skip_authorizer`` calls the API function with no authorizer
        context at all, as a misconfigured route would."""
        all_headers = {**self.default_headers, **(headers or {})}
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        if json_body is not _UNSET:
            body = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        event = api_event(method, path, query=query, headers=all_headers, body=body)
        return self.dispatch(event, skip_authorizer=skip_authorizer)

    def dispatch(self, event: dict[str, Any], *, skip_authorizer: bool = False) -> GatewayResponse:
        """What API Gateway does with one request's event: the authorizer, then the API."""
        method, path = event["requestContext"]["http"]["method"], event["rawPath"]
        if (method.upper(), path) not in self.public_routes and not skip_authorizer:
            if not event["headers"].get("authorization"):
                return _gateway_answer(401, "Unauthorized")
            try:
                verdict = self.authorizer(authorizer_event(event), None)
            except Exception:
                return _gateway_answer(500, "Internal Server Error")
            if not verdict.get("isAuthorized"):
                return _gateway_answer(403, "Forbidden")
            event["requestContext"]["authorizer"] = {"lambda": dict(verdict.get("context") or {})}
        try:
            result = self.api(event, None)
        except Exception:
            return _gateway_answer(500, "Internal Server Error")
        return _response(result)

    def get(self, path: str, **kwargs: Any) -> GatewayResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> GatewayResponse:
        return self.request("POST", path, **kwargs)


def _response(result: Mapping[str, Any]) -> GatewayResponse:
    raw = result.get("body") or ""
    text = base64.b64decode(raw).decode() if result.get("isBase64Encoded") else str(raw)
    headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    return GatewayResponse(int(result.get("statusCode", 200)), headers, text)
