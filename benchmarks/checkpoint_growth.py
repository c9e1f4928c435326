"""Journal growth: bytes and DynamoDB writes for a long run, counted from the boto3 calls.

A run of ``--steps`` tool steps (each tool returns ``--payload`` bytes) executes through the
runtime on the DynamoDB+S3 journal (moto, in-process). Every request the boto3 clients send
is counted by ``shared.dal.metering.RequestMeter``: requests, the bytes stored (DynamoDB item
sizes by DynamoDB's own sizing rules, binary at its raw length; S3 object bytes), and the
request bytes on the wire (where DynamoDB's JSON protocol base64-encodes binary, +33 %).
Reported:

- bytes_written / final_conversation_bytes = amplification (target <= 1.2), where the final
  conversation is the Messages API message list the run ends with, as compact JSON;
- dynamodb_writes_per_step (target <= 1.2), a step being one model call with its tools;
- for comparison, in the same run, what a full-snapshot checkpointer (one that rewrites the
  whole message list after every step, as LangGraph's default does) would write.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from shared.agents import AgentRegistry
from shared.dal.dynamodb import RunTable
from shared.dal.local import deploy_template
from shared.dal.metering import RequestMeter
from shared.dal.s3 import BlobStore
from shared.journal.dynamodb import DynamoJournal
from shared.logic.runs import SubmitRun, submit_run
from shared.models.run import RunStatus
from shared.runtime import AgentRuntime
from shared.runtime.state import replay
from tests.support.loop_agent import LoopProvider, conversation_bytes, loop_agent

TARGET_AMPLIFICATION = 1.2
TARGET_WRITES_PER_STEP = 1.2


async def measure(steps: int, payload: int, *, incompressible: bool = False) -> dict[str, Any]:
    from moto import mock_aws

    with mock_aws():
        # The stack's table and overflow bucket, deployed from the synthesized template.
        settings = deploy_template().settings()
        meter = RequestMeter()
        table = RunTable(settings.table_name, region=settings.region)
        blobs = BlobStore(settings.bucket_name, region=settings.region)
        meter.attach(table.client)
        meter.attach(blobs.client)
        journal = DynamoJournal(table, blobs)
        agent = loop_agent(steps)
        registry = AgentRegistry([agent])
        provider = LoopProvider(steps, payload=payload, incompressible=incompressible)
        runtime = AgentRuntime(journal, provider, registry)
        run = await submit_run(journal, registry, SubmitRun(agent=agent.name, input="go"))
        done = await runtime.execute(run.run_id)
        assert done.status is RunStatus.SUCCEEDED, done.error
        counts = meter.snapshot()
        writes = meter.writes()
        written = meter.stored_bytes()
        wire = sum(
            v["bytes"]
            for op, v in counts.items()
            if op.split(".")[1] in {"PutItem", "UpdateItem", "TransactWriteItems", "PutObject"}
        )
        state = replay(await journal.records(run.run_id))
        messages = state.messages(done.input)

    final_bytes = conversation_bytes(messages)
    # What a checkpointer that snapshots the whole conversation after every step would write.
    snapshot_bytes = sum(
        conversation_bytes(messages[: 1 + 2 * k]) for k in range(1, done.steps + 1)
    )
    model_steps = done.steps
    amplification = written / final_bytes
    writes_per_step = writes / model_steps
    return {
        "benchmark": "checkpoint_growth",
        "steps": model_steps,
        "tool_payload_bytes": payload,
        "payload_kind": "random base64" if incompressible else "hex text (~2:1 compressible)",
        "bytes_written": written,
        "final_conversation_bytes": final_bytes,
        "amplification": round(amplification, 3),
        "wire_bytes": wire,
        "wire_amplification": round(wire / final_bytes, 3),
        "dynamodb_writes": writes,
        "dynamodb_writes_per_step": round(writes_per_step, 3),
        "requests": counts,
        "full_snapshot_bytes_same_run": snapshot_bytes,
        "full_snapshot_amplification": round(snapshot_bytes / final_bytes, 1),
        "targets": {
            "amplification": TARGET_AMPLIFICATION,
            "dynamodb_writes_per_step": TARGET_WRITES_PER_STEP,
        },
        "meets_target": amplification <= TARGET_AMPLIFICATION
        and writes_per_step <= TARGET_WRITES_PER_STEP,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--payload", type=int, default=2000)
    parser.add_argument(
        "--incompressible", action="store_true", help="random payloads: compression gains ~0"
    )
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.steps, args.payload, incompressible=args.incompressible))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
