"""The `switchyard` CLI as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def switchyard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_agents_list_json_describes_every_example_agent() -> None:
    done = switchyard("agents", "list", "--json")
    assert done.returncode == 0, done.stderr
    agents = {a["name"]: a for a in json.loads(done.stdout)}
    assert set(agents) == {"ticket-triage", "researcher", "ops-assistant"}
    restart = next(t for t in agents["ops-assistant"]["tools"] if t["name"] == "restart_service")
    assert restart["requires_approval"] is True
    assert restart["side_effect"] is True
    assert restart["input_schema"]["required"] == ["service", "reason"]


def test_a_bad_agent_module_is_one_line_and_a_non_zero_exit() -> None:
    done = switchyard("agents", "list", env={"SWITCHYARD_AGENT_MODULES": "no.such.module"})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("switchyard: error: cannot import agent module 'no.such.module'")
    assert "Traceback" not in done.stderr


def test_invalid_settings_are_reported_not_raised() -> None:
    done = switchyard("agents", "list", env={"SWITCHYARD_LEASE_TTL_S": "soon"})
    assert done.returncode == 1
    assert "lease_ttl_s" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_dev_runs_the_demo_tour_on_dynamodb_and_s3(tmp_path: Path) -> None:
    done = switchyard(
        "dev", "--latency", "0", env={"SWITCHYARD_EFFECTS_DIR": str(tmp_path / "effects")}
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
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
        created = switchyard("keys", "create", "--tenant", "acme", "--json", env=env)
        assert created.returncode == 0, created.stderr
        record = json.loads(created.stdout)
        assert record["tenant"] == "acme"
        assert record["api_key"].startswith(f"sy_{record['key_id']}_")
        assert "key_hash" not in record
        revoked = switchyard("keys", "revoke", record["key_id"], env=env)
        assert revoked.returncode == 0, revoked.stderr
        assert f"revoked key {record['key_id']} of tenant acme" in revoked.stdout
        unknown = switchyard("keys", "revoke", "0000000000000000", env=env)
        assert unknown.returncode == 1
        assert unknown.stderr.startswith("switchyard: error: no key 0000000000000000")
        bad = switchyard("keys", "create", "--tenant", "Bad Name", env=env)
        assert bad.returncode == 1
        assert "tenant 'Bad Name' must be" in bad.stderr
