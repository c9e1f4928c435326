"""Threads: a conversation across runs, whose runs never execute concurrently."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.errors import RunNotFoundError
from shared.journal.base import Journal
from shared.models.run import Run
from shared.runtime.state import replay
from shared.tenancy.base import ControlStore


async def thread_turn(journal: Journal, control: ControlStore, run: Run) -> bool:
    """True when every earlier run of ``run``'s thread has finished.

    Heals a thread whose active run finished (or was never created) without advancing it,
    e.g. after a crash between the run's last write and the thread update.
    """
    assert run.thread_id is not None
    while True:
        thread = await control.get_thread(run.tenant, run.thread_id)
        if thread is None or thread.active is None or run.run_id not in thread.runs:
            return True  # not tracked as waiting: nothing to wait for
        if thread.active == run.run_id:
            return True
        try:
            active = await journal.get_run(thread.active)
            if not active.status.is_terminal:
                return False
        except RunNotFoundError:
            pass
        await control.finish_thread_run(run.tenant, run.thread_id, thread.active, datetime.now(UTC))


class ThreadHistory:
    """The conversation of a thread's earlier runs, prepended to a new run's input."""

    def __init__(self, journal: Journal, control: ControlStore) -> None:
        self.journal = journal
        self.control = control

    async def load(self, run: Run) -> list[dict[str, Any]]:
        if run.thread_id is None:
            return []
        thread = await self.control.get_thread(run.tenant, run.thread_id)
        if thread is None or run.run_id not in thread.runs:
            return []
        earlier = thread.runs[: thread.runs.index(run.run_id)]
        return await self._messages(earlier)

    async def conversation(self, tenant: str, thread_id: str) -> list[dict[str, Any]]:
        thread = await self.control.get_thread(tenant, thread_id)
        return await self._messages(thread.runs if thread else [])

    async def _messages(self, run_ids: list[str]) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for run_id in run_ids:
            try:
                earlier = await self.journal.get_run(run_id)
            except RunNotFoundError:
                continue
            state = replay(await self.journal.records(run_id))
            messages.extend(_complete_turns(state.messages(earlier.input)))
        return _merge_same_role(messages)


def _complete_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop a trailing assistant turn whose tool calls never got results (a failed or
    cancelled run): the Messages API rejects tool_use without a following tool_result."""
    while messages and messages[-1]["role"] == "assistant":
        content = messages[-1]["content"]
        if isinstance(content, list) and any(b.get("type") == "tool_use" for b in content):
            messages = messages[:-1]
        else:
            break
    return messages


def _merge_same_role(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join consecutive same-role turns (a run that ended before answering leaves its input
    followed by the next run's input)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1] = {
                "role": message["role"],
                "content": _blocks(merged[-1]["content"]) + _blocks(message["content"]),
            }
        else:
            merged.append(message)
    return merged


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)
