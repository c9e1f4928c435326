"""The Anthropic provider: one Messages API call through the official SDK (``AsyncAnthropic``).

This is the only module that imports ``anthropic`` (about 0.9 s), so code paths that never call
a model do not pay for it. Behind the gateway (``shared.providers.factory``) the SDK's own
retries are off (``max_retries=0``): the gateway retries, waits out 429s for every process
and fails over. A failure is wrapped into a ``ProviderError`` whose ``retryable`` flag says
whether trying again can help; a ``ProviderOverloadedError`` makes the gateway fall back along
the agent's model chain. (Built directly, the provider keeps the SDK's default retries.)

A response's ``anthropic-ratelimit-*`` headers become ``ModelResponse.rate_limits``, and an
error's ``retry-after-ms`` / ``retry-after`` become ``ProviderError.retry_after_s``, so the
provider gateway can pace later calls by what the API said.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast

import anthropic
from anthropic import AsyncAnthropic
from anthropic.types import Message, MessageParam, TextBlockParam, ToolUnionParam

from shared.errors import ProviderError, ProviderOverloadedError, ProviderRateLimitedError
from shared.models.messages import ModelRequest, ModelResponse, RateLimitInfo, RateLimitWindow
from shared.models.run import Usage

_EPHEMERAL: dict[str, str] = {"type": "ephemeral"}
_REDACTED = "[redacted]"
# Keys whose value is the model's own JSON (a tool's input): kept verbatim, nulls included,
# because a null there is an argument the model chose, not an absent optional field.
_VERBATIM_KEYS = frozenset({"input"})
_RATE_LIMIT_PREFIX = "anthropic-ratelimit-"
# RateLimitInfo's fields and the header names the API uses for them.
_RATE_LIMIT_WINDOWS = {
    "requests": "requests",
    "input_tokens": "input-tokens",
    "output_tokens": "output-tokens",
}


class AnthropicProvider:
    """``Provider`` on the Anthropic Messages API.

    Without ``client`` it builds ``AsyncAnthropic`` from the SDK's own environment
    (``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``), so the same code reaches the real API or
    a local fake server. ``stream=True`` reads the reply as server-sent events, which keeps
    long generations clear of idle-connection timeouts; the result is the same message.
    """

    def __init__(
        self,
        client: AsyncAnthropic | None = None,
        *,
        stream: bool = False,
        max_retries: int = 2,
        timeout_s: float = 120.0,
    ) -> None:
        self._owns_client = client is None
        if client is None:
            client = AsyncAnthropic(max_retries=max_retries, timeout=timeout_s)
        self.client = client
        self.stream = stream

    async def aclose(self) -> None:
        """Close the HTTP connections of a client this provider built (an injected one stays)."""
        if self._owns_client:
            await self.client.close()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        system, tools = _prompt(request)
        messages = cast(list[MessageParam], request.messages)
        try:
            if self.stream:
                async with self.client.messages.stream(
                    model=request.model,
                    max_tokens=request.max_tokens,
                    system=system,
                    messages=messages,
                    tools=tools,
                ) as events:
                    message: Message = await events.get_final_message()
                    headers: Mapping[str, str] = events.response.headers
            else:
                raw = await self.client.messages.with_raw_response.create(
                    model=request.model,
                    max_tokens=request.max_tokens,
                    system=system,
                    messages=messages,
                    tools=tools,
                )
                message = await raw.parse()
                headers = raw.headers
        except anthropic.AnthropicError as exc:
            raise _wrap(exc, request.model, self._secrets()) from exc
        return _to_response(message, rate_limits(headers))

    @property
    def key_id(self) -> str:
        """Names this provider's key in the gateway's buckets: a fingerprint, never the key
        (limits are per key, so two keys never share a bucket and one key always does)."""
        secret = self.client.api_key or self.client.auth_token or ""
        digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16] if secret else "nokey"
        return f"anthropic:{digest}"

    def _secrets(self) -> list[str]:
        values = (self.client.api_key, self.client.auth_token)
        return [v for v in values if v]


def _prompt(
    request: ModelRequest,
) -> tuple[str | list[TextBlockParam] | anthropic.Omit, list[ToolUnionParam] | anthropic.Omit]:
    """System prompt and tools, with cache breakpoints when the request asks for caching.

    The API renders tools, then the system prompt, then messages. The breakpoint on the
    system block caches that whole static prefix for every later step; the one on the last
    tool keeps the tools cached when only the system prompt changes.
    """
    tools: list[dict[str, Any]] = [spec.model_dump() for spec in request.tools]
    system: str | list[TextBlockParam] | anthropic.Omit
    if not request.system:
        # The API rejects an empty text block, so an agent without a prompt sends none.
        system = anthropic.omit
    elif request.cache_prompt:
        system = [{"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}]
    else:
        system = request.system
    if request.cache_prompt and tools:
        tools[-1]["cache_control"] = dict(_EPHEMERAL)
    return system, cast(list[ToolUnionParam], tools) if tools else anthropic.omit


def _to_response(message: Message, limits: RateLimitInfo | None) -> ModelResponse:
    usage = message.usage
    return ModelResponse(
        id=message.id,
        model=message.model,
        content=[_block(block.to_dict(mode="json")) for block in message.content],
        stop_reason=message.stop_reason,
        usage=Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        ),
        rate_limits=limits,
    )


def rate_limits(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """The ``anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}``
    headers; None if there is none of them. A malformed value reads as not sent."""
    lowered = {name.lower(): value for name, value in headers.items()}
    windows: dict[str, RateLimitWindow] = {}
    for field, name in _RATE_LIMIT_WINDOWS.items():
        prefix = f"{_RATE_LIMIT_PREFIX}{name}"
        windows[field] = RateLimitWindow(
            limit=_count(lowered.get(f"{prefix}-limit")),
            remaining=_count(lowered.get(f"{prefix}-remaining")),
            reset_at=_instant(lowered.get(f"{prefix}-reset")),
        )
    info = RateLimitInfo(**windows)
    # None of them, or only malformed ones: the response said nothing usable.
    return None if info == RateLimitInfo() else info


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait as the response says: ``retry-after-ms``, else ``retry-after`` in
    seconds or as an HTTP date (``now``: the wall clock, ``time.time()`` by default)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    millis = _seconds(lowered.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = lowered.get("retry-after")
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, origin unknown
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _instant(value: str | None) -> datetime | None:
    """An RFC 3339 time as an aware UTC datetime; None if malformed or without an offset."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo is not None else None


def _block(data: dict[str, object]) -> dict[str, Any]:
    """A response block as a dict the API accepts back: response-only nulls dropped.

    The SDK reports absent optional fields (``citations``, ``caller``...) as ``None``; sent
    back in the next turn's assistant message they are at best noise, at worst rejected.
    """
    return {
        key: value if key in _VERBATIM_KEYS else _without_nulls(value)
        for key, value in data.items()
        if value is not None
    }


def _without_nulls(value: object) -> Any:
    if isinstance(value, dict):
        return {str(k): _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _wrap(exc: anthropic.AnthropicError, model: str, secrets: list[str]) -> ProviderError:
    """Translate an SDK failure that survived the SDK's retries."""
    if isinstance(exc, anthropic.APIStatusError):
        wait = retry_after_s(exc.response.headers)
        limits = rate_limits(exc.response.headers)
        kind = exc.type or _error_type(exc.body) or "error"
        detail = exc.api_message or _error_message(exc.body) or kind
        where = f"request {exc.request_id}" if exc.request_id else "no request id"
        # A stream can fail after its 200 header with an SSE ``error`` event; then there is
        # no error status, and only the error type in the event says what happened.
        status: int | None = exc.status_code if exc.status_code >= 400 else None
        failed = f"HTTP {status}" if status is not None else "stream failed:"
        message = _scrub(f"{model}: Anthropic API {failed} {kind} ({where}): {detail}", secrets)
        if status == 429 or kind == "rate_limit_error":
            return ProviderRateLimitedError(
                message, status=status, retryable=True, retry_after_s=wait, rate_limits=limits
            )
        if status == 529 or kind == "overloaded_error":
            return ProviderOverloadedError(
                message, status=status, retryable=True, retry_after_s=wait
            )
        # 408 and 409 (lock timeout) are transient: retrying can help (the SDK agrees).
        retryable = (status or 0) >= 500 or status in (408, 409) or kind == "api_error"
        return ProviderError(message, status=status, retryable=retryable, retry_after_s=wait)
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError(f"{model}: Anthropic API request timed out", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError):
        message = _scrub(f"{model}: cannot reach the Anthropic API: {exc.message}", secrets)
        return ProviderError(message, retryable=True)
    # Invalid response bodies, missing credentials: a redelivery would fail the same way.
    message = _scrub(f"{model}: Anthropic SDK error {type(exc).__name__}: {exc}", secrets)
    return ProviderError(message, retryable=False)


def _error_type(body: object) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


def _error_message(body: object) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    return text if isinstance(text, str) else None


def _scrub(text: str, secrets: list[str]) -> str:
    """Remove credentials: a proxy or a server may echo request headers into an error body."""
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


__all__ = ["AnthropicProvider", "rate_limits", "retry_after_s"]
