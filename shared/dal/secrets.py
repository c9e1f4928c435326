"""Secrets Manager → environment, once per cold start.

Deployed functions get only secret ARNs in their environment (never values in a template or
an environment variable's definition). Before settings are read, ``export_secrets`` fetches
each named secret and exports its value under the variable the code reads (the Anthropic SDK
reads ANTHROPIC_API_KEY; webhooks read SWITCHYARD_WEBHOOK_SECRET), and registers the value with
the log redactor. The worker needs none of this: ECS injects the same values itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import Any

from shared.errors import ConfigError

# The variable the code reads  ←  the variable that names the secret holding its value.
SECRET_ARN_VARIABLES: dict[str, str] = {
    "ANTHROPIC_API_KEY": "SWITCHYARD_ANTHROPIC_API_KEY_SECRET_ARN",
    "SWITCHYARD_WEBHOOK_SECRET": "SWITCHYARD_WEBHOOK_SECRET_ARN",
}


def export_secrets(
    env: MutableMapping[str, str] | None = None,
    *,
    client: Any = None,
    on_value: Callable[[str], None] | None = None,
) -> list[str]:
    """Resolve every ``*_SECRET_ARN`` variable that is set and whose target is not; returns
    the names exported. Values never appear in errors or logs."""
    env = os.environ if env is None else env
    wanted = {
        target: env[arn_var]
        for target, arn_var in SECRET_ARN_VARIABLES.items()
        if env.get(arn_var) and not env.get(target)
    }
    if not wanted:
        return []
    if client is None:
        from shared.dal import aws_client

        client = aws_client("secretsmanager", region=env.get("AWS_REGION"))
    from botocore.exceptions import BotoCoreError, ClientError

    for target, arn in wanted.items():
        try:
            value = client.get_secret_value(SecretId=arn)["SecretString"]
        except (ClientError, BotoCoreError, KeyError) as exc:
            raise ConfigError(f"cannot read the secret for {target} ({arn})") from exc
        env[target] = value
        if on_value is not None:
            on_value(value)
    return sorted(wanted)
