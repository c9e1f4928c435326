"""Typed tools: a Python function whose first parameter is a pydantic model.

The model's JSON schema is what the Messages API sees; the model's input is validated
against it before the function runs. Secrets reach a tool only through ``ToolContext`` at
call time, never through the prompt, the journal, events or logs.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints, overload

from pydantic import BaseModel, ValidationError

from shared.errors import AgentError, ToolInputError
from shared.models.messages import ToolSpec


class SecretNotFoundError(AgentError):
    code = "secret_not_found"


@dataclass(frozen=True)
class ToolContext:
    """What a tool gets besides its input: who is calling, and a stable key for effects.

    ``idempotency_key`` is ``{run_id}:{step}:{tool_use_id}``: the same on every retry of the
    same tool call, so a side-effecting tool can deduplicate its effect.
    """

    run_id: str
    tenant: str
    step: int
    tool_use_id: str
    idempotency_key: str
    _secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    def secret(self, name: str) -> str:
        try:
            return self._secrets[name]
        except KeyError:
            raise SecretNotFoundError(f"secret {name!r} is not configured") from None


ToolFn = Callable[..., Any]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_model: type[BaseModel]
    fn: ToolFn
    side_effect: bool = False
    requires_approval: bool = False
    takes_context: bool = False

    def spec(self) -> ToolSpec:
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(name=self.name, description=self.description, input_schema=schema)

    def parse_input(self, raw: Mapping[str, Any]) -> BaseModel:
        try:
            return self.input_model.model_validate(dict(raw))
        except ValidationError as exc:
            raise ToolInputError(
                f"invalid input for tool {self.name!r}: {exc.error_count()} error(s)",
                details=exc.errors(include_url=False, include_context=False),
            ) from exc

    async def invoke(self, raw_input: Mapping[str, Any], ctx: ToolContext) -> str:
        args = self.parse_input(raw_input)
        call_args: tuple[Any, ...] = (args, ctx) if self.takes_context else (args,)
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn(*call_args)
        else:
            result = await asyncio.to_thread(self.fn, *call_args)
        if isinstance(result, Awaitable):
            result = await result
        return render_result(result)


def render_result(result: Any) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    return json.dumps(result, default=str, separators=(",", ":"))


@overload
def tool(fn: ToolFn, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    side_effect: bool = False,
    requires_approval: bool = False,
) -> Callable[[ToolFn], Tool]: ...


def tool(
    fn: ToolFn | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    side_effect: bool = False,
    requires_approval: bool = False,
) -> Tool | Callable[[ToolFn], Tool]:
    """Turn a function ``f(args: SomeModel[, ctx: ToolContext]) -> str | JSON`` into a Tool.

    Usable bare (``@tool``) or with flags (``@tool(side_effect=True)``).
    """

    def wrap(f: ToolFn) -> Tool:
        params = list(inspect.signature(f).parameters.values())
        try:
            hints = get_type_hints(f)
        except NameError as exc:
            raise AgentError(
                f"tool {f.__name__!r}: cannot resolve its annotations ({exc}); "
                "define the input model at module level"
            ) from exc
        if not params:
            raise AgentError(f"tool {f.__name__!r} needs a pydantic input parameter")
        input_model = hints.get(params[0].name)
        if not (inspect.isclass(input_model) and issubclass(input_model, BaseModel)):
            raise AgentError(
                f"tool {f.__name__!r}: first parameter must be annotated with a pydantic model"
            )
        doc = inspect.getdoc(f) or ""
        return Tool(
            name=name or f.__name__,
            description=description or doc or f.__name__,
            input_model=input_model,
            fn=f,
            side_effect=side_effect,
            requires_approval=requires_approval,
            takes_context=len(params) >= 2,
        )

    return wrap(fn) if fn is not None else wrap
