"""The synthesized template, unit by unit (the main settings variant, see conftest.py).

Assertions are on the CloudFormation the CDK app writes, since that is what gets deployed:
resource properties, the environment each process reads, IAM statements, cdk-nag's verdict
and cfn-lint's.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from functions.api.app import PREFIX, PUBLIC_ROUTES
from infra import constants as c
from infra.constructs.monitoring import FAILED_QUEUE_STUCK_S, GROUP_LABEL
from shared.dal import schema
from tests.infra.conftest import (
    Synth,
    actions_of,
    allowed,
    cfn_lint,
    env_of,
    function_role,
    is_alias,
    queue_id,
    ref_id,
    resources_of,
    worker_container,
)

pytestmark = pytest.mark.slow  # one CDK synth per session (node + cdk-nag), ~10 s

HANDLERS = (
    c.API_HANDLER,
    c.AUTHORIZER_HANDLER,
    c.S3_TRIGGER_HANDLER,
    c.SCHEDULE_HANDLER,
    c.DLQ_HANDLER,
    c.PIPELINE_HANDLER,
)
DATA_PREFIXES = ("dynamodb:", "s3:", "sqs:", "secretsmanager:", "states:", "lambda:")


# ---- storage -----------------------------------------------------------------------------------


def test_the_table_is_exactly_the_schema_table_definition(main_synth: Synth) -> None:
    expected = schema.table_definition("ignored")
    table_id, table = main_synth.one("AWS::DynamoDB::Table")
    assert table["BillingMode"] == expected["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == expected["KeySchema"]
    key = lambda d: d["AttributeName"]  # noqa: E731
    assert sorted(table["AttributeDefinitions"], key=key) == sorted(
        expected["AttributeDefinitions"], key=key
    )
    assert table["GlobalSecondaryIndexes"] == expected["GlobalSecondaryIndexes"]
    assert "LocalSecondaryIndexes" not in table
    # What CreateTable does not carry.
    assert table["TimeToLiveSpecification"] == {
        "AttributeName": schema.TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["DeletionProtectionEnabled"] is True
    assert main_synth.resources[table_id]["DeletionPolicy"] == "Retain"


def test_every_bucket_is_private_encrypted_and_tls_only(main_synth: Synth) -> None:
    buckets = main_synth.of_type("AWS::S3::Bucket")
    assert len(buckets) == 3  # overflow, inbox, access logs
    for props in (b["Properties"] for b in buckets.values()):
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    policies = {
        ref_id(p["Properties"]["Bucket"]): p["Properties"]["PolicyDocument"]["Statement"]
        for p in main_synth.of_type("AWS::S3::BucketPolicy").values()
    }
    assert set(policies) == set(buckets)
    for statements in policies.values():
        assert any(
            s["Effect"] == "Deny"
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            and actions_of(s) == ["s3:*"]
            for s in statements
        )


def test_the_overflow_bucket_expires_blobs_after_retention_and_logs_access(
    main_synth: Synth,
) -> None:
    settings = main_synth.settings
    _, bucket = main_synth.one(
        "AWS::S3::Bucket",
        lambda p: any(r.get("Prefix") == "blobs/" for r in p["LifecycleConfiguration"]["Rules"]),
    )
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-blobs"]["ExpirationInDays"] == settings.retention_days + 2
    assert rules["expire-blobs"]["Prefix"] == "blobs/"
    assert rules["expire-exports"]["Prefix"] == "exports/"
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    logs_id = ref_id(bucket["LoggingConfiguration"]["DestinationBucketName"])
    assert "LoggingConfiguration" not in main_synth.props(logs_id)
    assert main_synth.props(logs_id)["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == (
        settings.access_log_retention_days
    )


def test_secrets_are_generated_and_only_their_arns_travel(main_synth: Synth) -> None:
    secrets = main_synth.of_type("AWS::SecretsManager::Secret")
    assert len(secrets) == 2
    for props in (s["Properties"] for s in secrets.values()):
        assert "GenerateSecretString" in props
        assert "SecretString" not in props
    # No function environment holds anything but references for secrets.
    for _, fn in main_synth.of_type("AWS::Lambda::Function").items():
        env = env_of(fn["Properties"])
        assert c.ENV_ANTHROPIC_API_KEY not in env
        assert c.ENV_WEBHOOK_SECRET not in env
        for name in (c.ENV_ANTHROPIC_SECRET_ARN, c.ENV_WEBHOOK_SECRET_ARN):
            if name in env:
                assert ref_id(env[name]) in secrets


# ---- queues ------------------------------------------------------------------------------------


def test_runs_queue_redrives_to_the_transit_queue_then_the_dlq(main_synth: Synth) -> None:
    settings = main_synth.settings
    runs = main_synth.props(queue_id(main_synth, "runs"))
    failed_id = queue_id(main_synth, "runs-failed")
    dlq_id = queue_id(main_synth, "runs-dlq")
    assert runs["VisibilityTimeout"] == settings.lease_ttl_s == 30
    assert runs["ReceiveMessageWaitTimeSeconds"] == 20
    assert runs["MessageRetentionPeriod"] == 14 * 86400
    assert runs["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [failed_id, "Arn"]},
        "maxReceiveCount": 5,
    }
    failed = main_synth.props(failed_id)
    assert failed["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    # The DLQ function's mapping needs the visibility above its timeout.
    assert failed["VisibilityTimeout"] >= settings.functions.dlq.timeout_s
    dlq = main_synth.props(dlq_id)
    assert dlq["MessageRetentionPeriod"] == 14 * 86400
    assert dlq["VisibilityTimeout"] == 5
    assert "RedrivePolicy" not in dlq


def test_every_queue_is_encrypted_and_tls_only(main_synth: Synth) -> None:
    queues = main_synth.of_type("AWS::SQS::Queue")
    assert len(queues) == 5
    for props in (q["Properties"] for q in queues.values()):
        assert props["SqsManagedSseEnabled"] is True
    guarded: set[str] = set()
    for policy in (p["Properties"] for p in main_synth.of_type("AWS::SQS::QueuePolicy").values()):
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                guarded.update(ref_id(q) for q in policy["Queues"])
    assert guarded == set(queues)


def test_the_dlq_function_consumes_the_transit_queue_reporting_partial_failures(
    main_synth: Synth,
) -> None:
    fn_id, _ = main_synth.function(c.DLQ_HANDLER)
    alias_id, _ = main_synth.alias_of(fn_id)
    _, mapping = main_synth.one(
        "AWS::Lambda::EventSourceMapping",
        lambda p: (
            p["EventSourceArn"] == {"Fn::GetAtt": [queue_id(main_synth, "runs-failed"), "Arn"]}
        ),
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert is_alias(mapping["FunctionName"], alias_id)


# ---- functions ---------------------------------------------------------------------------------


def test_functions_are_arm64_python312_behind_a_live_alias(main_synth: Synth) -> None:
    functions = main_synth.of_type("AWS::Lambda::Function")
    assert {f["Properties"]["Handler"] for f in functions.values()} == set(HANDLERS)
    for fn_id, fn in functions.items():
        props = fn["Properties"]
        assert props["Architectures"] == ["arm64"]
        assert props["Runtime"] == "python3.12"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert "LogGroup" in props["LoggingConfig"]
        _, alias = main_synth.alias_of(fn_id)
        assert alias["Name"] == c.LIVE_ALIAS
        assert "SnapStart" not in props  # off by default


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_handler_string_names_a_callable(handler: str) -> None:
    import importlib

    module, _, name = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_function_environments(main_synth: Synth) -> None:
    settings = main_synth.settings
    table_id, _ = main_synth.one("AWS::DynamoDB::Table")
    services = {
        c.API_HANDLER: "api",
        c.AUTHORIZER_HANDLER: "authorizer",
        c.S3_TRIGGER_HANDLER: "trigger-s3",
        c.SCHEDULE_HANDLER: "trigger-schedule",
        c.DLQ_HANDLER: "dlq",
        c.PIPELINE_HANDLER: "pipeline",
    }
    envs = {h: env_of(main_synth.function(h)[1]) for h in HANDLERS}
    for handler, env in envs.items():
        assert env[c.ENV_POWERTOOLS_SERVICE] == services[handler]
        assert env[c.ENV_POWERTOOLS_NAMESPACE] == c.METRICS_NAMESPACE == "Switchyard"
        assert env[c.ENV_POWERTOOLS_LOG_LEVEL] == settings.log_level
        assert env[c.ENV_TABLE] == {"Ref": table_id}
        assert env[c.ENV_BACKEND] == "aws"
    # Only what each reads.
    assert set(envs[c.AUTHORIZER_HANDLER]) == {
        c.ENV_TABLE,
        c.ENV_BACKEND,
        c.ENV_LOG_LEVEL,
        c.ENV_POWERTOOLS_SERVICE,
        c.ENV_POWERTOOLS_LOG_LEVEL,
        c.ENV_POWERTOOLS_NAMESPACE,
    }
    runs_queue = {"Ref": queue_id(main_synth, "runs")}
    for handler in (c.API_HANDLER, c.S3_TRIGGER_HANDLER, c.SCHEDULE_HANDLER):
        assert envs[handler][c.ENV_QUEUE_URL] == runs_queue
        assert envs[handler][c.ENV_LEASE_TTL] == "30"
        assert c.ENV_WEBHOOK_SECRET_ARN in envs[handler]
    assert c.ENV_ANTHROPIC_SECRET_ARN in envs[c.API_HANDLER]
    # Every trigger rule is async: the trigger functions never call the model.
    assert c.ENV_ANTHROPIC_SECRET_ARN not in envs[c.S3_TRIGGER_HANDLER]
    dlq_env = envs[c.DLQ_HANDLER]
    assert dlq_env[c.ENV_DLQ_URL] == {"Ref": queue_id(main_synth, "runs-dlq")}
    assert c.ENV_QUEUE_URL not in dlq_env
    # The pipeline function runs function stages and opens gates: it neither queues nor
    # starts jobs, and holds no secret.
    pipeline_env = envs[c.PIPELINE_HANDLER]
    assert pipeline_env[c.ENV_LEASE_TTL] == "30"
    assert not {c.ENV_QUEUE_URL, c.ENV_PIPELINES, c.ENV_WEBHOOK_SECRET_ARN} & set(pipeline_env)
    # The trigger rules ride along, in the format the functions parse.
    from shared.logic.triggers import parse_triggers

    for handler in (c.S3_TRIGGER_HANDLER, c.SCHEDULE_HANDLER):
        rules = parse_triggers(envs[handler][c.ENV_TRIGGERS])
        assert [r.name for r in rules.schedules] == ["nightly-digest", "hourly"]
    for env in envs.values():
        assert len(json.dumps(env)) < c.LAMBDA_ENV_LIMIT_BYTES


def test_no_gateway_variable_when_the_gateway_is_not_configured(main_synth: Synth) -> None:
    """The main variant sets no `gateway` settings: the code's defaults apply everywhere
    (tests/infra/test_gateway_config.py has the configured case)."""
    for handler in HANDLERS:
        assert not set(env_of(main_synth.function(handler)[1])) & set(c.GATEWAY_ENV), handler
    worker_env = {e["Name"] for e in worker_container(main_synth)["Environment"]}
    assert not worker_env & set(c.GATEWAY_ENV)
    template = json.dumps(main_synth.template)
    assert not [v for v in c.GATEWAY_ENV if v in template]


# ---- HTTP API ----------------------------------------------------------------------------------


def test_the_authorizer_uses_simple_responses_on_the_authorization_header(
    main_synth: Synth,
) -> None:
    fn_id, _ = main_synth.function(c.AUTHORIZER_HANDLER)
    alias_id, _ = main_synth.alias_of(fn_id)
    _, authorizer = main_synth.one("AWS::ApiGatewayV2::Authorizer")
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    assert authorizer["IdentitySource"] == ["$request.header.Authorization"]
    assert authorizer["AuthorizerResultTtlInSeconds"] == 0
    assert {"Ref": alias_id} in authorizer["AuthorizerUri"]["Fn::Join"][1]


def test_routes_proxy_with_the_authorizer_and_public_routes_without(main_synth: Synth) -> None:
    authorizer_id, _ = main_synth.one("AWS::ApiGatewayV2::Authorizer")
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in main_synth.of_type("AWS::ApiGatewayV2::Route").values()
    }
    public = {f"{method} {path}" for method, path in PUBLIC_ROUTES}
    assert set(c.PUBLIC_ROUTE_PATHS) == {path for _, path in PUBLIC_ROUTES}
    assert f"{PREFIX}/{{proxy+}}" == c.PROXY_ROUTE_PATH
    assert set(routes) == {f"ANY {c.PROXY_ROUTE_PATH}", *public}
    proxy = routes[f"ANY {c.PROXY_ROUTE_PATH}"]
    assert proxy["AuthorizationType"] == "CUSTOM"
    assert proxy["AuthorizerId"] == {"Ref": authorizer_id}
    for key in public:
        assert routes[key]["AuthorizationType"] == "NONE"
        assert "AuthorizerId" not in routes[key]
    # All routes reach the API function's live alias, payload 2.0.
    api_fn, _ = main_synth.function(c.API_HANDLER)
    alias_id, _ = main_synth.alias_of(api_fn)
    integration_id, integration = main_synth.one("AWS::ApiGatewayV2::Integration")
    assert integration["IntegrationUri"] == {"Ref": alias_id}
    assert integration["PayloadFormatVersion"] == "2.0"
    for route in routes.values():
        assert integration_id in json.dumps(route["Target"])


def test_the_stage_throttles_and_writes_json_access_logs(main_synth: Synth) -> None:
    _, stage = main_synth.one("AWS::ApiGatewayV2::Stage")
    assert stage["StageName"] == "$default"
    assert stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": 200,
        "ThrottlingRateLimit": 100,
    }
    log_format = json.loads(stage["AccessLogSettings"]["Format"])
    assert log_format["requestId"] == "$context.requestId"
    assert log_format["tenant"] == "$context.authorizer.tenant"
    log_group = ref_id(stage["AccessLogSettings"]["DestinationArn"])
    assert main_synth.resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert main_synth.props(log_group)["RetentionInDays"] == 30


# ---- workers -----------------------------------------------------------------------------------


def test_the_worker_task_is_arm64_with_health_check_and_stop_timeout(main_synth: Synth) -> None:
    _, task = main_synth.one("AWS::ECS::TaskDefinition")
    assert task["RuntimePlatform"] == {
        "CpuArchitecture": "ARM64",
        "OperatingSystemFamily": "LINUX",
    }
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert (task["Cpu"], task["Memory"]) == ("512", "1024")
    container = worker_container(main_synth)
    assert container["Command"] == ["python", "-m", "workers.main"]
    assert container["HealthCheck"]["Command"] == ["CMD", "python", "-m", "workers.health"]
    assert container["StopTimeout"] == 30
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"


def test_the_worker_image_is_built_from_the_dockerfile_for_arm64(main_synth: Synth) -> None:
    manifest = main_synth.outdir / f"{main_synth.settings.stack_name}.assets.json"
    assets = json.loads(manifest.read_text())
    (image,) = assets["dockerImages"].values()
    source = image["source"]
    assert source["dockerFile"] == c.WORKER_DOCKERFILE
    assert source["platform"] == "linux/arm64"
    staged = main_synth.outdir / source["directory"]
    assert (staged / c.WORKER_DOCKERFILE).is_file()
    assert (staged / "uv.lock").is_file()
    assert (staged / "shared" / "config.py").is_file()
    assert (staged / "workers" / "health.py").is_file()
    assert not (staged / ".venv").exists()
    assert not (staged / "tests").exists()


def test_the_worker_environment_and_secrets(main_synth: Synth) -> None:
    container = worker_container(main_synth)
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env[c.ENV_QUEUE_URL] == {"Ref": queue_id(main_synth, "runs")}
    assert env[c.ENV_DLQ_URL] == {"Ref": queue_id(main_synth, "runs-dlq")}
    assert env[c.ENV_LEASE_TTL] == "30"
    assert env[c.ENV_WORKER_CONCURRENCY] == "64"
    assert env[c.ENV_WORKER_DRAIN_TIMEOUT] == "25"
    assert env[c.ENV_POWERTOOLS_SERVICE] == "worker"
    assert env["AWS_REGION"] == {"Ref": "AWS::Region"}
    assert c.ENV_TABLE in env
    assert c.ENV_BUCKET in env
    secrets = {s["Name"]: ref_id(s["ValueFrom"]) for s in container["Secrets"]}
    assert set(secrets) == {c.ENV_ANTHROPIC_API_KEY, c.ENV_WEBHOOK_SECRET}
    assert set(secrets.values()) == set(main_synth.of_type("AWS::SecretsManager::Secret"))
    assert not set(secrets) & set(env)


def test_the_worker_network_is_public_subnets_without_nat_and_no_ingress(
    main_synth: Synth,
) -> None:
    assert not main_synth.of_type("AWS::EC2::NatGateway")
    subnets = main_synth.of_type("AWS::EC2::Subnet")
    assert len(subnets) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] for s in subnets.values())
    _, service = main_synth.one("AWS::ECS::Service")
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "ENABLED"
    assert service["LaunchType"] == "FARGATE"
    assert "DesiredCount" not in service  # left to auto scaling
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }
    (sg,) = main_synth.of_type("AWS::EC2::SecurityGroup").values()
    assert "SecurityGroupIngress" not in sg["Properties"]
    _, flow_log = main_synth.one("AWS::EC2::FlowLog")
    assert flow_log["TrafficType"] == "REJECT"
    _, cluster = main_synth.one("AWS::ECS::Cluster")
    assert cluster["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]


def test_worker_scaling_on_backlog_per_task_and_age_of_oldest(main_synth: Synth) -> None:
    _, target = main_synth.one("AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 10)
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    policies = {
        p["Properties"]["PolicyName"]: p["Properties"]
        for p in main_synth.of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    }
    steps = [p for p in policies.values() if p["PolicyType"] == "StepScaling"]
    assert len(steps) == 2
    for policy in steps:
        adjustments = policy["StepScalingPolicyConfiguration"]["StepAdjustments"]
        assert all(a["ScalingAdjustment"] > 0 for a in adjustments)  # scale-out only
    (tracking,) = [p for p in policies.values() if p["PolicyType"] == "TargetTrackingScaling"]
    config = tracking["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == 48  # 64 runs per task x 0.75
    queries = {q["Id"]: q for q in config["CustomizedMetricSpecification"]["Metrics"]}
    assert queries["load"]["Expression"] == "(visible + inflight) / tasks"
    assert queries["load"]["ReturnData"] is True
    assert queries["tasks"]["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount"
    # The step policies' alarms watch metric math: backlog per task, age while waiting.
    expressions = {
        m["Expression"]
        for a in main_synth.of_type("AWS::CloudWatch::Alarm").values()
        for m in a["Properties"].get("Metrics", [])
        if "Expression" in m
    }
    assert "IF(FILL(tasks, 0) > 0, visible / FILL(tasks, 0), visible)" in expressions
    assert "IF(visible > 0, age, 0)" in expressions


# ---- triggers ----------------------------------------------------------------------------------


def test_s3_notifications_cover_the_rules_without_overlap(main_synth: Synth) -> None:
    trigger_queue_id = queue_id(main_synth, "triggers")
    _, inbox = main_synth.one("AWS::S3::Bucket", lambda p: "NotificationConfiguration" in p)
    configs = inbox["NotificationConfiguration"]["QueueConfigurations"]
    filters = sorted(
        tuple(sorted((r["Name"], r["Value"]) for r in q["Filter"]["S3Key"]["Rules"]))
        for q in configs
    )
    # invoices/*.pdf and invoices/* merge into invoices/*; reports/*.csv stays.
    assert filters == [(("prefix", "invoices/"),), (("prefix", "reports/"), ("suffix", ".csv"))]
    for q in configs:
        assert q["Event"] == "s3:ObjectCreated:*"
        assert q["Queue"] == {"Fn::GetAtt": [trigger_queue_id, "Arn"]}
    trigger_queue = main_synth.props(trigger_queue_id)
    assert trigger_queue["RedrivePolicy"]["maxReceiveCount"] == 3
    policy = next(
        p["Properties"]["PolicyDocument"]
        for p in main_synth.of_type("AWS::SQS::QueuePolicy").values()
        if {"Ref": trigger_queue_id} in p["Properties"]["Queues"]
    )
    (allow_s3,) = [s for s in policy["Statement"] if s.get("Sid") == "S3ObjectCreatedNotifications"]
    assert allow_s3["Principal"] == {"Service": "s3.amazonaws.com"}
    assert actions_of(allow_s3) == ["sqs:SendMessage"]
    sources = json.dumps(allow_s3["Condition"]["ArnLike"]["aws:SourceArn"])
    assert "partner-drop" in sources
    assert "switchyard-dev-inbox" in sources


def test_the_s3_trigger_function_consumes_the_trigger_queue(main_synth: Synth) -> None:
    fn_id, _ = main_synth.function(c.S3_TRIGGER_HANDLER)
    alias_id, _ = main_synth.alias_of(fn_id)
    _, mapping = main_synth.one(
        "AWS::Lambda::EventSourceMapping",
        lambda p: p["EventSourceArn"] == {"Fn::GetAtt": [queue_id(main_synth, "triggers"), "Arn"]},
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert is_alias(mapping["FunctionName"], alias_id)


def test_one_scheduler_schedule_per_rule_invoking_the_schedule_function(
    main_synth: Synth,
) -> None:
    fn_id, _ = main_synth.function(c.SCHEDULE_HANDLER)
    alias_id, _ = main_synth.alias_of(fn_id)
    schedules = {
        s["Properties"]["Name"]: s["Properties"]
        for s in main_synth.of_type("AWS::Scheduler::Schedule").values()
    }
    assert set(schedules) == {"nightly-digest", "hourly"}
    assert schedules["nightly-digest"]["ScheduleExpression"] == "cron(0 6 * * ? *)"
    assert schedules["hourly"]["ScheduleExpression"] == "rate(1 hour)"
    _, group = main_synth.one("AWS::Scheduler::ScheduleGroup")
    role_ids = set()
    for name, schedule in schedules.items():
        assert schedule["GroupName"] == group["Name"]
        assert schedule["ScheduleExpressionTimezone"] == "UTC"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        target = schedule["Target"]
        assert target["Arn"] == {"Ref": alias_id}
        assert json.loads(target["Input"]) == {
            "rule": name,
            "time": "<aws.scheduler.scheduled-time>",
        }
        assert target["DeadLetterConfig"]["Arn"] == {
            "Fn::GetAtt": [queue_id(main_synth, "triggers-dlq"), "Arn"]
        }
        role_ids.add(ref_id(target["RoleArn"]))
    (role_id,) = role_ids
    assert allowed(main_synth, role_id) == {"lambda:InvokeFunction", "sqs:SendMessage"}
    for statement in main_synth.statements(role_id):
        if "lambda:InvokeFunction" in actions_of(statement):
            assert resources_of(statement) == [{"Ref": alias_id}]
    # The function's own async failures park in the trigger DLQ too.
    _, invoke_config = main_synth.one("AWS::Lambda::EventInvokeConfig")
    assert invoke_config["FunctionName"] == {"Ref": fn_id}
    assert alias_id in json.dumps(invoke_config["Qualifier"])
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [queue_id(main_synth, "triggers-dlq"), "Arn"]
    }


# ---- IAM ---------------------------------------------------------------------------------------


def test_no_data_action_on_a_wildcard_resource_and_no_wildcard_actions(main_synth: Synth) -> None:
    for policy_id, policy in main_synth.of_type("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = actions_of(statement)
            assert not any(a.endswith("*") for a in actions), (policy_id, actions)
            if any(a.startswith(DATA_PREFIXES) for a in actions):
                assert "*" not in resources_of(statement), (policy_id, statement)
    for role in main_synth.of_type("AWS::IAM::Role").values():
        assert not role["Properties"].get("ManagedPolicyArns"), "no managed policies"


def test_the_authorizer_can_only_read_api_key_items(main_synth: Synth) -> None:
    role_id = function_role(main_synth, c.AUTHORIZER_HANDLER)
    data = [
        s
        for s in main_synth.statements(role_id)
        if any(a.startswith(DATA_PREFIXES) for a in actions_of(s))
    ]
    (statement,) = data
    assert actions_of(statement) == ["dynamodb:GetItem"]
    table_id, _ = main_synth.one("AWS::DynamoDB::Table")
    assert resources_of(statement) == [{"Fn::GetAtt": [table_id, "Arn"]}]
    assert statement["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [schema.api_key_pk("*")]}
    }


def test_each_role_gets_exactly_the_actions_its_code_uses(main_synth: Synth) -> None:
    runtime = {"logs:CreateLogStream", "logs:PutLogEvents"}
    xray = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    items = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    blobs = {"s3:GetObject", "s3:PutObject"}
    consume = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
    mapping = {*consume, "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    secret = {"secretsmanager:GetSecretValue"}
    start_jobs = {"states:StartExecution", "states:DescribeExecution"}
    answer = {"states:SendTaskSuccess", "states:SendTaskFailure"}
    expected = {
        c.API_HANDLER: runtime
        | xray
        | items
        | blobs
        | {"sqs:SendMessage"}
        | secret
        | start_jobs
        | {"states:StopExecution"}
        | answer,
        c.AUTHORIZER_HANDLER: runtime | xray | {"dynamodb:GetItem"},
        c.S3_TRIGGER_HANDLER: (
            runtime | xray | items | blobs | {"sqs:SendMessage"} | secret | mapping | start_jobs
        ),
        # ... plus the on-failure destination's send grant (the trigger DLQ).
        c.SCHEDULE_HANDLER: runtime
        | xray
        | items
        | blobs
        | {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
        | secret
        | start_jobs,
        c.DLQ_HANDLER: runtime | xray | items | blobs | {"sqs:SendMessage"} | secret | mapping,
        # Function stages read the inbox and publish to it (s3:GetObject / s3:PutObject).
        c.PIPELINE_HANDLER: runtime | xray | items | blobs,
    }
    for handler, actions in expected.items():
        assert allowed(main_synth, function_role(main_synth, handler)) == actions, handler
    _, task = main_synth.one("AWS::ECS::TaskDefinition")
    task_role = ref_id(task["TaskRoleArn"])
    assert allowed(main_synth, task_role) == (
        items | blobs | consume | {"sqs:SendMessage"} | answer | {"states:SendTaskHeartbeat"}
    )


def test_the_model_callers_may_use_the_gateway_items_of_the_table(main_synth: Synth) -> None:
    """Rate-limit buckets (RATE#...) and usage counters (USAGE#...) are items of the one
    table: the API function and the worker read, update and query them through the item
    grant on the table, with no new statement and no index."""
    table = {"Fn::GetAtt": [main_synth.one("AWS::DynamoDB::Table")[0], "Arn"]}
    _, task = main_synth.one("AWS::ECS::TaskDefinition")
    gateway_actions = {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"}
    for role in (function_role(main_synth, c.API_HANDLER), ref_id(task["TaskRoleArn"])):
        (items,) = [s for s in main_synth.statements(role) if s.get("Sid") == "TableItems"]
        assert resources_of(items) == [table], role
        assert gateway_actions <= set(actions_of(items)), role


def test_nobody_deletes_or_scans_the_table(main_synth: Synth) -> None:
    forbidden = {
        "dynamodb:DeleteItem",
        "dynamodb:DeleteTable",
        "dynamodb:Scan",
        "dynamodb:BatchWriteItem",
        "dynamodb:UpdateTable",
        "s3:DeleteObject",
        "sqs:DeleteQueue",
        "sqs:PurgeQueue",
    }
    for role_id in main_synth.of_type("AWS::IAM::Role"):
        assert not allowed(main_synth, role_id) & forbidden, role_id


def test_queue_and_secret_grants_are_scoped_to_the_right_resources(main_synth: Synth) -> None:
    runs = {"Fn::GetAtt": [queue_id(main_synth, "runs"), "Arn"]}
    dlq = {"Fn::GetAtt": [queue_id(main_synth, "runs-dlq"), "Arn"]}

    def sends(handler: str) -> list[Any]:
        role = function_role(main_synth, handler)
        return [
            r
            for s in main_synth.statements(role)
            if "sqs:SendMessage" in actions_of(s) and s.get("Sid")
            for r in resources_of(s)
        ]

    assert sends(c.API_HANDLER) == [runs]
    assert sends(c.S3_TRIGGER_HANDLER) == [runs]
    assert sends(c.DLQ_HANDLER) == [dlq]
    # The worker's task role reads no secret (ECS injects them through the execution role).
    _, task = main_synth.one("AWS::ECS::TaskDefinition")
    assert not any(
        a.startswith("secretsmanager:") for a in allowed(main_synth, ref_id(task["TaskRoleArn"]))
    )
    execution = allowed(main_synth, ref_id(task["ExecutionRoleArn"]))
    assert "secretsmanager:GetSecretValue" in execution


# ---- monitoring --------------------------------------------------------------------------------


def test_alarms_notify_the_topic(main_synth: Synth) -> None:
    topic_id, _ = main_synth.one("AWS::SNS::Topic")
    _, subscription = main_synth.one("AWS::SNS::Subscription")
    assert subscription == {
        "Endpoint": "oncall@example.com",
        "Protocol": "email",
        "TopicArn": {"Ref": topic_id},
    }
    named = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in main_synth.of_type("AWS::CloudWatch::Alarm").values()
        if "AlarmName" in a["Properties"]
    }
    stack = main_synth.settings.stack_name
    expected = {
        f"{stack}-{name}"
        for name in (
            "RunsDlqNotEmpty",
            "RunsFailedStuck",
            "TriggerDlqNotEmpty",
            "OldestRunWaiting",
            "Api5xxRate",
            c.PROVIDER_RATE_LIMITED_ALARM_ID,
            "ApiFunctionErrors",
            "AuthorizerFunctionErrors",
            "S3TriggerFunctionErrors",
            "ScheduleFunctionErrors",
            "DlqFunctionErrors",
            "PipelineFunctionErrors",
        )
    }
    assert set(named) == expected
    for alarm in named.values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["OKActions"] == [{"Ref": topic_id}]
        assert alarm["TreatMissingData"] == "notBreaching"
    dlq_alarm = named[f"{stack}-RunsDlqNotEmpty"]
    assert dlq_alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dlq_alarm["Threshold"] == 1
    assert named[f"{stack}-RunsFailedStuck"]["Threshold"] == FAILED_QUEUE_STUCK_S
    assert named[f"{stack}-OldestRunWaiting"]["Threshold"] == 900
    rate = named[f"{stack}-Api5xxRate"]
    assert rate["Threshold"] == 5
    expression = "IF(requests > 0, 100 * errors / requests, 0)"
    assert any(m.get("Expression") == expression for m in rate["Metrics"])


def test_the_provider_429_alarm(main_synth: Synth) -> None:
    """ProviderRateLimited carries the model as a dimension (unknown at deploy time): the
    alarm sums every series of the namespace with a Metrics Insights query, per 5 minutes."""
    stack = main_synth.settings.stack_name
    _, alarm = main_synth.one(
        "AWS::CloudWatch::Alarm",
        lambda p: p.get("AlarmName") == f"{stack}-{c.PROVIDER_RATE_LIMITED_ALARM_ID}",
    )
    (query,) = alarm["Metrics"]
    assert query["Expression"] == (
        f'SELECT SUM({c.PROVIDER_RATE_LIMITED_METRIC}) FROM "{c.METRICS_NAMESPACE}"'
    )
    assert (c.PROVIDER_RATE_LIMITED_METRIC, c.METRICS_NAMESPACE) == (
        "ProviderRateLimited",
        "Switchyard",
    )
    assert query["Period"] == 300
    assert query["ReturnData"] is True
    assert alarm["Threshold"] == main_synth.settings.monitoring.provider_429_alarm == 10
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (1, 1)
    assert "MetricName" not in alarm


def test_the_dashboard_shows_runs_tokens_cost_queues_and_workers(main_synth: Synth) -> None:
    _, dashboard = main_synth.one("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["DashboardBody"])
    for needle in (
        "RunsStarted",
        "RunsSucceeded",
        "RunsFailed",
        "RunsDeadLettered",
        "Steps",
        "InputTokens",
        "OutputTokens",
        "sum(cost_usd)",
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "RunningTaskCount",
        "5xx",
    ):
        assert needle in body, needle


def dashboard_graphs(synth: Synth) -> dict[str, list[dict[str, Any]]]:
    """Graph title -> its expressions' options (label, expression), from the dashboard body
    (a Fn::Join of JSON text and tokens; tokens become placeholders)."""
    _, dashboard = synth.one("AWS::CloudWatch::Dashboard")
    parts = dashboard["DashboardBody"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "TOKEN" for p in parts)
    graphs: dict[str, list[dict[str, Any]]] = {}
    for widget in json.loads(text)["widgets"]:
        props = widget["properties"]
        if "metrics" in props:
            graphs[props["title"]] = [
                m[-1] for m in props["metrics"] if isinstance(m[-1], dict) and "expression" in m[-1]
            ]
    return graphs


def test_the_dashboard_shows_the_gateway(main_synth: Synth) -> None:
    graphs = dashboard_graphs(main_synth)
    by_agent = 'FROM SCHEMA("Switchyard", agent, service) GROUP BY agent'
    for title, metric in (
        ("Input tokens by agent", "InputTokens"),
        ("Output tokens by agent", "OutputTokens"),
        ("Model cost by agent (USD)", "CostUsd"),
    ):
        (graph,) = graphs[title]
        assert graph["expression"] == f"SELECT SUM({metric}) {by_agent}"
        assert graph["label"] == GROUP_LABEL  # one series per agent, named by the agent
    (waits,) = graphs["Rate-limit waits (ms waited, by reason)"]
    assert waits["expression"] == 'SELECT SUM(RateLimitWait) FROM "Switchyard" GROUP BY reason'
    (fallbacks,) = graphs["Model fallbacks (by model and reason)"]
    assert fallbacks["expression"] == (
        'SELECT SUM(ModelFallbacks) FROM "Switchyard" GROUP BY model, reason'
    )
    throttled = {
        g["label"]: g["expression"] for g in graphs["Provider 429s and workers holding off"]
    }
    assert 'MetricName="ProviderRateLimited"' in throttled["provider 429s"]
    assert 'MetricName="WorkerBackpressure"' in throttled["workers holding off"]
    # Tokens are emitted under [service, agent] and [service, tenant]: a total reads one set
    # (summing every series would count each token twice).
    tokens = {g["label"]: g["expression"] for g in graphs["Steps and tokens"]}
    assert tokens["input tokens"] == (
        "SUM(SEARCH('{Switchyard,agent,service} MetricName=\"InputTokens\"', 'Sum', 300))"
    )
    assert "{Switchyard,agent,service}" in tokens["output tokens"]


# ---- outputs, nag, lint ------------------------------------------------------------------------


def test_outputs(main_synth: Synth) -> None:
    assert set(main_synth.template["Outputs"]) == set(c.OUTPUTS)


def test_the_template_with_cdk_assertions(main_synth: Synth) -> None:
    template = Template.from_json(main_synth.template)
    template.resource_count_is("AWS::Lambda::Function", len(HANDLERS))
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "ContainerDefinitions": Match.array_with(
                [Match.object_like({"Name": c.WORKER_CONTAINER, "StopTimeout": 30})]
            )
        },
    )
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Route", {"RouteKey": "GET /v1/health", "AuthorizationType": "NONE"}
    )


def test_cdk_nag_reports_no_unacknowledged_finding(main_synth: Synth) -> None:
    assert main_synth.error is None, main_synth.error
    report = main_synth.nag()
    assert report["conclusion"] == "success"
    assert report["violations"] == []
    acknowledged = report["suppressedViolations"]
    assert acknowledged, "expected the documented acknowledgements"
    for finding in acknowledged:
        assert finding["acknowledgedId"].startswith("AwsSolutions::")
        assert len(finding["reason"].strip()) > 30, finding["acknowledgedId"]


def test_cfn_lint_finds_no_error(main_synth: Synth) -> None:
    result = subprocess.run(
        [cfn_lint(), "--format", "json", str(main_synth.template_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    matches = json.loads(result.stdout or "[]")
    errors = [m for m in matches if m["Level"] == "Error"]
    warnings = [f"{m['Rule']['Id']}: {m['Message']}" for m in matches if m["Level"] != "Error"]
    if warnings:
        print("cfn-lint warnings:\n" + "\n".join(warnings))
    assert not errors, json.dumps(errors, indent=2)
    assert result.returncode & 2 == 0, result.stderr
