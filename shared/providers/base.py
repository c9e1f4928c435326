"""The provider interface every model call goes through."""

from __future__ import annotations

from typing import Protocol

from shared.models.messages import ModelRequest, ModelResponse


class Provider(Protocol):
    """Makes one Messages API call. Raises ``ProviderError`` subclasses on failure."""

    async def complete(self, request: ModelRequest) -> ModelResponse: ...
