"""moto's server, with Lambda's Invoke answered by the local stack's own functions.

Step Functions tasks on moto invoke Lambda through the moto endpoint (``MOTO_PORT``). moto
alone would need Docker to run the code, or would echo the payload; here the invoke route of
the WSGI app (``POST /2015-03-31/functions/{name}/invocations``) is answered by an invoker
the stack plugs in once its functions exist, with Lambda's own response shape: the result as
the payload, or ``X-Amz-Function-Error: Unhandled`` with ``{"errorType", "errorMessage"}``
(what Step Functions' Retry and Catch match). Every other request goes to moto unchanged.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import BaseWSGIServer, make_server

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


class MotoServer:
    """``moto.server.ThreadedMotoServer`` with the Lambda router in front."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        self.router = LambdaRouter(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer = make_server(
            host, port, self.router, threaded=True, request_handler=MotoRequestHandler
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

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
