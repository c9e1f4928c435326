"""The fake Messages API server's rate limiter, driven by the real SDK and a fake clock.

The limiter copies what Anthropic documents: per credential and model, token buckets for
requests, input tokens and output tokens, each holding at most its limit and refilling at
limit / period a second; ``max_tokens`` is reserved up front and the unused part given back
with the reply; a refused request gets ``429`` with ``retry-after`` and takes nothing.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic

from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    Fault,
    Reply,
    ScriptItem,
    ServerLimits,
)

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-test-limits-0123456789"
OTHER_KEY = "sk-ant-test-limits-other-9876543210"
MODEL = "claude-sonnet-4-6"
OTHER_MODEL = "claude-haiku-4-5"
WINDOWS = ("requests", "input-tokens", "output-tokens")
# Plenty of everything, for tests about one limit.
ROOMY = 1_000_000


class FakeClock:
    """The limiter's clock: time moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fixed_usage(input_tokens: int, output_tokens: int = 10, **cache: int) -> Reply:
    """A reply reporting exactly these token counts (so what the buckets take is known)."""
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache.get("creation", 0),
        "cache_read_input_tokens": cache.get("read", 0),
    }
    return Reply.text("ok", usage=usage)


def answer_with(reply: Reply) -> Callable[[dict[str, Any]], ScriptItem]:
    return lambda body: reply


@dataclass
class Outcome:
    """One /v1/messages call as the SDK saw it."""

    status: int
    headers: dict[str, str]
    text: str | None = None
    usage: dict[str, Any] | None = None
    error_type: str | None = None

    def limit(self, window: str) -> int:
        return int(self.headers[f"anthropic-ratelimit-{window}-limit"])

    def remaining(self, window: str) -> int:
        return int(self.headers[f"anthropic-ratelimit-{window}-remaining"])

    def reset(self, window: str) -> datetime:
        return datetime.fromisoformat(self.headers[f"anthropic-ratelimit-{window}-reset"])

    @property
    def retry_after(self) -> str:
        return self.headers["retry-after"]


Call = Callable[..., Coroutine[Any, Any, Outcome]]


@dataclass
class Limited:
    server: FakeAnthropicServer
    clock: FakeClock
    call: Call


@pytest.fixture
async def limited() -> AsyncIterator[Callable[..., Limited]]:
    """Start servers with limits, each with its own fake clock and SDK clients."""
    stack = ExitStack()
    clients: list[AsyncAnthropic] = []

    def start(
        requests: int = ROOMY,
        input_tokens: int = ROOMY,
        output_tokens: int = ROOMY,
        *,
        period_s: float = 60.0,
        responder: Callable[[dict[str, Any]], ScriptItem] | None = None,
    ) -> Limited:
        clock = FakeClock()
        limits = ServerLimits(requests, input_tokens, output_tokens, period_s)
        server = stack.enter_context(
            FakeAnthropicServer(
                responder or answer_with(fixed_usage(10)), limits=limits, clock=clock
            )
        )
        by_key: dict[str, AsyncAnthropic] = {}

        def client(key: str) -> AsyncAnthropic:
            if key not in by_key:
                by_key[key] = AsyncAnthropic(
                    api_key=key, base_url=server.base_url, max_retries=0, timeout=10
                )
                clients.append(by_key[key])
            return by_key[key]

        async def call(
            *,
            model: str = MODEL,
            max_tokens: int = 100,
            stream: bool = False,
            key: str = KEY,
            system: Any = anthropic.omit,
            tools: Any = anthropic.omit,
        ) -> Outcome:
            sdk = client(key)
            messages: Any = [{"role": "user", "content": "hello"}]
            params: dict[str, Any] = {
                "model": model,
                "max_tokens": max_tokens,
                "messages": messages,
                "system": system,
                "tools": tools,
            }
            try:
                if stream:
                    async with sdk.messages.stream(**params) as events:
                        message = await events.get_final_message()
                        headers = dict(events.response.headers)
                else:
                    raw = await sdk.messages.with_raw_response.create(**params)
                    message = await raw.parse()
                    headers = dict(raw.headers)
            except anthropic.APIStatusError as exc:
                return Outcome(exc.status_code, dict(exc.response.headers), error_type=exc.type)
            text = "".join(block.text for block in message.content if block.type == "text")
            return Outcome(200, headers, text=text, usage=message.usage.to_dict())

        return Limited(server, clock, call)

    yield start
    for sdk in clients:
        await sdk.close()
    stack.close()


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


# ---- requests: admission, refusal, refill ------------------------------------------------------


async def test_requests_are_admitted_up_to_the_limit_then_refused(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(requests=3)

    outcomes = [await fake.call() for _ in range(4)]

    assert [o.status for o in outcomes] == [200, 200, 200, 429]
    assert [o.remaining("requests") for o in outcomes] == [2, 1, 0, 0]
    refused = outcomes[3]
    assert refused.error_type == "rate_limit_error"
    # One request back every 60 / 3 = 20 seconds.
    assert refused.retry_after == "20"
    assert fake.server.status_counts == {200: 3, 429: 1}
    assert fake.server.rate_limited == 1


async def test_refused_request_names_the_limit_in_the_api_error_shape(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(requests=1)
    await fake.call()
    sdk = AsyncAnthropic(api_key=KEY, base_url=fake.server.base_url, max_retries=0)
    try:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await sdk.messages.create(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        await sdk.close()

    assert caught.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": caught.value.api_message},
    }
    assert "1 requests per minute" in str(caught.value.api_message)


async def test_retry_after_is_the_whole_seconds_until_the_request_fits(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(requests=7)  # one request back every 60 / 7 = 8.57 s
    for _ in range(7):
        assert (await fake.call()).status == 200

    refused = await fake.call()
    fake.clock.advance(8)
    still_refused = await fake.call()
    fake.clock.advance(1)
    admitted = await fake.call()

    assert refused.retry_after == "9"  # rounded up: 8 s would be too early
    assert (still_refused.status, still_refused.retry_after) == (429, "1")
    assert admitted.status == 200
    assert admitted.remaining("requests") == 0


async def test_buckets_refill_continuously_up_to_their_limit(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(requests=3)  # a request every 20 s
    assert [(await fake.call()).status for _ in range(3)] == [200, 200, 200]

    fake.clock.advance(35)  # 1.75 requests back
    after_35s = await fake.call()
    fake.clock.advance(5)  # 0.75 + 0.25: one more
    after_40s = await fake.call()
    refused = await fake.call()
    fake.clock.advance(3_600)  # far longer than a refill: still only the limit
    burst = [await fake.call() for _ in range(4)]

    assert after_35s.status == 200
    assert after_35s.remaining("requests") == 0  # 0.75 left, floored
    assert after_40s.status == 200
    assert refused.status == 429
    assert refused.retry_after == "20"
    assert [o.status for o in burst] == [200, 200, 200, 429]


async def test_refused_requests_take_nothing_and_let_nothing_through(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(requests=1, input_tokens=1_000, output_tokens=1_000)
    first = await fake.call(max_tokens=50)  # the responder reports 10 input, 10 output
    fake.server.script(Reply.text("kept for later", usage={"input_tokens": 100}))

    refused = [await fake.call(max_tokens=50) for _ in range(3)]

    # The scripted reply is still queued, and the token buckets, which had room, gave
    # nothing: the 429 reports what the first request left (its unused output given back).
    assert fake.server.pending == 1
    assert [o.status for o in refused] == [429] * 3
    assert all(o.retry_after == "60" for o in refused)
    assert (first.remaining("input-tokens"), first.remaining("output-tokens")) == (990, 950)
    for outcome in refused:
        assert outcome.remaining("requests") == 0
        assert outcome.remaining("input-tokens") == 990
        assert outcome.remaining("output-tokens") == 990
    assert fake.server.rate_limited == 3
    assert [r.status for r in fake.server.requests] == [200, 429, 429, 429]

    fake.clock.advance(60)
    later = await fake.call(max_tokens=50)

    assert later.status == 200
    assert later.text == "kept for later"
    assert fake.server.pending == 0


# ---- input and output tokens -------------------------------------------------------------------


async def test_input_tokens_bucket(limited: Callable[..., Limited]) -> None:
    fake = limited(input_tokens=1_000, responder=answer_with(fixed_usage(400)))

    outcomes = [await fake.call() for _ in range(3)]
    fake.clock.advance(11)
    early = await fake.call()
    fake.clock.advance(1)
    on_time = await fake.call()

    assert [o.status for o in outcomes] == [200, 200, 429]
    assert [o.remaining("input-tokens") for o in outcomes] == [600, 200, 200]
    # 200 more tokens at 1000 / 60 a second: 12 s.
    assert outcomes[2].retry_after == "12"
    assert (early.status, early.retry_after) == (429, "1")
    assert on_time.status == 200
    assert on_time.remaining("input-tokens") == 0


async def test_cache_writes_count_as_input_tokens_and_cache_reads_do_not(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(
        input_tokens=1_000,
        responder=answer_with(fixed_usage(100, creation=300, read=5_000)),
    )

    outcome = await fake.call()

    assert outcome.status == 200
    assert outcome.remaining("input-tokens") == 600


async def test_the_servers_own_cache_accounting_decides_what_is_charged(
    limited: Callable[..., Limited],
) -> None:
    # No usage override: the server's estimate, with a cached system prompt written by the
    # first call and read by the second. What the buckets take must match what each reply
    # reports, so the first call must not count as a cache read (no double marking).
    fake = limited(input_tokens=100_000, responder=lambda body: Reply.text("cached"))
    system = [{"type": "text", "text": "x" * 4_000, "cache_control": {"type": "ephemeral"}}]

    first = await fake.call(system=system)
    second = await fake.call(system=system)

    assert first.usage is not None
    assert second.usage is not None
    written = first.usage["cache_creation_input_tokens"]
    assert written >= 1_000
    assert first.usage["cache_read_input_tokens"] == 0
    assert (
        second.usage["cache_creation_input_tokens"],
        second.usage["cache_read_input_tokens"],
    ) == (
        0,
        written,
    )
    assert first.remaining("input-tokens") == 100_000 - first.usage["input_tokens"] - written
    assert (
        second.remaining("input-tokens")
        == first.remaining("input-tokens") - second.usage["input_tokens"]
    )


async def test_a_refused_request_does_not_write_the_prompt_cache(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(requests=1, responder=lambda body: Reply.text("cached"))
    system = [{"type": "text", "text": "y" * 400, "cache_control": {"type": "ephemeral"}}]
    await fake.call()  # no cache marker: takes the only request

    refused = await fake.call(system=system)
    fake.clock.advance(60)
    admitted = await fake.call(system=system)

    assert refused.status == 429
    assert admitted.usage is not None
    assert admitted.usage["cache_creation_input_tokens"] > 0
    assert admitted.usage["cache_read_input_tokens"] == 0


async def test_output_tokens_reserve_max_tokens_and_give_back_the_unused(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(output_tokens=1_000)  # replies use 10 output tokens

    first = await fake.call(max_tokens=1_000)
    second = await fake.call(max_tokens=1_000)
    smaller = await fake.call(max_tokens=990)

    # The whole max_tokens was reserved at admission ...
    assert first.remaining("output-tokens") == 0
    # ... and 990 given back with the reply: 10 short of another 1,000, which at 1000 / 60
    # a second come back in 0.6 s (without the give-back, it would be 60 s).
    assert (second.status, second.retry_after) == (429, "1")
    assert smaller.status == 200
    assert smaller.remaining("output-tokens") == 0


async def test_an_in_flight_reply_holds_its_reservation_until_sent(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(output_tokens=1_000)
    release = threading.Event()
    fake.server.script(Reply.text("slow", usage={"output_tokens": 10}, hold=release))

    slow = asyncio.create_task(fake.call(max_tokens=600))
    try:
        await until(lambda: fake.server.pending == 0)  # admitted, reply held back
        too_big = await fake.call(max_tokens=600)
        fits = await fake.call(max_tokens=300)
    finally:
        release.set()
    held = await slow
    after = await fake.call(max_tokens=600)

    assert (held.status, held.remaining("output-tokens")) == (200, 400)
    # 400 left while the slow reply is out: 200 short, 12 s at 1000 / 60 a second.
    assert (too_big.status, too_big.retry_after) == (429, "12")
    assert (fits.status, fits.remaining("output-tokens")) == (200, 100)
    # Both replies gave back what they did not use: 100 + 290 + 590, then 600 taken.
    assert (after.status, after.remaining("output-tokens")) == (200, 380)


async def test_a_request_larger_than_a_limit_waits_for_a_full_bucket(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(input_tokens=100, responder=answer_with(fixed_usage(500)))

    first = await fake.call()
    second = await fake.call()
    fake.clock.advance(60)
    third = await fake.call()

    assert (first.status, first.remaining("input-tokens")) == (200, 0)
    assert (second.status, second.retry_after) == (429, "60")
    assert third.status == 200


# ---- headers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_every_reply_carries_consistent_rate_limit_headers(
    limited: Callable[..., Limited], stream: bool
) -> None:
    fake = limited(
        requests=4,
        input_tokens=1_000,
        output_tokens=2_000,
        responder=answer_with(fixed_usage(100, output_tokens=20)),
    )
    outcomes: list[Outcome] = []
    walls: list[tuple[float, float]] = []
    for _ in range(5):
        before = time.time()
        outcomes.append(await fake.call(max_tokens=200, stream=stream))
        walls.append((before, time.time()))

    assert [o.status for o in outcomes] == [200, 200, 200, 200, 429]
    for outcome in outcomes:
        assert (
            outcome.limit("requests"),
            outcome.limit("input-tokens"),
            outcome.limit("output-tokens"),
        ) == (4, 1_000, 2_000)
    assert [o.remaining("requests") for o in outcomes] == [3, 2, 1, 0, 0]
    assert [o.remaining("input-tokens") for o in outcomes] == [900, 800, 700, 600, 600]
    # 200 reserved at admission; 180 of each earlier reply given back.
    assert [o.remaining("output-tokens") for o in outcomes] == [1800, 1780, 1760, 1740, 1920]
    # Reset: when the bucket is full again, (limit - remaining) / (limit / 60 s) from now.
    for outcome, (before, after) in zip(outcomes, walls, strict=True):
        for window, refill_s in (
            ("requests", (4 - outcome.remaining("requests")) * 15),
            ("input-tokens", (1_000 - outcome.remaining("input-tokens")) * 60 / 1_000),
            ("output-tokens", (2_000 - outcome.remaining("output-tokens")) * 60 / 2_000),
        ):
            reset = outcome.reset(window)
            assert reset.utcoffset() == timedelta(0)
            assert before + refill_s - 1e-3 <= reset.timestamp() <= math.ceil(after + refill_s)
    assert outcomes[-1].retry_after == "15"


async def test_no_rate_limit_headers_without_limits() -> None:
    with FakeAnthropicServer(answer_with(fixed_usage(10))) as server:
        sdk = AsyncAnthropic(api_key=KEY, base_url=server.base_url, max_retries=0)
        try:
            raw = await sdk.messages.with_raw_response.create(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        finally:
            await sdk.close()

    assert raw.status_code == 200
    assert not [h for h in raw.headers if h.startswith("anthropic-ratelimit-")]
    assert server.rate_limited == 0


# ---- independence, scripted faults, concurrency -------------------------------------------------


async def test_buckets_are_per_credential_and_model(limited: Callable[..., Limited]) -> None:
    fake = limited(requests=1)

    first = await fake.call()
    same = await fake.call()
    other_model = await fake.call(model=OTHER_MODEL)
    other_key = await fake.call(key=OTHER_KEY)
    other_key_again = await fake.call(key=OTHER_KEY)

    assert [o.status for o in (first, same, other_model, other_key, other_key_again)] == [
        200,
        429,
        200,
        200,
        429,
    ]
    assert other_model.remaining("requests") == 0


async def test_scripted_faults_are_answered_as_scripted(limited: Callable[..., Limited]) -> None:
    fake = limited(requests=2)
    fake.server.script(
        Fault.overloaded(retry_after_ms=250),
        Fault.rate_limited(retry_after_s=7),
        Fault.server_error(503),
    )

    overloaded = await fake.call()
    scripted_429 = await fake.call()
    unavailable = await fake.call()
    # The faults took nothing: both requests are still there.
    admitted = [await fake.call() for _ in range(2)]
    # And a scripted fault is answered even when the limiter would refuse.
    fake.server.script(Fault.overloaded())
    overloaded_while_empty = await fake.call()
    refused = await fake.call()

    assert (overloaded.status, overloaded.error_type) == (529, "overloaded_error")
    assert overloaded.headers["retry-after-ms"] == "250"
    assert (scripted_429.status, scripted_429.retry_after) == (429, "7")
    assert unavailable.status == 503
    assert [o.status for o in admitted] == [200, 200]
    assert [o.remaining("requests") for o in admitted] == [1, 0]
    assert overloaded_while_empty.status == 529
    assert overloaded_while_empty.remaining("requests") == 0
    assert (refused.status, refused.retry_after) == (429, "30")
    # Only the limiter's own refusal counts as rate limited.
    assert fake.server.rate_limited == 1
    assert fake.server.status_counts == {529: 2, 429: 2, 503: 1, 200: 2}


async def test_mid_stream_fault_still_answered_with_limits(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(requests=5)
    fake.server.script(Fault.overloaded(mid_stream=True))

    outcome = await fake.call(stream=True)

    assert (outcome.status, outcome.error_type) == (200, "overloaded_error")
    assert fake.server.status_counts == {200: 1}


async def test_concurrent_requests_admit_exactly_the_limit(
    limited: Callable[..., Limited],
) -> None:
    fake = limited(requests=5)

    outcomes = await asyncio.gather(*(fake.call() for _ in range(20)))

    assert sorted(o.status for o in outcomes) == [200] * 5 + [429] * 15
    assert sorted(o.remaining("requests") for o in outcomes if o.status == 200) == [0, 1, 2, 3, 4]
    assert fake.server.rate_limited == 15
    assert fake.server.status_counts == {200: 5, 429: 15}


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ServerLimits(0, 1, 1)
    with pytest.raises(ValueError, match="period_s"):
        ServerLimits(1, 1, 1, period_s=0)


# ---- command line ------------------------------------------------------------------------------


@pytest.fixture
def cli_server() -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_anthropic", "--port", "0", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"listening on (http://\S+)", first)
        assert found, first + (proc.stderr.read() if proc.stderr else "")
        return proc, found.group(1)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def post(base_url: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        base_url + "/v1/messages",
        data=b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}',
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_command_line_limits(
    cli_server: Callable[..., tuple[subprocess.Popen[str], str]],
) -> None:
    proc, base_url = cli_server("--rpm", "2", "--itpm", "1000", "--otpm", "1000")

    results = [post(base_url) for _ in range(3)]

    assert [status for status, _ in results] == [200, 200, 429]
    assert results[0][1]["anthropic-ratelimit-requests-remaining"] == "1"
    assert 29 <= int(results[2][1]["retry-after"]) <= 30
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stopping" in out


def test_command_line_needs_all_three_limits() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.fake_anthropic", "--port", "0", "--rpm", "5"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=20,
    )

    assert result.returncode == 2
    assert "--rpm, --itpm and --otpm go together" in result.stderr
