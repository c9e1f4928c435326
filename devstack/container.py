"""``python -m devstack.container HANDLER``: one Lambda "container" of the local stack.

Like a Lambda execution environment it serves one invocation at a time, for its life, with
the function's environment: the handler's module builds what it needs on the first
invocation (settings, secrets, clients) exactly as it does in AWS. Invocations arrive as
JSON lines on stdin (``{"event": ..., "request_id": ...}``) and each answer is one JSON line
on the protocol stream: ``{"result": ...}``, or ``{"error": "Type: message", "error_type",
"error_message"}`` (the type is what Lambda reports as errorType). Everything the function
prints (Powertools' log lines and EMF metrics) goes to stderr, which the pool
points at the function's log file, as stdout goes to CloudWatch Logs in AWS.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from typing import Any

from devstack.invocation import LambdaContext, resolve


def _streams() -> Any:
    """The protocol stream (the original stdout) and, from now on, stdout → stderr."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    return protocol


def main(argv: list[str]) -> int:
    (handler_path,) = argv
    # The stack stops its containers by closing stdin; a Ctrl-C meant for `make dev` (the
    # whole process group gets it) must not cut an invocation short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol = _streams()
    handler = resolve(handler_path)
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", handler_path)
    timeout_s = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "30"))
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(
            function_name=name, timeout_s=timeout_s, aws_request_id=request.get("request_id", "")
        )
        try:
            answer: dict[str, Any] = {"result": handler(request["event"], context)}
        except Exception as exc:
            traceback.print_exc()  # into the function's log, as Lambda logs an error
            answer = {
                "error": f"{type(exc).__name__}: {exc}",
                "error_type": type(exc).__name__,
                "error_message": str(exc),
            }
        protocol.write(json.dumps(answer, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
