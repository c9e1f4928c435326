"""Secret ARNs in the environment become values under the names the code reads."""

from __future__ import annotations

import pytest
from moto import mock_aws

from shared.dal import aws_client
from shared.dal.secrets import export_secrets
from shared.errors import ConfigError


def test_secret_values_are_exported_and_registered_for_redaction() -> None:
    with mock_aws():
        sm = aws_client("secretsmanager", region="us-east-1")
        arn = sm.create_secret(Name="anthropic", SecretString="sk-ant-real-value-123")["ARN"]
        env = {"SWITCHYARD_ANTHROPIC_API_KEY_SECRET_ARN": arn, "AWS_REGION": "us-east-1"}
        seen: list[str] = []
        assert export_secrets(env, client=sm, on_value=seen.append) == ["ANTHROPIC_API_KEY"]
        assert env["ANTHROPIC_API_KEY"] == "sk-ant-real-value-123"
        assert seen == ["sk-ant-real-value-123"]
        # Already set (e.g. by ECS): left alone, no call made.
        assert export_secrets(env, client=None) == []


def test_an_unreadable_secret_is_a_config_error_without_the_value() -> None:
    with mock_aws():
        sm = aws_client("secretsmanager", region="us-east-1")
        env = {"SWITCHYARD_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123:secret:nope"}
        with pytest.raises(ConfigError, match="SWITCHYARD_WEBHOOK_SECRET") as err:
            export_secrets(env, client=sm)
        assert err.value.__cause__ is not None
