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
- ``ProviderRateLimited``: the model provider answered more than ``monitoring.provider_429_alarm``
  429s in 5 minutes (``ProviderRateLimited``, summed over every process and model by a
  Metrics Insights query: the metric's ``model`` dimension is not known at deploy time);
- ``<Function>Errors``: any invocation error of a function (the API function answers its
  own errors; an error here is a crash or a timeout).

The dashboard: runs (submitted, started, succeeded, failed, dead-lettered), steps, tokens,
cost (summed from the ``step completed`` log lines), queue depth, age of the oldest message,
the DLQs, the worker count, API traffic and the functions; then the provider gateway: tokens
and cost by agent, rate-limit waits, the provider's 429s, workers holding off, and model
fallbacks. Custom metrics come from the processes' EMF lines (namespace ``Switchyard``) with
varying dimensions (agent, service, ...), so their graphs sum a SEARCH over every series of a
metric name, or group a Metrics Insights query by a dimension (one query per graph: CloudWatch
runs only one per request). Tokens and cost are emitted under two dimension sets, [service,
agent] and [service, tenant], so their graphs read the [service, agent] set only: summing
every series would count each token twice.
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


# The dimension set of the per-step token and cost metrics read by agent (the other set is
# [service, tenant]: see the module docstring).
BY_AGENT: tuple[str, ...] = ("agent", "service")


def custom_total(
    metric_name: str,
    label: str,
    *,
    statistic: str = "Sum",
    dimensions: tuple[str, ...] | None = None,
) -> cloudwatch.MathExpression:
    """The sum over every series of one of Switchyard's own metrics: any dimensions, or
    exactly ``dimensions`` (for a metric emitted under several dimension sets)."""
    scope = (
        f"{{{c.METRICS_NAMESPACE},{','.join(dimensions)}}}"
        if dimensions
        else f'Namespace="{c.METRICS_NAMESPACE}"'
    )
    search = (
        f"SEARCH('{scope} MetricName=\"{metric_name}\"', '{statistic}', {int(PERIOD.to_seconds())})"
    )
    return cloudwatch.MathExpression(
        expression=f"SUM({search})", label=label, period=PERIOD, using_metrics={}
    )


def insights_query(
    function: str,
    metric_name: str,
    *,
    dimensions: tuple[str, ...] | None = None,
    group_by: tuple[str, ...] = (),
) -> str:
    """A Metrics Insights query over one of Switchyard's metrics: every series (or exactly
    the ``dimensions`` set), aggregated by ``function``, one series per ``group_by`` value."""
    namespace = f'"{c.METRICS_NAMESPACE}"'
    source = f"SCHEMA({namespace}, {', '.join(dimensions)})" if dimensions else namespace
    # A CloudWatch Metrics Insights query built from constants, not SQL run on a database.
    query = f"SELECT {function}({metric_name}) FROM {source}"  # noqa: S608
    if group_by:
        query += f" GROUP BY {', '.join(group_by)}"
    return query


# CloudWatch's dynamic label for "the default label": a grouped query's series are named by
# their group (the agent, the model...); without it, CDK names every series by the query.
GROUP_LABEL = "${LABEL}"


def insights(query: str, label: str = GROUP_LABEL) -> cloudwatch.MathExpression:
    """A Metrics Insights query as a metric (alarms evaluate its last 3 hours; graphs show up
    to 2 weeks). A grouped query returns one series per group, labelled by the group."""
    return cloudwatch.MathExpression(expression=query, label=label, period=PERIOD, using_metrics={})


def provider_rate_limited() -> cloudwatch.MathExpression:
    """The provider's 429s per 5 minutes, every process and model together."""
    return insights(insights_query("SUM", c.PROVIDER_RATE_LIMITED_METRIC), label="provider 429s")


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
            comparison: cloudwatch.ComparisonOperator = (
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
            ),
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
                comparison_operator=comparison,
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
        self.provider_rate_limited = alarm(
            c.PROVIDER_RATE_LIMITED_ALARM_ID,
            provider_rate_limited(),
            threshold=m.provider_429_alarm,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            description=(
                f"The model provider answered more than {m.provider_429_alarm} 429s in 5 "
                "minutes: the rate limits are above what the key gets (shared with another "
                "system, or gateway.rate_limits set too high; docs/operations.md)."
            ),
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
                    custom_total("InputTokens", "input tokens", dimensions=BY_AGENT),
                    custom_total("OutputTokens", "output tokens", dimensions=BY_AGENT),
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
        self._gateway_widgets(width, m.provider_429_alarm)

    def _gateway_widgets(self, width: int, alarm_threshold: float) -> None:
        """Tokens and cost by agent, rate-limit waits, 429s and backpressure, fallbacks."""
        assert self.dashboard is not None

        def by_agent(title: str, metric_name: str) -> cloudwatch.GraphWidget:
            query = insights_query("SUM", metric_name, dimensions=BY_AGENT, group_by=("agent",))
            return cloudwatch.GraphWidget(title=title, width=width, left=[insights(query)])

        self.dashboard.add_widgets(
            by_agent("Input tokens by agent", "InputTokens"),
            by_agent("Output tokens by agent", "OutputTokens"),
            by_agent("Model cost by agent (USD)", "CostUsd"),
        )
        self.dashboard.add_widgets(
            by_agent("Cache read tokens by agent", "CacheReadInputTokens"),
            by_agent("Cache write tokens by agent", "CacheCreationInputTokens"),
            cloudwatch.GraphWidget(
                title="Rate-limit waits (ms waited, by reason)",
                width=width,
                left=[insights(insights_query("SUM", "RateLimitWait", group_by=("reason",)))],
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Longest rate-limit wait (ms, by model)",
                width=width,
                left=[insights(insights_query("MAX", "RateLimitWait", group_by=("model",)))],
            ),
            cloudwatch.GraphWidget(
                title="Provider 429s and workers holding off",
                width=width,
                left=[custom_total(c.PROVIDER_RATE_LIMITED_METRIC, "provider 429s")],
                right=[custom_total("WorkerBackpressure", "workers holding off")],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=alarm_threshold, label="429 alarm")
                ],
            ),
            cloudwatch.GraphWidget(
                title="Model fallbacks (by model and reason)",
                width=width,
                left=[
                    insights(insights_query("SUM", "ModelFallbacks", group_by=("model", "reason")))
                ],
            ),
        )


__all__ = [
    "BY_AGENT",
    "GROUP_LABEL",
    "Monitoring",
    "custom_total",
    "insights",
    "insights_query",
    "provider_rate_limited",
]
