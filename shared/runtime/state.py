"""Replay: rebuild a run's conversation and position from its journal, read once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.models.journal import JournalRecord, RecordKind, ToolResult
from shared.models.run import RunError, RunStatus, Usage


def render_input(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@dataclass
class RunState:
    """Where a run stands, derived from its records (never stored as a snapshot)."""

    next_seq: int = 1
    step: int = 0
    usage: Usage = field(default_factory=Usage)
    responses: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, ToolResult] = field(default_factory=dict)
    # Approval decisions by tool_use_id: {"decision": ..., "comment": ..., "edited_input": ...}
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    approval_requested: set[str] = field(default_factory=set)
    status: RunStatus | None = None
    output: Any = None
    error: RunError | None = None
    models: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status is not None and self.status.is_terminal

    @property
    def last_response(self) -> dict[str, Any] | None:
        return self.responses[-1] if self.responses else None

    def pending_tool_uses(self) -> list[dict[str, Any]]:
        """Tool calls of the latest response that have no journaled result yet."""
        last = self.last_response
        if last is None:
            return []
        return [
            b
            for b in last["content"]
            if b.get("type") == "tool_use" and b["id"] not in self.results
        ]

    def apply(self, record: JournalRecord) -> None:
        self.next_seq = record.next_seq
        for result in record.tool_results:
            self.results[result.tool_use_id] = result
        if record.kind is RecordKind.MODEL and record.response is not None:
            self.step = record.step
            self.responses.append(record.response)
            self.models.append(record.model or "")
            if record.usage is not None:
                self.usage = self.usage + record.usage
        if record.kind is RecordKind.APPROVAL:
            self.approval_requested.update(record.data.get("requested", []))
            self.decisions.update(record.data.get("decisions", {}))
        if record.status is not None and record.status.is_terminal:
            self.status = record.status
            self.output = record.output
            self.error = record.error

    def messages(self, user_input: Any) -> list[dict[str, Any]]:
        """The Messages API conversation: input, then each response and its tool results."""
        messages: list[dict[str, Any]] = [{"role": "user", "content": render_input(user_input)}]
        for response in self.responses:
            messages.append({"role": "assistant", "content": response["content"]})
            uses = [b for b in response["content"] if b.get("type") == "tool_use"]
            if uses and all(u["id"] in self.results for u in uses):
                messages.append(
                    {"role": "user", "content": [result_block(self.results[u["id"]]) for u in uses]}
                )
        return messages


def result_block(result: ToolResult) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": result.tool_use_id,
        "content": result.content,
    }
    if result.is_error:
        block["is_error"] = True
    return block


def replay(records: list[JournalRecord]) -> RunState:
    state = RunState()
    for record in records:
        state.apply(record)
    return state
