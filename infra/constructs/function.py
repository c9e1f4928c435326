"""The Lambda function pattern every Switchyard function follows.

- CPython 3.12 on arm64 (the package ``infra/bundling.py`` builds is for exactly that);
- its own role with no managed policy: only writes to its own log group, plus what
  ``infra/stack.py`` grants;
- its own log group with the stack's retention;
- Powertools configured from the environment (service name, log level, metrics namespace);
- a ``live`` alias on the current version, which every invoker targets: SnapStart and
  provisioned concurrency apply to published versions only, so both are settings of the
  function that take effect through the alias.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants as c
from infra.code import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, lambda_code
from infra.config import FunctionSettings, StackSettings
from infra.constructs import acknowledge

_RETENTION: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """CloudWatch Logs accepts only some retention periods; the config checks ``days``."""
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(f"log retention must be one of {sorted(_RETENTION)} days") from None


def removal_policy(settings: StackSettings) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if settings.removal_policy == "retain" else RemovalPolicy.DESTROY


def log_group(scope: Construct, id: str, settings: StackSettings, *, days: int) -> logs.LogGroup:
    return logs.LogGroup(
        scope, id, retention=retention(days), removal_policy=removal_policy(settings)
    )


def powertools_env(service: str, settings: StackSettings) -> dict[str, str]:
    env = {
        c.ENV_POWERTOOLS_SERVICE: service,
        c.ENV_POWERTOOLS_LOG_LEVEL: settings.log_level,
        c.ENV_POWERTOOLS_NAMESPACE: c.METRICS_NAMESPACE,
        c.ENV_LOG_LEVEL: settings.log_level,
    }
    if not settings.tracing:
        env[c.ENV_POWERTOOLS_TRACE_DISABLED] = "true"
    return env


class PythonFunction(Construct):
    """One Switchyard function: ``function``, its ``alias`` (invoke this), ``role``, logs."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: StackSettings,
        function: FunctionSettings,
        function_dir: str,
        handler: str,
        service: str,
        description: str,
    ) -> None:
        super().__init__(scope, id)
        self.service = service
        self.log_group = log_group(self, "Logs", settings, days=settings.log_retention_days)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Switchyard {service} function ({settings.stage})",
        )
        self.log_group.grant_write(self.role)
        snap_start = settings.snap_start_for(function)
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            code=lambda_code(function_dir, scope=self),
            handler=handler,
            memory_size=function.memory_mb,
            timeout=Duration.seconds(function.timeout_s),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE if settings.tracing else lambda_.Tracing.DISABLED,
            reserved_concurrent_executions=function.reserved_concurrency,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
            environment={
                c.ENV_BACKEND: "aws",
                **powertools_env(service, settings),
                **settings.extra_env,
            },
            # Superseded versions are deleted once the alias has moved on.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
        )
        acknowledge(
            self.function,
            "L1",
            "Pinned to python3.12 on purpose: the deployment package's wheels are built for "
            "exactly this runtime (infra/bundling.py), and the worker image runs the same "
            "Python; upgrade both together.",
        )
        if settings.tracing:
            acknowledge(
                self.role,
                "IAM5[Resource::*]",
                "X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no "
                "resource-level permissions. No data action is granted on '*'.",
            )
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name=c.LIVE_ALIAS,
            version=self.function.current_version,
            provisioned_concurrent_executions=function.provisioned_concurrency or None,
        )

    def add_environment(self, env: dict[str, str]) -> None:
        for key, value in env.items():
            self.function.add_environment(key, value)

    def add_to_policy(self, *statements: iam.PolicyStatement) -> None:
        for statement in statements:
            self.role.add_to_principal_policy(statement)


__all__ = ["PythonFunction", "log_group", "powertools_env", "removal_policy", "retention"]
