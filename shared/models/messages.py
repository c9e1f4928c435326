"""The provider-neutral request and response of one model call (Messages API shapes).

Content blocks and messages stay plain JSON dicts in the Messages API format: they are what
the journal stores and what the SDK sends, so no translation layer can drift.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shared.models.run import Usage


class ToolSpec(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]


class ModelRequest(BaseModel):
    model: str
    system: str
    messages: list[dict[str, Any]]
    tools: list[ToolSpec] = Field(default_factory=list)
    max_tokens: int = 4096
    cache_prompt: bool = True


class ModelResponse(BaseModel):
    id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage

    def tool_uses(self) -> list[dict[str, Any]]:
        return [block for block in self.content if block.get("type") == "tool_use"]

    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")
