"""Names the CDK app and its tests share: construct ids, output names, environment variables.

Construct ids are part of the synthesized logical ids, so renaming one replaces resources on
the next deploy: change them deliberately.
"""

from __future__ import annotations

from typing import Final

# ---- the stack -------------------------------------------------------------------------------

STACK_NAME_PREFIX: Final = "Switchyard"  # the stack is "Switchyard-<stage>"
PROJECT_TAG: Final = "Switchyard"
METRICS_NAMESPACE: Final = "Switchyard"  # shared.observability.NAMESPACE

# Context keys (cdk.json "context", or `cdk synth -c key=value`).
CONTEXT_CONFIG_FILE: Final = "switchyard:config"  # path of a JSON settings file
CONTEXT_SETTINGS: Final = "switchyard:settings"  # settings as JSON (object or string)
CONTEXT_STAGE: Final = "switchyard:stage"  # shortcut for {"stage": ...}

# ---- construct ids (one construct per unit) ---------------------------------------------------

STORAGE_ID: Final = "Storage"
QUEUES_ID: Final = "Queues"
AUTH_ID: Final = "Auth"
API_ID: Final = "Api"
WORKERS_ID: Final = "Workers"
TRIGGERS_ID: Final = "Triggers"
PIPELINES_ID: Final = "Pipelines"
MONITORING_ID: Final = "Monitoring"

# Inside the units.
TABLE_ID: Final = "Table"
BUCKET_ID: Final = "Bucket"
LOG_BUCKET_ID: Final = "AccessLogs"
ANTHROPIC_SECRET_ID: Final = "AnthropicApiKey"  # noqa: S105 (a name, not a secret)
WEBHOOK_SECRET_ID: Final = "WebhookSecret"  # noqa: S105 (a name, not a secret)
RUNS_QUEUE_ID: Final = "Runs"
FAILED_QUEUE_ID: Final = "RunsFailed"
DLQ_ID: Final = "RunsDlq"
DLQ_FUNCTION_ID: Final = "DlqFunction"
API_FUNCTION_ID: Final = "ApiFunction"
AUTHORIZER_FUNCTION_ID: Final = "AuthorizerFunction"
HTTP_API_ID: Final = "HttpApi"
TRIGGER_QUEUE_ID: Final = "TriggerQueue"
TRIGGER_DLQ_ID: Final = "TriggerDlq"
INBOX_BUCKET_ID: Final = "Inbox"
S3_TRIGGER_FUNCTION_ID: Final = "S3TriggerFunction"
SCHEDULE_FUNCTION_ID: Final = "ScheduleFunction"
SCHEDULE_GROUP_ID: Final = "ScheduleGroup"
PIPELINE_FUNCTION_ID: Final = "PipelineFunction"
CLUSTER_ID: Final = "Cluster"
SERVICE_ID: Final = "Service"
WORKER_CONTAINER: Final = "worker"
ALARM_TOPIC_ID: Final = "AlarmTopic"
# Alarm on the provider's 429 answers (the metric the gateway emits per 429).
PROVIDER_RATE_LIMITED_ALARM_ID: Final = "ProviderRateLimited"
PROVIDER_RATE_LIMITED_METRIC: Final = "ProviderRateLimited"
DASHBOARD_ID: Final = "Dashboard"

# The alias every invoker (API Gateway, event-source mappings, Scheduler) targets: SnapStart
# and provisioned concurrency apply to published versions only.
LIVE_ALIAS: Final = "live"

# ---- Lambda entry points (module.function inside the deployment package) ---------------------

API_HANDLER: Final = "functions.api.handler.handler"
AUTHORIZER_HANDLER: Final = "functions.authorizer.handler.handler"
S3_TRIGGER_HANDLER: Final = "functions.triggers.s3.handler"
SCHEDULE_HANDLER: Final = "functions.triggers.schedule.handler"
DLQ_HANDLER: Final = "functions.dlq.handler.handler"
PIPELINE_HANDLER: Final = "functions.pipeline.handler.handler"

# ---- the worker container ---------------------------------------------------------------------

WORKER_DOCKERFILE: Final = "workers/Dockerfile"
WORKER_DOCKERIGNORE: Final = "workers/Dockerfile.dockerignore"
WORKER_COMMAND: Final = ("python", "-m", "workers.main")
WORKER_HEALTH_COMMAND: Final = ("python", "-m", "workers.health")

# ---- HTTP API ---------------------------------------------------------------------------------

API_PREFIX: Final = "/v1"
PROXY_ROUTE_PATH: Final = "/v1/{proxy+}"
# functions/api/app.py PUBLIC_ROUTES: reachable without a key.
PUBLIC_ROUTE_PATHS: Final = ("/v1/health", "/v1/openapi.json")
AUTHORIZATION_HEADER: Final = "Authorization"

# ---- outputs ----------------------------------------------------------------------------------

OUTPUT_API_URL: Final = "ApiUrl"
OUTPUT_TABLE: Final = "TableName"
OUTPUT_BUCKET: Final = "BucketName"
OUTPUT_RUNS_QUEUE_URL: Final = "RunsQueueUrl"
OUTPUT_FAILED_QUEUE_URL: Final = "RunsFailedQueueUrl"
OUTPUT_DLQ_URL: Final = "DeadLetterQueueUrl"
OUTPUT_TRIGGER_QUEUE_URL: Final = "TriggerQueueUrl"
OUTPUT_TRIGGER_QUEUE_ARN: Final = "TriggerQueueArn"
OUTPUT_INBOX_BUCKET: Final = "InboxBucketName"
OUTPUT_CLUSTER: Final = "ClusterName"
OUTPUT_SERVICE: Final = "ServiceName"
OUTPUT_ALARM_TOPIC: Final = "AlarmTopicArn"
OUTPUT_ANTHROPIC_SECRET: Final = "AnthropicSecretArn"  # noqa: S105 (a name, not a secret)
OUTPUT_WEBHOOK_SECRET: Final = "WebhookSecretArn"  # noqa: S105 (a name, not a secret)
OUTPUT_DASHBOARD: Final = "DashboardName"
# A JSON object: pipeline name -> state machine ARN (what SWITCHYARD_PIPELINES holds).
OUTPUT_PIPELINES: Final = "PipelineStateMachines"

OUTPUTS: Final = (
    OUTPUT_API_URL,
    OUTPUT_TABLE,
    OUTPUT_BUCKET,
    OUTPUT_RUNS_QUEUE_URL,
    OUTPUT_FAILED_QUEUE_URL,
    OUTPUT_DLQ_URL,
    OUTPUT_TRIGGER_QUEUE_URL,
    OUTPUT_TRIGGER_QUEUE_ARN,
    OUTPUT_INBOX_BUCKET,
    OUTPUT_CLUSTER,
    OUTPUT_SERVICE,
    OUTPUT_ALARM_TOPIC,
    OUTPUT_ANTHROPIC_SECRET,
    OUTPUT_WEBHOOK_SECRET,
    OUTPUT_DASHBOARD,
    OUTPUT_PIPELINES,
)

# ---- environment variables the stack sets (shared/config.py reads the SWITCHYARD_* ones) -----

ENV_BACKEND: Final = "SWITCHYARD_BACKEND"
ENV_TABLE: Final = "SWITCHYARD_TABLE"
ENV_BUCKET: Final = "SWITCHYARD_BUCKET"
ENV_QUEUE_URL: Final = "SWITCHYARD_QUEUE_URL"
ENV_DLQ_URL: Final = "SWITCHYARD_DLQ_URL"
ENV_LEASE_TTL: Final = "SWITCHYARD_LEASE_TTL_S"
ENV_RETENTION_DAYS: Final = "SWITCHYARD_RETENTION_DAYS"
ENV_LOG_LEVEL: Final = "SWITCHYARD_LOG_LEVEL"
ENV_PROVIDER: Final = "SWITCHYARD_PROVIDER"
ENV_AGENT_MODULES: Final = "SWITCHYARD_AGENT_MODULES"
ENV_TRIGGERS: Final = "SWITCHYARD_TRIGGERS"
ENV_WORKER_CONCURRENCY: Final = "SWITCHYARD_WORKER_CONCURRENCY"
ENV_WORKER_DRAIN_TIMEOUT: Final = "SWITCHYARD_WORKER_DRAIN_TIMEOUT_S"
# Pipelines: a JSON object, pipeline name -> state machine ARN (Settings.pipeline_arns).
ENV_PIPELINES: Final = "SWITCHYARD_PIPELINES"
# The provider gateway (shared/gateway; infra settings `gateway`): only the processes that call
# models get them (the API function for sync runs, the worker). Compact JSON objects, except
# the period (seconds).
ENV_RATE_LIMITS: Final = "SWITCHYARD_RATE_LIMITS"  # prefix or "default" -> limits per period
ENV_RATE_LIMIT_PERIOD: Final = "SWITCHYARD_RATE_LIMIT_PERIOD_S"
ENV_TENANT_DAILY_BUDGETS: Final = "SWITCHYARD_TENANT_DAILY_BUDGETS"  # tenant or "*" -> USD
ENV_PRICES: Final = "SWITCHYARD_PRICES"  # prefix -> USD per million tokens
GATEWAY_ENV: Final = (ENV_RATE_LIMITS, ENV_RATE_LIMIT_PERIOD, ENV_TENANT_DAILY_BUDGETS, ENV_PRICES)
# Secrets. The worker gets the values injected by ECS under the names the code reads. A Lambda
# function gets only the secret's ARN (never a value) and resolves it at cold start.
ENV_ANTHROPIC_API_KEY: Final = "ANTHROPIC_API_KEY"
ENV_WEBHOOK_SECRET: Final = "SWITCHYARD_WEBHOOK_SECRET"  # noqa: S105 (a name, not a secret)
ENV_ANTHROPIC_SECRET_ARN: Final = "SWITCHYARD_ANTHROPIC_API_KEY_SECRET_ARN"  # noqa: S105
ENV_WEBHOOK_SECRET_ARN: Final = "SWITCHYARD_WEBHOOK_SECRET_ARN"  # noqa: S105 (a name, not a secret)
# Powertools.
ENV_POWERTOOLS_SERVICE: Final = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_LOG_LEVEL: Final = "POWERTOOLS_LOG_LEVEL"
ENV_POWERTOOLS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
ENV_POWERTOOLS_TRACE_DISABLED: Final = "POWERTOOLS_TRACE_DISABLED"

# Lambda allows 4 KB of environment per function; the trigger rules and the pipelines' state
# machine ARNs ride in one variable each.
LAMBDA_ENV_LIMIT_BYTES: Final = 4096
