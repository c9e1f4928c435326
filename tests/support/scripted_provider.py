"""A deterministic, scriptable model provider for runtime tests.

Responses come from a queue (``ModelResponse`` objects or functions of the request) and,
once the queue is empty, from an optional responder function. Every call is recorded (a deep
copy of the request, so later mutation by the runtime cannot rewrite history) and counted per
step. A test can make call ``k`` raise, or hold call ``k`` on a :class:`Gate` so it decides
exactly when that model call finishes.

:func:`plan` builds a responder that answers step ``n`` from the ``n``-th turn of a script,
with tool_use ids that depend only on the step: re-asking the same step after a crash gets
the identical response, as a real resumed conversation would.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.models.messages import ModelRequest, ModelResponse
from shared.models.run import Usage

Responder = Callable[[ModelRequest], ModelResponse]
ToolCall = tuple[str, Mapping[str, Any]]
# A str is a final answer; a sequence of (tool name, input) pairs is one step's tool calls.
Turn = str | Sequence[ToolCall]

DEFAULT_USAGE = Usage(input_tokens=100, output_tokens=20)


@dataclass
class Gate:
    """Holds one call until the test sets ``release``; ``entered`` is set once it is held."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def hold(self) -> None:
        self.entered.set()
        await self.release.wait()


def step_of(request: ModelRequest) -> int:
    """The step a request asks for: one more than the assistant turns it already has."""
    return sum(1 for m in request.messages if m["role"] == "assistant") + 1


def text_response(
    text: str, *, usage: Usage = DEFAULT_USAGE, model: str = "test-model", id_: str = "msg_text"
) -> ModelResponse:
    return ModelResponse(
        id=id_,
        model=model,
        content=[{"type": "text", "text": text}],
        stop_reason="end_turn",
        usage=usage,
    )


def tool_response(
    *calls: ToolCall,
    step: int,
    usage: Usage = DEFAULT_USAGE,
    model: str = "test-model",
    text: str | None = None,
) -> ModelResponse:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [
        {"type": "tool_use", "id": f"toolu_{step:02d}_{i}", "name": name, "input": dict(args)}
        for i, (name, args) in enumerate(calls)
    ]
    return ModelResponse(
        id=f"msg_{step:02d}",
        model=model,
        content=content,
        stop_reason="tool_use",
        usage=usage,
    )


def plan(*turns: Turn, usage: Usage = DEFAULT_USAGE) -> Responder:
    """Answer step ``n`` with ``turns[n-1]``, using the requested model's name."""

    def respond(request: ModelRequest) -> ModelResponse:
        step = step_of(request)
        if step > len(turns):
            raise AssertionError(f"the plan has {len(turns)} turns; step {step} was asked for")
        turn = turns[step - 1]
        if isinstance(turn, str):
            return text_response(turn, usage=usage, model=request.model, id_=f"msg_{step:02d}")
        return tool_response(*turn, step=step, usage=usage, model=request.model)

    return respond


class ScriptedProvider:
    def __init__(
        self,
        responses: Iterable[ModelResponse | Responder] = (),
        *,
        responder: Responder | None = None,
    ) -> None:
        self._queue: deque[ModelResponse | Responder] = deque(responses)
        self._responder = responder
        self._failures: dict[int, BaseException] = {}
        self._gates: dict[int, Gate] = {}
        self.requests: list[ModelRequest] = []
        self.calls_per_step: Counter[int] = Counter()
        self.completed = 0

    @property
    def calls(self) -> int:
        return len(self.requests)

    def fail_at(self, call: int, exc: BaseException) -> None:
        """Make the ``call``-th call (1-based) raise ``exc`` instead of answering."""
        self._failures[call] = exc

    def block_at(self, call: int) -> Gate:
        """Hold the ``call``-th call (1-based) until the returned gate is released."""
        gate = Gate()
        self._gates[call] = gate
        return gate

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request.model_copy(deep=True))
        number = self.calls
        self.calls_per_step[step_of(request)] += 1
        gate = self._gates.get(number)
        if gate is not None:
            await gate.hold()
        failure = self._failures.get(number)
        if failure is not None:
            raise failure
        if self._queue:
            item = self._queue.popleft()
            response = item if isinstance(item, ModelResponse) else item(request)
        elif self._responder is not None:
            response = self._responder(request)
        else:
            raise AssertionError(f"script exhausted at call {number}")
        self.completed += 1
        return response
