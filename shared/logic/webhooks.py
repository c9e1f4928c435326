"""Completion webhooks: a signed POST to a run's ``webhook_url`` once it has finished.

The body is JSON ``{run_id, status, agent, output, error, usage, finished_at}``. Every
attempt carries::

    Switchyard-Timestamp: <unix seconds>
    Switchyard-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>
    Switchyard-Delivery: <one id for every attempt of this delivery>

A receiver checks both with :func:`verify_signature` (or the same few lines in its own
language) and rejects anything older than five minutes, so a captured request cannot be
replayed later.

Delivery is retried with exponential backoff and jitter on connection errors, timeouts, 429
and 5xx (a ``Retry-After`` is honoured up to the delay cap); any other status is final.
Deliveries are best effort: a webhook that still fails after its attempts is logged and
counted, never raised, and the run itself is unaffected (its status is always readable from
the API). The secret only ever keys the HMAC: it is not logged, not put in any exception and
not shown by any ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import random
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared.config import Settings
from shared.models.run import Run
from shared.observability import count, get_logger, new_metrics, register_secret

TIMESTAMP_HEADER = "Switchyard-Timestamp"
SIGNATURE_HEADER = "Switchyard-Signature"
DELIVERY_HEADER = "Switchyard-Delivery"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
USER_AGENT = "Switchyard-Webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024  # read (and discard) at most this much of a receiver's reply

logger = get_logger("switchyard-webhooks")
metrics = new_metrics("switchyard-webhooks")

Sleep = Callable[[float], Awaitable[None]]


# ---- signatures ------------------------------------------------------------------------------


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str, timestamp: int | str, body: str | bytes) -> str:
    """The ``Switchyard-Signature`` value for ``body`` sent at ``timestamp``."""
    message = _as_bytes(str(timestamp)) + b"." + _as_bytes(body)
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_signature(
    secret: str,
    timestamp: str | int | None,
    body: str | bytes,
    header: str | None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """For receivers: True if ``header`` (``Switchyard-Signature``) signs ``body`` (the raw
    request body, exactly as received) at ``timestamp`` (``Switchyard-Timestamp``) with
    ``secret``, and the timestamp is within ``tolerance_s`` of now.

    The header may list several comma-separated ``v1=`` values (a sender rotating secrets);
    one match is enough. Comparison is constant-time.
    """
    if not secret or not header or timestamp is None:
        return False
    try:
        sent_at = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_s:
        return False
    expected = sign(secret, sent_at, body)
    candidates = [part.strip() for part in header.split(",")]
    return any(
        hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in candidates
    )


# ---- payload ---------------------------------------------------------------------------------


def payload(run: Run) -> dict[str, Any]:
    data = run.model_dump(mode="json", include={"run_id", "status", "agent", "output", "error"})
    data["usage"] = run.usage.model_dump(mode="json")
    data["finished_at"] = run.finished_at.isoformat() if run.finished_at else None
    return data


def encode(run: Run) -> bytes:
    return json.dumps(payload(run), separators=(",", ":"), ensure_ascii=False).encode()


# ---- transport -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookResponse:
    status: int
    retry_after_s: float | None = None


class WebhookTransportError(Exception):
    """The request did not get an HTTP response (connection refused, DNS, timeout...)."""


class WebhookTransport(Protocol):
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> WebhookResponse:
        """POST ``body``; the response status (any status, 4xx/5xx included), or
        ``WebhookTransportError`` when there is no response."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not an instruction: following it could lead anywhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when: datetime = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


class UrllibTransport:
    """The standard library's HTTP client, run in a thread (no extra dependency)."""

    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirects())

    def _post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> WebhookResponse:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310 (http(s) only, checked by the caller)
        try:
            with self._opener.open(request, timeout=timeout_s) as response:
                response.read(MAX_RESPONSE_BYTES)
                return WebhookResponse(status=response.status)
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(OSError):
                exc.read(MAX_RESPONSE_BYTES)
            status = exc.code
            retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            exc.close()
            return WebhookResponse(status=status, retry_after_s=retry_after)
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad URLs
            reason = getattr(exc, "reason", None) or exc
            raise WebhookTransportError(f"{type(exc).__name__}: {reason}") from None

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> WebhookResponse:
        return await asyncio.to_thread(self._post, url, body, headers, timeout_s)


# ---- address policy --------------------------------------------------------------------------


def _resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


async def check_destination(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` must not be called (``None`` if it may be). Outside development, a
    webhook never reaches loopback, private, link-local (the instance metadata service) or
    otherwise non-public addresses: the URL comes from an API client."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL"
    if allow_private:
        return None
    try:
        addresses = await asyncio.to_thread(_resolve, parts.hostname)
    except OSError:
        return None  # unresolvable: the delivery fails (and retries) as a connection error
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            return f"{parts.hostname} resolves to a non-public address"
    return None


# ---- delivery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): exponential with
        "equal jitter" (between half and all of ``base * 2**(attempt-1)``), so delays grow
        while concurrent senders spread out; a receiver's Retry-After is a floor."""
        ceiling: float = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        delay: float = ceiling / 2 + rng.uniform(0, ceiling / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_delay_s))
        return delay


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    delays: tuple[float, ...] = ()


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


@dataclass
class WebhookSender:
    """Delivers completion webhooks; usable directly as ``Services.on_complete``."""

    secret: str = field(repr=False)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 10.0
    allow_private: bool = False
    transport: WebhookTransport = field(default_factory=UrllibTransport)
    sleep: Sleep = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.time
    # Deliver from a background task (long-lived processes: the worker), so a slow receiver
    # never holds a run's slot; ``drain()`` at shutdown. Lambda delivers inline.
    background: bool = False
    _tasks: set[asyncio.Task[DeliveryResult]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.secret:
            register_secret(self.secret)  # belt and braces: masked should it ever be logged
        else:
            logger.warning(
                "SWITCHYARD_WEBHOOK_SECRET is not set: webhooks are sent unsigned "
                "and receivers cannot verify them"
            )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WebhookSender:
        options: dict[str, Any] = {
            "secret": settings.webhook_secret.get_secret_value(),
            "policy": RetryPolicy(
                attempts=settings.webhook_attempts,
                base_delay_s=settings.webhook_base_delay_s,
                max_delay_s=settings.webhook_max_delay_s,
            ),
            "timeout_s": settings.webhook_timeout_s,
            "allow_private": settings.webhook_allow_private,
        }
        options.update(overrides)
        return cls(**options)

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            DELIVERY_HEADER: delivery_id,
            TIMESTAMP_HEADER: str(timestamp),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        return headers

    async def deliver(self, run: Run) -> DeliveryResult:
        """Deliver ``run``'s completion to its ``webhook_url`` (retrying); never raises."""
        url = run.webhook_url
        if not url:
            return DeliveryResult(delivered=False, attempts=0, error="no webhook_url")
        fields = {"run_id": run.run_id, "tenant": run.tenant, "agent": run.agent}
        refused = await check_destination(url, allow_private=self.allow_private)
        if refused is not None:
            logger.warning("webhook not sent", extra={**fields, "reason": refused})
            count(metrics, "WebhooksRefused", agent=run.agent)
            return DeliveryResult(delivered=False, attempts=0, error=refused)
        body = encode(run)
        delivery_id = uuid.uuid4().hex
        delays: list[float] = []
        status: int | None = None
        error: str | None = None
        for attempt in range(1, self.policy.attempts + 1):
            retry_after: float | None = None
            try:
                response = await self.transport.post(
                    url, body, self.headers(body, delivery_id), self.timeout_s
                )
            except WebhookTransportError as exc:
                status, error, again = None, str(exc), True
            else:
                status, retry_after = response.status, response.retry_after_s
                if 200 <= status < 300:
                    logger.info(
                        "webhook delivered", extra={**fields, "status": status, "attempt": attempt}
                    )
                    count(metrics, "WebhooksDelivered", agent=run.agent)
                    return DeliveryResult(True, attempt, status=status, delays=tuple(delays))
                error, again = f"HTTP {status}", retryable(status)
            if not again or attempt == self.policy.attempts:
                break
            delay = self.policy.delay(attempt, self.rng, retry_after)
            logger.info(
                "webhook attempt failed, retrying",
                extra={**fields, "attempt": attempt, "error": error, "retry_in_s": round(delay, 3)},
            )
            delays.append(delay)
            await self.sleep(delay)
        logger.error(
            "webhook failed", extra={**fields, "attempts": len(delays) + 1, "error": error}
        )
        count(metrics, "WebhooksFailed", agent=run.agent)
        return DeliveryResult(
            False, len(delays) + 1, status=status, error=error, delays=tuple(delays)
        )

    async def __call__(self, run: Run) -> None:
        """The completion hook: deliver when the run has a ``webhook_url`` — awaited, or in
        the background when ``background`` is set. Never raises into the caller."""
        if not run.webhook_url:
            return
        if self.background:
            task = asyncio.get_running_loop().create_task(self._safe_deliver(run))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        await self._safe_deliver(run)

    async def _safe_deliver(self, run: Run) -> DeliveryResult:
        try:
            return await self.deliver(run)
        except Exception as exc:  # a transport bug must not fail the run's caller
            logger.error(
                "webhook delivery crashed",
                extra={"run_id": run.run_id, "error_type": type(exc).__name__},
            )
            count(metrics, "WebhooksFailed", agent=run.agent)
            return DeliveryResult(delivered=False, attempts=0, error=type(exc).__name__)

    async def drain(self, timeout_s: float | None = None) -> int:
        """Wait for background deliveries (up to ``timeout_s``); how many were still pending."""
        pending = set(self._tasks)
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=timeout_s)
        return len(still)


def completion_hook(settings: Settings, **overrides: Any) -> WebhookSender:
    """An ``on_complete`` hook for ``Services``: delivers the webhook of every finished run
    that has a ``webhook_url``. Inline (awaited) by default, which suits Lambda; with
    ``background=True`` it returns at once and ``drain()`` awaits what is still pending."""
    return WebhookSender.from_settings(settings, **overrides)


__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DeliveryResult",
    "RetryPolicy",
    "UrllibTransport",
    "WebhookResponse",
    "WebhookSender",
    "WebhookTransport",
    "WebhookTransportError",
    "completion_hook",
    "payload",
    "sign",
    "verify_signature",
]
