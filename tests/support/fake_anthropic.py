"""A fake Anthropic Messages API server that the real SDK talks to over HTTP (stdlib only).

Tests script its replies in order (text and tool_use replies, 429 with ``retry-after``, 529
overloaded, 5xx, slow replies, a stream that breaks after its first event); when the script
is empty a responder answers. Two responders ship with it: ``OfflineResponder`` plays the
offline model so every example agent runs against the server, and ``StepLoopResponder`` asks
for one tool call per step for a fixed number of steps.

It checks what the real API checks that matters here (credentials, ``anthropic-version``,
tool_use / tool_result pairing, non-empty text blocks, at most 4 cache breakpoints) and
reports usage like the API: prompt-cache writes on the first request with a given cached
prefix, reads after that. It keeps no minimum cacheable length, so small test prompts cache.

With ``limits`` it also enforces rate limits as the API documents them: token buckets per
credential and model, for requests, input tokens and output tokens, answered with ``429
rate_limit_error`` and ``retry-after``, and ``anthropic-ratelimit-*`` headers on every reply.

Run it by hand with ``python -m tests.support.fake_anthropic --port 8089`` (add ``--rpm 50
--itpm 30000 --otpm 8000`` for limits), then point the SDK at it with
``ANTHROPIC_BASE_URL=http://127.0.0.1:8089 ANTHROPIC_API_KEY=anything``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from shared.models.messages import ModelRequest, ToolSpec
from shared.providers.offline import OfflineProvider

MESSAGES_PATH = "/v1/messages"
MAX_CACHE_BREAKPOINTS = 4
# Streamed text and tool input arrive in pieces this long, so clients must reassemble them.
STREAM_CHUNK_CHARS = 8


# ---- what the server answers -------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A successful message.

    ``usage`` overrides the server's own token estimate per field; ``None`` leaves the field
    out, as API versions before prompt caching did. ``headers`` are added to the response
    (over the limiter's, if any). With ``hold`` the reply goes out only once the test sets
    that event (after ``delay_s``; a scripted reply leaves the queue when it is admitted, so
    ``pending`` tells when the request is in).
    """

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    usage: Mapping[str, int | None] = field(default_factory=dict)
    model: str | None = None
    delay_s: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: threading.Event | None = field(default=None, compare=False)

    @classmethod
    def text(cls, text: str, **kwargs: Any) -> Reply:
        return cls(content=[{"type": "text", "text": text}], **kwargs)

    @classmethod
    def tool_use(
        cls,
        name: str,
        tool_input: dict[str, Any],
        *,
        tool_use_id: str | None = None,
        text: str | None = None,
        **kwargs: Any,
    ) -> Reply:
        """One tool call, optionally after some text. Without an id one is derived from the step."""
        use: dict[str, Any] = {"type": "tool_use", "name": name, "input": tool_input}
        if tool_use_id is not None:
            use["id"] = tool_use_id
        blocks = ([{"type": "text", "text": text}] if text else []) + [use]
        return cls(content=blocks, stop_reason="tool_use", **kwargs)


@dataclass(frozen=True)
class Fault:
    """An error reply in the API's error shape.

    With ``mid_stream`` a streaming request gets ``200`` and a ``message_start`` first, then an
    SSE ``error`` event, as the API does when it fails after the stream began.
    """

    status: int
    error_type: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    mid_stream: bool = False

    @classmethod
    def rate_limited(
        cls, *, retry_after_s: float | None = None, retry_after_ms: int | None = None
    ) -> Fault:
        headers: dict[str, str] = {}
        if retry_after_s is not None:
            headers["retry-after"] = f"{retry_after_s:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return cls(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your rate limit.",
            headers,
        )

    @classmethod
    def overloaded(cls, *, retry_after_ms: int | None = None, mid_stream: bool = False) -> Fault:
        headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
        return cls(529, "overloaded_error", "Overloaded", headers, mid_stream=mid_stream)

    @classmethod
    def server_error(cls, status: int = 500, *, retry_after_ms: int | None = None) -> Fault:
        headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
        return cls(status, "api_error", "Internal server error", headers)

    @classmethod
    def bad_request(cls, message: str) -> Fault:
        return cls(400, "invalid_request_error", message)


ScriptItem = Reply | Fault
Responder = Callable[[dict[str, Any]], ScriptItem]


@dataclass
class RecordedRequest:
    """One HTTP request as the server saw it.

    ``received_at`` is ``time.monotonic()`` when its headers were read (same clock as the
    test's), ``status`` the one answered (None while pending, or if the server stopped first).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float
    status: int | None = None

    @property
    def streamed(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


# ---- responders --------------------------------------------------------------------------------


def assistant_turns(body: Mapping[str, Any]) -> int:
    return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")


def system_text(body: Mapping[str, Any]) -> str:
    system = body.get("system", "")
    if isinstance(system, str):
        return system
    return "".join(b.get("text", "") for b in system if isinstance(b, dict))


def model_request(body: Mapping[str, Any]) -> ModelRequest:
    """The provider-neutral request a Messages API body describes (cache markers dropped)."""
    tools = [
        ToolSpec(
            name=t["name"], description=t.get("description", ""), input_schema=t["input_schema"]
        )
        for t in body.get("tools", [])
    ]
    return ModelRequest(
        model=body["model"],
        system=system_text(body),
        messages=body["messages"],
        tools=tools,
        max_tokens=body["max_tokens"],
    )


class OfflineResponder:
    """Answers as the offline model would, so any example agent runs against the server."""

    def __call__(self, body: dict[str, Any]) -> ScriptItem:
        # Each handler thread has no event loop of its own; the offline model never waits.
        response = asyncio.run(OfflineProvider().complete(model_request(body)))
        return Reply(content=response.content, stop_reason=response.stop_reason or "end_turn")


class StepLoopResponder:
    """A model that calls ``tool_name`` once per step for ``steps`` steps, then ends its turn.

    Deterministic from the conversation alone (step = assistant turns + 1), so a replayed or
    retried request gets the same tool_use id, ``toolu_{step:04d}``.
    """

    def __init__(
        self,
        steps: int,
        *,
        tool_name: str = "step",
        make_input: Callable[[int], dict[str, Any]] | None = None,
        final_text: str | None = None,
    ) -> None:
        self.steps = steps
        self.tool_name = tool_name
        self.make_input = make_input or (lambda step: {"step": step})
        self.final_text = final_text or f"Done after {steps} steps."

    def __call__(self, body: dict[str, Any]) -> ScriptItem:
        step = assistant_turns(body) + 1
        if step > self.steps:
            return Reply.text(self.final_text)
        return Reply.tool_use(
            self.tool_name, self.make_input(step), tool_use_id=f"toolu_{step:04d}"
        )


def _no_responder(body: dict[str, Any]) -> ScriptItem:
    return Fault(500, "api_error", "fake server: script is empty and no responder is set")


# ---- rate limits -------------------------------------------------------------------------------

RATE_LIMIT_HEADER_PREFIX = "anthropic-ratelimit-"
# Header names of the three limits, in ServerLimits' field order.
_LIMIT_NAMES = ("requests", "input-tokens", "output-tokens")


@dataclass(frozen=True)
class ServerLimits:
    """Rate limits per credential and model: so many requests, input and output tokens per
    ``period_s`` (the API's RPM, ITPM and OTPM with the default minute).

    Each is a token bucket as the API documents it: it holds at most the limit, and refills
    continuously at ``limit / period_s`` a second, so a full bucket allows a burst of the
    whole limit and an empty one a request every ``period_s / limit`` seconds.
    """

    requests: int
    input_tokens: int
    output_tokens: int
    period_s: float = 60.0

    def __post_init__(self) -> None:
        if min(self.requests, self.input_tokens, self.output_tokens) < 1:
            raise ValueError("rate limits must be positive")
        if not self.period_s > 0:
            raise ValueError("period_s must be positive")


class _Bucket:
    """One token bucket. Exact arithmetic, so a test that waits exactly as long as
    ``retry-after`` says is admitted, not refused by a rounding error."""

    def __init__(self, limit: int, period_s: float, now: Fraction) -> None:
        self.limit = limit
        self.capacity = Fraction(limit)
        self.rate = self.capacity / Fraction(period_s)
        self.level = self.capacity
        self.updated = now

    def refill(self, now: Fraction) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def need(self, amount: int) -> Fraction:
        """What a request asking ``amount`` takes: more than the capacity would never fit."""
        return min(Fraction(amount), self.capacity)

    def wait_s(self, need: Fraction) -> Fraction:
        return max(Fraction(0), (need - self.level) / self.rate)

    def full_in_s(self) -> Fraction:
        return max(Fraction(0), (self.capacity - self.level) / self.rate)

    def remaining(self) -> int:
        return max(0, math.floor(self.level))


@dataclass(frozen=True)
class _Grant:
    """An admitted request's output-token reservation, settled when its reply is sent."""

    key: tuple[str, str]
    output_reserved: Fraction


class _Limiter:
    """The buckets of every (credential, model). The server's lock is held around each call."""

    def __init__(self, limits: ServerLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[_Bucket, _Bucket, _Bucket]] = {}

    def _get(self, key: tuple[str, str]) -> tuple[_Bucket, _Bucket, _Bucket]:
        now = Fraction(self._clock())
        buckets = self._buckets.get(key)
        if buckets is None:
            period = self.limits.period_s
            buckets = (
                _Bucket(self.limits.requests, period, now),
                _Bucket(self.limits.input_tokens, period, now),
                _Bucket(self.limits.output_tokens, period, now),
            )
            self._buckets[key] = buckets
        for bucket in buckets:
            bucket.refill(now)
        return buckets

    def admit(
        self, key: tuple[str, str], input_tokens: int, max_tokens: int
    ) -> tuple[_Grant | None, Fault | None]:
        """Take 1 request, the input tokens and ``max_tokens`` output tokens, or nothing and
        the ``429`` to answer (``retry-after``: whole seconds until the request fits)."""
        buckets = self._get(key)
        needs = [b.need(n) for b, n in zip(buckets, (1, input_tokens, max_tokens), strict=True)]
        waits = [b.wait_s(n) for b, n in zip(buckets, needs, strict=True)]
        longest = max(waits)
        if longest > 0:
            which = waits.index(longest)
            return None, self._refusal(key[1], which, math.ceil(longest))
        for bucket, need in zip(buckets, needs, strict=True):
            bucket.level -= need
        return _Grant(key, needs[2]), None

    def settle(self, grant: _Grant, output_tokens: int) -> None:
        """Give back what the reply did not use of its ``max_tokens`` reservation (or take
        what it used beyond it)."""
        bucket = self._get(grant.key)[2]
        bucket.level = min(bucket.capacity, bucket.level + grant.output_reserved - output_tokens)

    def headers(self, key: tuple[str, str]) -> dict[str, str]:
        """``anthropic-ratelimit-*``: limit, what remains, and when the bucket is full again."""
        wall = time.time()
        headers: dict[str, str] = {}
        for name, bucket in zip(_LIMIT_NAMES, self._get(key), strict=True):
            prefix = f"{RATE_LIMIT_HEADER_PREFIX}{name}"
            headers[f"{prefix}-limit"] = str(bucket.limit)
            headers[f"{prefix}-remaining"] = str(bucket.remaining())
            headers[f"{prefix}-reset"] = _rfc3339(wall + float(bucket.full_in_s()))
        return headers

    def _refusal(self, model: str, which: int, retry_after_s: int) -> Fault:
        limit = (self.limits.requests, self.limits.input_tokens, self.limits.output_tokens)[which]
        unit = _LIMIT_NAMES[which].replace("-", " ")
        period = "minute" if self.limits.period_s == 60 else f"{self.limits.period_s:g} seconds"
        return Fault(
            429,
            "rate_limit_error",
            f"This request would exceed the rate limit for your organization of {limit} "
            f"{unit} per {period} for {model}. Please reduce the prompt length or the "
            f"maximum tokens requested, or try again later.",
            {"retry-after": str(retry_after_s)},
        )


def _rfc3339(timestamp: float) -> str:
    """UTC, whole seconds rounded up (the bucket is full by then)."""
    return datetime.fromtimestamp(math.ceil(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Answer:
    """What the server decided to answer a valid request with: a fault (scripted, or the
    limiter's ``429``), or a message and the limiter's grant; ``headers`` are the
    rate-limit headers (empty without limits)."""

    fault: Fault | None = None
    message: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    grant: _Grant | None = None
    delay_s: float = 0.0
    hold: threading.Event | None = None
    refused: bool = False


# ---- the server --------------------------------------------------------------------------------


class FakeAnthropicServer:
    """The fake Messages API on ``127.0.0.1`` (port 0 picks a free one), in a daemon thread.

    ``requests`` lists every request received, ``status_counts`` how often each status was
    answered, ``script()`` queues replies and ``responder`` answers once the queue is empty.

    With ``limits``, a message request is admitted only if its credential's buckets for its
    model hold 1 request, its input tokens (``input_tokens + cache_creation_input_tokens``
    as the reply will report them: cache reads are free) and ``max_tokens`` output tokens;
    the reply gives back the output tokens it did not use. Otherwise it gets ``429`` with
    ``retry-after`` and takes nothing (a scripted reply stays queued; the responder, asked
    first for the tokens, is ignored). Scripted and responder faults are answered as they
    are, taking nothing. Every answer that got that far carries ``anthropic-ratelimit-*``
    headers. ``clock`` (seconds, ``time.monotonic`` by default) drives the buckets.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.responder: Responder = responder or _no_responder
        self.limits = limits
        self._limiter = _Limiter(limits, clock) if limits is not None else None
        self._rate_limited = 0
        # The limiter's 429s by what ran out ("50 requests", "15000 input tokens", ...).
        self.refused_by: Counter[str] = Counter()
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._script: deque[ScriptItem] = deque()
        self._requests: list[RecordedRequest] = []
        self._cached_prefixes: set[str] = set()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.status_counts: Counter[int] = Counter()

    # -- lifecycle

    def start(self) -> FakeAnthropicServer:
        httpd = _HTTPServer((self._host, self._port), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- scripting and inspection

    def script(self, *items: ScriptItem) -> None:
        """Queue replies; each request takes the oldest one, the responder answers the rest."""
        with self._lock:
            self._script.extend(items)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def message_bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path == MESSAGES_PATH]

    @property
    def rate_limited(self) -> int:
        """How many ``429`` the limiter answered (scripted ones not included)."""
        with self._lock:
            return self._rate_limited

    # -- used by the handler

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _sent(self, request: RecordedRequest, status: int) -> None:
        # Counted before the first byte goes out: a client holding the reply must find it
        # counted, whichever thread runs first.
        with self._lock:
            request.status = status
            self.status_counts[status] += 1

    def _answer(self, body: dict[str, Any], credential: str) -> _Answer:
        """The next scripted item, or the responder's, as admitted by the limiter (if any)."""
        with self._lock:
            if self._script:
                answer = self._decide(body, credential, self._script[0])
                # A refused request leaves the scripted reply for the next one.
                if not answer.refused:
                    self._script.popleft()
                return answer
        try:
            item = self.responder(body)
        except Exception as exc:
            # A broken responder is a test bug: say so in the reply instead of hanging up.
            item = Fault(500, "api_error", f"fake server responder failed: {exc!r}")
        with self._lock:
            return self._decide(body, credential, item)

    def _decide(self, body: dict[str, Any], credential: str, item: ScriptItem) -> _Answer:
        """Answer ``item`` unless the limiter refuses it; the lock is held."""
        key = (credential, body["model"])
        limiter = self._limiter
        if isinstance(item, Fault):
            headers = limiter.headers(key) if limiter is not None else {}
            return _Answer(fault=item, headers=headers, delay_s=item.delay_s)
        content = _content(body, item)
        prefix = _cached_prefix(body)
        cached = prefix[1] in self._cached_prefixes
        usage = _usage(body, item, content, prefix, cached=cached)
        grant: _Grant | None = None
        headers = {}
        if limiter is not None:
            input_tokens = usage.get("input_tokens", 0) + usage.get(
                "cache_creation_input_tokens", 0
            )
            grant, refusal = limiter.admit(key, input_tokens, body["max_tokens"])
            headers = limiter.headers(key)
            if refusal is not None:
                self._rate_limited += 1
                self.refused_by[refusal.message.split(" per ")[0].split(" of ")[-1]] += 1
                return _Answer(fault=refusal, headers=headers, refused=True)
        if prefix[1] is not None:
            self._cached_prefixes.add(prefix[1])
        message = self._envelope(body, item, content, usage)
        headers.update(item.headers)
        return _Answer(
            message=message, headers=headers, grant=grant, delay_s=item.delay_s, hold=item.hold
        )

    def _delivering(self, answer: _Answer) -> None:
        """Settle the output reservation, before the first byte goes out (as ``_sent``)."""
        if answer.grant is None or self._limiter is None or answer.message is None:
            return
        used = answer.message["usage"].get("output_tokens")
        if used is None:  # a reply without output usage keeps its whole reservation
            return
        with self._lock:
            self._limiter.settle(answer.grant, used)

    def _wait(self, seconds: float, hold: threading.Event | None = None) -> bool:
        """Sleep, then wait for ``hold``, unless the server stops meanwhile; False means stop."""
        if seconds > 0 and self._stopping.wait(seconds):
            return False
        while hold is not None and not hold.wait(0.05):
            if self._stopping.is_set():
                return False
        return True

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake_{next(self._ids):06d}"

    def _message(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """The message answering ``body`` (its cached prefix now written), limits aside."""
        content = _content(body, reply)
        prefix = _cached_prefix(body)
        with self._lock:
            usage = _usage(body, reply, content, prefix, cached=prefix[1] in self._cached_prefixes)
            if prefix[1] is not None:
                self._cached_prefixes.add(prefix[1])
        return self._envelope(body, reply, content, usage)

    def _envelope(
        self,
        body: dict[str, Any],
        reply: Reply,
        content: list[dict[str, Any]],
        usage: dict[str, int],
    ) -> dict[str, Any]:
        return {
            "id": self._new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": reply.model or body["model"],
            "content": content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections when a test fires a few dozen
    # requests at once (the client sees a reset, not a reply).
    request_queue_size = 128
    fake: FakeAnthropicServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, closed pools) are routine here, not worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeAnthropicServer:
        return self.server.fake

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        received_at = time.monotonic()
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = RecordedRequest(self.command, self.path, headers, body, received_at)
        self.fake._record(record)
        try:
            self._respond(record)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired); nothing was delivered.
            self.close_connection = True

    def _respond(self, record: RecordedRequest) -> None:
        path = record.path.split("?", 1)[0]
        if path != MESSAGES_PATH:
            return self._error(record, Fault(404, "not_found_error", f"Not found: {path}"))
        if record.method != "POST":
            return self._error(record, Fault(405, "invalid_request_error", "Use POST"))
        credential = _credential(record.headers)
        if not credential:
            return self._error(
                record,
                Fault(401, "authentication_error", "x-api-key or Authorization header is required"),
            )
        if not record.headers.get("anthropic-version"):
            return self._error(
                record,
                Fault(400, "invalid_request_error", "anthropic-version: header is required"),
            )
        body = record.body
        problem = _validate(body)
        if problem is not None:
            return self._error(record, Fault.bad_request(problem))
        answer = self.fake._answer(body, credential)
        if not self.fake._wait(answer.delay_s, answer.hold):
            self.close_connection = True
            return None
        if answer.fault is not None:
            fault = answer.fault
            if fault.mid_stream and record.streamed:
                return self._stream_fault(record, body, fault, answer.headers)
            return self._error(record, fault, answer.headers)
        assert answer.message is not None
        self.fake._delivering(answer)
        if record.streamed:
            return self._stream(record, answer.message, answer.headers)
        return self._json(record, 200, answer.message, answer.headers)

    # -- writing

    def _json(
        self,
        record: RecordedRequest,
        status: int,
        payload: dict[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        self.fake._sent(record, status)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", self.fake._new_id("req"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _error(
        self, record: RecordedRequest, fault: Fault, headers: Mapping[str, str] | None = None
    ) -> None:
        # A scripted fault's own headers win over the limiter's.
        self._json(record, fault.status, _error_body(fault), {**(headers or {}), **fault.headers})

    def _start_stream(self, record: RecordedRequest, headers: Mapping[str, str]) -> None:
        self.fake._sent(record, 200)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", self.fake._new_id("req"))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _stream(
        self, record: RecordedRequest, message: dict[str, Any], headers: Mapping[str, str]
    ) -> None:
        self._start_stream(record, headers)
        for name, data in sse_events(message):
            self._event(name, data)
        self._end_stream()

    def _stream_fault(
        self,
        record: RecordedRequest,
        body: dict[str, Any],
        fault: Fault,
        headers: Mapping[str, str],
    ) -> None:
        self._start_stream(record, headers)
        empty = self.fake._message(body, Reply(content=[]))
        self._event("message_start", next(iter(sse_events(empty)))[1])
        self._event("error", _error_body(fault))
        self._end_stream()


# ---- Messages API shapes -----------------------------------------------------------------------


def _content(body: Mapping[str, Any], reply: Reply) -> list[dict[str, Any]]:
    """The reply's content blocks as the API sends them."""
    step = assistant_turns(body) + 1
    content: list[dict[str, Any]] = []
    for index, block in enumerate(reply.content):
        block = dict(block)
        if block.get("type") == "tool_use":
            block.setdefault("id", f"toolu_fake_s{step:03d}_{index}")
        if block.get("type") == "text":
            # The SDK models citations as optional; an explicit null checks that clients
            # drop response-only nulls before sending the block back.
            block.setdefault("citations", None)
        content.append(block)
    return content


def _usage(
    body: Mapping[str, Any],
    reply: Reply,
    content: list[dict[str, Any]],
    prefix: tuple[int, str | None],
    *,
    cached: bool,
) -> dict[str, int]:
    """The usage the API reports: ``prefix`` (from ``_cached_prefix``) is written to the
    cache, or read from it if ``cached``. No side effects: the caller marks it written."""
    cached_chars, prefix_key = prefix
    total_prompt = (
        _tokens(_strip_cache_control(body.get("tools", [])))
        + _tokens(system_text(body))
        + _tokens(body.get("messages", []))
    )
    creation = read = 0
    if prefix_key is not None:
        prefix_tokens = max(1, cached_chars // 4)
        creation, read = (0, prefix_tokens) if cached else (prefix_tokens, 0)
        total_prompt = max(1, total_prompt - prefix_tokens)
    usage: dict[str, int | None] = {
        "input_tokens": max(1, total_prompt),
        "output_tokens": max(1, _tokens(content)),
        "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
    }
    usage.update(reply.usage)
    return {k: v for k, v in usage.items() if v is not None}


def sse_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The event stream that delivers ``message``, text and tool input split into pieces."""
    usage = dict(message["usage"])
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        kind = block.get("type")
        if kind == "text":
            yield _block_start(index, {**block, "text": ""})
            for piece in _pieces(block["text"]):
                yield _delta(index, {"type": "text_delta", "text": piece})
        elif kind == "tool_use":
            yield _block_start(index, {**block, "input": {}})
            for piece in _pieces(json.dumps(block.get("input", {}))):
                yield _delta(index, {"type": "input_json_delta", "partial_json": piece})
        else:
            yield _block_start(index, block)
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage.get("output_tokens", 1)},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def _delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def _pieces(text: str) -> Iterable[str]:
    return (text[i : i + STREAM_CHUNK_CHARS] for i in range(0, len(text), STREAM_CHUNK_CHARS))


def _error_body(fault: Fault) -> dict[str, Any]:
    return {"type": "error", "error": {"type": fault.error_type, "message": fault.message}}


def _credential(headers: Mapping[str, str]) -> str | None:
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer ") and bearer[7:].strip():
        return bearer[7:].strip()
    return headers.get("x-api-key") or None


def _tokens(value: Any) -> int:
    """About four characters a token, as a rough stand-in for the real tokenizer."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return len(text) // 4


def _strip_cache_control(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_cache_control(v) for v in value]
    return value


def _cached_prefix(body: Mapping[str, Any]) -> tuple[int, str | None]:
    """Length and cache key of the prompt up to its last breakpoint in tools or system.

    The API renders tools, then system, then messages; a breakpoint caches everything before
    it, per model. Breakpoints inside messages are not modelled.
    """
    tools: list[dict[str, Any]] = body.get("tools", [])
    system = body.get("system", "")
    system_marked = isinstance(system, list) and any(
        isinstance(b, dict) and "cache_control" in b for b in system
    )
    marked_tools = [i for i, t in enumerate(tools) if "cache_control" in t]
    if system_marked:
        prefix: Any = [_strip_cache_control(tools), system_text(body)]
    elif marked_tools:
        prefix = [_strip_cache_control(tools[: marked_tools[-1] + 1])]
    else:
        return 0, None
    text = json.dumps(prefix, sort_keys=True)
    return len(text), f"{body['model']}\n{text}"


def _count_breakpoints(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if "cache_control" in value else 0
        return own + sum(_count_breakpoints(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_breakpoints(v) for v in value)
    return 0


def _validate(body: Any) -> str | None:
    """The API's own request checks that a client bug here would trip; None if valid."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    system = body.get("system", "")
    if not isinstance(system, str | list):
        return "system: must be a string or a list of text blocks"
    for tool in body.get("tools", []):
        if not isinstance(tool, dict) or "name" not in tool or "input_schema" not in tool:
            return "tools: each tool needs name and input_schema"
    if _count_breakpoints(body) > MAX_CACHE_BREAKPOINTS:
        return f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided."
    return _validate_messages(messages)


def _validate_messages(messages: list[Any]) -> str | None:
    open_uses: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}: role must be 'user' or 'assistant'"
        content = message.get("content")
        blocks: Any = [] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            return f"messages.{i}.content: must be a string or a list of blocks"
        answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if open_uses - answered:
            return (
                f"messages.{i}: tool_use ids were found without tool_result blocks immediately "
                f"after: {sorted(open_uses - answered)}"
            )
        if answered - open_uses:
            unexpected = sorted(answered - open_uses)
            return f"messages.{i}: unexpected tool_use_id in tool_result: {unexpected}"
        open_uses = set()
        for j, block in enumerate(blocks):
            if block.get("type") == "text" and not block.get("text"):
                return f"messages.{i}.content.{j}: text content blocks must be non-empty"
            if block.get("type") == "tool_use":
                if message["role"] != "assistant" or not isinstance(block.get("input"), dict):
                    return f"messages.{i}.content.{j}: invalid tool_use block"
                open_uses.add(str(block.get("id")))
    return None


# ---- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Anthropic Messages API for local runs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--responder", choices=("offline", "loop"), default="offline")
    parser.add_argument("--steps", type=int, default=3, help="tool calls per run (loop)")
    parser.add_argument("--tool-name", default="step", help="tool the loop responder calls")
    limits = parser.add_argument_group(
        "rate limits", "per API key and model; give all three or none (no limits)"
    )
    limits.add_argument("--rpm", type=int, help="requests per period")
    limits.add_argument("--itpm", type=int, help="input tokens per period")
    limits.add_argument("--otpm", type=int, help="output tokens per period")
    limits.add_argument("--period-s", type=float, default=60.0, help="limit period in seconds")
    args = parser.parse_args(argv)
    given = [args.rpm, args.itpm, args.otpm]
    server_limits: ServerLimits | None = None
    if any(v is not None for v in given):
        if any(v is None for v in given):
            parser.error("--rpm, --itpm and --otpm go together")
        try:
            server_limits = ServerLimits(args.rpm, args.itpm, args.otpm, args.period_s)
        except ValueError as exc:
            parser.error(str(exc))
    responder: Responder = (
        OfflineResponder()
        if args.responder == "offline"
        else StepLoopResponder(args.steps, tool_name=args.tool_name)
    )
    with FakeAnthropicServer(
        responder, host=args.host, port=args.port, limits=server_limits
    ) as server:
        print(f"Fake Anthropic API listening on {server.base_url}", flush=True)
        if server_limits is not None:
            print(
                f"  limits per key and model: {server_limits.requests} requests, "
                f"{server_limits.input_tokens} input and {server_limits.output_tokens} output "
                f"tokens per {server_limits.period_s:g} s",
                flush=True,
            )
        print(
            f"  export ANTHROPIC_BASE_URL={server.base_url} ANTHROPIC_API_KEY=sk-ant-fake",
            flush=True,
        )
        stop = threading.Event()
        # SIGTERM too: a process manager (or a shell's background job, where SIGINT is
        # ignored) stops the server that way.
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print("stopping", flush=True)


if __name__ == "__main__":
    main()
