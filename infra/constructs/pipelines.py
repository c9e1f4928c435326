"""Pipelines: multi-stage jobs, one Step Functions state machine per pipeline.

::

    API / trigger ──StartExecution──▶ state machine (switchyard-<stage>-<pipeline>)
        agent stage    ──sqs:sendMessage.waitForTaskToken──▶ runs queue ──▶ worker
                                                            (heartbeats, answers the token)
        function stage ──Task (the function's ARN)──────────▶ pipeline function (live alias)
        approval gate  ──lambda:invoke.waitForTaskToken─────▶ pipeline function records the
                                                              token; the API answers it

- Every pipeline ``PipelineRegistry.from_modules(settings.agent_modules)`` finds (the built-in
  example modules plus the stack's agent modules, imported at synth) gets a standard workflow
  whose definition is ``shared.pipelines.asl.compile_pipeline`` for the deployed resources:
  the compiled ASL is serialized with ``Stack.to_json_string``, so the queue URL and the alias
  ARN become ``Fn::Join`` parts of ``DefinitionString`` (no ``DefinitionSubstitutions``: moto's
  CloudFormation does not apply them, and the template stays the compiled definition).
  Agent stages must name registered agents; the synth fails otherwise.
- The pipeline function (``functions.pipeline.handler.handler``) runs function stages and
  opens approval gates for every pipeline; state machines invoke its ``live`` alias.
- Each state machine has its own role: ``sqs:SendMessage`` on the runs queue when the pipeline
  has agent stages, ``lambda:InvokeFunction`` on the alias when it has function stages or
  gates, plus what logging and tracing need.
- Logs: a log group per state machine (under ``/aws/vendedlogs/states/``, the prefix that keeps
  CloudWatch Logs' account-wide resource policy from growing with every log group), level
  ALL (every state transition: a timeline of each job) **without execution data**: a stage's
  input and output carry user content (documents, model answers) that must not be copied
  into logs with their own retention and readers. The job store keeps the data.
- X-Ray tracing follows ``settings.tracing``.
"""

from __future__ import annotations

import json

from aws_cdk import Aws, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import constants as c
from infra.config import ConfigError, StackSettings
from infra.constructs import acknowledge
from infra.constructs.function import PythonFunction, removal_policy, retention
from shared.agents.registry import AgentRegistry
from shared.errors import SwitchyardError
from shared.pipelines.asl import Resources, compile_pipeline
from shared.pipelines.definition import (
    AgentStage,
    ApprovalStage,
    FunctionStage,
    Pipeline,
)
from shared.pipelines.registry import PipelineRegistry

# Step Functions' limit on a state machine's name.
MAX_STATE_MACHINE_NAME = 80
LOG_GROUP_PREFIX = "/aws/vendedlogs/states/"
# Longest values an ARN's parts take (partition e.g. aws-iso-b, region e.g. ap-southeast-5):
# what the pipelines' environment variable may grow to once CloudFormation resolves it.
_MAX_PARTITION = 12
_MAX_REGION = 16


def load_pipelines(settings: StackSettings) -> PipelineRegistry:
    """The pipelines the stack deploys; every agent stage names a registered agent."""
    try:
        pipelines = PipelineRegistry.from_modules(settings.agent_modules)
        pipelines.check_agents(AgentRegistry.from_modules(settings.agent_modules))
    except SwitchyardError as exc:
        raise ConfigError(f"pipelines: {exc.message}") from exc
    for pipeline in pipelines:
        name = state_machine_name(settings, pipeline.name)
        if len(name) > MAX_STATE_MACHINE_NAME:
            raise ConfigError(
                f"pipelines: the state machine name {name!r} is longer than "
                f"{MAX_STATE_MACHINE_NAME} characters; shorten the pipeline's name or the stage"
            )
        for stage in pipeline.all_stages():
            if isinstance(stage, FunctionStage) and (
                stage.timeout_s > settings.functions.pipeline.timeout_s
            ):
                raise ConfigError(
                    f"pipelines: stage {stage.name!r} of {pipeline.name!r} may run "
                    f"{stage.timeout_s} s, longer than the pipeline function's timeout "
                    f"(functions.pipeline.timeout_s = {settings.functions.pipeline.timeout_s})"
                )
    return pipelines


def state_machine_name(settings: StackSettings, pipeline: str) -> str:
    return f"{settings.resource_prefix}-{pipeline}"


def pipelines_env_bytes(settings: StackSettings, names: list[str]) -> int:
    """The size ``SWITCHYARD_PIPELINES`` reaches once deployed (the ARNs are tokens at synth):
    the JSON object with the longest partition, region and account an ARN can have."""
    worst = {
        name: (
            f"arn:{'x' * _MAX_PARTITION}:states:{'x' * _MAX_REGION}:{'0' * 12}:stateMachine:"
            f"{state_machine_name(settings, name)}"
        )
        for name in names
    }
    return len(c.ENV_PIPELINES) + len(json.dumps(worst, separators=(",", ":")))


def _uses(pipeline: Pipeline, *kinds: type) -> bool:
    return any(isinstance(stage, kinds) for stage in pipeline.all_stages())


class Pipelines(Construct):
    """The pipeline function and one state machine per pipeline: ``state_machines`` (pipeline
    name -> state machine), ``arns`` (pipeline name -> ARN), ``log_groups``."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: StackSettings,
        runs_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id)
        self.registry = load_pipelines(settings)
        self.function = PythonFunction(
            self,
            c.PIPELINE_FUNCTION_ID,
            settings=settings,
            function=settings.functions.pipeline,
            function_dir="pipeline",
            handler=c.PIPELINE_HANDLER,
            service="pipeline",
            description="Switchyard: pipeline function stages and approval gates",
        )
        resources = Resources(
            runs_queue_url=runs_queue.queue_url,
            stage_function_arn=self.function.alias.function_arn,
            lease_ttl_s=float(settings.lease_ttl_s),
        )
        # A suffix unique to this stack (its id's UUID): a retained log group of a deleted
        # stack does not block the name when the stack is created again.
        stack_suffix = Fn.select(2, Fn.split("/", Aws.STACK_ID))
        stack = Stack.of(self)

        self.state_machines: dict[str, sfn.StateMachine] = {}
        self.names: dict[str, str] = {}  # pipeline name -> state machine name
        self.log_groups: dict[str, logs.LogGroup] = {}
        for pipeline in self.registry:
            name = state_machine_name(settings, pipeline.name)
            log_group = logs.LogGroup(
                self,
                f"Logs-{pipeline.name}",
                log_group_name=Fn.join("", [LOG_GROUP_PREFIX, name, "-", stack_suffix]),
                retention=retention(settings.log_retention_days),
                removal_policy=removal_policy(settings),
            )
            definition = stack.to_json_string(compile_pipeline(pipeline, resources))
            machine = sfn.StateMachine(
                self,
                f"StateMachine-{pipeline.name}",
                state_machine_name=name,
                state_machine_type=sfn.StateMachineType.STANDARD,
                definition_body=sfn.DefinitionBody.from_string(definition),
                comment=f"Switchyard pipeline {pipeline.name} ({settings.stage})",
                logs=sfn.LogOptions(
                    destination=log_group,
                    level=sfn.LogLevel.ALL,
                    include_execution_data=False,
                ),
                tracing_enabled=settings.tracing,
            )
            if _uses(pipeline, AgentStage):
                machine.add_to_role_policy(
                    iam.PolicyStatement(
                        sid="DispatchAgentStages",
                        actions=["sqs:SendMessage"],
                        resources=[runs_queue.queue_arn],
                    )
                )
            if _uses(pipeline, FunctionStage, ApprovalStage):
                machine.add_to_role_policy(
                    iam.PolicyStatement(
                        sid="InvokePipelineFunction",
                        actions=["lambda:InvokeFunction"],
                        resources=[self.function.alias.function_arn],
                    )
                )
            acknowledge(
                machine.role,
                "IAM5[Resource::*]",
                "Step Functions log delivery (logs:CreateLogDelivery, GetLogDelivery, "
                "UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, "
                "DescribeResourcePolicies, DescribeLogGroups) and X-Ray (xray:PutTraceSegments, "
                "PutTelemetryRecords, GetSamplingRules, GetSamplingTargets) support no "
                "resource-level permissions. No data action is granted on '*'.",
            )
            if not settings.tracing:
                acknowledge(
                    machine,
                    "SF2",
                    "X-Ray tracing is turned off in the settings (tracing: false) for the "
                    "whole stack; the state machine logs every transition to CloudWatch Logs.",
                )
            self.state_machines[pipeline.name] = machine
            self.names[pipeline.name] = name
            self.log_groups[pipeline.name] = log_group

    @property
    def arns(self) -> dict[str, str]:
        return {name: m.state_machine_arn for name, m in self.state_machines.items()}

    def arns_json(self) -> str:
        """``SWITCHYARD_PIPELINES``: the name -> ARN object, resolved by CloudFormation."""
        return Stack.of(self).to_json_string(self.arns)

    def execution_arns(self) -> list[str]:
        """Every execution of every state machine (DescribeExecution, StopExecution)."""
        return [
            f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}:*"
            for name in self.names.values()
        ]


__all__ = [
    "LOG_GROUP_PREFIX",
    "MAX_STATE_MACHINE_NAME",
    "Pipelines",
    "load_pipelines",
    "pipelines_env_bytes",
    "state_machine_name",
]
