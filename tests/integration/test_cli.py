"""The `switchyard` CLI as a user runs it: a subprocess, its output and its exit code.

(The API commands against a running gateway: test_cli_http.py; the operator commands on the
stack's queues and table: test_cli_operator.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI_ENV = ("SWITCHYARD_URL", "SWITCHYARD_API_KEY", "SWITCHYARD_OUTPUTS")


def switchyard(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run in ``cwd`` (not the repository: a `.switchyard/local-outputs.json` or
    `cdk-outputs.json` there would point the operator commands at that stack), without the
    developer's SWITCHYARD_URL/API_KEY/OUTPUTS."""
    base = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_agents_list_json_describes_every_example_agent(tmp_path: Path) -> None:
    # No API named: the local registry (as with --local).
    for args in (("agents", "list", "--json"), ("agents", "list", "--local", "--json")):
        done = switchyard(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        agents = {a["name"]: a for a in json.loads(done.stdout)["agents"]}
        assert set(agents) == {"ticket-triage", "researcher", "ops-assistant", "section-summarizer"}
        restart = next(
            t for t in agents["ops-assistant"]["tools"] if t["name"] == "restart_service"
        )
        assert restart["requires_approval"] is True
        assert restart["side_effect"] is True
        assert restart["input_schema"]["required"] == ["service", "reason"]


def test_agents_list_human(tmp_path: Path) -> None:
    done = switchyard("agents", "list", "--local", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header, *rows, legend = done.stdout.splitlines()
    assert header.split() == ["AGENT", "MODEL", "SHAPE", "TOOLS"]
    assert [r.split()[0] for r in rows] == [
        "ops-assistant",
        "researcher",
        "section-summarizer",
        "ticket-triage",
    ]
    assert legend == "(* needs approval, ! side effect)"


def test_a_bad_agent_module_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    done = switchyard(
        "agents",
        "list",
        "--local",
        cwd=tmp_path,
        env={"SWITCHYARD_AGENT_MODULES": "no.such.module"},
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("switchyard: error: cannot import agent module 'no.such.module'")
    assert "Traceback" not in done.stderr


def test_invalid_settings_are_reported_not_raised(tmp_path: Path) -> None:
    done = switchyard("agents", "list", cwd=tmp_path, env={"SWITCHYARD_LEASE_TTL_S": "soon"})
    assert done.returncode == 1
    assert "lease_ttl_s" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_tour_runs_the_demo_on_dynamodb_and_s3(tmp_path: Path) -> None:
    done = switchyard(
        "tour",
        "--latency",
        "0",
        cwd=tmp_path,
        env={"SWITCHYARD_EFFECTS_DIR": str(tmp_path / "effects")},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "DynamoDB table switchyard + S3 bucket switchyard-overflow on moto" in out
    assert "status → running (resumed after step 2)" in out  # worker-b picked up the run
    assert "approval requested for restart_service" in out
    assert "approval approve - go ahead" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("run_")]
    assert [(r[1], r[2]) for r in rows] == [
        ("ticket-triage", "succeeded"),
        ("researcher", "succeeded"),
        ("ops-assistant", "succeeded"),
    ]
    # The side-effecting tools applied their effects exactly once each.
    assert len(list((tmp_path / "effects").glob("*.json"))) == 2


def test_keys_create_and_revoke_against_dynamodb_on_a_moto_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no outputs document around, the keys commands use the SWITCHYARD_* and AWS_*
    environment as it is (see test_cli_operator.py for the outputs documents)."""
    from tests.support.moto_server import template_on_moto_server

    # The stack's table and bucket, deployed from the synthesized template.
    with template_on_moto_server() as deployed:
        settings = deployed.settings()
        env = {
            "AWS_ENDPOINT_URL": str(deployed.endpoint_url),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "SWITCHYARD_TABLE": settings.table_name,
            "SWITCHYARD_BUCKET": settings.bucket_name,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        created = switchyard("keys", "create", "--tenant", "acme", "--json", cwd=tmp_path, env=env)
        assert created.returncode == 0, created.stderr
        record = json.loads(created.stdout)
        assert record["tenant"] == "acme"
        assert record["api_key"].startswith(f"sy_{record['key_id']}_")
        assert "key_hash" not in record
        revoked = switchyard("keys", "revoke", record["key_id"], cwd=tmp_path, env=env)
        assert revoked.returncode == 0, revoked.stderr
        assert f"revoked key {record['key_id']} of tenant acme" in revoked.stdout
        unknown = switchyard("keys", "revoke", "0000000000000000", cwd=tmp_path, env=env)
        assert unknown.returncode == 1
        assert unknown.stderr.startswith("switchyard: error: no key 0000000000000000")
        bad = switchyard("keys", "create", "--tenant", "Bad Name", cwd=tmp_path, env=env)
        assert bad.returncode == 1
        assert "tenant 'Bad Name' must be" in bad.stderr
