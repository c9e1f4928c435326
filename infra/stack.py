"""The Switchyard stack: one construct per unit, wired together here.

The constructs create resources; this module decides what each process may see and do:

- the environment of every function and of the worker (``shared/config.py`` reads it); the
  provider gateway's settings (rate limits, their period, tenant budgets, prices) go to the
  processes that call models only: the API function (sync runs) and the worker;
- every IAM grant, action by action, on the exact resources used. Each role gets only what
  its code calls: ``shared/dal`` uses GetItem, PutItem, UpdateItem, Query and
  TransactWriteItems (authorized as PutItem) on the table; PutObject and GetObject on
  ``blobs/*``; SendMessage, ReceiveMessage, DeleteMessage and ChangeMessageVisibility on the
  runs queue; StartExecution, DescribeExecution, StopExecution and SendTask* on the
  pipelines' state machines (``shared/dal/stepfunctions.py``). Nothing gets DeleteItem, Scan,
  a table-level action or ``*`` on data.

SendTaskSuccess/Failure/Heartbeat are granted on the state machine ARNs, as CDK's
``grantTaskResponse`` does: IAM authorizes a callback token's answer against the state machine
that issued it (an AccessDenied names ``...:stateMachine:<name>``), although the Service
Authorization Reference lists no resource type for these actions. Should an account ever
deny them this way, the fallback is ``*`` with an acknowledged cdk-nag finding.

================  ==========================================================================
who               may
================  ==========================================================================
API function      table items read/write, by_tenant query, blobs read/write, send to runs
                  queue, read both secrets (sync runs call the model and sign webhooks);
                  start the state machines, describe and stop their executions, answer
                  approval gates (SendTaskSuccess / SendTaskFailure). Its item grants
                  cover the gateway's ``RATE#`` buckets and ``USAGE#`` counters
                  (GetItem, UpdateItem, Query on the same table)
authorizer        GetItem on API-key items only (``dynamodb:LeadingKeys`` = ``APIKEY#*``)
trigger functions table items read/write, blobs read/write, send to runs queue, read the
                  webhook secret (and the model key when a rule may run inline), start the
                  state machines and describe their executions; the S3 one consumes the
                  trigger queue
DLQ function      table items read/write, blobs read/write, send to the DLQ, read the webhook
                  secret; consumes the transit queue
worker task       table items read/write, by_tenant query, blobs read/write, receive /
                  delete / change visibility / send on the runs queue, answer and heartbeat
                  agent stages' tokens on the state machines (its execution role reads the
                  two secrets ECS injects); the gateway's items as for the API function
pipeline function table items read/write, blobs read/write, GetObject on the inbox bucket's
                  objects (and on the objects of outside buckets whose trigger rules start
                  a pipeline), PutObject under the inbox's ``published/`` prefix only
state machines    send to the runs queue (agent stages), invoke the pipeline function's
                  ``live`` alias (function stages, approval gates); log delivery and X-Ray
================  ==========================================================================
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Stack, Tags
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants as c
from infra.config import ConfigError, StackSettings
from infra.constructs import acknowledge
from infra.constructs.api import Api
from infra.constructs.auth import Auth
from infra.constructs.function import PythonFunction, powertools_env
from infra.constructs.monitoring import Monitoring
from infra.constructs.pipelines import Pipelines, pipelines_env_bytes
from infra.constructs.queues import Queues
from infra.constructs.storage import Storage
from infra.constructs.triggers import Triggers
from infra.constructs.workers import Workers
from shared.dal import schema

ITEM_READ = ("dynamodb:GetItem", "dynamodb:Query")
ITEM_WRITE = ("dynamodb:PutItem", "dynamodb:UpdateItem")
BLOB_READ = ("s3:GetObject",)
BLOB_WRITE = ("s3:PutObject",)
QUEUE_CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility")
SECRET_READ = ("secretsmanager:GetSecretValue",)
START_JOBS = ("states:StartExecution",)
TASK_ANSWER = ("states:SendTaskSuccess", "states:SendTaskFailure")
TASK_HEARTBEAT = ("states:SendTaskHeartbeat",)
# The example pipeline (agents/documents.py) writes its result under this inbox prefix.
PUBLISHED_PREFIX = "published/"


def allow(
    sid: str, actions: tuple[str, ...], resources: list[str], **conditions: Any
) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid,
        effect=iam.Effect.ALLOW,
        actions=list(actions),
        resources=resources,
        conditions=conditions or None,
    )


class SwitchyardStack(Stack):
    def __init__(
        self, scope: Construct, id: str, *, settings: StackSettings, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            id,
            description=f"Switchyard ({settings.stage}): durable AI agent runs on AWS",
            **kwargs,
        )
        self.settings = settings
        Tags.of(self).add("Project", c.PROJECT_TAG)
        Tags.of(self).add("Stage", settings.stage)

        self.storage = Storage(self, c.STORAGE_ID, settings=settings)
        self.queues = Queues(self, c.QUEUES_ID, settings=settings)
        self.auth = Auth(self, c.AUTH_ID, settings=settings)
        self.api = Api(self, c.API_ID, settings=settings, authorizer=self.auth.authorizer)
        self.triggers = Triggers(
            self, c.TRIGGERS_ID, settings=settings, access_logs=self.storage.access_logs
        )
        self.pipelines = Pipelines(
            self, c.PIPELINES_ID, settings=settings, runs_queue=self.queues.runs
        )
        self.workers = Workers(
            self,
            c.WORKERS_ID,
            settings=settings,
            runs_queue=self.queues.runs,
            environment=self.worker_environment(),
            secrets=self.worker_secrets(),
        )
        self._wire_functions()
        self._grant_worker()

        self.functions: tuple[PythonFunction, ...] = (
            self.api.function,
            self.auth.function,
            self.triggers.s3_function,
            self.triggers.schedule_function,
            self.queues.dlq_function,
            self.pipelines.function,
        )
        self.monitoring = Monitoring(
            self,
            c.MONITORING_ID,
            settings=settings,
            runs_queue=self.queues.runs,
            failed_queue=self.queues.failed,
            dlq=self.queues.dlq,
            trigger_queue=self.triggers.queue,
            trigger_dlq=self.triggers.dlq,
            http_api_id=self.api.http_api.api_id,
            functions=self.functions,
            worker_tasks=self.workers.running_tasks().with_(label="running tasks"),
            cost_log_groups=[
                self.api.function.log_group,
                self.triggers.s3_function.log_group,
                self.triggers.schedule_function.log_group,
                self.workers.log_group,
            ],
        )
        self._outputs()

    # ---- environment -----------------------------------------------------------------------

    def common_environment(self) -> dict[str, str]:
        """What every process that runs the service tier reads."""
        s = self.settings
        env = {
            c.ENV_TABLE: self.storage.table.table_name,
            c.ENV_BUCKET: self.storage.bucket.bucket_name,
            c.ENV_LEASE_TTL: str(s.lease_ttl_s),
            c.ENV_RETENTION_DAYS: str(s.retention_days),
            c.ENV_PROVIDER: s.provider,
        }
        if s.agent_modules:
            env[c.ENV_AGENT_MODULES] = ",".join(s.agent_modules)
        return env

    def _secret_arns(self, *, model: bool) -> dict[str, str]:
        env = {c.ENV_WEBHOOK_SECRET_ARN: self.storage.webhook_secret.secret_arn}
        if model and self.settings.provider == "anthropic":
            env[c.ENV_ANTHROPIC_SECRET_ARN] = self.storage.anthropic_secret.secret_arn
        return env

    def worker_environment(self) -> dict[str, str]:
        s = self.settings
        env = {
            **self.common_environment(),
            c.ENV_QUEUE_URL: self.queues.runs.queue_url,
            c.ENV_DLQ_URL: self.queues.dlq.queue_url,
            c.ENV_WORKER_CONCURRENCY: str(s.worker.concurrency),
            c.ENV_WORKER_DRAIN_TIMEOUT: str(s.worker.drain_timeout_s),
            "AWS_REGION": Aws.REGION,
            **powertools_env("worker", s),
            # No X-Ray daemon runs beside the worker.
            c.ENV_POWERTOOLS_TRACE_DISABLED: "true",
            **s.extra_env,
            **s.gateway.environment(),
        }
        return env

    def worker_secrets(self) -> dict[str, ecs.Secret]:
        """Injected by ECS under the names the code reads; the values never reach the task
        definition."""
        secrets = {
            c.ENV_WEBHOOK_SECRET: ecs.Secret.from_secrets_manager(self.storage.webhook_secret)
        }
        if self.settings.provider == "anthropic":
            secrets[c.ENV_ANTHROPIC_API_KEY] = ecs.Secret.from_secrets_manager(
                self.storage.anthropic_secret
            )
        return secrets

    # ---- grants ---------------------------------------------------------------------------

    def _table_items(self, actions: tuple[str, ...]) -> iam.PolicyStatement:
        return allow("TableItems", actions, [self.storage.table.table_arn])

    def _index_query(self) -> iam.PolicyStatement:
        return allow("ByTenantIndex", ("dynamodb:Query",), [self.storage.index_arn])

    def _blobs(self, actions: tuple[str, ...]) -> iam.PolicyStatement:
        return allow("OverflowBlobs", actions, [self.storage.blob_objects_arn])

    def _send(self, sid: str, queue: sqs.IQueue) -> iam.PolicyStatement:
        return allow(sid, ("sqs:SendMessage",), [queue.queue_arn])

    def _secrets(self, *, model: bool) -> iam.PolicyStatement:
        arns = [self.storage.webhook_secret.secret_arn]
        if model and self.settings.provider == "anthropic":
            arns.append(self.storage.anthropic_secret.secret_arn)
        return allow("ReadSecrets", SECRET_READ, arns)

    def _wire_functions(self) -> None:
        common = self.common_environment()
        runs_queue = {c.ENV_QUEUE_URL: self.queues.runs.queue_url}

        self._check_environment_size()
        pipelines = {c.ENV_PIPELINES: self.pipelines.arns_json()}

        api = self.api.function
        api.add_environment(
            {
                **common,
                **runs_queue,
                **pipelines,
                **self._secret_arns(model=True),
                # Sync runs call the model: the gateway's limits, budgets and prices.
                **self.settings.gateway.environment(),
            }
        )
        api.add_to_policy(
            self._table_items(ITEM_READ + ITEM_WRITE),
            self._index_query(),
            self._blobs(BLOB_READ + BLOB_WRITE),
            self._send("SendRuns", self.queues.runs),
            self._secrets(model=True),
            *self._jobs(stop=True),
            # The API answers approval gates (POST /v1/jobs/{id}/approval).
            *self._state_machines("AnswerApprovals", TASK_ANSWER),
        )

        authorizer = self.auth.function
        authorizer.add_environment({c.ENV_TABLE: self.storage.table.table_name})
        authorizer.add_to_policy(
            allow(
                "ReadApiKeys",
                ("dynamodb:GetItem",),
                [self.storage.table.table_arn],
                **{"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [schema.api_key_pk("*")]}},
            )
        )

        inline = self.settings.runs_sync_triggers()
        triggers_env = {**common, **runs_queue, **self._secret_arns(model=inline)}
        rules = self.settings.triggers_json()
        if rules:
            triggers_env[c.ENV_TRIGGERS] = rules
        triggers_env.update(pipelines)
        if inline:
            # Sync rules run agents inside the trigger functions: the same limits, budgets
            # and prices apply there as in the API and the workers.
            triggers_env.update(self.settings.gateway.environment())
        for fn in (self.triggers.s3_function, self.triggers.schedule_function):
            fn.add_environment(triggers_env)
            fn.add_to_policy(
                self._table_items(ITEM_READ + ITEM_WRITE),
                self._blobs(BLOB_READ + BLOB_WRITE),
                self._send("SendRuns", self.queues.runs),
                self._secrets(model=inline),
                *self._jobs(stop=False),
            )

        dlq = self.queues.dlq_function
        dlq.add_environment(
            {
                **common,
                c.ENV_DLQ_URL: self.queues.dlq.queue_url,
                **self._secret_arns(model=False),
            }
        )
        dlq.add_to_policy(
            self._table_items(ITEM_READ + ITEM_WRITE),
            self._blobs(BLOB_READ + BLOB_WRITE),
            self._send("KeepDeadLetters", self.queues.dlq),
            self._secrets(model=False),
        )

        stage_fn = self.pipelines.function
        stage_fn.add_environment(common)
        inbox = self.triggers.inbox
        stage_fn.add_to_policy(
            self._table_items(ITEM_READ + ITEM_WRITE),
            self._blobs(BLOB_READ + BLOB_WRITE),
            allow("ReadInbox", BLOB_READ, [inbox.arn_for_objects("*")]),
            allow("PublishToInbox", BLOB_WRITE, [inbox.arn_for_objects(f"{PUBLISHED_PREFIX}*")]),
        )
        # Documents a pipeline rule's notification names in a bucket outside the stack.
        external = self._external_pipeline_buckets()
        if external:
            stage_fn.add_to_policy(
                allow(
                    "ReadTriggerBuckets",
                    BLOB_READ,
                    [f"arn:{Aws.PARTITION}:s3:::{bucket}/*" for bucket in external],
                )
            )
        for bucket in external:
            acknowledge(
                stage_fn.role,
                f"IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/*]",
                f"A trigger rule starts a pipeline on objects created in {bucket} (outside the "
                "stack): its function stages read those objects, by keys known only then.",
            )
        inbox_arn = f"<{self._logical(inbox)}.Arn>"
        acknowledge(
            stage_fn.role,
            f"IAM5[Resource::{inbox_arn}/*]",
            "Function stages read the documents that land in the inbox bucket (any key a "
            "trigger rule or a job names); reading is the only action on the whole bucket.",
        )
        acknowledge(
            stage_fn.role,
            f"IAM5[Resource::{inbox_arn}/{PUBLISHED_PREFIX}*]",
            "Function stages publish their results under the inbox's published/ prefix, keyed "
            "by the source document (unknown until the job runs); nothing else is writable.",
        )

        for fn in (api, self.triggers.s3_function, self.triggers.schedule_function, dlq, stage_fn):
            acknowledge(
                fn.role,
                f"IAM5[Resource::<{self._logical(self.storage.bucket)}.Arn>/blobs/*]",
                "Overflow blobs are content-addressed (blobs/<sha256>): the key is unknown "
                "until written, so the grant is on the blobs/ prefix, the narrowest there is.",
            )
        for fn in (api, self.triggers.s3_function, self.triggers.schedule_function):
            for name in self.pipelines.names.values():
                acknowledge(
                    fn.role,
                    "IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
                    f"<AWS::AccountId>:execution:{name}:*]",
                    "Executions are named per job when they start (the execution ARN is the "
                    "state machine's name plus the job's), so the grant covers the executions "
                    "of this one state machine, the narrowest there is.",
                )

    def _external_pipeline_buckets(self) -> list[str]:
        """Buckets outside the stack whose objects start a pipeline (by a trigger rule)."""
        s = self.settings
        return sorted(
            {
                r.bucket
                for r in s.trigger_rules().s3
                if r.pipeline is not None
                and r.bucket is not None
                and r.bucket != s.inbox_bucket_name
            }
        )

    def _state_machines(self, sid: str, actions: tuple[str, ...]) -> list[iam.PolicyStatement]:
        arns = list(self.pipelines.arns.values())
        return [allow(sid, actions, arns)] if arns else []

    def _jobs(self, *, stop: bool) -> list[iam.PolicyStatement]:
        """Start jobs (and find the one an idempotent start already created); the API also
        cancels them."""
        executions = self.pipelines.execution_arns()
        if not executions:
            return []
        actions = (
            ("states:DescribeExecution", "states:StopExecution")
            if stop
            else ("states:DescribeExecution",)
        )
        return [
            *self._state_machines("StartJobs", START_JOBS),
            allow("ReadJobs", actions, executions),
        ]

    def _check_environment_size(self) -> None:
        """The trigger functions carry the trigger rules and the pipelines' ARNs, the API
        function the gateway's settings and the same ARNs, besides about 1 KB of names and
        settings. Both are checked against Lambda's 4 KB as CloudFormation will resolve them
        (the ARNs are tokens here)."""
        s = self.settings
        rules = s.triggers_json()
        pipelines = pipelines_env_bytes(s, list(self.pipelines.names))
        budget = c.LAMBDA_ENV_LIMIT_BYTES - 1024
        if len(rules) + pipelines > budget:
            raise ConfigError(
                f"the trigger rules ({len(rules)} bytes) and the pipelines' state machine ARNs "
                f"(up to {pipelines} bytes) do not fit in the trigger functions' Lambda "
                f"environment: keep them under {budget} bytes together"
            )
        gateway = sum(len(k) + len(v) for k, v in s.gateway.environment().items())
        if gateway + pipelines > budget:
            raise ConfigError(
                f"the gateway settings ({gateway} bytes) and the pipelines' state machine ARNs "
                f"(up to {pipelines} bytes) do not fit in the API function's Lambda "
                f"environment: keep them under {budget} bytes together"
            )
        known = self.pipelines.registry
        rules_ = s.trigger_rules()
        for rule in (*rules_.s3, *rules_.schedules):
            if rule.pipeline is not None and rule.pipeline not in known:
                raise ConfigError(
                    f"triggers: rule {rule.name!r} names pipeline {rule.pipeline!r}, which no "
                    f"module defines (known: {sorted(p.name for p in known)})"
                )

    def _grant_worker(self) -> None:
        self.workers.grant_task(
            self._table_items(ITEM_READ + ITEM_WRITE),
            self._index_query(),
            self._blobs(BLOB_READ + BLOB_WRITE),
            allow(
                "ConsumeRuns",
                (*QUEUE_CONSUME, "sqs:SendMessage"),
                [self.queues.runs.queue_arn],
            ),
            # Agent stages: the worker answers (and heartbeats) the stage's task token.
            *self._state_machines("AnswerStages", TASK_ANSWER + TASK_HEARTBEAT),
        )
        task_role = self.workers.task_definition.task_role
        acknowledge(
            task_role,
            f"IAM5[Resource::<{self._logical(self.storage.bucket)}.Arn>/blobs/*]",
            "Overflow blobs are content-addressed (blobs/<sha256>): the key is unknown until "
            "written, so the grant is on the blobs/ prefix, the narrowest there is.",
        )

    def _logical(self, construct: Construct) -> str:
        child = construct.node.default_child
        assert child is not None
        return str(self.resolve(self.get_logical_id(child)))  # type: ignore[arg-type]

    # ---- outputs --------------------------------------------------------------------------

    def _outputs(self) -> None:
        values = {
            c.OUTPUT_API_URL: self.api.url,
            c.OUTPUT_TABLE: self.storage.table.table_name,
            c.OUTPUT_BUCKET: self.storage.bucket.bucket_name,
            c.OUTPUT_RUNS_QUEUE_URL: self.queues.runs.queue_url,
            c.OUTPUT_FAILED_QUEUE_URL: self.queues.failed.queue_url,
            c.OUTPUT_DLQ_URL: self.queues.dlq.queue_url,
            c.OUTPUT_TRIGGER_QUEUE_URL: self.triggers.queue.queue_url,
            c.OUTPUT_TRIGGER_QUEUE_ARN: self.triggers.queue.queue_arn,
            c.OUTPUT_INBOX_BUCKET: self.triggers.inbox.bucket_name,
            c.OUTPUT_CLUSTER: self.workers.cluster.cluster_name,
            c.OUTPUT_SERVICE: self.workers.service.service_name,
            c.OUTPUT_ALARM_TOPIC: self.monitoring.topic.topic_arn,
            c.OUTPUT_ANTHROPIC_SECRET: self.storage.anthropic_secret.secret_arn,
            c.OUTPUT_WEBHOOK_SECRET: self.storage.webhook_secret.secret_arn,
        }
        values[c.OUTPUT_PIPELINES] = self.pipelines.arns_json()
        if self.monitoring.dashboard is not None:
            values[c.OUTPUT_DASHBOARD] = self.monitoring.dashboard.dashboard_name
        for name, value in values.items():
            CfnOutput(self, name, value=value)


__all__ = ["SwitchyardStack"]
