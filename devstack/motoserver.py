"""moto's server, with Lambda's Invoke answered by the local stack's own functions.

Step Functions tasks on moto invoke Lambda through the moto endpoint (``MOTO_PORT``). moto
alone would need Docker to run the code, or would echo the payload; here the invoke route of
the WSGI app (``POST /2015-03-31/functions/{name}/invocations``) is answered by an invoker
the stack plugs in once its functions exist, with Lambda's own response shape: the result as
the payload, or ``X-Amz-Function-Error: Unhandled`` with ``{"errorType", "errorMessage"}``
(what Step Functions' Retry and Catch match). Every other request goes to moto unchanged.

In front of both, ``MeteringLayer`` counts every AWS request and its answer into a
``devstack.metering.ServerMeter`` (``MotoServer.meter``): what the local stack's processes
asked AWS for, by service and operation, with DynamoDB's request units and the storage kept.
The local stack serves it at ``GET``/``DELETE /_local/metering``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import BaseWSGIServer, make_server

from devstack.metering import UNMETERED, MotoImages, ServerMeter, classify

_INVOKE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")

# (function name, event) -> result; raises FunctionFailed for an error result. None from
# ``knows``: not a local function (moto answers).
Invoke = Callable[[str, Any], Any]


class FunctionFailed(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def function_name(path_name: str) -> str:
    """The bare function name of an Invoke path's ``FunctionName`` (a name, ``name:alias``,
    or an ARN with or without its qualifier)."""
    name = unquote(path_name)
    if name.startswith("arn:"):
        parts = name.split(":")
        return parts[6] if len(parts) > 6 else name
    return name.split(":", 1)[0]


class LambdaRouter:
    """WSGI middleware: Invoke of a known function goes to ``invoke``; the rest to ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._invoke: Invoke | None = None
        self._names: frozenset[str] = frozenset()

    def route(self, names: Iterable[str], invoke: Invoke | None) -> None:
        self._names = frozenset(names)
        self._invoke = invoke

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        match = _INVOKE.match(environ.get("PATH_INFO", ""))
        invoke = self._invoke
        if environ.get("REQUEST_METHOD") != "POST" or match is None or invoke is None:
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        name = function_name(match.group("name"))
        if name not in self._names:
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        event = json.loads(body) if body else None
        # The qualifier (the live alias) names the same local code: it is not looked at.
        invocation_type = environ.get("HTTP_X_AMZ_INVOCATION_TYPE") or "RequestResponse"
        if invocation_type == "Event":
            threading.Thread(target=_quietly, args=(invoke, name, event), daemon=True).start()
            start_response("202 Accepted", [("Content-Length", "0")])
            return [b""]
        headers = [("Content-Type", "application/json"), ("X-Amz-Executed-Version", "$LATEST")]
        try:
            payload = json.dumps(invoke(name, event), default=str).encode()
        except FunctionFailed as exc:
            error = {"errorType": exc.error_type, "errorMessage": exc.message}
            payload = json.dumps(error).encode()
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        headers.append(("Content-Length", str(len(payload))))
        start_response("200 OK", headers)
        return [payload]


def _quietly(invoke: Invoke, name: str, event: Any) -> None:
    # An async invoke's failure is in the function's own log, as in Lambda.
    with contextlib.suppress(Exception):
        invoke(name, event)


class MeteringLayer:
    """WSGI middleware: each signed AWS request, with its answer, is counted by ``meter``
    (``ServerMeter.begin``/``finish``); the request goes on unchanged. Not counted: requests
    whose User-Agent contains ``UNMETERED`` (observers), moto's own API, and Lambda Invoke,
    which the meter counts where every invocation passes (``ServerMeter.invoked``)."""

    def __init__(self, app: Any, meter: ServerMeter) -> None:
        self.app = app
        self.meter = meter

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if UNMETERED in str(environ.get("HTTP_USER_AGENT", "")) or str(
            environ.get("PATH_INFO", "")
        ).startswith("/moto-api"):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        length = environ.get("CONTENT_LENGTH")
        stream = environ["wsgi.input"]
        if length:
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated"):  # chunked: werkzeug ends the stream
            body = stream.read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        call = classify(environ, body)
        if call is None or (call.service == "lambda" and call.operation == "Invoke"):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        headers = {
            "x-amz-decoded-content-length": str(
                environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH", "")
            )
        }
        ticket = self.meter.begin(call, body, headers)
        answered: list[int] = []

        def capture(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            answered.append(int(status.split(" ", 1)[0]))
            if exc_info is not None:
                return start_response(status, response_headers, exc_info)
            return start_response(status, response_headers)

        result = self.app(environ, capture)
        try:
            chunks = list(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        self.meter.finish(
            ticket, answered[0] if answered else 500, b"".join(chunks), environ.get("PATH_INFO", "")
        )
        return chunks


class MotoServer:
    """``moto.server.ThreadedMotoServer`` with the Lambda router in front, and the request
    meter in front of that (``meter``)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        self.router = LambdaRouter(DomainDispatcherApplication(create_backend_app))
        self.meter = ServerMeter(MotoImages(), history=self.execution_history)
        self._server: BaseWSGIServer = make_server(
            host,
            port,
            MeteringLayer(self.router, self.meter),
            threaded=True,
            request_handler=MotoRequestHandler,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def execution_history(self, execution_arn: str) -> list[dict[str, Any]]:
        """A Step Functions execution's history events, read over this server's API (not
        counted: the client says ``UNMETERED``)."""
        import boto3
        from botocore.config import Config

        region = execution_arn.split(":")[3]
        client = boto3.session.Session().client(
            "stepfunctions",
            region_name=region,
            endpoint_url=self.url,  # moto's dummy credentials: the local stack's environment
            config=Config(user_agent_extra=UNMETERED, retries={"max_attempts": 2}),
        )
        events: list[dict[str, Any]] = []
        for page in client.get_paginator("get_execution_history").paginate(
            executionArn=execution_arn
        ):
            events.extend(page.get("events", []))
        return events

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
