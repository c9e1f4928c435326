"""The provider-neutral request and response of one model call (Messages API shapes).

Content blocks and messages stay plain JSON dicts in the Messages API format: they are what
the journal stores and what the SDK sends, so no translation layer can drift.
"""

from __future__ import annotations

from datetime import datetime
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


class RateLimitWindow(BaseModel):
    """One of the provider's limits as its response headers state it (None: not sent)."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None


class RateLimitInfo(BaseModel):
    """The provider's rate-limit headers on a response (``anthropic-ratelimit-*``)."""

    requests: RateLimitWindow = Field(default_factory=RateLimitWindow)
    input_tokens: RateLimitWindow = Field(default_factory=RateLimitWindow)
    output_tokens: RateLimitWindow = Field(default_factory=RateLimitWindow)


class ModelResponse(BaseModel):
    id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage
    # What the provider said of its limits with this response; None if it said nothing.
    rate_limits: RateLimitInfo | None = None

    def tool_uses(self) -> list[dict[str, Any]]:
        return [block for block in self.content if block.get("type") == "tool_use"]

    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")
