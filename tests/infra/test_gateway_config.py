"""The provider gateway's stack settings (``gateway`` in infra/config.py).

They are validated at synth with the models ``shared/config.py`` parses the variables with
(a bad value stops ``cdk synth`` with a one-line message naming the field), and become
``SWITCHYARD_*`` variables, compact JSON, on the processes that call models only: the API
function (sync runs) and the worker. The first part needs no synth; the second synthesizes
the main variant plus gateway settings once for this module.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra import constants as c
from infra.config import ConfigError, GatewaySettings, StackSettings
from shared.config import PriceSetting, RateLimitSetting, Settings
from tests.infra.conftest import (
    MAIN_SETTINGS,
    Synth,
    allowed,
    cfn_lint,
    env_of,
    function_role,
    ref_id,
    synthesize,
    worker_container,
)

GATEWAY: dict[str, Any] = {
    "rate_limits": {
        "default": {"requests": 50, "input_tokens": 40_000, "output_tokens": 8_000},
        "claude-opus": {"requests": 20, "input_tokens": 30_000, "output_tokens": 8_000},
    },
    "rate_limit_period_s": 30,
    "tenant_daily_budget_usd": {"*": 20, "acme": 250.5},
    "prices": {
        "claude-sonnet-4": {"input": 2.5, "output": 12.5},
        "my-model": {"input": 1, "output": 4, "cache_write": 1.5, "cache_read": 0.2},
    },
}
# Exactly what the processes get: compact, keys sorted, cache prices only when set.
EXPECTED_ENV: dict[str, str] = {
    c.ENV_RATE_LIMITS: (
        '{"claude-opus":{"input_tokens":30000,"output_tokens":8000,"requests":20},'
        '"default":{"input_tokens":40000,"output_tokens":8000,"requests":50}}'
    ),
    c.ENV_RATE_LIMIT_PERIOD: "30",
    c.ENV_TENANT_DAILY_BUDGETS: '{"*":20.0,"acme":250.5}',
    c.ENV_PRICES: (
        '{"claude-sonnet-4":{"input":2.5,"output":12.5},'
        '"my-model":{"cache_read":0.2,"cache_write":1.5,"input":1.0,"output":4.0}}'
    ),
}
ALARM_THRESHOLD = 3


def gateway(**values: Any) -> StackSettings:
    return StackSettings.from_mapping({"gateway": values})


def test_the_names_are_the_ones_shared_config_reads() -> None:
    assert c.GATEWAY_ENV == (
        "SWITCHYARD_RATE_LIMITS",
        "SWITCHYARD_RATE_LIMIT_PERIOD_S",
        "SWITCHYARD_TENANT_DAILY_BUDGETS",
        "SWITCHYARD_PRICES",
    )
    # The very models the processes validate with, not look-alikes.
    fields = GatewaySettings.model_fields
    assert fields["rate_limits"].annotation == dict[str, RateLimitSetting]
    assert fields["prices"].annotation == dict[str, PriceSetting]


def test_settings_become_compact_json_variables() -> None:
    assert gateway(**GATEWAY).gateway.environment() == EXPECTED_ENV


def test_the_variables_parse_as_the_processes_parse_them() -> None:
    parsed = Settings.from_env(gateway(**GATEWAY).gateway.environment())
    assert parsed.rate_limits == {
        name: RateLimitSetting(**value) for name, value in GATEWAY["rate_limits"].items()
    }
    assert parsed.rate_limit_period_s == 30
    assert parsed.daily_budget_usd("acme") == 250.5
    assert parsed.daily_budget_usd("anyone-else") == 20
    assert parsed.prices == {
        name: PriceSetting(**value) for name, value in GATEWAY["prices"].items()
    }


def test_unset_settings_set_no_variable() -> None:
    assert StackSettings().gateway.environment() == {}
    assert gateway().gateway.environment() == {}
    assert gateway(rate_limits={}, prices={}).gateway.environment() == {}


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("rate_limits", c.ENV_RATE_LIMITS),
        ("rate_limit_period_s", c.ENV_RATE_LIMIT_PERIOD),
        ("tenant_daily_budget_usd", c.ENV_TENANT_DAILY_BUDGETS),
        ("prices", c.ENV_PRICES),
    ],
)
def test_each_setting_sets_only_its_variable(field: str, variable: str) -> None:
    env = gateway(**{field: GATEWAY[field]}).gateway.environment()
    assert env == {variable: EXPECTED_ENV[variable]}


@pytest.mark.parametrize(("period", "text"), [(0.5, "0.5"), (90, "90"), (3600, "3600")])
def test_the_period_is_written_without_losing_digits(period: float, text: str) -> None:
    env = gateway(rate_limit_period_s=period).gateway.environment()
    assert env == {c.ENV_RATE_LIMIT_PERIOD: text}
    assert Settings.from_env(env).rate_limit_period_s == period


LIMIT = {"requests": 50, "input_tokens": 40_000, "output_tokens": 8_000}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"rate_limits": {"default": {**LIMIT, "requests": 0}}},
            "gateway.rate_limits.default.requests: Input should be greater than 0",
        ),
        (
            {"rate_limits": {"claude": {"requests": 5, "input_tokens": 100}}},
            "gateway.rate_limits.claude.output_tokens: Field required",
        ),
        (
            {"rate_limits": {"default": {**LIMIT, "tokens": 5}}},
            "gateway.rate_limits.default.tokens: Extra inputs are not permitted",
        ),
        ({"rate_limits": {"default": 50}}, "gateway.rate_limits.default: Input should be"),
        ({"rate_limits": [LIMIT]}, "gateway.rate_limits: Input should be a valid dictionary"),
        ({"rate_limits": {"": LIMIT}}, "rate_limits: keys cannot be empty"),
        ({"rate_limit_period_s": 0}, "gateway.rate_limit_period_s: Input should be greater than 0"),
        (
            {"rate_limit_period_s": 7200},
            "gateway.rate_limit_period_s: Input should be less than or equal to 3600",
        ),
        (
            {"tenant_daily_budget_usd": {"acme": 0}},
            "gateway.tenant_daily_budget_usd.acme: Input should be greater than 0",
        ),
        (
            {"tenant_daily_budget_usd": {"*": "lots"}},
            "gateway.tenant_daily_budget_usd.*: Input should be a valid number",
        ),
        (
            {"prices": {"claude": {"input": -1, "output": 5}}},
            "gateway.prices.claude.input: Input should be greater than or equal to 0",
        ),
        ({"prices": {"claude": {"input": 1}}}, "gateway.prices.claude.output: Field required"),
        (
            {"prices": {"claude": {"input": 1, "output": 5, "cached": 0.1}}},
            "gateway.prices.claude.cached: Extra inputs are not permitted",
        ),
        ({"rate_limit": {}}, "gateway.rate_limit: Extra inputs are not permitted"),
    ],
)
def test_a_bad_value_fails_with_a_one_line_message_naming_it(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        StackSettings.from_mapping({"gateway": values})
    text = str(info.value)
    assert text.startswith("invalid stack settings: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.slow  # starts the jsii runtime (node)
def test_a_bad_value_in_the_cdk_context_stops_the_synth(tmp_path: Path) -> None:
    """The synth reads the context through from_context (infra/app.py build_app)."""
    (tmp_path / "prod.json").write_text(json.dumps({"gateway": {"rate_limits": {"d": LIMIT}}}))
    bad = json.dumps({"gateway": {"rate_limits": {"d": {**LIMIT, "output_tokens": -5}}}})
    values = {c.CONTEXT_CONFIG_FILE: "prod.json", c.CONTEXT_SETTINGS: bad}
    with pytest.raises(ConfigError, match=r"gateway\.rate_limits\.d\.output_tokens"):
        StackSettings.from_context(values.get, base_dir=tmp_path)
    from infra.app import build_app

    with pytest.raises(ConfigError, match=r"gateway\.rate_limits\.d\.output_tokens"):
        build_app(context={c.CONTEXT_SETTINGS: bad}, nag=False)


def test_file_and_inline_settings_merge_by_key(tmp_path: Path) -> None:
    (tmp_path / "prod.json").write_text(
        json.dumps(
            {"gateway": {"rate_limits": {"default": LIMIT}, "tenant_daily_budget_usd": {"*": 5}}}
        )
    )
    inline = {"gateway": {"rate_limits": {"claude-opus": {**LIMIT, "requests": 10}}}}
    values = {c.CONTEXT_CONFIG_FILE: "prod.json", c.CONTEXT_SETTINGS: inline}
    s = StackSettings.from_context(values.get, base_dir=tmp_path)
    assert set(s.gateway.rate_limits) == {"default", "claude-opus"}
    assert s.gateway.rate_limits["claude-opus"].requests == 10
    assert s.gateway.tenant_daily_budget_usd == {"*": 5}


@pytest.mark.parametrize("variable", c.GATEWAY_ENV)
def test_extra_env_cannot_bypass_the_validation(variable: str) -> None:
    with pytest.raises(ConfigError, match="use the `gateway` settings"):
        StackSettings.from_mapping({"extra_env": {variable: "{}"}})


def test_settings_too_large_for_a_lambda_environment_are_refused() -> None:
    limits = {f"claude-model-{i:03}": LIMIT for i in range(60)}
    with pytest.raises(ConfigError, match="Lambda environment"):
        gateway(rate_limits=limits)


# ---- in the synthesized template --------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_synth(tmp_path_factory: pytest.TempPathFactory, _build_dir: Path) -> Synth:
    raw = {
        **MAIN_SETTINGS,
        "gateway": GATEWAY,
        "monitoring": {"provider_429_alarm": ALARM_THRESHOLD},
    }
    return synthesize(raw, tmp_path_factory.mktemp("cdk-gateway"), _build_dir)


def _gateway_vars(env: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in env.items() if k in c.GATEWAY_ENV}


@pytest.mark.slow
def test_the_variables_are_on_the_api_function_and_the_worker_only(gateway_synth: Synth) -> None:
    with_gateway = {
        props["Handler"]
        for props in (
            r["Properties"] for r in gateway_synth.of_type("AWS::Lambda::Function").values()
        )
        if _gateway_vars(env_of(props))
    }
    assert with_gateway == {c.API_HANDLER}
    _, api = gateway_synth.function(c.API_HANDLER)
    assert _gateway_vars(env_of(api)) == EXPECTED_ENV
    worker_env = {e["Name"]: e["Value"] for e in worker_container(gateway_synth)["Environment"]}
    assert _gateway_vars(worker_env) == EXPECTED_ENV
    # Nowhere else: each name appears in those two places only (one task definition).
    template = json.dumps(gateway_synth.template)
    for variable in c.GATEWAY_ENV:
        assert template.count(f'"{variable}"') == 2, variable
    # What they get, parsed the way they parse it.
    parsed = Settings.from_env(_gateway_vars(env_of(api)))
    assert parsed.daily_budget_usd("acme") == 250.5
    assert parsed.rate_limits["claude-opus"].requests == 20


@pytest.mark.slow
def test_the_429_alarm_threshold_follows_the_settings(gateway_synth: Synth) -> None:
    stack = gateway_synth.settings.stack_name
    _, alarm = gateway_synth.one(
        "AWS::CloudWatch::Alarm",
        lambda p: p.get("AlarmName") == f"{stack}-{c.PROVIDER_RATE_LIMITED_ALARM_ID}",
    )
    assert alarm["Threshold"] == ALARM_THRESHOLD
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert str(ALARM_THRESHOLD) in alarm["AlarmDescription"]
    _, dashboard = gateway_synth.one("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["DashboardBody"])
    assert f'\\"value\\":{ALARM_THRESHOLD},\\"label\\":\\"429 alarm\\"' in body


@pytest.mark.slow
def test_the_settings_widen_no_grant(gateway_synth: Synth, main_synth: Synth) -> None:
    """Buckets and counters are items of the same table: the grants are the main variant's."""
    for handler in (c.API_HANDLER, c.AUTHORIZER_HANDLER, c.S3_TRIGGER_HANDLER, c.DLQ_HANDLER):
        assert allowed(gateway_synth, function_role(gateway_synth, handler)) == allowed(
            main_synth, function_role(main_synth, handler)
        ), handler
    policies = {k: r["Properties"] for k, r in gateway_synth.of_type("AWS::IAM::Policy").items()}
    assert policies == {
        k: r["Properties"] for k, r in main_synth.of_type("AWS::IAM::Policy").items()
    }
    _, task = gateway_synth.one("AWS::ECS::TaskDefinition")
    assert allowed(gateway_synth, ref_id(task["TaskRoleArn"])) >= {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
    }


@pytest.mark.slow
def test_cdk_nag_and_cfn_lint_accept_it(gateway_synth: Synth) -> None:
    assert gateway_synth.error is None, gateway_synth.error
    report = gateway_synth.nag()
    assert report["conclusion"] == "success"
    assert report["violations"] == []
    result = subprocess.run(
        [cfn_lint(), "--format", "json", str(gateway_synth.template_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    errors = [m for m in json.loads(result.stdout or "[]") if m["Level"] == "Error"]
    assert not errors, json.dumps(errors, indent=2)
