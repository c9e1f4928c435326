"""The synthesized stack deployed into moto's CloudFormation, then used.

``deployed_stack`` (tests/conftest.py) synthesizes ``infra/app.py`` once per session and
deploys it into a fresh moto server the way ``cdk deploy`` does (shared/dal/local.py).
The run below goes through the resources CloudFormation created, configured the way the stack
configures its worker: the worker task definition's environment, read back from moto's ECS,
is what ``Settings.from_env`` gets. So a wrong output, a wrong environment variable name or a
table that does not match ``shared/dal/schema.py`` fails here, not after a real deploy.

Moto's CloudFormation skips API Gateway v2, alarms, scaling policies and queue/bucket
policies (the template checks in tests/infra cover those); ECS records the service and runs
nothing, so the worker runs in this process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import zlib
from typing import Any

import pytest

from infra import constants as c
from shared.config import Settings
from shared.dal import aws_client
from shared.dal.local import DeployedStack, container_environment, function_environments
from shared.dal.schema import BY_TENANT, RUN_SK, TTL_ATTRIBUTE, run_pk, table_definition
from shared.logic.service import create_run
from shared.models.api import RunCreate
from shared.models.run import RunStatus, Shape
from shared.wiring import build_services
from workers.consumer import Consumer

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 60.0
# A user's agent module, as SWITCHYARD_AGENT_MODULES lists them (limits fit a big input).
AGENT_MODULE = "tests.support.agent_modules.bulk"
AGENT = "bulk-digest"
# Incompressible (random bytes, base64): zlib cannot bring it under the overflow threshold.
BIG_INPUT_BYTES = 450_000


def client(stack: DeployedStack, service: str) -> Any:
    return aws_client(service, region=stack.region, endpoint_url=stack.endpoint_url)


def worker_settings(stack: DeployedStack, **overrides: str) -> Settings:
    """Settings as the deployed worker task reads them: its task definition's environment
    (secrets aside: ECS injects those), pointed at moto."""
    env = container_environment(stack, c.WORKER_CONTAINER)
    return Settings.from_env({**env, "AWS_REGION": stack.region, **overrides})


def test_the_stack_is_created_with_every_output(deployed_stack: DeployedStack) -> None:
    stack = deployed_stack
    assert set(c.OUTPUTS) <= set(stack.outputs), set(c.OUTPUTS) - set(stack.outputs)
    assert stack.assets  # the Lambda package was published to the bootstrap bucket
    cfn = client(stack, "cloudformation")
    assert cfn.describe_stacks(StackName=stack.name)["Stacks"][0]["StackStatus"] == (
        "CREATE_COMPLETE"
    )


def test_the_deployed_table_is_the_schema_the_code_uses(deployed_stack: DeployedStack) -> None:
    stack = deployed_stack
    ddb = client(stack, "dynamodb")
    table = ddb.describe_table(TableName=stack.outputs[c.OUTPUT_TABLE])["Table"]
    expected = table_definition(table["TableName"])
    assert table["KeySchema"] == expected["KeySchema"]
    assert {tuple(a.items()) for a in table["AttributeDefinitions"]} == {
        tuple(a.items()) for a in expected["AttributeDefinitions"]
    }
    (index,) = table["GlobalSecondaryIndexes"]
    (want,) = expected["GlobalSecondaryIndexes"]
    assert index["IndexName"] == BY_TENANT
    assert index["KeySchema"] == want["KeySchema"]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert set(index["Projection"]["NonKeyAttributes"]) == set(
        want["Projection"]["NonKeyAttributes"]
    )
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
    assert ttl["AttributeName"] == TTL_ATTRIBUTE


def test_the_processes_are_configured_with_the_deployed_names(
    deployed_stack: DeployedStack,
) -> None:
    stack = deployed_stack
    out = stack.outputs
    worker = worker_settings(stack)
    assert worker.table_name == out[c.OUTPUT_TABLE]
    assert worker.bucket_name == out[c.OUTPUT_BUCKET]
    assert worker.queue_url == out[c.OUTPUT_RUNS_QUEUE_URL]
    assert worker.lease_ttl_s > 0

    # The runs queue hides a message for the lease period and redrives to the transit queue.
    sqs = client(stack, "sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=worker.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    assert int(attrs["VisibilityTimeout"]) == int(worker.lease_ttl_s)
    assert out[c.OUTPUT_FAILED_QUEUE_URL].rsplit("/", 1)[1] in attrs["RedrivePolicy"]

    # Every function that touches runs is given the same table; the API also the queue.
    envs = function_environments(stack)
    assert envs
    tables = {env.get(c.ENV_TABLE) for env in envs.values()}
    assert tables == {out[c.OUTPUT_TABLE]}
    queues = {env[c.ENV_QUEUE_URL] for env in envs.values() if c.ENV_QUEUE_URL in env}
    assert queues == {out[c.OUTPUT_RUNS_QUEUE_URL]}


async def test_an_async_run_goes_through_the_deployed_queue_table_and_bucket(
    deployed_stack: DeployedStack,
) -> None:
    stack = deployed_stack
    assert os.environ["AWS_ENDPOINT_URL"] == stack.endpoint_url
    settings = worker_settings(
        stack,
        SWITCHYARD_PROVIDER="offline",  # the deployed default is the real API
        SWITCHYARD_AGENT_MODULES=AGENT_MODULE,
        SWITCHYARD_WORKER_RECEIVE_WAIT_S="1",
    )
    big = base64.b64encode(os.urandom(BIG_INPUT_BYTES * 3 // 4)).decode()
    assert len(big) > 400_000

    # The API's side: submit, which journals the run and enqueues {run_id}.
    api = build_services(settings, backend="aws")
    submitted = await create_run(api, "acme", RunCreate(agent=AGENT, input=big, mode=Shape.ASYNC))
    run_id = submitted.run.run_id
    assert submitted.run.status is RunStatus.QUEUED

    # A worker consumes the deployed queue.
    worker = build_services(settings, backend="aws", owner="worker-under-test")
    consumer = Consumer(worker)
    consuming = asyncio.create_task(consumer.run())
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while True:
            run = await api.journal.get_run(run_id)
            if run.status.is_terminal:
                break
            assert time.monotonic() < deadline, f"run still {run.status} after {RUN_TIMEOUT_S}s"
            assert not consuming.done(), consuming
            await asyncio.sleep(0.1)
    finally:
        consumer.stop()
        await asyncio.wait_for(consuming, timeout=30)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.steps >= 1

    # Its journal is in the deployed table: the run item and the step records.
    ddb = client(stack, "dynamodb")
    items = ddb.query(
        TableName=stack.outputs[c.OUTPUT_TABLE],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": run_pk(run_id)}},
    )["Items"]
    sort_keys = sorted(item["sk"]["S"] for item in items)
    assert RUN_SK in sort_keys
    assert len([k for k in sort_keys if k.startswith("J#")]) >= 2
    run_item = next(item for item in items if item["sk"]["S"] == RUN_SK)

    # The input overflowed to the deployed bucket; the item holds the pointer.
    pointer = run_item["input"]["M"]
    blob_key = pointer["blob"]["S"]
    s3 = client(stack, "s3")
    blob = s3.get_object(Bucket=stack.outputs[c.OUTPUT_BUCKET], Key=blob_key)["Body"].read()
    assert blob_key.endswith(hashlib.sha256(blob).hexdigest())
    stored = zlib.decompress(blob) if pointer["enc"]["S"] == "zlib" else blob
    assert json.loads(stored) == big
    listed = s3.list_objects_v2(Bucket=stack.outputs[c.OUTPUT_BUCKET], Prefix="blobs/")
    assert blob_key in {o["Key"] for o in listed.get("Contents", [])}

    # The message was acknowledged: nothing waits or hides in the runs queue or the DLQ.
    sqs = client(stack, "sqs")
    for url in (settings.queue_url, stack.outputs[c.OUTPUT_DLQ_URL]):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0", url
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0", url
