"""The list prices ``benchmarks/cost_per_run.py`` applies: AWS us-east-1 (N. Virginia),
on-demand, first pricing tier, free tiers ignored (a platform's marginal cost).

Sources: the AWS pricing pages named beside each price. DynamoDB's request prices are those
after the 50 % on-demand throughput cut of 1 November 2024 (were $1.25 / $0.25 per million).
Checked in November 2026 (``PRICES_AS_OF``) against copies of those pages and of published
price summaries: DynamoDB on-demand, Step Functions Standard, Lambda Arm and Fargate
Linux/ARM; the others are the long-standing list prices of their pages. When a page
changes, update the number here and ``PRICES_AS_OF``.

Units: storage is priced per GB-month with GB = 2**30 bytes, a month = 30 days; DynamoDB
request units from item sizes (``shared.dal.metering.write_units``/``read_units``).
"""

from __future__ import annotations

from typing import Final

PRICES_AS_OF: Final = "2026-11"
REGION: Final = "us-east-1"
GB: Final = 2**30
MONTH_DAYS: Final = 30

# Amazon DynamoDB, on-demand, Standard table class (aws.amazon.com/dynamodb/pricing/on-demand/)
DYNAMODB_WRITE_UNIT: Final = 0.625 / 1_000_000  # per write request unit (1 KB, 2 in a transaction)
DYNAMODB_READ_UNIT: Final = 0.125 / 1_000_000  # per read request unit (4 KB strongly consistent)
DYNAMODB_STORAGE_GB_MONTH: Final = 0.25  # items + 100 B each, index entries likewise

# Amazon S3 Standard (aws.amazon.com/s3/pricing/)
S3_TIER1_REQUEST: Final = 0.005 / 1_000  # PUT, COPY, POST, LIST
S3_TIER2_REQUEST: Final = 0.0004 / 1_000  # GET, SELECT, HEAD and every other request
S3_STORAGE_GB_MONTH: Final = 0.023  # first 50 TB
S3_FREE_OPERATIONS: Final = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload"})
S3_TIER1_OPERATIONS: Final = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "UploadPart",
        "CreateMultipartUpload",
        "CompleteMultipartUpload",
        "ListObjects",
        "ListObjectsV2",
        "ListBuckets",
        "ListParts",
        "PutObjectTagging",
    }
)

# Amazon SQS, standard queues (aws.amazon.com/sqs/pricing/): per request, each 64 KB chunk of
# a request's payload billed as one request.
SQS_REQUEST: Final = 0.40 / 1_000_000

# AWS Step Functions, Standard workflows (aws.amazon.com/step-functions/pricing/): per state
# transition, retries included; the API calls (StartExecution, SendTask*) are not billed.
STEP_FUNCTIONS_TRANSITION: Final = 0.025 / 1_000

# AWS Lambda, Arm (the stack's functions are arm64) (aws.amazon.com/lambda/pricing/)
LAMBDA_REQUEST: Final = 0.20 / 1_000_000
LAMBDA_GB_SECOND: Final = 0.0000133334

# Amazon API Gateway, HTTP APIs (aws.amazon.com/api-gateway/pricing/): first 300 million a
# month, per request (each 512 KB of a request counts as one).
API_GATEWAY_HTTP_REQUEST: Final = 1.00 / 1_000_000

# AWS Fargate, Linux/ARM (the worker service is arm64) (aws.amazon.com/fargate/pricing/)
FARGATE_VCPU_HOUR: Final = 0.03238
FARGATE_GB_HOUR: Final = 0.00356

# Amazon CloudWatch Logs, Standard class (aws.amazon.com/cloudwatch/pricing/)
LOGS_INGESTED_GB: Final = 0.50
LOGS_STORED_GB_MONTH: Final = 0.03

# AWS Secrets Manager (aws.amazon.com/secrets-manager/pricing/): per 10,000 API calls.
SECRETS_MANAGER_REQUEST: Final = 0.05 / 10_000


def s3_request_price(operation: str) -> float:
    if operation in S3_FREE_OPERATIONS:
        return 0.0
    if operation in S3_TIER1_OPERATIONS or operation.startswith(("PutBucket", "CreateBucket")):
        return S3_TIER1_REQUEST
    return S3_TIER2_REQUEST


def storage_price(byte_count: float, gb_month: float, retention_days: float) -> float:
    """``byte_count`` kept for ``retention_days`` at ``gb_month`` dollars per GB-month."""
    return byte_count / GB * gb_month * retention_days / MONTH_DAYS


def table() -> dict[str, float | str]:
    """The table as JSON (what the benchmark prints beside its figures)."""
    return {
        "as_of": PRICES_AS_OF,
        "region": REGION,
        "dynamodb_write_unit_per_million": DYNAMODB_WRITE_UNIT * 1e6,
        "dynamodb_read_unit_per_million": DYNAMODB_READ_UNIT * 1e6,
        "dynamodb_storage_gb_month": DYNAMODB_STORAGE_GB_MONTH,
        "s3_put_copy_post_list_per_1000": S3_TIER1_REQUEST * 1e3,
        "s3_get_and_other_per_1000": S3_TIER2_REQUEST * 1e3,
        "s3_storage_gb_month": S3_STORAGE_GB_MONTH,
        "sqs_request_per_million": SQS_REQUEST * 1e6,
        "step_functions_transition_per_1000": STEP_FUNCTIONS_TRANSITION * 1e3,
        "lambda_request_per_million": LAMBDA_REQUEST * 1e6,
        "lambda_gb_second_arm": LAMBDA_GB_SECOND,
        "api_gateway_http_request_per_million": API_GATEWAY_HTTP_REQUEST * 1e6,
        "fargate_vcpu_hour_arm": FARGATE_VCPU_HOUR,
        "fargate_gb_hour_arm": FARGATE_GB_HOUR,
        "logs_ingested_gb": LOGS_INGESTED_GB,
        "logs_stored_gb_month": LOGS_STORED_GB_MONTH,
        "secrets_manager_per_10000": SECRETS_MANAGER_REQUEST * 1e4,
    }
