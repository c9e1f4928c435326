"""The local gateway: HTTP on 127.0.0.1 → API Gateway HTTP API v2 events → the real handlers.

Each request becomes the payload-2.0 event API Gateway would send (``devstack.apigw``), goes
through the Lambda authorizer and then the API function, in this process, with the real
gateway's limits: a body over 10 MB is refused with 413 before any function runs, and an
integration that has not answered after 30 s gets 503 ``{"message": "Service Unavailable"}``
(the function itself goes on, as a Lambda invocation would).

Paths under ``/_local/`` are not the API: they are the local stack's own controls (list the
worker processes, fire a schedule now), answered by ``admin`` when one is given.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from devstack.apigw import Gateway, GatewayResponse, api_event

# API Gateway HTTP API quotas (not adjustable): payload size and integration timeout.
MAX_BODY_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT_S = 30.0
ADMIN_PREFIX = "/_local/"

# (method, path, parsed JSON body or None) -> (status, JSON-able body)
AdminHandler = Callable[[str, str, Any], tuple[int, Any]]


@dataclass(frozen=True)
class GatewayLimits:
    max_body_bytes: int = MAX_BODY_BYTES
    integration_timeout_s: float = INTEGRATION_TIMEOUT_S


def _json_answer(status: int, payload: Any) -> GatewayResponse:
    return GatewayResponse(status, {"content-type": "application/json"}, json.dumps(payload))


def _is_text(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind.endswith(("json", "xml", "javascript")) or not kind


class LocalGateway:
    """A threaded HTTP server in front of ``gateway`` (start/stop; one thread per request)."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        limits: GatewayLimits | None = None,
        admin: AdminHandler | None = None,
        max_concurrency: int = 64,
    ) -> None:
        self.gateway = gateway
        self.limits = limits or GatewayLimits()
        self.admin = admin
        self.host = host
        # Integrations run here so a slow one can be timed out while it goes on.
        self._integrations = ThreadPoolExecutor(max_concurrency, thread_name_prefix="lambda")
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gateway", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._integrations.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ---- one request ---------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, source: str
    ) -> GatewayResponse:
        split = urlsplit(target)
        path = split.path or "/"
        if path.startswith(ADMIN_PREFIX):
            return self._admin(method, path, body)
        content_type = headers.get("content-type", "")
        payload: str | bytes | None = None
        if body:
            if _is_text(content_type):
                try:
                    payload = body.decode()
                except UnicodeDecodeError:
                    payload = body
            else:
                payload = body
        event = api_event(
            method, path, headers=headers, body=payload, raw_query=split.query, source_ip=source
        )
        future = self._integrations.submit(self.gateway.dispatch, event)
        try:
            return future.result(timeout=self.limits.integration_timeout_s)
        except FutureTimeout:
            return _json_answer(503, {"message": "Service Unavailable"})

    def _admin(self, method: str, path: str, body: bytes | None) -> GatewayResponse:
        if self.admin is None:
            return _json_answer(404, {"message": "Not Found"})
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            return _json_answer(400, {"message": "the body is not JSON"})
        status, answer = self.admin(method, path, parsed)
        return _json_answer(status, answer)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "switchyard-local-gateway"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length > outer.limits.max_body_bytes:
                    # Refused before the body is read, as API Gateway does; close afterwards.
                    self.close_connection = True
                    self._send(_json_answer(413, {"message": "Request Entity Too Large"}))
                    return
                body = self.rfile.read(length) if length else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    answer = outer.handle(
                        self.command, self.path, headers, body, self.client_address[0]
                    )
                except Exception:
                    answer = _json_answer(500, {"message": "Internal Server Error"})
                self._send(answer)

            def _send(self, answer: GatewayResponse) -> None:
                data = answer.body.encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    if name not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # the API function logs every request itself

        return Handler
