"""The stack with every setting that defaults one way turned the other (conftest.py
``OTHER_SETTINGS``): private network with NAT, Fargate Spot, SnapStart, provisioned and
reserved concurrency, no tracing, the offline provider, no trigger rules, no dashboard."""

from __future__ import annotations

import json
import subprocess

import pytest

from infra import constants as c
from tests.infra.conftest import (
    SAMPLE_PIPELINES_MODULE,
    Synth,
    allowed,
    cfn_lint,
    env_of,
    function_role,
    ref_id,
)

pytestmark = pytest.mark.slow  # a second synth (~3 s once node runs)


def test_cdk_nag_and_cfn_lint_accept_it(other_synth: Synth) -> None:
    assert other_synth.error is None, other_synth.error
    report = other_synth.nag()
    assert report["violations"] == []
    acknowledged = {f["acknowledgedId"] for f in report["suppressedViolations"]}
    assert "AwsSolutions::AwsSolutions-VPC7" in acknowledged  # flow logs turned off
    result = subprocess.run(
        [cfn_lint(), "--format", "json", str(other_synth.template_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    errors = [m for m in json.loads(result.stdout or "[]") if m["Level"] == "Error"]
    assert not errors, json.dumps(errors, indent=2)


def test_private_network_behind_nat(other_synth: Synth) -> None:
    assert len(other_synth.of_type("AWS::EC2::NatGateway")) == 1
    assert not other_synth.of_type("AWS::EC2::FlowLog")
    _, service = other_synth.one("AWS::ECS::Service")
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    private = {
        k
        for k, s in other_synth.of_type("AWS::EC2::Subnet").items()
        if not s["Properties"]["MapPublicIpOnLaunch"]
    }
    assert {ref_id(s) for s in network["Subnets"]} == private


def test_fargate_spot_capacity(other_synth: Synth) -> None:
    _, service = other_synth.one("AWS::ECS::Service")
    assert "LaunchType" not in service
    assert service["CapacityProviderStrategy"] == [
        {"Base": 1, "CapacityProvider": "FARGATE", "Weight": 1},
        {"CapacityProvider": "FARGATE_SPOT", "Weight": 3},
    ]
    _, associations = other_synth.one("AWS::ECS::ClusterCapacityProviderAssociations")
    assert set(associations["CapacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}
    _, target = other_synth.one("AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 4)


def test_snap_start_and_concurrency_settings(other_synth: Synth) -> None:
    api_id, api = other_synth.function(c.API_HANDLER)
    assert api["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert api["ReservedConcurrentExecutions"] == 50
    auth_id, auth = other_synth.function(c.AUTHORIZER_HANDLER)
    assert "SnapStart" not in auth
    assert auth["ReservedConcurrentExecutions"] == 10
    _, alias = other_synth.alias_of(auth_id)
    assert alias["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}
    _, api_alias = other_synth.alias_of(api_id)
    assert "ProvisionedConcurrencyConfig" not in api_alias


def test_no_tracing_means_no_xray_grant(other_synth: Synth) -> None:
    for fn in other_synth.of_type("AWS::Lambda::Function").values():
        props = fn["Properties"]
        assert "TracingConfig" not in props
        assert env_of(props)[c.ENV_POWERTOOLS_TRACE_DISABLED] == "true"
        assert not any(a.startswith("xray:") for a in allowed(other_synth, ref_id(props["Role"])))


def test_the_offline_provider_gets_no_model_key(other_synth: Synth) -> None:
    _, task = other_synth.one("AWS::ECS::TaskDefinition")
    (container,) = task["ContainerDefinitions"]
    assert [s["Name"] for s in container["Secrets"]] == [c.ENV_WEBHOOK_SECRET]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env[c.ENV_PROVIDER] == "offline"
    assert env[c.ENV_AGENT_MODULES] == SAMPLE_PIPELINES_MODULE
    assert env["SWITCHYARD_WEBHOOK_ATTEMPTS"] == "3"
    _, api = other_synth.function(c.API_HANDLER)
    api_env = env_of(api)
    assert c.ENV_ANTHROPIC_SECRET_ARN not in api_env
    assert api_env["SWITCHYARD_WEBHOOK_ATTEMPTS"] == "3"
    secrets = [
        r
        for s in other_synth.statements(function_role(other_synth, c.API_HANDLER))
        if "secretsmanager:GetSecretValue" in s["Action"]
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    (webhook_id,) = [
        k for k, s in other_synth.of_type("AWS::SecretsManager::Secret").items() if "Webhook" in k
    ]
    assert secrets == [{"Ref": webhook_id}]


def test_queue_settings_follow_the_lease_and_receive_count(other_synth: Synth) -> None:
    _, runs = other_synth.one(
        "AWS::SQS::Queue", lambda p: p.get("QueueName") == "switchyard-prod-runs"
    )
    assert runs["VisibilityTimeout"] == 60
    assert runs["RedrivePolicy"]["maxReceiveCount"] == 3
    _, api = other_synth.function(c.API_HANDLER)
    assert env_of(api)[c.ENV_LEASE_TTL] == "60"


def test_no_rules_no_dashboard_destroyable(other_synth: Synth) -> None:
    assert not other_synth.of_type("AWS::Scheduler::Schedule")
    assert all(
        "NotificationConfiguration" not in b["Properties"]
        for b in other_synth.of_type("AWS::S3::Bucket").values()
    )
    _, s3_fn = other_synth.function(c.S3_TRIGGER_HANDLER)
    assert c.ENV_TRIGGERS not in env_of(s3_fn)
    assert not other_synth.of_type("AWS::CloudWatch::Dashboard")
    assert c.OUTPUT_DASHBOARD not in other_synth.template["Outputs"]
    assert not other_synth.of_type("AWS::SNS::Subscription")
    table_id, table = other_synth.one("AWS::DynamoDB::Table")
    assert table["DeletionProtectionEnabled"] is False
    assert other_synth.resources[table_id]["DeletionPolicy"] == "Delete"
