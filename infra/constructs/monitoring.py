"""Monitoring: the alarm topic, the alarms, and the dashboard.

Alarms (each notifies the SNS topic when it fires and when it recovers; missing data is not
breaching):

- ``RunsDlqNotEmpty``: a run's message is in the DLQ (an operator should look and redrive);
- ``RunsFailedStuck``: messages wait in the transit queue for 15 minutes (the DLQ function
  is failing to settle them);
- ``TriggerDlqNotEmpty``: an S3 notification or a schedule firing could not start its run;
- ``OldestRunWaiting``: the oldest runs-queue message, while messages wait unreceived, is older
  than ``monitoring.oldest_message_alarm_s`` (workers are not keeping up, or none runs);
- ``Api5xxRate``: 5xx responses above ``monitoring.api_5xx_percent`` of API requests;
- ``<Function>Errors``: any invocation error of a function (the API function answers its
  own errors; an error here is a crash or a timeout).

The dashboard: runs (submitted, started, succeeded, failed, dead-lettered), steps, tokens,
cost (summed from the ``step completed`` log lines), queue depth, age of the oldest message,
the DLQs, the worker count, API traffic and the functions. Custom metrics come from the
processes' EMF lines (namespace ``Switchyard``) with varying dimensions (agent, service,
...), so their graphs sum a SEARCH over every series of a metric name.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants as c
from infra.config import StackSettings
from infra.constructs import acknowledge
from infra.constructs.function import PythonFunction

PERIOD = Duration.minutes(5)
FAILED_QUEUE_STUCK_S = 900


def custom_total(
    metric_name: str, label: str, *, statistic: str = "Sum"
) -> cloudwatch.MathExpression:
    """The sum over every series (any dimensions) of one of Switchyard's own metrics."""
    search = (
        f'SEARCH(\'Namespace="{c.METRICS_NAMESPACE}" MetricName="{metric_name}"\', '
        f"'{statistic}', {int(PERIOD.to_seconds())})"
    )
    return cloudwatch.MathExpression(
        expression=f"SUM({search})", label=label, period=PERIOD, using_metrics={}
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: StackSettings,
        runs_queue: sqs.IQueue,
        failed_queue: sqs.IQueue,
        dlq: sqs.IQueue,
        trigger_queue: sqs.IQueue,
        trigger_dlq: sqs.IQueue,
        http_api_id: str,
        functions: Sequence[PythonFunction],
        worker_tasks: cloudwatch.IMetric,
        cost_log_groups: Sequence[logs.ILogGroup],
    ) -> None:
        super().__init__(scope, id)
        m = settings.monitoring
        self.topic = sns.Topic(
            self,
            c.ALARM_TOPIC_ID,
            display_name=f"Switchyard {settings.stage} alarms",
            enforce_ssl=True,
        )
        acknowledge(
            self.topic,
            "SNS2",
            "Alarm notifications carry alarm names and metric values only; CloudWatch cannot "
            "publish to a topic encrypted with the AWS-managed SNS key, and a customer-managed "
            "key would cost more than the data is worth protecting.",
        )
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(
            alarm_id: str,
            metric: cloudwatch.IMetric,
            *,
            threshold: float,
            description: str,
            periods: int = 1,
            datapoints: int | None = None,
        ) -> cloudwatch.Alarm:
            created = cloudwatch.Alarm(
                self,
                alarm_id,
                alarm_name=f"{settings.stack_name}-{alarm_id}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                datapoints_to_alarm=datapoints or periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)
            self.alarms.append(created)
            return created

        alarm(
            "RunsDlqNotEmpty",
            dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=PERIOD),
            threshold=1,
            description="Runs were dead-lettered: inspect them and redrive (docs/operations.md).",
        )
        alarm(
            "RunsFailedStuck",
            failed_queue.metric_approximate_age_of_oldest_message(
                statistic="Maximum", period=PERIOD
            ),
            threshold=FAILED_QUEUE_STUCK_S,
            description="Dead letters wait in the transit queue: the DLQ function is failing.",
        )
        alarm(
            "TriggerDlqNotEmpty",
            trigger_dlq.metric_approximate_number_of_messages_visible(
                statistic="Maximum", period=PERIOD
            ),
            threshold=1,
            description="An S3 notification or a schedule firing could not start its run.",
        )
        visible = runs_queue.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=Duration.minutes(1)
        )
        age = runs_queue.metric_approximate_age_of_oldest_message(
            statistic="Maximum", period=Duration.minutes(1)
        )
        alarm(
            "OldestRunWaiting",
            cloudwatch.MathExpression(
                expression="IF(visible > 0, age, 0)",
                using_metrics={"visible": visible, "age": age},
                label="Oldest message age while messages wait (s)",
                period=Duration.minutes(1),
            ),
            threshold=m.oldest_message_alarm_s,
            periods=5,
            description="Runs wait in the queue: workers are not keeping up (or none runs).",
        )
        api_requests = cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name="Count",
            dimensions_map={"ApiId": http_api_id},
            statistic="Sum",
            period=PERIOD,
        )
        api_5xx = cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name="5xx",
            dimensions_map={"ApiId": http_api_id},
            statistic="Sum",
            period=PERIOD,
        )
        api_4xx = cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name="4xx",
            dimensions_map={"ApiId": http_api_id},
            statistic="Sum",
            period=PERIOD,
        )
        alarm(
            "Api5xxRate",
            cloudwatch.MathExpression(
                expression="IF(requests > 0, 100 * errors / requests, 0)",
                using_metrics={"requests": api_requests, "errors": api_5xx},
                label="API 5xx (% of requests)",
                period=PERIOD,
            ),
            threshold=m.api_5xx_percent,
            periods=3,
            datapoints=2,
            description="The HTTP API answers 5xx to too many requests.",
        )
        for fn in functions:
            alarm(
                f"{fn.node.id}Errors",
                fn.function.metric_errors(statistic="Sum", period=PERIOD),
                threshold=1,
                description=f"The {fn.service} function failed (a crash or a timeout).",
            )

        if not m.dashboard:
            self.dashboard: cloudwatch.Dashboard | None = None
            return
        queues = {
            "runs": runs_queue,
            "runs-failed": failed_queue,
            "runs-dlq": dlq,
            "triggers": trigger_queue,
            "triggers-dlq": trigger_dlq,
        }
        self.dashboard = cloudwatch.Dashboard(
            self,
            c.DASHBOARD_ID,
            dashboard_name=settings.stack_name,
            default_interval=Duration.hours(3),
        )
        width = 8
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Runs",
                width=width,
                left=[
                    custom_total("RunsSubmitted", "submitted"),
                    custom_total("RunsStarted", "started"),
                    custom_total("RunsSucceeded", "succeeded"),
                    custom_total("RunsFailed", "failed"),
                    custom_total("RunsCancelled", "cancelled"),
                    custom_total("RunsDeadLettered", "dead-lettered"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Steps and tokens",
                width=width,
                left=[custom_total("Steps", "steps")],
                right=[
                    custom_total("InputTokens", "input tokens"),
                    custom_total("OutputTokens", "output tokens"),
                ],
            ),
            cloudwatch.LogQueryWidget(
                title="Model cost (USD per hour)",
                width=width,
                log_group_names=[g.log_group_name for g in cost_log_groups],
                view=cloudwatch.LogQueryVisualizationType.LINE,
                query_lines=[
                    "fields @timestamp, cost_usd",
                    'filter message = "step completed"',
                    "stats sum(cost_usd) as cost_usd by bin(1h)",
                ],
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Runs queue depth",
                width=width,
                left=[
                    runs_queue.metric_approximate_number_of_messages_visible(
                        label="waiting", statistic="Maximum", period=Duration.minutes(1)
                    ),
                    runs_queue.metric_approximate_number_of_messages_not_visible(
                        label="in flight", statistic="Maximum", period=Duration.minutes(1)
                    ),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Age of the oldest message (s)",
                width=width,
                left=[
                    q.metric_approximate_age_of_oldest_message(
                        label=name, statistic="Maximum", period=Duration.minutes(1)
                    )
                    for name, q in queues.items()
                ],
            ),
            cloudwatch.GraphWidget(
                title="Dead letters",
                width=width,
                left=[
                    q.metric_approximate_number_of_messages_visible(
                        label=name, statistic="Maximum", period=Duration.minutes(1)
                    )
                    for name, q in queues.items()
                    if name != "runs"
                ],
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Workers",
                width=width,
                left=[worker_tasks],
                right=[custom_total("RunErrors", "run errors")],
            ),
            cloudwatch.GraphWidget(
                title="API",
                width=width,
                left=[
                    api_requests.with_(label="requests"),
                    api_4xx.with_(label="4xx"),
                    api_5xx.with_(label="5xx"),
                ],
                right=[
                    cloudwatch.Metric(
                        namespace="AWS/ApiGateway",
                        metric_name="Latency",
                        dimensions_map={"ApiId": http_api_id},
                        statistic="p90",
                        period=PERIOD,
                        label="latency p90 (ms)",
                    )
                ],
            ),
            cloudwatch.GraphWidget(
                title="Function errors and throttles",
                width=width,
                left=[
                    fn.function.metric_errors(label=f"{fn.service} errors", period=PERIOD)
                    for fn in functions
                ],
                right=[
                    fn.function.metric_throttles(label=f"{fn.service} throttles", period=PERIOD)
                    for fn in functions
                ],
            ),
        )


__all__ = ["Monitoring", "custom_total"]
