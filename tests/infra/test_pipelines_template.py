"""Pipelines in the synthesized template (infra/constructs/pipelines.py, infra/stack.py).

The state machines' definitions are checked to BE ``compile_pipeline``'s output: the
``DefinitionString`` is a ``Fn::Join`` whose token parts (the runs queue's URL, the pipeline
function alias's ARN) are replaced by placeholders here and by CloudFormation on deploy, and
the rest must equal the compiled pipeline with the same placeholders. Then the grants around
them, action by action, and the deployed stack in moto.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from infra import constants as c
from infra.config import ConfigError, StackSettings
from infra.constructs.pipelines import (
    LOG_GROUP_PREFIX,
    MAX_STATE_MACHINE_NAME,
    load_pipelines,
    pipelines_env_bytes,
    state_machine_name,
)
from shared.config import Settings
from shared.dal import aws_client
from shared.dal.local import DeployedStack, function_environments
from shared.pipelines import AgentStage, FunctionStage, Pipeline
from shared.pipelines.asl import LAMBDA_WAIT, SQS_WAIT, Resources, compile_pipeline
from shared.pipelines.definition import ApprovalStage
from tests.infra.conftest import (
    SAMPLE_PIPELINES_MODULE,
    Synth,
    actions_of,
    allowed,
    env_of,
    function_role,
    queue_id,
    ref_id,
    resources_of,
    worker_container,
)

QUEUE_URL = "<runs-queue-url>"
FUNCTION_ARN = "<pipeline-function-alias-arn>"
LOG_DELIVERY = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
XRAY = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}


# ---- helpers -------------------------------------------------------------------------------------


def join(value: Any, parts: Mapping[str, str]) -> str:
    """A ``Fn::Join`` with ``""`` as CloudFormation resolves it, each ``Ref`` replaced by
    ``parts[logical id]``; any other token fails the test (it would be unexpected)."""
    if isinstance(value, str):
        return value
    assert set(value) == {"Fn::Join"}, value
    separator, pieces = value["Fn::Join"]
    assert separator == ""
    out = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        assert set(piece) == {"Ref"}, f"unexpected token {piece}"
        logical = ref_id(piece)
        assert logical in parts, f"unexpected reference {piece}"
        out.append(parts[logical])
    return "".join(out)


def pipeline_function(synth: Synth) -> tuple[str, str]:
    """The pipeline function's logical id and its ``live`` alias's."""
    fn_id, _ = synth.function(c.PIPELINE_HANDLER)
    alias_id, _ = synth.alias_of(fn_id)
    return fn_id, alias_id


def state_machines(synth: Synth) -> dict[str, tuple[str, dict[str, Any]]]:
    """Pipeline name -> (logical id, properties), by the state machine's name."""
    prefix = f"{synth.settings.resource_prefix}-"
    out = {}
    for logical, resource in synth.of_type("AWS::StepFunctions::StateMachine").items():
        props = resource["Properties"]
        name = props["StateMachineName"]
        assert name.startswith(prefix), name
        out[name.removeprefix(prefix)] = (logical, props)
    return out


def definition(synth: Synth, props: Mapping[str, Any]) -> dict[str, Any]:
    _, alias_id = pipeline_function(synth)
    parts = {queue_id(synth, "runs"): QUEUE_URL, alias_id: FUNCTION_ARN}
    parsed: dict[str, Any] = json.loads(join(props["DefinitionString"], parts))
    return parsed


def tasks(states: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every Task state, nested ones (Parallel branches, Map processors) included."""
    for state in states.values():
        if state["Type"] == "Task":
            yield state
        for branch in state.get("Branches", []):
            yield from tasks(branch["States"])
        if "ItemProcessor" in state:
            yield from tasks(state["ItemProcessor"]["States"])


def arn_placeholders(synth: Synth) -> dict[str, str]:
    """State machine logical id -> a placeholder for its ARN."""
    return {logical: f"<arn {name}>" for name, (logical, _) in state_machines(synth).items()}


def statements_with(synth: Synth, role_id: str, action: str) -> list[dict[str, Any]]:
    return [s for s in synth.statements(role_id) if action in actions_of(s)]


def machine_arns(synth: Synth) -> list[dict[str, str]]:
    return [{"Ref": logical} for logical, _ in state_machines(synth).values()]


def execution_arns(synth: Synth) -> list[dict[str, Any]]:
    return [
        {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":states:",
                    {"Ref": "AWS::Region"},
                    ":",
                    {"Ref": "AWS::AccountId"},
                    f":execution:{props['StateMachineName']}:*",
                ],
            ]
        }
        for _, props in state_machines(synth).values()
    ]


# ---- the state machines --------------------------------------------------------------------------


@pytest.mark.slow
def test_one_standard_state_machine_per_registered_pipeline(main_synth: Synth) -> None:
    registry = load_pipelines(main_synth.settings)
    machines = state_machines(main_synth)
    assert set(machines) == {p.name for p in registry}
    assert "document-review" in machines  # the built-in example
    for name, (_, props) in machines.items():
        assert props["StateMachineType"] == "STANDARD"
        assert props["StateMachineName"] == state_machine_name(main_synth.settings, name)
        assert len(props["StateMachineName"]) <= MAX_STATE_MACHINE_NAME
        assert "DefinitionSubstitutions" not in props  # moto's CloudFormation ignores them


@pytest.mark.slow
def test_each_definition_is_the_compiled_pipeline(main_synth: Synth) -> None:
    registry = load_pipelines(main_synth.settings)
    resources = Resources(
        runs_queue_url=QUEUE_URL,
        stage_function_arn=FUNCTION_ARN,
        lease_ttl_s=main_synth.settings.lease_ttl_s,
    )
    for pipeline in registry:
        _, props = state_machines(main_synth)[pipeline.name]
        assert definition(main_synth, props) == compile_pipeline(pipeline, resources)


@pytest.mark.slow
def test_agent_states_dispatch_to_the_runs_queue_and_the_rest_invoke_the_live_alias(
    main_synth: Synth,
) -> None:
    _, props = state_machines(main_synth)["document-review"]
    found = list(tasks(definition(main_synth, props)["States"]))
    by_resource: dict[str, list[dict[str, Any]]] = {}
    for task in found:
        by_resource.setdefault(task["Resource"], []).append(task)
    # Agent stages: dispatch and wait on the runs queue, with the task token.
    assert len(by_resource.pop(SQS_WAIT)) == 2  # summarize-section: dispatch, wait
    for task in tasks(definition(main_synth, props)["States"]):
        if task["Resource"] == SQS_WAIT:
            assert task["Parameters"]["QueueUrl"] == QUEUE_URL
            assert task["Parameters"]["MessageBody"]["task_token.$"] == "$$.Task.Token"
    # The approval gate: the pipeline function's alias, waiting for the token.
    (gate,) = by_resource.pop(LAMBDA_WAIT)
    assert gate["Parameters"]["FunctionName"] == FUNCTION_ARN
    assert gate["Parameters"]["Payload"]["action"] == "gate"
    # Function stages (extract, publish): the alias's ARN as the Task's resource.
    functions = by_resource.pop(FUNCTION_ARN)
    assert sorted(t["Parameters"]["stage"] for t in functions) == ["extract", "publish"]
    assert not by_resource, f"tasks on other resources: {list(by_resource)}"


@pytest.mark.slow
def test_logs_without_execution_data_and_tracing(main_synth: Synth) -> None:
    for _, props in state_machines(main_synth).values():
        logging = props["LoggingConfiguration"]
        assert logging["Level"] == "ALL"
        # Stage data carries user content: the logs get transitions, not payloads.
        assert logging["IncludeExecutionData"] is False
        (destination,) = logging["Destinations"]
        group_id = ref_id(destination["CloudWatchLogsLogGroup"]["LogGroupArn"])
        group = main_synth.resources[group_id]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == main_synth.settings.log_retention_days
        assert group["DeletionPolicy"] == "Retain"  # removal_policy: retain
        log_name = json.dumps(group["Properties"]["LogGroupName"])
        assert f"{LOG_GROUP_PREFIX}{props['StateMachineName']}-" in log_name
        assert "AWS::StackId" in log_name  # a recreated stack does not collide with it
        assert props["TracingConfiguration"] == {"Enabled": True}


@pytest.mark.slow
def test_each_state_machine_role_sends_to_the_runs_queue_and_invokes_the_alias_only(
    main_synth: Synth,
) -> None:
    _, alias_id = pipeline_function(main_synth)
    runs_arn = {"Fn::GetAtt": [queue_id(main_synth, "runs"), "Arn"]}
    roles = set()
    for _, props in state_machines(main_synth).values():
        role_id = ref_id(props["RoleArn"])
        roles.add(role_id)
        trust = main_synth.props(role_id)["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "states.amazonaws.com"}]
        assert allowed(main_synth, role_id) == (
            LOG_DELIVERY | XRAY | {"sqs:SendMessage", "lambda:InvokeFunction"}
        )
        for statement in main_synth.statements(role_id):
            actions = set(actions_of(statement))
            assert not any("*" in a for a in actions)
            if "sqs:SendMessage" in actions:
                assert actions == {"sqs:SendMessage"}
                assert resources_of(statement) == [runs_arn]
            elif "lambda:InvokeFunction" in actions:
                assert actions == {"lambda:InvokeFunction"}
                assert resources_of(statement) == [{"Ref": alias_id}]  # not "<arn>:*"
            else:
                # What AWS grants only on "*": log delivery and X-Ray (acknowledged).
                assert actions <= LOG_DELIVERY | XRAY
                assert resources_of(statement) == ["*"]
    assert len(roles) == len(state_machines(main_synth))  # one role each


# ---- the pipeline function -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_pipeline_function_reads_the_inbox_and_publishes_under_published(
    main_synth: Synth,
) -> None:
    settings = main_synth.settings
    fn_id, _ = pipeline_function(main_synth)
    props = main_synth.props(fn_id)
    assert props["MemorySize"] == settings.functions.pipeline.memory_mb == 1024
    assert props["Timeout"] == settings.functions.pipeline.timeout_s == 60
    role_id = function_role(main_synth, c.PIPELINE_HANDLER)
    inbox_id, _ = main_synth.one(
        "AWS::S3::Bucket", lambda p: "switchyard-dev-inbox" in json.dumps(p.get("BucketName"))
    )
    inbox = {"Fn::GetAtt": [inbox_id, "Arn"]}

    def objects(suffix: str) -> dict[str, Any]:
        return {"Fn::Join": ["", [inbox, suffix]]}

    s3 = {
        (a, json.dumps(r, sort_keys=True))
        for s in main_synth.statements(role_id)
        for a in actions_of(s)
        if a.startswith("s3:")
        for r in resources_of(s)
        if inbox_id in json.dumps(r)
    }
    assert s3 == {
        ("s3:GetObject", json.dumps(objects("/*"), sort_keys=True)),
        ("s3:PutObject", json.dumps(objects("/published/*"), sort_keys=True)),
    }
    assert not any(a.startswith(("states:", "sqs:")) for a in allowed(main_synth, role_id))


# ---- who starts, reads, stops and answers --------------------------------------------------------


@pytest.mark.slow
def test_the_api_starts_describes_stops_and_answers_approvals(main_synth: Synth) -> None:
    role_id = function_role(main_synth, c.API_HANDLER)
    (start,) = statements_with(main_synth, role_id, "states:StartExecution")
    assert actions_of(start) == ["states:StartExecution"]
    assert resources_of(start) == machine_arns(main_synth)
    (read,) = statements_with(main_synth, role_id, "states:DescribeExecution")
    assert actions_of(read) == ["states:DescribeExecution", "states:StopExecution"]
    assert resources_of(read) == execution_arns(main_synth)
    (answer,) = statements_with(main_synth, role_id, "states:SendTaskSuccess")
    assert actions_of(answer) == ["states:SendTaskSuccess", "states:SendTaskFailure"]
    assert resources_of(answer) == machine_arns(main_synth)
    assert "states:SendTaskHeartbeat" not in allowed(main_synth, role_id)


@pytest.mark.slow
@pytest.mark.parametrize("handler", [c.S3_TRIGGER_HANDLER, c.SCHEDULE_HANDLER])
def test_the_triggers_start_and_describe_only(main_synth: Synth, handler: str) -> None:
    role_id = function_role(main_synth, handler)
    (start,) = statements_with(main_synth, role_id, "states:StartExecution")
    assert resources_of(start) == machine_arns(main_synth)
    (read,) = statements_with(main_synth, role_id, "states:DescribeExecution")
    assert actions_of(read) == ["states:DescribeExecution"]
    assert resources_of(read) == execution_arns(main_synth)
    states = {a for a in allowed(main_synth, role_id) if a.startswith("states:")}
    assert states == {"states:StartExecution", "states:DescribeExecution"}


@pytest.mark.slow
def test_the_worker_answers_and_heartbeats_agent_stages(main_synth: Synth) -> None:
    _, task = main_synth.one("AWS::ECS::TaskDefinition")
    role_id = ref_id(task["TaskRoleArn"])
    (answer,) = statements_with(main_synth, role_id, "states:SendTaskHeartbeat")
    assert actions_of(answer) == [
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
        "states:SendTaskHeartbeat",
    ]
    assert resources_of(answer) == machine_arns(main_synth)
    assert "states:StartExecution" not in allowed(main_synth, role_id)
    # The worker starts no job: it needs no state machine ARNs.
    env = {e["Name"] for e in worker_container(main_synth)["Environment"]}
    assert c.ENV_PIPELINES not in env


# ---- SWITCHYARD_PIPELINES and the output ---------------------------------------------------------


@pytest.mark.slow
def test_api_and_triggers_get_the_state_machine_arns_by_pipeline_name(main_synth: Synth) -> None:
    placeholders = arn_placeholders(main_synth)
    expected = {
        name: placeholders[logical] for name, (logical, _) in state_machines(main_synth).items()
    }
    for handler in (c.API_HANDLER, c.S3_TRIGGER_HANDLER, c.SCHEDULE_HANDLER):
        env = env_of(main_synth.function(handler)[1])
        resolved = join(env[c.ENV_PIPELINES], placeholders)
        assert json.loads(resolved) == expected, handler
        # ... in the format shared/config.py reads.
        assert Settings.from_env({c.ENV_PIPELINES: resolved}).pipeline_arns == expected
    for handler in (c.AUTHORIZER_HANDLER, c.DLQ_HANDLER, c.PIPELINE_HANDLER):
        assert c.ENV_PIPELINES not in env_of(main_synth.function(handler)[1]), handler


@pytest.mark.slow
def test_the_output_maps_pipeline_names_to_state_machine_arns(main_synth: Synth) -> None:
    placeholders = arn_placeholders(main_synth)
    output = main_synth.template["Outputs"][c.OUTPUT_PIPELINES]
    assert json.loads(join(output["Value"], placeholders)) == {
        name: placeholders[logical] for name, (logical, _) in state_machines(main_synth).items()
    }


@pytest.mark.slow
def test_cdk_nag_findings_on_pipelines_are_acknowledged(main_synth: Synth) -> None:
    assert main_synth.error is None, main_synth.error
    report = main_synth.nag()
    assert report["violations"] == []
    acknowledged = {f["acknowledgedId"] for f in report["suppressedViolations"]}
    for _, props in state_machines(main_synth).values():
        execution = (
            "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
            f"{props['StateMachineName']}:*"
        )
        assert f"AwsSolutions::AwsSolutions-IAM5[Resource::{execution}]" in acknowledged
    # Logging at level ALL: no SF1 finding to acknowledge; tracing on: no SF2.
    assert not {a for a in acknowledged if a.endswith(("-SF1", "-SF2"))}


# ---- the other variant: a user's pipeline module, no tracing -------------------------------------


@pytest.mark.slow
def test_a_user_module_adds_its_pipeline_with_only_the_grants_it_uses(other_synth: Synth) -> None:
    machines = state_machines(other_synth)
    assert "stamp-and-approve" in machines  # tests/infra/sample_pipelines.py
    assert machines["stamp-and-approve"][1]["StateMachineName"] == (
        "switchyard-prod-stamp-and-approve"
    )
    for name, (_, props) in machines.items():
        assert props["TracingConfiguration"] == {"Enabled": False}
        role = allowed(other_synth, ref_id(props["RoleArn"]))
        assert not role & XRAY
        # No agent stage in the user's pipeline: its state machine cannot send to the queue.
        assert ("sqs:SendMessage" in role) == (name != "stamp-and-approve"), name
        assert "lambda:InvokeFunction" in role
    report = other_synth.nag()
    assert report["violations"] == []
    acknowledged = {f["acknowledgedId"] for f in report["suppressedViolations"]}
    assert "AwsSolutions::AwsSolutions-SF2" in acknowledged  # tracing: false


# ---- synth-time checks (no synth) ----------------------------------------------------------------


@pytest.fixture
def module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A pipeline module that exists only in ``sys.modules`` (as ``agent_modules`` names it)."""
    mod = types.ModuleType("tests.infra._adhoc_pipelines")
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod


def settings_with(module: types.ModuleType, **raw: Any) -> StackSettings:
    return StackSettings.from_mapping({"agent_modules": [module.__name__], **raw})


def noop(data: Any, ctx: Any) -> Any:
    return data


def test_the_registry_includes_the_builtin_and_the_user_pipelines() -> None:
    names = {p.name for p in load_pipelines(StackSettings.from_mapping({}))}
    assert "document-review" in names
    user = StackSettings.from_mapping({"agent_modules": [SAMPLE_PIPELINES_MODULE]})
    assert {p.name for p in load_pipelines(user)} == names | {"stamp-and-approve"}


def test_an_agent_stage_naming_no_registered_agent_fails_the_synth(
    module: types.ModuleType,
) -> None:
    module.ghostly = Pipeline(  # type: ignore[attr-defined]
        name="ghostly", stages=(AgentStage(name="haunt", agent="no-such-agent"),)
    )
    with pytest.raises(ConfigError, match="no-such-agent"):
        load_pipelines(settings_with(module))


def test_a_state_machine_name_over_80_characters_fails_the_synth(
    module: types.ModuleType,
) -> None:
    long_name = "p" * 64
    module.long = Pipeline(  # type: ignore[attr-defined]
        name=long_name, stages=(FunctionStage(name="one", fn=noop),)
    )
    settings = settings_with(module, stage="averylongstg")
    assert len(state_machine_name(settings, long_name)) > MAX_STATE_MACHINE_NAME
    with pytest.raises(ConfigError, match="longer than 80"):
        load_pipelines(settings)
    # The same pipeline fits under a short stage name.
    assert long_name in load_pipelines(settings_with(module, stage="dev"))


def test_a_function_stage_longer_than_the_pipeline_function_fails_the_synth(
    module: types.ModuleType,
) -> None:
    module.slow = Pipeline(  # type: ignore[attr-defined]
        name="slow",
        stages=(
            FunctionStage(name="crunch", fn=noop, timeout_s=300),
            ApprovalStage(name="ok", prompt="?"),
        ),
    )
    with pytest.raises(ConfigError, match="crunch"):
        load_pipelines(settings_with(module))
    raised = settings_with(module, functions={"pipeline": {"timeout_s": 300}})
    assert "slow" in load_pipelines(raised)


def test_the_pipelines_variable_is_sized_for_the_longest_arns() -> None:
    settings = StackSettings.from_mapping({})
    names = ["document-review", "x" * 50]
    real = {
        n: f"arn:aws:states:us-east-1:123456789012:stateMachine:{state_machine_name(settings, n)}"
        for n in names
    }
    real_size = len(c.ENV_PIPELINES) + len(json.dumps(real, separators=(",", ":")))
    estimate = pipelines_env_bytes(settings, names)
    assert real_size < estimate < real_size + 2 * 30
    assert pipelines_env_bytes(settings, []) == len(c.ENV_PIPELINES) + 2


# ---- deployed into moto --------------------------------------------------------------------------


@pytest.mark.slow
def test_the_state_machines_deploy_into_moto_with_the_compiled_definition(
    deployed_stack: DeployedStack,
) -> None:
    stack = deployed_stack
    settings = StackSettings.from_mapping({})  # what tests/conftest.py cloud_assembly deploys
    arns = json.loads(stack.outputs[c.OUTPUT_PIPELINES])
    registry = load_pipelines(settings)
    assert set(arns) == {p.name for p in registry}
    lambda_ = aws_client("lambda", region=stack.region, endpoint_url=stack.endpoint_url)
    (function_name,) = [
        physical
        for kind, physical in stack.resources.values()
        if kind == "AWS::Lambda::Function"
        and lambda_.get_function_configuration(FunctionName=physical)["Handler"]
        == c.PIPELINE_HANDLER
    ]
    alias = lambda_.get_alias(FunctionName=function_name, Name=c.LIVE_ALIAS)
    resources = Resources(
        runs_queue_url=stack.outputs[c.OUTPUT_RUNS_QUEUE_URL],
        stage_function_arn=alias["AliasArn"],
        lease_ttl_s=settings.lease_ttl_s,
    )
    sfn = aws_client("stepfunctions", region=stack.region, endpoint_url=stack.endpoint_url)
    for pipeline in registry:
        described = sfn.describe_state_machine(stateMachineArn=arns[pipeline.name])
        assert described["name"] == state_machine_name(settings, pipeline.name)
        # CloudFormation resolved the Fn::Join: the deployed definition is the compiled one.
        # (A mismatch right after editing shared/pipelines/ or agents/ may also be a stale
        # cached synth: shared.dal.local.template_key.)
        assert json.loads(described["definition"]) == compile_pipeline(pipeline, resources)
    # The API and the triggers read the same map.
    with_pipelines = [
        json.loads(env[c.ENV_PIPELINES])
        for env in function_environments(stack).values()
        if c.ENV_PIPELINES in env
    ]
    assert with_pipelines == [arns] * 3


# ---- stack-level checks (the stack is built, not synthesized) ------------------------------------


def build_stack(raw: Mapping[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The stack built with ``raw`` settings, then its template (no cdk-nag)."""
    from aws_cdk.assertions import Template

    from infra.app import build_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWITCHYARD_BUILD_DIR", str(tmp_path / "build"))
        _, stack = build_app(
            context={"switchyard:bundle": "skip"},
            outdir=str(tmp_path / "cdk.out"),
            settings=StackSettings.from_mapping(raw),
            nag=False,
        )
        template = dict(Template.from_stack(stack).to_json())
    return template


@pytest.mark.slow
def test_a_trigger_rule_naming_an_unknown_pipeline_fails_the_synth(tmp_path: Path) -> None:
    rules = {"s3": [{"name": "docs", "prefix": "docs/", "pipeline": "no-such-pipeline"}]}
    with pytest.raises(ConfigError, match="no-such-pipeline"):
        build_stack({"triggers": rules}, tmp_path)


@pytest.mark.slow
def test_rules_and_pipeline_arns_must_fit_the_trigger_functions_environment(
    tmp_path: Path,
) -> None:
    def rules(size: int) -> dict[str, Any]:
        schedule = {"name": "big", "expression": "rate(1 hour)", "agent": "researcher"}
        return {"schedules": [{**schedule, "input": "x" * size}]}

    settings = StackSettings.from_mapping({"triggers": rules(2850)})
    assert len(settings.triggers_json()) <= c.LAMBDA_ENV_LIMIT_BYTES - 1024  # valid alone
    with pytest.raises(ConfigError, match="do not fit"):
        build_stack({"triggers": rules(2850)}, tmp_path)


@pytest.mark.slow
def test_function_stages_may_read_outside_buckets_whose_rules_start_a_pipeline(
    tmp_path: Path,
) -> None:
    rules = {
        "s3": [
            {"name": "partner-docs", "bucket": "partner-docs", "pipeline": "document-review"},
            {"name": "partner-runs", "bucket": "agents-only", "agent": "researcher"},
        ]
    }
    template = build_stack({"triggers": rules}, tmp_path)
    resources = template["Resources"]
    (fn_role,) = [
        ref_id(r["Properties"]["Role"])
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("Handler") == c.PIPELINE_HANDLER
    ]
    statements = [
        s
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": fn_role} in r["Properties"]["Roles"]
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    (outside,) = [s for s in statements if s.get("Sid") == "ReadTriggerBuckets"]
    assert actions_of(outside) == ["s3:GetObject"]
    assert resources_of(outside) == [
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::partner-docs/*"]]}
    ]
    assert "agents-only" not in json.dumps(statements)
