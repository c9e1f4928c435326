"""Stack settings (infra/config.py) and the pure helpers of the constructs. No synth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import constants as c
from infra.config import ConfigError, StackSettings
from infra.constructs.triggers import merge_key_filters, schedule_payload
from infra.constructs.workers import image_excludes


def context(values: dict[str, Any]) -> Any:
    return values.get


def test_defaults() -> None:
    s = StackSettings()
    assert s.stack_name == "Switchyard-dev"
    assert s.resource_prefix == "switchyard-dev"
    assert s.lease_ttl_s == 30
    assert s.queues.max_receive_count == 5
    assert s.queues.dlq_retention_days == 14
    assert s.network.mode == "public"
    assert (s.worker.min_tasks, s.worker.max_tasks, s.worker.spot) == (1, 10, False)
    assert (s.worker.drain_timeout_s, s.worker.stop_timeout_s) == (25, 30)
    assert s.functions.api.timeout_s == 30
    assert s.removal_policy == "retain"
    assert s.blob_expiry_days == 32
    assert s.triggers_json() == ""
    assert not s.snap_start_for(s.functions.api)
    assert s.gateway.environment() == {}  # no gateway variable unless configured
    assert s.monitoring.provider_429_alarm == 10


def test_file_then_inline_settings_then_stage(tmp_path: Path) -> None:
    config = tmp_path / "prod.json"
    config.write_text(
        json.dumps({"stage": "prod", "worker": {"max_tasks": 20, "spot": True}, "tracing": False})
    )
    s = StackSettings.from_context(
        context(
            {
                c.CONTEXT_CONFIG_FILE: "prod.json",
                c.CONTEXT_SETTINGS: json.dumps({"worker": {"max_tasks": 30}}),
                c.CONTEXT_STAGE: "staging",
            }
        ),
        base_dir=tmp_path,
    )
    assert s.stage == "staging"
    assert s.worker.max_tasks == 30
    assert s.worker.spot is True  # kept from the file: nested objects merge
    assert s.tracing is False


def test_context_settings_may_be_an_object() -> None:
    s = StackSettings.from_context(
        context({c.CONTEXT_SETTINGS: {"functions": {"api": {"memory_mb": 2048}}}})
    )
    assert s.functions.api.memory_mb == 2048
    assert s.functions.api.timeout_s == 30  # the function's own defaults stay


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"stage": "Prod"}, "stage"),
        ({"colour": "blue"}, "colour"),
        ({"worker": {"cpu": 512, "memory_mb": 512}}, "not a Fargate size"),
        ({"worker": {"min_tasks": 5, "max_tasks": 2}}, "min_tasks"),
        ({"worker": {"drain_timeout_s": 30, "stop_timeout_s": 30}}, "drain_timeout_s"),
        ({"log_retention_days": 31}, "log_retention_days"),
        ({"extra_env": {"SWITCHYARD_TABLE": "x"}}, "extra_env"),
        (
            {"functions": {"api": {"snap_start": True, "provisioned_concurrency": 1}}},
            "SnapStart and provisioned concurrency",
        ),
        (
            {"functions": {"api": {"reserved_concurrency": 1, "provisioned_concurrency": 2}}},
            "provisioned_concurrency",
        ),
        (
            {"triggers": {"schedules": [{"name": "x", "expression": "every day", "agent": "a"}]}},
            "expression",
        ),
        ({"triggers": {"s3": [{"name": "x"}]}}, "name exactly one target"),
        (
            {"gateway": {"rate_limits": {"default": {"requests": 0}}}},
            "gateway.rate_limits.default.requests",
        ),
        ({"gateway": {"rate_limit_period_s": 0}}, "gateway.rate_limit_period_s"),
        ({"monitoring": {"provider_429_alarm": -1}}, "monitoring.provider_429_alarm"),
    ],
)
def test_invalid_settings_fail_with_a_message_naming_the_problem(
    raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match="invalid stack settings") as info:
        StackSettings.from_mapping(raw)
    assert message in str(info.value)


def test_a_bad_config_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        StackSettings.from_context(context({c.CONTEXT_CONFIG_FILE: "bad.json"}), base_dir=tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        StackSettings.from_context(
            context({c.CONTEXT_CONFIG_FILE: "missing.json"}), base_dir=tmp_path
        )


def test_trigger_rules_use_the_functions_format() -> None:
    s = StackSettings.from_mapping(
        {
            "inbox_bucket_name": "acme-inbox",
            "triggers": {
                "s3": [
                    {"name": "a", "prefix": "in/", "agent": "researcher"},
                    {"name": "b", "bucket": "acme-inbox", "agent": "researcher", "mode": "sync"},
                    {"name": "c", "bucket": "partner", "agent": "researcher"},
                ]
            },
        }
    )
    assert [r.name for r in s.inbox_rules()] == ["a", "b"]
    assert s.external_trigger_buckets() == ("partner",)
    assert s.runs_sync_triggers()
    from shared.logic.triggers import parse_triggers

    assert [r.name for r in parse_triggers(s.triggers_json()).s3] == ["a", "b", "c"]


def test_rules_too_large_for_a_lambda_environment_are_refused() -> None:
    rules = [
        {"name": f"rule-{i}", "prefix": f"{'p' * 60}{i}/", "agent": "researcher"} for i in range(60)
    ]
    with pytest.raises(ConfigError, match="Lambda environment"):
        StackSettings.from_mapping({"triggers": {"s3": rules}})


@pytest.mark.parametrize(
    ("filters", "merged"),
    [
        ([("a/", ".pdf"), ("b/", ".pdf")], [("a/", ".pdf"), ("b/", ".pdf")]),
        ([("a/", ".pdf"), ("a/", "")], [("a/", "")]),
        ([("a/x/", ""), ("a/", ".csv")], [("a/", "")]),
        ([("a/", ".pdf"), ("a/", ".csv")], [("a/", ".csv"), ("a/", ".pdf")]),
        ([("", ""), ("a/", ".pdf"), ("b/", "")], [("", "")]),
        ([("a/", ".pdf"), ("a/", ".pdf")], [("a/", ".pdf")]),
        ([], []),
    ],
)
def test_overlapping_s3_filters_merge_into_the_broader_one(
    filters: list[tuple[str, str]], merged: list[tuple[str, str]]
) -> None:
    result = merge_key_filters(filters)
    assert result == merged
    for i, a in enumerate(result):  # S3 accepts the result: no two filters overlap
        for b in result[i + 1 :]:
            prefixes = a[0].startswith(b[0]) or b[0].startswith(a[0])
            suffixes = a[1].endswith(b[1]) or b[1].endswith(a[1])
            assert not (prefixes and suffixes)
    for prefix, suffix in filters:  # and every rule's objects still notify
        assert any(prefix.startswith(p) and suffix.endswith(s) for p, s in result)


def test_schedule_payload_names_the_rule_and_the_scheduled_time() -> None:
    from functions.triggers.schedule import parse_event

    payload = json.loads(schedule_payload("nightly"))
    assert payload == {"rule": "nightly", "time": "<aws.scheduler.scheduled-time>"}
    rule, when = parse_event({**payload, "time": "2025-01-01T06:00:00Z"})
    assert rule == "nightly"
    assert when.hour == 6


def test_the_image_context_keeps_the_dockerfile() -> None:
    excludes = image_excludes()
    assert excludes[0] == "**"
    assert f"!{c.WORKER_DOCKERFILE}" in excludes
    assert excludes.index(f"!{c.WORKER_DOCKERFILE}") > excludes.index("workers/Dockerfile*")
