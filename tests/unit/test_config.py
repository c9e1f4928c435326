"""Settings from the environment: defaults, provider choice, clear errors."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.errors import ConfigError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.provider == "offline"
    assert s.agent_modules == ()
    assert (s.table_name, s.bucket_name, s.region) == (
        "switchyard",
        "switchyard-overflow",
        "us-east-1",
    )
    assert s.lease_ttl_s == 30.0
    assert s.overflow_threshold_bytes == 350_000
    assert s.retention_days == 30
    assert s.log_level == "INFO"


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_TABLE", "from-os")
    assert Settings.from_env().table_name == "from-os"


def test_an_anthropic_key_selects_the_real_provider() -> None:
    assert Settings.from_env({"ANTHROPIC_API_KEY": "sk-ant-x"}).provider == "anthropic"
    assert Settings.from_env({"ANTHROPIC_API_KEY": ""}).provider == "offline"


def test_explicit_provider_wins() -> None:
    env = {"ANTHROPIC_API_KEY": "sk-ant-x", "SWITCHYARD_PROVIDER": "offline"}
    assert Settings.from_env(env).provider == "offline"
    assert Settings.from_env({"SWITCHYARD_PROVIDER": "anthropic"}).provider == "anthropic"


def test_empty_variables_mean_unset() -> None:
    env = {"SWITCHYARD_PROVIDER": "", "SWITCHYARD_TABLE": "", "ANTHROPIC_API_KEY": "k"}
    s = Settings.from_env(env)
    assert s.provider == "anthropic"
    assert s.table_name == "switchyard"


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "SWITCHYARD_AGENT_MODULES": "a.b, c.d ,,",
            "SWITCHYARD_TABLE": "t",
            "SWITCHYARD_BUCKET": "b",
            "AWS_REGION": "eu-west-1",
            "SWITCHYARD_LEASE_TTL_S": "12.5",
            "SWITCHYARD_OVERFLOW_BYTES": "1000",
            "SWITCHYARD_RETENTION_DAYS": "7",
            "SWITCHYARD_LOG_LEVEL": "DEBUG",
        }
    )
    assert s.agent_modules == ("a.b", "c.d")
    assert (s.table_name, s.bucket_name, s.region) == ("t", "b", "eu-west-1")
    assert s.lease_ttl_s == 12.5
    assert s.overflow_threshold_bytes == 1000
    assert s.retention_days == 7
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SWITCHYARD_PROVIDER": "openai"}, "provider"),
        ({"SWITCHYARD_LEASE_TTL_S": "soon"}, "lease_ttl_s"),
        ({"SWITCHYARD_LEASE_TTL_S": "0"}, "lease_ttl_s"),
        ({"SWITCHYARD_OVERFLOW_BYTES": "400000"}, "overflow_threshold_bytes"),
        ({"SWITCHYARD_RETENTION_DAYS": "0"}, "retention_days"),
    ],
)
def test_invalid_values_raise_config_error(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = info.value.message
    assert message.startswith("invalid settings: ")
    assert field in message
    assert info.value.code == "config_error"


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SWITCHYARD_PROVIDER": "x", "SWITCHYARD_RETENTION_DAYS": "-1"})
    assert "provider" in info.value.message
    assert "retention_days" in info.value.message


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(ValueError, match="frozen"):
        s.table_name = "other"  # type: ignore[misc]
