"""What the local stack reads from the synthesized template: the functions (handler and
environment), the event-source mappings the pollers play, and the schedules the scheduler
fires. Everything comes from the same template `cdk deploy` ships, so the local wiring
cannot drift from the deployed one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.dal.local import DeployedStack, function_environments, template_references

FUNCTION = "AWS::Lambda::Function"
ALIAS = "AWS::Lambda::Alias"
EVENT_SOURCE = "AWS::Lambda::EventSourceMapping"
SCHEDULE = "AWS::Scheduler::Schedule"


class TopologyError(RuntimeError):
    """The template names something the local stack cannot resolve."""


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    handler: str  # module.function inside the package
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.handler.rsplit(".", 1)[0].removeprefix("functions.").replace(".", "-")


@dataclass(frozen=True)
class EventSource:
    logical_id: str
    queue_logical_id: str
    queue_url: str
    function: LocalFunction
    batch_size: int
    report_failures: bool


@dataclass(frozen=True)
class Schedule:
    name: str
    expression: str
    payload: str  # the target's Input, with Scheduler's <aws.scheduler.scheduled-time>
    function: LocalFunction
    enabled: bool


@dataclass(frozen=True)
class Topology:
    functions: dict[str, LocalFunction]
    event_sources: list[EventSource]
    schedules: list[Schedule]

    def function(self, handler: str) -> LocalFunction:
        for fn in self.functions.values():
            if fn.handler == handler:
                return fn
        raise TopologyError(f"the template has no function with handler {handler}")


def _target_function(
    node: Any, resources: Mapping[str, Any], functions: Mapping[str, LocalFunction]
) -> LocalFunction:
    """The function a FunctionName / target Arn expression names (through its alias)."""
    for logical in template_references(node):
        kind = resources.get(logical, {}).get("Type")
        if kind == FUNCTION and logical in functions:
            return functions[logical]
        if kind == ALIAS:
            return _target_function(
                resources[logical]["Properties"]["FunctionName"], resources, functions
            )
    raise TopologyError(f"no function found in {json.dumps(node)[:200]}")


def read_topology(template: Mapping[str, Any], deployed: DeployedStack) -> Topology:
    resources: Mapping[str, Any] = template.get("Resources", {})
    environments = function_environments(deployed)
    functions = {
        logical: LocalFunction(
            logical_id=logical,
            handler=str(resource["Properties"]["Handler"]),
            environment=environments.get(logical, {}),
        )
        for logical, resource in resources.items()
        if resource.get("Type") == FUNCTION and "Handler" in resource.get("Properties", {})
    }
    sources = []
    for logical, resource in resources.items():
        if resource.get("Type") != EVENT_SOURCE:
            continue
        props = resource["Properties"]
        (queue_logical,) = template_references(props["EventSourceArn"])
        sources.append(
            EventSource(
                logical_id=logical,
                queue_logical_id=queue_logical,
                queue_url=deployed.resources[queue_logical][1],
                function=_target_function(props["FunctionName"], resources, functions),
                batch_size=int(props.get("BatchSize", 10)),
                report_failures="ReportBatchItemFailures"
                in (props.get("FunctionResponseTypes") or []),
            )
        )
    schedules = []
    for resource in resources.values():
        if resource.get("Type") != SCHEDULE:
            continue
        props = resource["Properties"]
        target = props["Target"]
        schedules.append(
            Schedule(
                name=str(props["Name"]),
                expression=str(props["ScheduleExpression"]),
                payload=str(target.get("Input", "{}")),
                function=_target_function(target["Arn"], resources, functions),
                enabled=props.get("State", "ENABLED") == "ENABLED",
            )
        )
    return Topology(functions=functions, event_sources=sources, schedules=schedules)
