"""Settings for the operator commands (``keys``, ``dlq``): they act on the stack's AWS
resources directly, with the operator's AWS credentials, not through the HTTP API.

Where the stack is, first found wins:

1. ``--outputs FILE``, else ``SWITCHYARD_OUTPUTS``: a stack-outputs document;
2. ``./.switchyard/local-outputs.json`` (written by the local stack, ``make dev``);
3. ``./cdk-outputs.json`` (written by ``make deploy``: ``cdk deploy --outputs-file``);
4. none: plain ``Settings.from_env()`` (``SWITCHYARD_TABLE``, ``SWITCHYARD_QUEUE_URL``, ...).

A stack-outputs document is what ``cdk deploy --outputs-file`` writes,
``{"<StackName>": {"TableName": ..., "BucketName": ..., "RunsQueueUrl": ...,
"DeadLetterQueueUrl": ..., ...}}`` (``infra/constants.py`` ``OUTPUT_*``), holding one stack.
The local stack adds ``"AwsEndpointUrl"`` (its moto server: ``AWS_ENDPOINT_URL`` is set to it
for boto3, with dummy credentials if none are set) and ``"Region"``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.cli.client import CliError

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.logic.service import Services

OUTPUTS_ENV = "SWITCHYARD_OUTPUTS"
LOCAL_OUTPUTS = Path(".switchyard") / "local-outputs.json"
CDK_OUTPUTS = Path("cdk-outputs.json")
ENDPOINT_OUTPUT = "AwsEndpointUrl"
REGION_OUTPUT = "Region"
# Settings field -> stack output (infra.constants.OUTPUT_*; shared.dal.local._SETTINGS_OUTPUTS).
SETTINGS_OUTPUTS = {
    "table_name": "TableName",
    "bucket_name": "BucketName",
    "queue_url": "RunsQueueUrl",
    "dlq_url": "DeadLetterQueueUrl",
}
DUMMY_CREDENTIAL = "switchyard-local"


@dataclass(frozen=True)
class StackOutputs:
    source: Path
    stack: str | None
    values: dict[str, str]

    @property
    def endpoint_url(self) -> str | None:
        return self.values.get(ENDPOINT_OUTPUT) or None


def add_outputs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--outputs",
        metavar="FILE",
        help=(
            f"the stack's outputs (cdk-outputs.json); default: ${OUTPUTS_ENV}, "
            f"./{LOCAL_OUTPUTS.as_posix()}, ./{CDK_OUTPUTS}, else the SWITCHYARD_* environment"
        ),
    )


def outputs_file(
    explicit: str | None, env: Mapping[str, str], cwd: Path | None = None
) -> Path | None:
    """The outputs document to use, or None (see the module docstring for the order)."""
    named = explicit or env.get(OUTPUTS_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            origin = "--outputs" if explicit else OUTPUTS_ENV
            raise CliError(f"{origin}: no such file {named}")
        return path
    base = cwd or Path.cwd()
    for candidate in (base / LOCAL_OUTPUTS, base / CDK_OUTPUTS):
        if candidate.is_file():
            return candidate
    return None


def load_outputs(path: Path) -> StackOutputs:
    """The one stack's outputs in ``path`` (a flat object of outputs is accepted too)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read stack outputs from {path}: {exc}") from None
    if not isinstance(document, dict):
        raise CliError(f"{path}: expected a JSON object of stack outputs")
    if "TableName" in document:
        return StackOutputs(path, None, _strings(document))
    stacks = {
        name: outputs
        for name, outputs in document.items()
        if isinstance(outputs, dict) and "TableName" in outputs
    }
    if not stacks:
        raise CliError(f"{path}: no stack with a TableName output")
    if len(stacks) > 1:
        raise CliError(
            f"{path} holds several stacks ({', '.join(sorted(stacks))}); "
            f"point --outputs or {OUTPUTS_ENV} at a file with one"
        )
    ((name, outputs),) = stacks.items()
    return StackOutputs(path, name, _strings(outputs))


def _strings(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in values.items() if isinstance(v, str | int | float)}


def _region_of_queue(url: str | None) -> str | None:
    """``eu-west-1`` of ``https://sqs.eu-west-1.amazonaws.com/...`` (None for other hosts)."""
    host = urlsplit(url or "").hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs" and parts[-2:] == ["amazonaws", "com"]:
        return parts[1]
    return None


def operator_settings(
    outputs_option: str | None = None,
    env: MutableMapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Settings pointed at the stack the outputs document names (see the module docstring).
    A local stack's endpoint is exported to ``env`` (``os.environ``) for boto3."""
    from shared.config import Settings

    environ = os.environ if env is None else env
    settings = Settings.from_env(environ)
    path = outputs_file(outputs_option, environ, cwd)
    if path is None:
        return settings
    outputs = load_outputs(path)
    updates: dict[str, Any] = {
        name: outputs.values[output]
        for name, output in SETTINGS_OUTPUTS.items()
        if outputs.values.get(output)
    }
    # The stack's own region wins over the shell's: its output, else its queue URL's.
    region = (
        outputs.values.get(REGION_OUTPUT)
        or _region_of_queue(outputs.values.get(SETTINGS_OUTPUTS["queue_url"]))
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
    )
    if region:
        updates["region"] = region
    if outputs.endpoint_url:
        environ["AWS_ENDPOINT_URL"] = outputs.endpoint_url
        if not environ.get("AWS_ACCESS_KEY_ID") and not environ.get("AWS_PROFILE"):
            environ["AWS_ACCESS_KEY_ID"] = DUMMY_CREDENTIAL
            environ["AWS_SECRET_ACCESS_KEY"] = DUMMY_CREDENTIAL
    return settings.model_copy(update=updates)


def queue_services(settings: Settings) -> Services:
    """Services on the stack's table and queues, for the ``dlq`` commands."""
    if settings.backend == "memory":
        raise CliError(
            "the dlq commands act on the stack's SQS queues; SWITCHYARD_BACKEND=memory has none"
        )
    missing = [
        env
        for env, value in (
            ("SWITCHYARD_QUEUE_URL", settings.queue_url),
            ("SWITCHYARD_DLQ_URL", settings.dlq_url),
        )
        if not value
    ]
    if missing:
        raise CliError(
            f"no {' or '.join(missing)}: pass --outputs FILE (the stack's cdk-outputs.json), "
            f"set {OUTPUTS_ENV}, or set {' and '.join(missing)}"
        )
    from shared.wiring import build_services

    return build_services(settings, backend="aws")


def close(*resources: object) -> None:
    """Stop the thread pools of boto3-backed stores (best effort; the process ends anyway)."""
    for resource in resources:
        closer = getattr(resource, "close", None)
        if callable(closer):
            closer()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep the use cases' own output off the command's stdout while they run: the metrics
    they print (EMF lines for CloudWatch) and the JSON lines their loggers write there. A
    failure still reaches the user, as the command's one-line error."""
    sink = io.StringIO()
    streams = (sys.stdout, sys.__stdout__)
    moved: list[tuple[logging.StreamHandler[Any], Any]] = []
    for candidate in list(logging.Logger.manager.loggerDict.values()):
        if not isinstance(candidate, logging.Logger):
            continue
        for handler in candidate.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in streams:
                moved.append((handler, handler.setStream(sink)))
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)
