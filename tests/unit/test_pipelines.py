"""Pipeline definitions, data paths and the ASL compiler (pure: no AWS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agents.documents import document_review, split_sections
from shared.agents.registry import AgentRegistry
from shared.errors import PipelineError, UnknownPipelineError
from shared.pipelines import (
    RUN_FAILED,
    AgentStage,
    ApprovalStage,
    Catch,
    ChoiceStage,
    FunctionStage,
    MapStage,
    ParallelStage,
    Pipeline,
    PipelineRegistry,
    Retry,
)
from shared.pipelines.asl import (
    LAMBDA_WAIT,
    SQS_WAIT,
    Resources,
    compile_pipeline,
    dispatch_state,
    wait_state,
)
from shared.pipelines.paths import merge, select

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/runs"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:pipeline:live"
RES = Resources(runs_queue_url=QUEUE, stage_function_arn=FUNCTION, lease_ttl_s=30)


def noop(data: Any, ctx: Any) -> Any:
    return data


def states_of(node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, nested ones (map, parallel branches) included."""
    for name, state in node["States"].items():
        yield name, state
        if "ItemProcessor" in state:
            yield from states_of(state["ItemProcessor"])
        for branch in state.get("Branches", []):
            yield from states_of(branch)


# ---- definitions -----------------------------------------------------------------------------


def test_stage_names_are_unique_across_nesting() -> None:
    with pytest.raises(PipelineError, match="two stages named 'a'"):
        Pipeline(
            name="p",
            stages=(
                FunctionStage(name="a", fn=noop),
                MapStage(name="m", stages=(FunctionStage(name="a", fn=noop),)),
            ),
        )


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (FunctionStage(name="Bad Name", fn=noop), "stage names must match"),
        (FunctionStage(name="f", fn=noop, input_path="$..x"), "not a path"),
        (MapStage(name="m", stages=()), "a map needs stages"),
        (ParallelStage(name="p", branches={}), "non-empty branches"),
        (ChoiceStage(name="c", on="$.x", cases={}), "at least one case"),
        (
            ChoiceStage(name="c", on="$.x", cases={"a": ()}, retry=(Retry(),)),
            "nothing to retry",
        ),
        (AgentStage(name="a", agent="x", heartbeat_s=0), "heartbeat_s must be"),
    ],
)
def test_invalid_stages_say_what_is_wrong(stage: Any, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        Pipeline(name="p", stages=(stage,))


def test_registry_checks_agents_and_names() -> None:
    registry = PipelineRegistry.from_modules([])
    assert [p.name for p in registry] == ["document-review", "incident-response"]
    registry.check_agents(AgentRegistry.from_modules([]))
    with pytest.raises(UnknownPipelineError):
        registry.get("nope")
    orphan = Pipeline(name="orphan", stages=(AgentStage(name="a", agent="nobody"),))
    with pytest.raises(PipelineError, match="unknown agents \\['nobody'\\]"):
        PipelineRegistry([orphan]).check_agents(AgentRegistry.from_modules([]))


def test_describe_lists_stages_in_order() -> None:
    described = document_review.describe()
    assert [s["name"] for s in described["stages"]] == ["extract", "summarize", "review", "publish"]
    assert described["stages"][1]["stages"][0]["agent"] == "section-summarizer"


# ---- paths -----------------------------------------------------------------------------------


def test_select_and_merge_follow_asl_paths() -> None:
    data = {"a": {"b": 1}, "c": [1, 2]}
    assert select(data, "$") is data
    assert select(data, "$.a.b") == 1
    with pytest.raises(PipelineError, match=r"nothing at \$\.a\.x"):
        select(data, "$.a.x")
    assert merge(data, "$", "new") == "new"
    merged = merge(data, "$.a.d", 2)
    assert merged == {"a": {"b": 1, "d": 2}, "c": [1, 2]}
    assert data == {"a": {"b": 1}, "c": [1, 2]}  # the input is not changed
    assert merge(data, "$.x.y", 3)["x"] == {"y": 3}
    with pytest.raises(PipelineError, match="not an object"):
        merge([1], "$.x", 1)


# ---- the compiler ----------------------------------------------------------------------------


def test_every_task_state_has_an_explicit_timeout() -> None:
    asl = compile_pipeline(document_review, RES)
    tasks = [(n, s) for n, s in states_of(asl) if s["Type"] == "Task"]
    assert len(tasks) == 5  # extract, dispatch, wait, review, publish
    assert all("TimeoutSeconds" in s for _, s in tasks)


def test_execution_input_is_unwrapped_first() -> None:
    asl = compile_pipeline(document_review, RES)
    assert asl["StartAt"] == "start"
    assert asl["States"]["start"] == {"Type": "Pass", "InputPath": "$.input", "Next": "extract"}


def test_agent_stage_dispatches_to_the_runs_queue_with_a_heartbeat() -> None:
    asl = compile_pipeline(document_review, RES)
    summarize = asl["States"]["summarize"]
    assert summarize["Type"] == "Map"
    assert summarize["ItemsPath"] == "$.sections"
    assert summarize["ResultPath"] == "$.summaries"
    assert summarize["MaxConcurrency"] == 4
    agent = summarize["ItemProcessor"]["States"]["summarize-section"]
    assert agent["Type"] == "Parallel"
    assert agent["OutputPath"] == "$[0]"
    assert agent["Retry"][0]["ErrorEquals"] == [RUN_FAILED, "States.Timeout"]
    branch = agent["Branches"][0]["States"]
    dispatch = branch[dispatch_state("summarize-section")]
    assert dispatch["Resource"] == SQS_WAIT
    assert dispatch["HeartbeatSeconds"] == 120  # four 30 s leases
    body = dispatch["Parameters"]["MessageBody"]
    assert body["task_token.$"] == "$$.Task.Token"
    assert body["stage"]["job_id.$"] == "$$.Execution.Input.job_id"
    assert body["stage"]["data.$"] == "$"
    wait = branch[wait_state("summarize-section")]
    assert "HeartbeatSeconds" not in wait  # a paused run sends none
    assert wait["Parameters"]["MessageBody"]["resume"] is True
    assert wait["TimeoutSeconds"] >= 7 * 86400
    check = branch["summarize-section.check"]
    assert check["Choices"][0]["Next"] == wait_state("summarize-section")


def test_gate_and_function_stages_call_the_pipeline_function() -> None:
    asl = compile_pipeline(document_review, RES)
    extract = asl["States"]["extract"]
    assert extract["Resource"] == FUNCTION
    assert extract["Parameters"]["action"] == "function"
    review = asl["States"]["review"]
    assert review["Resource"] == LAMBDA_WAIT
    assert review["Parameters"]["FunctionName"] == FUNCTION
    assert review["Parameters"]["Payload"]["action"] == "gate"
    assert review["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert asl["States"]["publish"]["End"] is True


def test_parallel_choice_and_catch_compile_to_their_asl_states() -> None:
    pipeline = Pipeline(
        name="shapes",
        stages=(
            ParallelStage(
                name="both",
                branches={
                    "left": (FunctionStage(name="l", fn=noop),),
                    "right": (FunctionStage(name="r", fn=noop),),
                },
                result_path="$.both",
            ),
            ChoiceStage(
                name="route",
                on="$.kind",
                cases={"urgent": (ApprovalStage(name="ok", prompt="go?"),)},
                default=(FunctionStage(name="normal", fn=noop),),
            ),
            FunctionStage(
                name="risky",
                fn=noop,
                retry=(Retry(errors=("StageFailed",), max_attempts=3),),
                catch=Catch(then=(FunctionStage(name="recover", fn=noop),)),
            ),
        ),
    )
    states = compile_pipeline(pipeline, RES)["States"]
    both = states["both"]
    assert both["ResultSelector"] == {"left.$": "$[0]", "right.$": "$[1]"}
    assert both["ResultPath"] == "$.both"
    assert both["Next"] == "route"
    route = states["route"]
    assert route["Choices"] == [{"Variable": "$.kind", "StringEquals": "urgent", "Next": "ok"}]
    assert route["Default"] == "normal"
    assert states["ok"]["Next"] == "risky"
    assert states["normal"]["Next"] == "risky"
    risky = states["risky"]
    assert risky["Retry"][0] == {
        "ErrorEquals": ["StageFailed"],
        "MaxAttempts": 3,
        "IntervalSeconds": 2,
        "BackoffRate": 2.0,
    }
    assert risky["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "recover"}
    ]
    assert states["recover"]["End"] is True


def test_the_compiled_definition_is_accepted_by_the_interpreter() -> None:
    """moto's Step Functions (the interpreter the local stack runs) parses every shape."""
    import json

    import boto3
    from moto import mock_aws

    # With execution on, moto parses the definition at creation (a bad one is refused).
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        with pytest.raises(sfn.exceptions.ClientError, match="ASLParserException"):
            sfn.create_state_machine(
                name="bogus",
                definition='{"StartAt": "a", "States": {"a": {"Type": "Bogus"}}}',
                roleArn="arn:aws:iam::123456789012:role/sfn",
            )
        for pipeline in PipelineRegistry.from_modules([]):
            definition = json.dumps(compile_pipeline(pipeline, RES))
            sfn.create_state_machine(
                name=pipeline.name,
                definition=definition,
                roleArn="arn:aws:iam::123456789012:role/sfn",
            )


# ---- the example's own functions -------------------------------------------------------------


def test_sections_split_on_headings_or_paragraphs() -> None:
    assert split_sections("# T\nintro\n## A\nalpha\n## B\nbeta") == [
        {"heading": "T", "text": "intro"},
        {"heading": "A", "text": "alpha"},
        {"heading": "B", "text": "beta"},
    ]
    assert split_sections("one\nline\n\ntwo") == [
        {"heading": "", "text": "one\nline"},
        {"heading": "", "text": "two"},
    ]
    assert split_sections("  \n\n ") == []
