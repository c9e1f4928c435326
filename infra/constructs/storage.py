"""Storage: the single DynamoDB table, the overflow bucket and the two secrets.

- The table is exactly ``shared.dal.schema.table_definition`` (keys, the ``by_tenant`` index
  and its projection, on-demand billing), plus what CreateTable does not carry: TTL on
  ``expires_at``, point-in-time recovery and encryption with the AWS-managed KMS key.
- The bucket holds journal payloads too large for an item (``blobs/<sha256>``, rewritten on
  every put, so expiring them ``retention_days + margin`` after the last write never drops a
  blob a live journal item points at) and exports (``exports/``). Private, TLS-only,
  SSE-S3, server access logs to a log bucket.
- The secrets: the Anthropic API key (created with a random placeholder: put the real key in
  it after the first deploy) and the webhook signing secret (generated). Or existing secrets
  by ARN. Nothing but their ARNs ever reaches a template or an environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import constants as c
from infra.config import StackSettings
from infra.constructs import acknowledge
from infra.constructs.function import removal_policy
from shared.dal import schema
from shared.dal.s3 import DEFAULT_PREFIX as BLOB_PREFIX

EXPORT_PREFIX = "exports/"

_ATTRIBUTE_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}


def _key(
    definition: Mapping[str, Any], key_schema: Sequence[Mapping[str, str]], kind: str
) -> dynamodb.Attribute | None:
    """The key attribute of ``kind`` (HASH or RANGE) in ``key_schema``, typed as defined."""
    types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}
    for entry in key_schema:
        if entry["KeyType"] == kind:
            name = entry["AttributeName"]
            return dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[types[name]])
    return None


def secure_bucket(
    scope: Construct,
    id: str,
    settings: StackSettings,
    *,
    access_logs: s3.IBucket,
    logs_prefix: str,
    bucket_name: str | None = None,
    lifecycle_rules: list[s3.LifecycleRule] | None = None,
) -> s3.Bucket:
    """A private, TLS-only, SSE-S3 bucket that logs its accesses to ``access_logs``."""
    return s3.Bucket(
        scope,
        id,
        bucket_name=bucket_name,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=logs_prefix,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="abort-incomplete-uploads",
                abort_incomplete_multipart_upload_after=Duration.days(1),
            ),
            *(lifecycle_rules or []),
        ],
        removal_policy=removal_policy(settings),
    )


class Storage(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: StackSettings) -> None:
        super().__init__(scope, id)
        definition = schema.table_definition("unused")
        gsi = definition["GlobalSecondaryIndexes"][0]
        partition_key = _key(definition, definition["KeySchema"], "HASH")
        assert partition_key is not None
        self.table = dynamodb.Table(
            self,
            c.TABLE_ID,
            partition_key=partition_key,
            sort_key=_key(definition, definition["KeySchema"], "RANGE"),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=schema.TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=settings.removal_policy == "retain",
            removal_policy=removal_policy(settings),
        )
        gsi_pk = _key(definition, gsi["KeySchema"], "HASH")
        assert gsi_pk is not None
        self.table.add_global_secondary_index(
            index_name=gsi["IndexName"],
            partition_key=gsi_pk,
            sort_key=_key(definition, gsi["KeySchema"], "RANGE"),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(gsi["Projection"]["NonKeyAttributes"]),
        )

        # Server access logs of every bucket in the stack. SSE-S3: log delivery cannot write
        # to a bucket encrypted with a KMS key.
        self.access_logs = s3.Bucket(
            self,
            c.LOG_BUCKET_ID,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(settings.access_log_retention_days),
                )
            ],
            removal_policy=removal_policy(settings),
        )

        self.bucket = secure_bucket(
            self,
            c.BUCKET_ID,
            settings,
            access_logs=self.access_logs,
            logs_prefix="overflow/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-blobs",
                    prefix=BLOB_PREFIX,
                    expiration=Duration.days(settings.blob_expiry_days),
                ),
                s3.LifecycleRule(
                    id="expire-exports",
                    prefix=EXPORT_PREFIX,
                    expiration=Duration.days(settings.export_retention_days),
                ),
            ],
        )

        rotation_reason = (
            "Rotated by the operator, not by a rotation Lambda: the Anthropic key is issued by "
            "Anthropic, and a new webhook signing secret must reach every receiver first "
            "(receivers accept several signatures during a rotation)."
        )
        if settings.anthropic_secret_arn:
            self.anthropic_secret: secretsmanager.ISecret = (
                secretsmanager.Secret.from_secret_complete_arn(
                    self, c.ANTHROPIC_SECRET_ID, settings.anthropic_secret_arn
                )
            )
        else:
            created = secretsmanager.Secret(
                self,
                c.ANTHROPIC_SECRET_ID,
                description=(
                    f"Switchyard {settings.stage}: Anthropic API key. Created with a random "
                    "placeholder; put the real key here (put-secret-value)."
                ),
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    exclude_punctuation=True, password_length=32
                ),
                removal_policy=removal_policy(settings),
            )
            acknowledge(created, "SMG4", rotation_reason)
            self.anthropic_secret = created
        if settings.webhook_secret_arn:
            self.webhook_secret: secretsmanager.ISecret = (
                secretsmanager.Secret.from_secret_complete_arn(
                    self, c.WEBHOOK_SECRET_ID, settings.webhook_secret_arn
                )
            )
        else:
            created = secretsmanager.Secret(
                self,
                c.WEBHOOK_SECRET_ID,
                description=f"Switchyard {settings.stage}: completion webhook signing secret",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    exclude_punctuation=True, password_length=48
                ),
                removal_policy=removal_policy(settings),
            )
            acknowledge(created, "SMG4", rotation_reason)
            self.webhook_secret = created

    @property
    def blob_objects_arn(self) -> str:
        """The ARN pattern of the overflow blobs: the only objects the processes touch."""
        return self.bucket.arn_for_objects(f"{BLOB_PREFIX}*")

    @property
    def index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{schema.BY_TENANT}"


__all__ = ["BLOB_PREFIX", "EXPORT_PREFIX", "Storage", "secure_bucket"]
