"""Trigger rules: loaded from a file or inline JSON, validated once, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.agents import AgentRegistry
from shared.config import Settings
from shared.errors import ConfigError, NotFoundError
from shared.logic.triggers import (
    TriggerRules,
    load_triggers,
    object_ref,
    parse_triggers,
    s3_records,
)
from tests.triggers.conftest import RULES, load_event


def test_rules_load_from_a_file_and_from_inline_json(tmp_path: Path) -> None:
    path = tmp_path / "triggers.json"
    path.write_text(json.dumps(RULES))
    from_file = load_triggers(Settings.from_env({"SWITCHYARD_TRIGGERS_FILE": str(path)}))
    inline = load_triggers(Settings.from_env({"SWITCHYARD_TRIGGERS": json.dumps(RULES)}))
    assert from_file == inline
    assert [r.name for r in from_file.s3] == ["invoices", "everything-in-acme"]
    assert from_file.schedule("nightly-digest").agent == "ops-assistant"
    assert load_triggers(Settings()) == TriggerRules()  # nothing configured: no rules


def test_both_sources_at_once_is_an_error(tmp_path: Path) -> None:
    env = {"SWITCHYARD_TRIGGERS_FILE": str(tmp_path / "x.json"), "SWITCHYARD_TRIGGERS": "{}"}
    with pytest.raises(ConfigError, match="not both"):
        load_triggers(Settings.from_env(env))


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=r"cannot read .*nope\.json"):
        load_triggers(Settings.from_env({"SWITCHYARD_TRIGGERS_FILE": str(missing)}))


def test_invalid_json_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_triggers('{"s3": [')


def _error(doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_triggers(json.dumps(doc))
    return caught.value.message


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"s3": [{"name": "a", "agent": "x", "prefx": "typo/"}]}, "s3.0.prefx: Extra inputs"),
        ({"s3": [{"name": "a"}]}, "name exactly one target"),
        ({"s3": [{"name": "a", "agent": "x", "pipeline": "etl"}]}, "name exactly one target"),
        (
            {
                "schedules": [
                    {"name": "s", "expression": "rate(1 day)", "pipeline": "p", "input": 1}
                ]
            },
            "a pipeline's input must be a JSON object",
        ),
        ({"s3": [{"name": "a", "agent": "x", "input": {"key": "k"}}]}, "filled from the S3"),
        ({"s3": [{"name": "bad name", "agent": "x"}]}, "s3.0.name"),
        (
            {"s3": [{"name": "a", "agent": "x"}, {"name": "a", "agent": "y"}]},
            "rule names must be unique, repeated: ['a']",
        ),
        (
            {"s3": [{"name": "a", "agent": "x", "metadata": {"trigger": "mine"}}]},
            "set by the trigger itself",
        ),
        (
            {
                "schedules": [
                    {"name": "s", "expression": "cron(0 6 * * *)", "agent": "x", "input": 1}
                ]
            },
            "cron() takes 6 fields",
        ),
        (
            {
                "schedules": [
                    {"name": "s", "expression": "cron(0 6 * * 1 *)", "agent": "x", "input": 1}
                ]
            },
            "exactly one of day-of-month and day-of-week",
        ),
        (
            {"schedules": [{"name": "s", "expression": "rate(1 hours)", "agent": "x", "input": 1}]},
            "rate(1 hour)",
        ),
        (
            {"schedules": [{"name": "s", "expression": "every day", "agent": "x", "input": 1}]},
            "cron(...) or rate(N unit)",
        ),
        ({"schedules": [{"name": "s", "expression": "rate(5 minutes)", "agent": "x"}]}, "input"),
        ({"webhooks": []}, "webhooks: Extra inputs"),
    ],
)
def test_bad_rules_say_what_is_wrong(doc: dict[str, Any], expected: str) -> None:
    message = _error(doc)
    assert message.startswith("SWITCHYARD_TRIGGERS: invalid trigger rules:")
    assert expected in message


def test_valid_expressions_pass() -> None:
    rules = parse_triggers(
        json.dumps(
            {
                "schedules": [
                    {"name": f"s{i}", "expression": e, "agent": "x", "input": "go"}
                    for i, e in enumerate(
                        [
                            "rate(1 minute)",
                            "rate(15 minutes)",
                            "rate(2 days)",
                            "cron(0/5 * * * ? *)",
                        ]
                    )
                ]
            }
        )
    )
    assert len(rules.schedules) == 4


def test_unknown_agents_fail_at_start_up(registry: AgentRegistry) -> None:
    rules = parse_triggers(json.dumps({"s3": [{"name": "a", "agent": "no-such-agent"}]}))
    with pytest.raises(ConfigError, match=r"unknown agents: \['a: no-such-agent'\]"):
        rules.check_agents(registry)
    TriggerRules.model_validate(RULES).check_agents(registry)  # the fixture's are all known


def test_unknown_schedule_rule(rules: TriggerRules) -> None:
    with pytest.raises(NotFoundError, match="no schedule rule named 'weekly'"):
        rules.schedule("weekly")


def test_s3_keys_are_url_decoded_and_test_events_ignored(rules: TriggerRules) -> None:
    (record,) = s3_records(load_event("s3_put.json"))
    obj = object_ref(record)
    assert obj is not None
    assert obj.key == "invoices/2025/ACME Corp, March + April.pdf"
    assert (obj.bucket, obj.size, obj.etag) == (
        "acme-inbox",
        48213,
        "0e9f3c1a6b2d4e8f9a1b2c3d4e5f6a7b",
    )
    assert [r.name for r in rules.s3 if r.matches(obj)] == ["invoices"]
    assert s3_records(load_event("s3_test_event.json")) == []
    removed = {**record, "eventName": "ObjectRemoved:Delete"}
    assert object_ref(removed) is None
