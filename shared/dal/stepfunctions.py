"""``Workflows`` on AWS Step Functions (or moto): start and read executions, answer tokens.

The blocking boto3 calls run in a thread pool of their own (like the SQS queue's), so a
burst of heartbeats from many stages never waits behind the event loop's default executor.

Values cross as JSON: an execution's input and a task's output are JSON-encoded on the way
in, ``describe`` decodes the execution's output.

Errors: ``TaskTimedOut``, ``InvalidToken`` and ``TaskDoesNotExist`` are
``TaskTokenClosedError``; ``ExecutionDoesNotExist`` is ``JobNotFoundError``; a start whose
name is taken by an execution with the same input returns that execution (whatever its
status: Step Functions only answers a repeated start itself while the execution runs), one
with another input is ``JobExistsError``; everything else is ``WorkflowError``.

A task token is a capability: it never appears in an exception message or a log line here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from shared.config import Settings
from shared.dal import aws_client
from shared.errors import (
    JobExistsError,
    JobNotFoundError,
    SwitchyardError,
    TaskTokenClosedError,
    WorkflowError,
)
from shared.jobs.base import ExecutionInfo, ExecutionStatus

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_WORKERS = 16
# Step Functions' limits on an error name and a cause (SendTaskFailure, StopExecution).
MAX_ERROR_CHARS = 256
MAX_CAUSE_CHARS = 32_768

_TOKEN_CLOSED = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
_NOT_FOUND = frozenset({"ExecutionDoesNotExist"})
# A redrive the service has accepted but not begun: the execution is running again.
_STATUS_ALIASES = {"PENDING_REDRIVE": ExecutionStatus.RUNNING}
_EXECUTION_ARN = re.compile(r"arn:[\w-]+:states:[\w-]*:\d*:execution:[^'\"\s]+")


class SfnWorkflows:
    """``Workflows`` with a boto3 ``stepfunctions`` client (built from ``region`` and
    ``endpoint_url`` when not given)."""

    def __init__(
        self,
        client: Any = None,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        executor: Executor | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        self.client: Any = client or aws_client(
            "stepfunctions",
            region=region,
            endpoint_url=endpoint_url,
            max_pool_connections=max_workers,
        )
        self._owns_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="sfn"
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> SfnWorkflows:
        return cls(region=settings.region, max_workers=max_workers)

    def close(self) -> None:
        """Stop the thread pool (if this object created it)."""
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- the Workflows protocol --------------------------------------------------------------

    async def start(self, state_machine_arn: str, name: str, input: Any) -> str:
        return await self._io(self._start, state_machine_arn, name, _encode(input, "input"))

    async def describe(self, execution_arn: str) -> ExecutionInfo:
        return await self._io(self._describe, execution_arn)

    async def stop(self, execution_arn: str, *, error: str, cause: str) -> None:
        await self._io(self._stop, execution_arn, error, cause)

    async def succeed(self, task_token: str, output: Any) -> None:
        await self._io(
            self._token_call,
            "SendTaskSuccess",
            self.client.send_task_success,
            task_token,
            output=_encode(output, "output"),
        )

    async def fail(self, task_token: str, *, error: str, cause: str) -> None:
        await self._io(
            self._token_call,
            "SendTaskFailure",
            self.client.send_task_failure,
            task_token,
            error=error[:MAX_ERROR_CHARS],
            cause=cause[:MAX_CAUSE_CHARS],
        )

    async def heartbeat(self, task_token: str) -> None:
        await self._io(
            self._token_call, "SendTaskHeartbeat", self.client.send_task_heartbeat, task_token
        )

    # ---- blocking implementations (run in the executor) --------------------------------------

    async def _io(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _start(self, state_machine_arn: str, name: str, encoded_input: str) -> str:
        try:
            response = self._call(
                "StartExecution",
                self.client.start_execution,
                stateMachineArn=state_machine_arn,
                name=name,
                input=encoded_input,
            )
        except WorkflowError as exc:
            if _aws_code(exc) != "ExecutionAlreadyExists":
                raise
            arn = _existing_arn(exc) or _execution_arn(state_machine_arn, name)
            existing = self._call(
                "DescribeExecution", self.client.describe_execution, executionArn=arn
            )
            if _canonical(_decode(existing.get("input"))) != _canonical(json.loads(encoded_input)):
                raise JobExistsError(
                    f"execution {name} of {state_machine_arn} exists with another input",
                    details={"execution_arn": arn},
                ) from exc
            return arn
        return str(response["executionArn"])

    def _describe(self, execution_arn: str) -> ExecutionInfo:
        raw = self._call(
            "DescribeExecution", self.client.describe_execution, executionArn=execution_arn
        )
        status = str(raw.get("status", ""))
        try:
            parsed = _STATUS_ALIASES.get(status) or ExecutionStatus(status)
        except ValueError as exc:
            raise WorkflowError(
                f"execution {execution_arn} has an unknown status {status!r}",
                details={"status": status},
            ) from exc
        return ExecutionInfo(
            execution_arn=str(raw.get("executionArn", execution_arn)),
            status=parsed,
            output=_decode(raw.get("output")),
            error=raw.get("error"),
            cause=raw.get("cause"),
            started_at=_datetime(raw.get("startDate")),
            stopped_at=_datetime(raw.get("stopDate")),
        )

    def _stop(self, execution_arn: str, error: str, cause: str) -> None:
        try:
            self._call(
                "StopExecution",
                self.client.stop_execution,
                executionArn=execution_arn,
                error=error[:MAX_ERROR_CHARS],
                cause=cause[:MAX_CAUSE_CHARS],
            )
        except JobNotFoundError:
            raise
        except WorkflowError:
            # Refused: fine if the execution has ended already (nothing left to stop).
            if self._describe(execution_arn).status == ExecutionStatus.RUNNING:
                raise

    def _token_call(
        self, operation: str, method: Callable[..., Any], task_token: str, **kwargs: Any
    ) -> None:
        try:
            self._call(operation, method, taskToken=task_token, **kwargs)
        except SwitchyardError as exc:
            cause = exc.__cause__
            if task_token and task_token in f"{exc.message} {cause!s} {cause!r}":
                # Never let the token travel in a message, even the chained one's.
                raise type(exc)(
                    exc.message.replace(task_token, "<task token>"), details=exc.details
                ) from None
            raise

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            details = {"operation": operation, "aws_code": code}
            if code in _TOKEN_CLOSED:
                raise TaskTokenClosedError(
                    f"Step Functions {operation}: the task token is closed ({code})",
                    details=details,
                ) from exc
            if code in _NOT_FOUND:
                raise JobNotFoundError(
                    f"Step Functions {operation}: no such execution", details=details
                ) from exc
            message = str(error.get("Message", ""))
            raise WorkflowError(
                f"Step Functions {operation} failed: {code}: {message}", details=details
            ) from exc
        except BotoCoreError as exc:
            raise WorkflowError(
                f"Step Functions {operation} failed: {exc}", details={"operation": operation}
            ) from exc


def _aws_code(exc: SwitchyardError) -> str:
    details = exc.details if isinstance(exc.details, dict) else {}
    return str(details.get("aws_code", ""))


def _existing_arn(exc: WorkflowError) -> str | None:
    """The execution ARN an ``ExecutionAlreadyExists`` error names, if it names one."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return None
    message = str(cause.response.get("Error", {}).get("Message", ""))
    match = _EXECUTION_ARN.search(message)
    return match.group(0) if match else None


def _execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN of execution ``name`` of a state machine (or of its version or alias)."""
    parts = state_machine_arn.split(":")
    if len(parts) < 7 or parts[5] != "stateMachine":
        raise WorkflowError(f"not a state machine ARN: {state_machine_arn}")
    return ":".join([*parts[:5], "execution", parts[6], name])


def _encode(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WorkflowError(f"the {what} is not JSON: {exc}") from exc


def _canonical(value: Any) -> str:
    """One JSON text per JSON value (key order aside), telling ``1`` from ``1.0`` and ``true``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _decode(raw: Any) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise WorkflowError(f"Step Functions returned a value that is not JSON: {exc}") from exc


def _datetime(value: Any) -> datetime | None:
    """botocore's timestamps (in the local zone) in UTC."""
    return value.astimezone(UTC) if isinstance(value, datetime) else None


__all__ = ["SfnWorkflows"]
