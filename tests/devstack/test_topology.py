"""What the local stack reads from its template (devstack.topology), on the template of
LOCAL_STACK_SETTINGS deployed whole into a moto server: the functions with their deployed
environments, the event-source mappings the pollers play, the schedules the scheduler fires."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devstack.stack_settings import LOCAL_STACK_SETTINGS
from devstack.topology import EventSource, Topology, TopologyError, read_topology
from shared.dal import aws_client
from shared.dal.local import DeployedStack, deploy_template, only_stack, synthesized_assembly
from tests.support.moto_server import fresh_moto_server

pytestmark = pytest.mark.slow  # one deploy of the whole stack (and a synth on a cold cache)

HANDLERS = {
    "functions.api.handler.handler",
    "functions.authorizer.handler.handler",
    "functions.triggers.s3.handler",
    "functions.triggers.schedule.handler",
    "functions.dlq.handler.handler",
    "functions.pipeline.handler.handler",
}


@dataclass(frozen=True)
class Local:
    topology: Topology
    deployed: DeployedStack


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    with pytest.MonkeyPatch.context() as patch:
        # Module-scoped: the autouse per-test environment is not in place yet.
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        template = only_stack(synthesized_assembly(LOCAL_STACK_SETTINGS)).template()
        with fresh_moto_server() as url:
            deployed = deploy_template(LOCAL_STACK_SETTINGS, endpoint_url=url, resource_types=None)
            yield Local(read_topology(template, deployed), deployed)


def source_for(topology: Topology, handler: str) -> EventSource:
    (source,) = [s for s in topology.event_sources if s.function.handler == handler]
    return source


def test_every_function_is_read_with_its_handler(local: Local) -> None:
    functions = local.topology.functions
    assert {fn.handler for fn in functions.values()} == HANDLERS
    for logical, fn in functions.items():
        assert fn.logical_id == logical
        assert local.deployed.resources[logical][0] == "AWS::Lambda::Function"
    for handler in HANDLERS:
        assert local.topology.function(handler).handler == handler
    with pytest.raises(TopologyError):
        local.topology.function("functions.nope.handler")


def test_each_function_has_its_deployed_environment(local: Local) -> None:
    table = local.deployed.outputs["TableName"]
    for fn in local.topology.functions.values():
        assert fn.environment["SWITCHYARD_TABLE"] == table, fn.logical_id
    # Each its own: only the trigger functions get the trigger rules.
    triggers = local.topology.function("functions.triggers.s3.handler").environment
    assert "SWITCHYARD_TRIGGERS" in triggers
    assert (
        "SWITCHYARD_TRIGGERS"
        not in local.topology.function("functions.api.handler.handler").environment
    )


def test_two_event_sources_trigger_queue_and_runs_failed_queue(local: Local) -> None:
    sources = local.topology.event_sources
    assert len(sources) == 2
    triggers = source_for(local.topology, "functions.triggers.s3.handler")
    failed = source_for(local.topology, "functions.dlq.handler.handler")
    assert triggers.queue_logical_id.startswith("TriggersTriggerQueue")
    assert failed.queue_logical_id.startswith("QueuesRunsFailed")
    sqs = aws_client("sqs", region=local.deployed.region, endpoint_url=local.deployed.endpoint_url)
    for source in (triggers, failed):
        assert source.report_failures is True
        assert source.batch_size == 10
        # The queue's URL as deployed: a queue that exists in moto.
        kind, physical = local.deployed.resources[source.queue_logical_id]
        assert kind == "AWS::SQS::Queue"
        assert source.queue_url == physical
        arn = sqs.get_queue_attributes(QueueUrl=source.queue_url, AttributeNames=["QueueArn"])
        assert arn["Attributes"]["QueueArn"].endswith(":" + physical.rsplit("/", 1)[1])
    # The runs queue itself is the workers', not a mapping's.
    assert local.deployed.outputs["RunsQueueUrl"] not in {s.queue_url for s in sources}


def test_the_schedules_of_the_local_settings(local: Local) -> None:
    configured = {s["name"]: s["expression"] for s in LOCAL_STACK_SETTINGS["triggers"]["schedules"]}
    schedules = {s.name: s for s in local.topology.schedules}
    assert {name: s.expression for name, s in schedules.items()} == configured
    for name, s in schedules.items():
        assert s.enabled
        assert s.function.handler == "functions.triggers.schedule.handler"
        payload = json.loads(s.payload)
        assert payload["rule"] == name
        assert payload["time"] == "<aws.scheduler.scheduled-time>"
