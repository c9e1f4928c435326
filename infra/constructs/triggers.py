"""Triggers: S3 object-created rules and schedules that start runs.

S3 (``functions/triggers/s3.handler``)::

    inbox bucket ──ObjectCreated (rule prefixes/suffixes)──▶ trigger queue ──ESM──▶ S3 function
                                                                   └──(3 receives)──▶ trigger DLQ

- The inbox bucket belongs to the stack (rules that name no bucket watch it). Its
  notifications are part of the bucket resource itself (no custom resource): one per
  distinct filter, overlapping filters merged into the broader one (S3 rejects overlapping
  configurations; the function matches each rule again, so a broader filter only costs an
  ignored message).
- A rule naming another bucket is allowed by the trigger queue's policy, but that bucket's
  notification is its owner's to configure (to the ``TriggerQueueArn`` output).
- The mapping reports partial batch failures; a notification that keeps failing parks in the
  trigger DLQ.

Schedules (``functions/triggers/schedule.handler``): one EventBridge Scheduler schedule per
rule (UTC), in the stack's schedule group, invoking the function with
``{"rule": <name>, "time": <aws.scheduler.scheduled-time>}``; an invocation that still fails
after Scheduler's retries lands in the trigger DLQ, as do the function's own async failures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from aws_cdk import Aws, Duration, Fn
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants as c
from infra.config import StackSettings
from infra.constructs.function import PythonFunction
from infra.constructs.queues import consumer_visibility_s, secure_queue
from infra.constructs.storage import secure_bucket

KeyFilter = tuple[str, str]  # (prefix, suffix)

SCHEDULE_PAYLOAD_TIME = "<aws.scheduler.scheduled-time>"
SCHEDULER_MAX_RETRIES = 3
SCHEDULER_MAX_EVENT_AGE_S = 3600


def _overlap(a: KeyFilter, b: KeyFilter) -> bool:
    prefixes = a[0].startswith(b[0]) or b[0].startswith(a[0])
    suffixes = a[1].endswith(b[1]) or b[1].endswith(a[1])
    return prefixes and suffixes


def merge_key_filters(filters: Iterable[KeyFilter]) -> list[KeyFilter]:
    """Filters S3 accepts on one bucket: no two overlap. Overlapping ones become the broader
    filter (the shorter prefix and the shorter suffix), which matches both."""
    merged: list[KeyFilter] = []
    for candidate in sorted(set(filters)):
        current = candidate
        changed = True
        while changed:
            changed = False
            for other in list(merged):
                if _overlap(current, other):
                    merged.remove(other)
                    current = (
                        min(current[0], other[0], key=len),
                        min(current[1], other[1], key=len),
                    )
                    changed = True
        merged.append(current)
    return sorted(merged)


def schedule_payload(rule: str) -> str:
    return json.dumps({"rule": rule, "time": SCHEDULE_PAYLOAD_TIME}, separators=(",", ":"))


class Triggers(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: StackSettings,
        access_logs: s3.IBucket,
    ) -> None:
        super().__init__(scope, id)
        prefix = settings.resource_prefix
        rules = settings.trigger_rules()

        # ---- S3 -------------------------------------------------------------------------------
        self.dlq = secure_queue(
            self,
            c.TRIGGER_DLQ_ID,
            queue_name=f"{prefix}-triggers-dlq",
            visibility_timeout_s=30,
            retention_days=14,
        )
        self.queue = secure_queue(
            self,
            c.TRIGGER_QUEUE_ID,
            queue_name=f"{prefix}-triggers",
            visibility_timeout_s=consumer_visibility_s(settings.functions.trigger_s3.timeout_s),
            retention_days=4,
            dead_letter=sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=settings.queues.trigger_max_receive_count
            ),
        )
        self.inbox_bucket_name = settings.inbox_bucket_name or Fn.join(
            "-", [f"{prefix}-inbox", Aws.ACCOUNT_ID, Aws.REGION]
        )
        # S3 checks it may deliver when the notification is configured, so the queue policy
        # comes first; naming the bucket up front keeps the policy free of a reference to it.
        source_buckets = [
            f"arn:{Aws.PARTITION}:s3:::{name}"
            for name in (self.inbox_bucket_name, *settings.external_trigger_buckets())
        ]
        self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="S3ObjectCreatedNotifications",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
                conditions={
                    "ArnLike": {"aws:SourceArn": source_buckets},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        self.inbox = secure_bucket(
            self,
            c.INBOX_BUCKET_ID,
            settings,
            bucket_name=self.inbox_bucket_name,
            access_logs=access_logs,
            logs_prefix="inbox/",
        )
        self.key_filters = merge_key_filters((r.prefix, r.suffix) for r in settings.inbox_rules())
        if self.key_filters:
            cfn_inbox = self.inbox.node.default_child
            assert isinstance(cfn_inbox, s3.CfnBucket)
            cfn_inbox.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
                queue_configurations=[
                    s3.CfnBucket.QueueConfigurationProperty(
                        event="s3:ObjectCreated:*",
                        queue=self.queue.queue_arn,
                        filter=_s3_filter(key_filter),
                    )
                    for key_filter in self.key_filters
                ]
            )
            queue_policy = self.queue.node.try_find_child("Policy")
            assert queue_policy is not None
            self.inbox.node.add_dependency(queue_policy)

        self.s3_function = PythonFunction(
            self,
            c.S3_TRIGGER_FUNCTION_ID,
            settings=settings,
            function=settings.functions.trigger_s3,
            function_dir="triggers",
            handler=c.S3_TRIGGER_HANDLER,
            service="trigger-s3",
            description="Switchyard: S3 object-created notifications start runs",
        )
        self.s3_function.alias.add_event_source(
            event_sources.SqsEventSource(self.queue, batch_size=10, report_batch_item_failures=True)
        )

        # ---- schedules ------------------------------------------------------------------------
        self.schedule_function = PythonFunction(
            self,
            c.SCHEDULE_FUNCTION_ID,
            settings=settings,
            function=settings.functions.trigger_schedule,
            function_dir="triggers",
            handler=c.SCHEDULE_HANDLER,
            service="trigger-schedule",
            description="Switchyard: EventBridge Scheduler schedules start runs",
        )
        # Scheduler invokes asynchronously: a firing the function keeps failing on (after
        # Lambda's two retries) is kept in the trigger DLQ.
        self.schedule_function.alias.configure_async_invoke(
            retry_attempts=2,
            max_event_age=Duration.hours(1),
            on_failure=destinations.SqsDestination(self.dlq),
        )
        self.schedule_group = scheduler.CfnScheduleGroup(
            self, c.SCHEDULE_GROUP_ID, name=f"{prefix}-schedules"
        )
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            description=(
                f"EventBridge Scheduler invokes the Switchyard {settings.stage} schedule function"
            ),
        )
        self.scheduler_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[self.schedule_function.alias.function_arn],
            )
        )
        self.scheduler_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.dlq.queue_arn])
        )
        self.schedules: list[scheduler.CfnSchedule] = []
        for rule in rules.schedules:
            schedule = scheduler.CfnSchedule(
                self,
                f"Schedule-{rule.name}",
                name=rule.name,
                group_name=self.schedule_group.name,
                description=f"Switchyard trigger rule {rule.name} ({rule.target})",
                schedule_expression=rule.expression,
                schedule_expression_timezone="UTC",
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                state="ENABLED",
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=self.schedule_function.alias.function_arn,
                    role_arn=self.scheduler_role.role_arn,
                    input=schedule_payload(rule.name),
                    retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                        maximum_retry_attempts=SCHEDULER_MAX_RETRIES,
                        maximum_event_age_in_seconds=SCHEDULER_MAX_EVENT_AGE_S,
                    ),
                    dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                        arn=self.dlq.queue_arn
                    ),
                ),
            )
            schedule.node.add_dependency(self.schedule_group)
            self.schedules.append(schedule)


def _s3_filter(key_filter: KeyFilter) -> s3.CfnBucket.NotificationFilterProperty | None:
    prefix, suffix = key_filter
    rules = [
        s3.CfnBucket.FilterRuleProperty(name=name, value=value)
        for name, value in (("prefix", prefix), ("suffix", suffix))
        if value
    ]
    if not rules:
        return None
    return s3.CfnBucket.NotificationFilterProperty(
        s3_key=s3.CfnBucket.S3KeyFilterProperty(rules=rules)
    )


__all__ = ["Triggers", "merge_key_filters", "schedule_payload"]
