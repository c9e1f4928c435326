"""Workers: the Fargate service that executes async runs (``python -m workers.main``).

Network (``network.mode``). By default a small VPC: two AZs, public subnets only, **no NAT
gateway**, and tasks with a public IP behind a security group that admits nothing. The worker
only calls out (SQS, DynamoDB, S3, Secrets Manager, CloudWatch Logs, ECR and the Anthropic
API) and nothing ever connects to it, so private subnets would buy no protection a no-ingress
security group does not already give, while a NAT gateway would cost about 32 USD a month per
AZ before the first run. ``mode: "private"`` puts the tasks in private subnets behind
``nat_gateways`` NAT gateways instead. Rejected traffic is recorded in VPC flow logs.

Task: arm64 (Graviton), the image built from ``workers/Dockerfile`` with the repository root as
context (``cdk synth`` only stages it; ``cdk deploy`` builds it for linux/arm64). The health
check runs ``python -m workers.health`` (the consumer loop stamps a file on every iteration),
and ECS waits ``stop_timeout_s`` (30 s) after SIGTERM, longer than the worker's drain
(``drain_timeout_s``, 25 s). The Anthropic key and the webhook secret are injected as ECS
secrets under the names the code reads (``ANTHROPIC_API_KEY``,
``SWITCHYARD_WEBHOOK_SECRET``): the values never appear in the task definition.

Scaling (between ``min_tasks`` and ``max_tasks``; not on CPU: model calls are I/O). When
several policies disagree, Application Auto Scaling takes the largest capacity.

- target tracking on load per task: (visible + in-flight messages) / running tasks, kept at
  ``concurrency * target_utilization`` (scales out and in);
- step scaling on backlog per task: visible (waiting, unreceived) messages / running tasks
  (any waiting message when no task runs), adding 1, 2 or 4 tasks: this is what starts the
  first task when ``min_tasks`` is 0;
- step scaling on the age of the oldest message while messages wait (the metric alone would
  also count the messages of long runs in flight, which are healthy).

``worker.spot`` adds Fargate Spot capacity (``spot_weight`` Spot tasks per on-demand one,
``on_demand_base`` always on-demand): a Spot interruption is a SIGTERM, so runs are handed
back and resume elsewhere from their journal.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, IgnoreMode, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants as c
from infra.config import StackSettings
from infra.constructs import acknowledge
from infra.constructs.function import log_group

ROOT = Path(__file__).resolve().parents[2]
METRIC_PERIOD = Duration.minutes(1)


def image_excludes(root: Path = ROOT) -> list[str]:
    """What the image context leaves out: the Dockerfile's own ignore file (so the staged
    context is what BuildKit would send), keeping the Dockerfile itself, which CDK builds
    from the staged copy."""
    lines = (root / c.WORKER_DOCKERIGNORE).read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return [*patterns, f"!{c.WORKER_DOCKERFILE}", f"!{c.WORKER_DOCKERIGNORE}"]


def worker_image(root: Path = ROOT) -> ecs.ContainerImage:
    return ecs.ContainerImage.from_asset(
        str(root),
        file=c.WORKER_DOCKERFILE,
        platform=ecr_assets.Platform.LINUX_ARM64,
        exclude=image_excludes(root),
        ignore_mode=IgnoreMode.DOCKER,
    )


class Workers(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: StackSettings,
        runs_queue: sqs.IQueue,
        environment: dict[str, str],
        secrets: dict[str, ecs.Secret],
    ) -> None:
        super().__init__(scope, id)
        worker = settings.worker
        network = settings.network
        public = network.mode == "public"

        subnets = [
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)
        ]
        if not public:
            subnets.append(
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                )
            )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=network.max_azs,
            nat_gateways=0 if public else network.nat_gateways,
            subnet_configuration=subnets,
            # No custom resource (a Lambda) to strip the default security group's rules:
            # nothing uses that group.
            restrict_default_security_group=False,
        )
        if network.flow_logs:
            self.flow_logs = log_group(self, "FlowLogs", settings, days=settings.log_retention_days)
            self.vpc.add_flow_log(
                "RejectedTraffic",
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_logs),
                traffic_type=ec2.FlowLogTrafficType.REJECT,
            )
        else:
            acknowledge(
                self.vpc,
                "VPC7",
                "Flow logs turned off in the settings (network.flow_logs); the workers accept "
                "no inbound connections.",
            )
        self.security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.vpc,
            description="Switchyard workers: no ingress; egress to AWS APIs and the model API",
            allow_all_outbound=True,
        )

        self.cluster = ecs.Cluster(
            self,
            c.CLUSTER_ID,
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            enable_fargate_capacity_providers=worker.spot,
        )

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=worker.cpu,
            memory_limit_mib=worker.memory_mb,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.log_group = log_group(self, "Logs", settings, days=settings.log_retention_days)
        self.container = self.task_definition.add_container(
            c.WORKER_CONTAINER,
            image=worker_image(),
            command=list(c.WORKER_COMMAND),
            essential=True,
            environment=environment,
            secrets=secrets,
            logging=ecs.LogDriver.aws_logs(stream_prefix="worker", log_group=self.log_group),
            health_check=ecs.HealthCheck(
                command=["CMD", *c.WORKER_HEALTH_COMMAND],
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(60),
            ),
            stop_timeout=Duration.seconds(worker.stop_timeout_s),
        )
        execution_role = self.task_definition.execution_role
        assert execution_role is not None
        acknowledge(
            execution_role,
            "IAM5[Resource::*]",
            "ECS pulls the image with ecr:GetAuthorizationToken, which supports no "
            "resource-level permissions; the pull itself is scoped to the asset repository.",
        )
        acknowledge(
            self.task_definition,
            "ECS2",
            "The environment holds configuration only (table, bucket, queue URLs, tuning); "
            "the Anthropic key and the webhook secret are ECS secrets from Secrets Manager.",
        )

        strategies: list[ecs.CapacityProviderStrategy] | None = None
        if worker.spot:
            strategies = [
                ecs.CapacityProviderStrategy(
                    capacity_provider="FARGATE", base=worker.on_demand_base, weight=1
                ),
                ecs.CapacityProviderStrategy(
                    capacity_provider="FARGATE_SPOT", weight=worker.spot_weight
                ),
            ]
        self.service = ecs.FargateService(
            self,
            c.SERVICE_ID,
            cluster=self.cluster,
            task_definition=self.task_definition,
            assign_public_ip=public,
            vpc_subnets=ec2.SubnetSelection(
                subnet_type=ec2.SubnetType.PUBLIC if public else ec2.SubnetType.PRIVATE_WITH_EGRESS
            ),
            security_groups=[self.security_group],
            capacity_provider_strategies=strategies,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        self._add_scaling(settings, runs_queue)

    # ---- scaling ------------------------------------------------------------------------------

    def running_tasks(self) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={
                "ClusterName": self.cluster.cluster_name,
                "ServiceName": self.service.service_name,
            },
            statistic="Average",
            period=METRIC_PERIOD,
        )

    def _add_scaling(self, settings: StackSettings, queue: sqs.IQueue) -> None:
        worker = settings.worker
        self.scaling = appscaling.ScalableTarget(
            self,
            "TaskCount",
            service_namespace=appscaling.ServiceNamespace.ECS,
            resource_id=f"service/{self.cluster.cluster_name}/{self.service.service_name}",
            scalable_dimension="ecs:service:DesiredCount",
            min_capacity=worker.min_tasks,
            max_capacity=worker.max_tasks,
        )
        visible = queue.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=METRIC_PERIOD
        )
        age = queue.metric_approximate_age_of_oldest_message(
            statistic="Maximum", period=METRIC_PERIOD
        )

        # Waiting messages per running task; every waiting message counts when none runs.
        self.backlog_per_task = cloudwatch.MathExpression(
            expression="IF(FILL(tasks, 0) > 0, visible / FILL(tasks, 0), visible)",
            using_metrics={"visible": visible, "tasks": self.running_tasks()},
            label="Waiting messages per running task",
            period=METRIC_PERIOD,
        )
        per_task = worker.backlog_per_task
        self.scaling.scale_on_metric(
            "ScaleOnBacklog",
            metric=self.backlog_per_task,
            scaling_steps=[
                appscaling.ScalingInterval(upper=per_task, change=0),
                appscaling.ScalingInterval(lower=per_task, change=1),
                appscaling.ScalingInterval(lower=per_task * 8, change=2),
                appscaling.ScalingInterval(lower=per_task * 32, change=4),
            ],
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=Duration.seconds(worker.scale_out_cooldown_s),
            evaluation_periods=2,
            datapoints_to_alarm=2,
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        )

        # The oldest message's age, only while messages wait (0 otherwise).
        self.waiting_age = cloudwatch.MathExpression(
            expression="IF(visible > 0, age, 0)",
            using_metrics={"visible": visible, "age": age},
            label="Age of the oldest message while messages wait (s)",
            period=METRIC_PERIOD,
        )
        self.scaling.scale_on_metric(
            "ScaleOnAge",
            metric=self.waiting_age,
            scaling_steps=[
                appscaling.ScalingInterval(upper=worker.scale_out_age_s, change=0),
                appscaling.ScalingInterval(lower=worker.scale_out_age_s, change=1),
                appscaling.ScalingInterval(lower=worker.scale_out_age_s * 4, change=2),
            ],
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=Duration.seconds(worker.scale_out_cooldown_s),
            evaluation_periods=2,
            datapoints_to_alarm=2,
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        )

        # Target tracking with metric math (the L2 takes a single metric only).
        queue_dims = [
            appscaling.CfnScalingPolicy.TargetTrackingMetricDimensionProperty(
                name="QueueName", value=queue.queue_name
            )
        ]
        service_dims = [
            appscaling.CfnScalingPolicy.TargetTrackingMetricDimensionProperty(
                name="ClusterName", value=self.cluster.cluster_name
            ),
            appscaling.CfnScalingPolicy.TargetTrackingMetricDimensionProperty(
                name="ServiceName", value=self.service.service_name
            ),
        ]

        def query(
            query_id: str,
            namespace: str,
            name: str,
            dims: list[appscaling.CfnScalingPolicy.TargetTrackingMetricDimensionProperty],
            stat: str,
        ) -> appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty:
            return appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                id=query_id,
                metric_stat=appscaling.CfnScalingPolicy.TargetTrackingMetricStatProperty(
                    metric=appscaling.CfnScalingPolicy.TargetTrackingMetricProperty(
                        namespace=namespace, metric_name=name, dimensions=dims
                    ),
                    stat=stat,
                ),
                return_data=False,
            )

        self.load_tracking = appscaling.CfnScalingPolicy(
            self,
            "TrackLoadPerTask",
            policy_name=f"{Stack.of(self).stack_name}-worker-load-per-task",
            policy_type="TargetTrackingScaling",
            scaling_target_id=self.scaling.scalable_target_id,
            target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=round(worker.concurrency * worker.target_utilization, 2),
                scale_in_cooldown=worker.scale_in_cooldown_s,
                scale_out_cooldown=worker.scale_out_cooldown_s,
                customized_metric_specification=appscaling.CfnScalingPolicy.CustomizedMetricSpecificationProperty(
                    metrics=[
                        query(
                            "visible",
                            "AWS/SQS",
                            "ApproximateNumberOfMessagesVisible",
                            list(queue_dims),
                            "Maximum",
                        ),
                        query(
                            "inflight",
                            "AWS/SQS",
                            "ApproximateNumberOfMessagesNotVisible",
                            list(queue_dims),
                            "Maximum",
                        ),
                        query(
                            "tasks",
                            "ECS/ContainerInsights",
                            "RunningTaskCount",
                            list(service_dims),
                            "Average",
                        ),
                        appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                            id="load",
                            expression="(visible + inflight) / tasks",
                            label="Runs per running task",
                            return_data=True,
                        ),
                    ]
                ),
            ),
        )

    def grant_task(self, *statements: iam.PolicyStatement) -> None:
        for statement in statements:
            self.task_definition.add_to_task_role_policy(statement)


__all__ = ["Workers", "image_excludes", "worker_image"]
