"""The operator commands (`keys`, `dlq`): how they find the stack (an outputs document, or
the environment), and what they do to its table and queues, on a moto server holding the
synthesized template's resources."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main
from shared.cli.client import CliError
from shared.cli.operator import DUMMY_CREDENTIAL, close, operator_settings
from shared.dal.sqs import SqsRunQueue
from shared.logic.dlq import handle_dead_letter
from shared.logic.service import Services, create_run
from shared.models.api import RunCreate
from shared.models.run import RunStatus, Shape
from shared.queue.base import RunMessage
from shared.wiring import build_services

CLI_ENV = ("SWITCHYARD_URL", "SWITCHYARD_API_KEY", "SWITCHYARD_OUTPUTS")
OUTPUTS = {
    "TableName": "sy-dev",
    "BucketName": "sy-dev-overflow",
    "RunsQueueUrl": "http://127.0.0.1:4566/123456789012/sy-dev-runs",
    "DeadLetterQueueUrl": "http://127.0.0.1:4566/123456789012/sy-dev-runs-dlq",
    "ApiUrl": "http://127.0.0.1:8000/",
}
ORPHAN = "run_00000000000000000000000000"


@pytest.fixture(autouse=True)
def _no_cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In an empty directory (no outputs document to find), without the shell's CLI env."""
    for var in CLI_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


# ---- finding the stack -----------------------------------------------------------------------


def test_an_outputs_document_points_the_settings_at_the_stack(tmp_path: Path) -> None:
    outputs = write(tmp_path / "out.json", {"Switchyard-dev": OUTPUTS})
    env: dict[str, str] = {"SWITCHYARD_TABLE": "ignored"}
    settings = operator_settings(str(outputs), env=env, cwd=tmp_path)
    assert settings.table_name == "sy-dev"
    assert settings.bucket_name == "sy-dev-overflow"
    assert settings.queue_url == OUTPUTS["RunsQueueUrl"]
    assert settings.dlq_url == OUTPUTS["DeadLetterQueueUrl"]
    assert "AWS_ENDPOINT_URL" not in env  # a deployed stack: AWS as configured


def test_a_local_stack_exports_its_endpoint_and_dummy_credentials(tmp_path: Path) -> None:
    local = {**OUTPUTS, "AwsEndpointUrl": "http://127.0.0.1:4566", "Region": "eu-west-3"}
    write(tmp_path / ".switchyard" / "local-outputs.json", {"Switchyard-local": local})
    env: dict[str, str] = {}
    settings = operator_settings(None, env=env, cwd=tmp_path)
    assert settings.region == "eu-west-3"
    assert env == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
        "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
    }
    # Credentials the operator has are kept.
    mine = {"AWS_PROFILE": "ops"}
    operator_settings(None, env=mine, cwd=tmp_path)
    assert mine == {"AWS_PROFILE": "ops", "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}


def test_which_document_wins(tmp_path: Path) -> None:
    def table(name: str) -> dict[str, Any]:
        return {"Stack": {**OUTPUTS, "TableName": name}}

    env: dict[str, str] = {"SWITCHYARD_TABLE": "from-env"}
    assert operator_settings(None, env=dict(env), cwd=tmp_path).table_name == "from-env"
    write(tmp_path / "cdk-outputs.json", table("from-cdk"))
    assert operator_settings(None, env=dict(env), cwd=tmp_path).table_name == "from-cdk"
    write(tmp_path / ".switchyard" / "local-outputs.json", table("from-local"))
    assert operator_settings(None, env=dict(env), cwd=tmp_path).table_name == "from-local"
    named = write(tmp_path / "named.json", table("from-variable"))
    env["SWITCHYARD_OUTPUTS"] = str(named)
    assert operator_settings(None, env=dict(env), cwd=tmp_path).table_name == "from-variable"
    flag = write(tmp_path / "flag.json", table("from-flag"))
    assert operator_settings(str(flag), env=dict(env), cwd=tmp_path).table_name == "from-flag"


def test_region_of_a_deployed_stack_comes_from_its_queue_url(tmp_path: Path) -> None:
    deployed = {
        **OUTPUTS,
        "RunsQueueUrl": "https://sqs.eu-central-1.amazonaws.com/123456789012/sy-runs",
    }
    outputs = write(tmp_path / "cdk-outputs.json", {"Switchyard-prod": deployed})
    env = {"AWS_REGION": "us-east-1"}
    assert operator_settings(str(outputs), env=env, cwd=tmp_path).region == "eu-central-1"
    flat = write(tmp_path / "flat.json", OUTPUTS)  # the outputs alone are accepted too
    assert operator_settings(str(flat), env=env, cwd=tmp_path).region == "us-east-1"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"A": OUTPUTS, "B": OUTPUTS}, "holds several stacks (A, B)"),
        ({"A": {"ApiUrl": "x"}}, "no stack with a TableName output"),
        ([1, 2], "expected a JSON object of stack outputs"),
    ],
)
def test_unusable_documents_are_one_clear_error(
    tmp_path: Path, document: Any, message: str
) -> None:
    path = write(tmp_path / "out.json", document)
    with pytest.raises(CliError, match=message.replace("(", r"\(").replace(")", r"\)")):
        operator_settings(str(path), env={}, cwd=tmp_path)
    with pytest.raises(CliError, match="--outputs: no such file"):
        operator_settings(str(tmp_path / "missing.json"), env={}, cwd=tmp_path)
    with pytest.raises(CliError, match="SWITCHYARD_OUTPUTS: no such file"):
        operator_settings(None, env={"SWITCHYARD_OUTPUTS": "missing.json"}, cwd=tmp_path)


def test_dlq_without_a_stack_says_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        "switchyard: error: no SWITCHYARD_QUEUE_URL or SWITCHYARD_DLQ_URL: pass --outputs FILE"
    )


def test_keys_on_the_memory_backend(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_BACKEND", "memory")
    assert main(["keys", "create", "--tenant", "acme", "--name", "ci"]) == 0
    key_line, note = capsys.readouterr().out.splitlines()
    assert key_line.startswith("SWITCHYARD_API_KEY=sy_")
    assert note.endswith("for tenant acme: shown once, store it now")
    assert main(["dlq", "list"]) == 1
    assert "SWITCHYARD_BACKEND=memory has none" in capsys.readouterr().err


# ---- on the stack's queues and table (moto server) ----------------------------------------------


@dataclass
class Stack:
    svc: Services
    dlq: SqsRunQueue
    outputs: Path
    endpoint_url: str


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Stack]:
    """The template's table and queues on a moto server (dead letters visible again at once:
    the trigger tests' stack variant), its outputs document in ./cdk-outputs.json as a local
    stack writes it, and Services on it for this test's own checks."""
    from tests.support.moto_server import template_on_moto_server
    from tests.triggers.conftest import STACK_SETTINGS

    with template_on_moto_server(STACK_SETTINGS) as deployed:
        assert deployed.endpoint_url is not None
        # Set here so that what the CLI exports to this process is undone after the test.
        monkeypatch.setenv("AWS_ENDPOINT_URL", deployed.endpoint_url)
        local = {
            **deployed.outputs,
            "AwsEndpointUrl": deployed.endpoint_url,
            "Region": deployed.region,
        }
        outputs = write(tmp_path / "cdk-outputs.json", {deployed.name: local})
        settings = deployed.settings()
        svc = build_services(settings, backend="aws")
        dlq = SqsRunQueue(settings.dlq_url, region=settings.region)
        try:
            yield Stack(svc, dlq, outputs, deployed.endpoint_url)
        finally:
            close(svc.journal, svc.control, svc.queue, dlq)


async def _dead_letter(stack: Stack) -> str:
    """A run the platform gave up on: its message received, the run marked dead_lettered,
    the message kept in the DLQ (what the DLQ function does)."""
    body = RunCreate(agent="researcher", input="what is a lease?", mode=Shape.ASYNC)
    run = (await create_run(stack.svc, "acme", body)).run
    (message,) = await stack.svc.queue.receive(wait_s=0)
    marked = await handle_dead_letter(stack.svc, message)
    assert marked is not None
    assert marked.status is RunStatus.FAILED
    await stack.dlq.send(message.body)
    await stack.svc.queue.delete(message.receipt)
    return run.run_id


def _cli_process(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _bare_env() -> dict[str, str]:
    """The environment without any AWS endpoint or credentials, nor SWITCHYARD_* settings:
    all the CLI knows comes from the outputs document."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "SWITCHYARD_")) or k == "SWITCHYARD_EFFECTS_DIR"
    }


def test_dlq_list_and_redrive(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_id = asyncio.run(_dead_letter(stack))
    asyncio.run(stack.dlq.send(RunMessage(run_id=ORPHAN)))

    # As an operator runs it: a subprocess that knows only the outputs document.
    listed = _cli_process(
        "dlq", "list", "--outputs", str(stack.outputs), "--json", cwd=tmp_path, env=_bare_env()
    )
    assert listed.returncode == 0, listed.stderr
    views = {v["run_id"]: v for v in json.loads(listed.stdout)["dead_letters"]}
    assert set(views) == {run_id, ORPHAN}
    assert views[run_id]["agent"] == "researcher"
    assert views[run_id]["tenant"] == "acme"
    assert views[run_id]["status"] == "failed"
    assert views[run_id]["error_code"] == "dead_lettered"
    assert views[run_id]["receive_count"] >= 1
    assert views[run_id]["age_s"] >= 0
    assert views[ORPHAN]["reason"] == "the run no longer exists"

    # In this process, finding ./cdk-outputs.json by itself.
    capsys.readouterr()
    assert main(["dlq", "list"]) == 0
    header, *rows, footer = capsys.readouterr().out.splitlines()
    assert header.split() == ["RUN", "AGENT", "REASON", "RECEIVES", "AGE"]
    by_run = {row.split()[0]: row.split() for row in rows}
    assert by_run[run_id][1:3] == ["researcher", "dead_lettered"]
    assert by_run[ORPHAN][1] == "-"
    assert footer.startswith("2 dead letter(s)")

    assert main(["dlq", "redrive", "--run", run_id]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == [run_id, "redriven"]
    reopened = asyncio.run(stack.svc.journal.get_run(run_id))
    assert reopened.status is RunStatus.QUEUED
    assert reopened.error is None
    (back,) = asyncio.run(stack.svc.queue.receive(wait_s=0))
    assert back.body.run_id == run_id

    assert main(["dlq", "redrive", "--run", "run_not_there"]) == 1
    err = capsys.readouterr().err
    assert err == "switchyard: error: not in the dead-letter queue: run_not_there\n"

    assert main(["dlq", "redrive", "--all", "--json"]) == 0
    (outcome,) = json.loads(capsys.readouterr().out)["outcomes"]
    assert outcome["run_id"] == ORPHAN
    assert outcome["action"] == "discarded"
    assert outcome["reason"] == "the run no longer exists"

    assert main(["dlq", "list"]) == 0
    assert capsys.readouterr().out == "the dead-letter queue is empty\n"


def test_keys_through_the_outputs_document(stack: Stack, tmp_path: Path) -> None:
    env = _bare_env()
    created = _cli_process(
        "keys", "create", "--tenant", "acme", "--outputs", str(stack.outputs), "--json",
        cwd=tmp_path,
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    stored = asyncio.run(stack.svc.control.get_key(record["key_id"]))
    assert stored is not None
    assert stored.tenant == "acme"
    assert stored.revoked_at is None

    # Found as ./cdk-outputs.json by itself; SWITCHYARD_OUTPUTS, when set, wins.
    revoked = _cli_process("keys", "revoke", record["key_id"], cwd=tmp_path, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked key {record['key_id']} of tenant acme" in revoked.stdout
    stored = asyncio.run(stack.svc.control.get_key(record["key_id"]))
    assert stored is not None
    assert stored.revoked_at is not None
    elsewhere = _cli_process(
        "keys",
        "revoke",
        record["key_id"],
        cwd=tmp_path,
        env={**env, "SWITCHYARD_OUTPUTS": str(tmp_path / "gone.json")},
    )
    assert elsewhere.returncode == 1
    assert elsewhere.stderr == (
        f"switchyard: error: SWITCHYARD_OUTPUTS: no such file {tmp_path / 'gone.json'}\n"
    )
