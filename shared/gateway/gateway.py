"""The provider gateway: every model call goes through it.

For each call it walks the agent's model chain. For one model:

1. **Reserve** (when the model has limits, configured or reported): one request, the
   estimated input tokens and ``max_tokens`` of output from the shared buckets of (provider
   key, model), carrying this process's reconciliations of its earlier calls. Refused, it
   waits as long as the store says and tries again: rate limits delay a run, never fail it.
2. **Call** the provider (the SDK's own retries are off: retrying is decided here).
3. **Reconcile**: the actual usage against the reservation, carried by this process's next
   take of the bucket (so a call costs one write); adapt to the provider's headers: limits it
   reports are stored for every process (tightening the configured ones), and a bucket
   holding more than the provider says remains is lowered to that.

Failures: a 429 blocks the bucket for every process until its retry-after and the call is
tried again after it, on the same model, as often as the run's time allows; a 529
(overloaded) falls back to the next model at once; other retryable errors (5xx, timeouts,
connection failures) are retried ``attempts_per_model`` times with backoff, then fall back.
A non-retryable error is raised as is; when the chain is exhausted the last error is.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shared.errors import (
    ProviderError,
    ProviderOverloadedError,
    ProviderRateLimitedError,
    RateLimitError,
)
from shared.gateway.estimate import counted_input, reconciliation, reservation
from shared.gateway.limits import (
    LimitTable,
    reported_limits,
    reported_remaining,
    tightest,
)
from shared.models.messages import ModelRequest, ModelResponse
from shared.providers.base import Provider
from shared.ratelimit import NOTHING, Acquired, Amounts, RateLimits, RateLimitStore, Remaining

logger = logging.getLogger("switchyard.gateway")

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# A 429 without retry-after (the API always sends one; a proxy might not).
DEFAULT_RETRY_AFTER_S = 1.0
# A bucket is lowered to what the provider reports only past this share of its limit:
# reports and reservations cross in flight, and a write per call would double the cost.
OBSERVE_SLACK = 0.1


class ThrottledTooLong(Exception):
    """The call would wait past the caller's ``max_wait_s`` (a sync run hands over instead)."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"the model call would wait {wait_s:.1f}s for its rate limits")
        self.wait_s = wait_s


class GatewayObserver(Protocol):
    def throttled(self, model: str, wait_s: float, reason: str) -> None:
        """A call waits ``wait_s`` before it is sent: ``limit`` (the shared buckets) or
        ``429`` (the provider's retry-after)."""

    def fell_back(self, model: str, to_model: str, reason: str) -> None: ...


class NullGatewayObserver:
    def throttled(self, model: str, wait_s: float, reason: str) -> None:
        return None

    def fell_back(self, model: str, to_model: str, reason: str) -> None:
        return None


@dataclass(frozen=True)
class Fallback:
    model: str
    reason: str  # "overloaded" or the error code of the retries that ran out


@dataclass(frozen=True)
class GatewayCall:
    """A served call: the response, and what it took to get it."""

    response: ModelResponse
    fallbacks: tuple[Fallback, ...] = ()
    throttled_s: float = 0.0
    rate_limited: int = 0  # 429s the provider answered on the way


@dataclass(frozen=True)
class GatewayOptions:
    attempts_per_model: int = 1
    backoff_s: tuple[float, ...] = BACKOFF_S
    # While a bucket is more than half full, one write reserves up to this many calls'
    # worth; this process serves the rest from that allowance without a write.
    prefetch_calls: int = 1
    # An allowance older than this (or a twelfth of the limits' window, if shorter) is given
    # back: the provider counts a call when it is made, so capacity taken long before would
    # be counted in the wrong window.
    prefetch_ttl_s: float = 5.0


@dataclass
class _Allowance:
    amounts: Amounts
    until: float


@dataclass
class _Trip:
    """One call's bookkeeping across waits, retries and models."""

    fallbacks: list[Fallback] = field(default_factory=list)
    throttled_s: float = 0.0
    rate_limited: int = 0


class ModelGateway:
    def __init__(
        self,
        provider: Provider,
        *,
        store: RateLimitStore | None = None,
        limits: LimitTable | None = None,
        key_id: str = "default",
        options: GatewayOptions | None = None,
        observer: GatewayObserver | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[float], float] | None = None,
    ) -> None:
        self.provider = provider
        self.store = store
        self.limits = limits or LimitTable({}, 60.0)
        self.key_id = key_id
        self.options = options or GatewayOptions()
        self.observer: GatewayObserver = observer or NullGatewayObserver()
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter or _jitter
        # Limits the provider reported, per bucket (this process's view of the store's).
        self._learned: dict[str, RateLimits] = {}
        # Reconciliations not yet written: each rides this process's next take of its bucket.
        self._carry: dict[str, Amounts] = {}
        # Until when a bucket is known to refuse (the backpressure signal).
        self._busy_until: dict[str, float] = {}
        # What a bucket held after this process's last granted take.
        self._remaining: dict[str, Remaining] = {}
        # When this process last looked for limits learned elsewhere, per unlimited bucket.
        self._looked_up: dict[str, float] = {}
        # Capacity this process reserved ahead, per bucket (``prefetch_calls``).
        self._allowance: dict[str, _Allowance] = {}
        # The queue of this process's takes, per event loop (the API runs one per thread;
        # a lock belongs to its loop) and bucket.
        self._takers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    def bucket(self, model: str) -> str:
        """Models a configured prefix covers share its bucket (the provider limits a model
        class, whatever the dated or aliased name); any other model has its own."""
        return f"{self.key_id}:{self.limits.class_of(model)}"

    def pressure_s(self) -> float:
        """How long the most throttled bucket refuses from now (0: none does)."""
        now = self._clock()
        return max((until - now for until in self._busy_until.values()), default=0.0)

    async def flush(self) -> None:
        """Write the reconciliations still carried and give back unused allowances (a worker
        stopping, a sync run answering: a Lambda may be frozen next). Never raises: what
        cannot be written leaves the shared buckets conservative for at most a period."""
        for bucket in list(self._allowance):
            self._carry[bucket] = self._carry.get(bucket, NOTHING) + self._return_allowance(bucket)
        carried, self._carry = self._carry, {}
        for bucket, delta in carried.items():
            limits = self._limits_of(bucket)
            if limits is not None and self.store is not None and not delta.is_zero:
                await self._best_effort(self._adjust, bucket, delta, limits)

    async def _adjust(self, bucket: str, delta: Amounts, limits: RateLimits) -> None:
        if self.store is not None:
            await self.store.adjust(bucket, delta, limits, now=self._clock())

    async def call(
        self, request: ModelRequest, models: Sequence[str], *, max_wait_s: float | None = None
    ) -> GatewayCall:
        """Serve ``request`` with the first model of ``models`` that answers.

        ``max_wait_s``: raise ``ThrottledTooLong`` rather than wait longer than this in
        total for rate limits. The caller bounds the whole call (its run's timeout).
        """
        trip = _Trip()
        last_error: ProviderError | None = None
        for index, model in enumerate(models):
            try:
                response = await self._call_model(
                    request.model_copy(update={"model": model}), trip, max_wait_s
                )
                return GatewayCall(
                    response, tuple(trip.fallbacks), round(trip.throttled_s, 3), trip.rate_limited
                )
            except ProviderError as exc:
                overloaded = isinstance(exc, ProviderOverloadedError)
                if not (exc.retryable or overloaded):
                    raise
                last_error = exc
                reason = "overloaded" if overloaded else exc.code
                trip.fallbacks.append(Fallback(model, reason))
                if index + 1 < len(models):
                    logger.warning("model %s failed (%s): falling back", model, reason)
                    self.observer.fell_back(model, models[index + 1], reason)
        assert last_error is not None, "a model chain is never empty"
        raise last_error

    async def _call_model(
        self, request: ModelRequest, trip: _Trip, max_wait_s: float | None
    ) -> ModelResponse:
        model = request.model
        bucket = self.bucket(model)
        attempts = 0
        while True:
            reserved = await self._reserve(bucket, model, request, trip, max_wait_s)
            try:
                response = await self.provider.complete(request)
            except ProviderRateLimitedError as exc:
                self._give_back(bucket, reserved)
                trip.rate_limited += 1
                wait = exc.retry_after_s if exc.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
                until = self._clock() + wait
                self._busy_until[bucket] = max(self._busy_until.get(bucket, 0.0), until)
                await self._best_effort(self._block, bucket, until)
                await self._sync_to_refusal(bucket, exc)
                await self._wait(model, wait, "429", trip, max_wait_s)
                continue
            except ProviderOverloadedError:
                self._give_back(bucket, reserved)
                raise
            except ProviderError as exc:
                # Refused (4xx): nothing was counted. A 5xx, a timeout or a dropped connection
                # may have been admitted and counted: only the output it never made comes back.
                rejected = exc.status is not None and 400 <= exc.status < 500
                self._give_back(bucket, reserved, admitted=not rejected)
                attempts += 1
                if not exc.retryable or attempts >= self.options.attempts_per_model:
                    raise
                backoff = self.options.backoff_s[min(attempts, len(self.options.backoff_s)) - 1]
                await self._sleep(self._jitter(backoff))
                continue
            except BaseException:
                self._give_back(bucket, reserved, admitted=True)
                raise
            await self._reconcile(bucket, reserved, response)
            return response

    async def _sync_to_refusal(self, bucket: str, exc: ProviderRateLimitedError) -> None:
        """A 429 proves the provider's bucket is emptier than ours (it started refilling
        later, or another client shares the key): take ours down to what its headers say, or
        every call after the retry-after would be refused again."""
        limits = self._limits_of(bucket)
        if limits is None:
            return
        full = Remaining(limits.requests, limits.input_tokens, limits.output_tokens)
        said = reported_remaining(exc.rate_limits, full)
        if said is not None:
            await self._best_effort(self._observe, bucket, said, limits)

    async def _block(self, bucket: str, until: float) -> None:
        if self.store is not None:
            await self.store.block(bucket, until)

    async def _best_effort(self, write: Callable[..., Awaitable[None]], *args: object) -> None:
        """A write that tunes the shared buckets (a block, learned limits, a lowered level):
        when the store fails, the call it follows still counts, so log and carry on rather
        than throw away a served response or fail a wait."""
        try:
            await write(*args)
        except RateLimitError as exc:
            logger.warning("rate-limit store write skipped: %s", exc.message)

    async def _reserve(
        self,
        bucket: str,
        model: str,
        request: ModelRequest,
        trip: _Trip,
        max_wait_s: float | None,
    ) -> Amounts:
        """Take the call's reservation from the bucket, waiting as long as it takes."""
        if self.store is None:
            return NOTHING
        limits = self._limits_for(bucket, model) or await self._stored_limits(bucket, model)
        if limits is None:
            return NOTHING
        # A call larger than a bucket's capacity reserves the capacity (the store would clamp
        # it anyway); reconciling against what was really taken charges the rest after.
        take = _at_most(reservation(request), limits)
        if self._from_allowance(bucket, take):
            return take
        # One take of a bucket at a time per process: a call that queued here finds the
        # allowance its predecessor reserved, and waiters take turns, one polling the store
        # while the rest queue, rather than a crowd being refused together.
        locks = self._takers.setdefault(asyncio.get_running_loop(), {})
        lock = locks.get(bucket)
        if lock is None:
            lock = locks[bucket] = asyncio.Lock()
        async with lock:
            while not self._from_allowance(bucket, take):
                refused = await self._try_take(bucket, model, take, limits)
                if refused is None:
                    break
                self._busy_until[bucket] = self._clock() + refused
                await self._wait(model, refused, "limit", trip, max_wait_s)
        return take

    async def _try_take(
        self, bucket: str, model: str, take: Amounts, limits: RateLimits
    ) -> float | None:
        """Take from the store (with a prefetch when there is room); None when granted,
        else how long until it would fit."""
        assert self.store is not None
        limits = self._limits_for(bucket, model) or limits
        prefetching = True
        while True:
            carry = self._carry.pop(bucket, NOTHING) + self._return_allowance(bucket)
            extra = self._prefetch(bucket, take, limits) if prefetching else NOTHING
            now = self._clock()
            # Shielded: the store's write goes on in its thread even if this call is
            # cancelled (the run's timeout); its outcome is then settled when it ends.
            pending = asyncio.ensure_future(
                self.store.acquire(bucket, take + extra, limits, now=now, carry=carry)
            )
            try:
                acquired = await asyncio.shield(pending)
            except asyncio.CancelledError:
                pending.add_done_callback(
                    functools.partial(self._orphaned, bucket, taken=take + extra, carry=carry)
                )
                raise
            except BaseException:
                self._carry[bucket] = self._carry.get(bucket, NOTHING) + carry
                raise
            if acquired.limits is not None and acquired.limits != self._learned.get(bucket):
                self._learned[bucket] = acquired.limits
                limits = self._limits_for(bucket, model) or limits
            if acquired.granted:
                self._busy_until.pop(bucket, None)
                self._remaining[bucket] = acquired.remaining
                if not extra.is_zero:
                    # Capacity reserved now but used later is counted by the provider
                    # later: a short life (a twelfth of the window at most) bounds the skew.
                    ttl = min(self.options.prefetch_ttl_s, limits.period_s / 12)
                    self._allowance[bucket] = _Allowance(extra, now + ttl)
                return None
            self._carry[bucket] = self._carry.get(bucket, NOTHING) + carry
            if not extra.is_zero:
                prefetching = False  # the bucket is busier than this process thought
                continue
            return acquired.wait_s

    async def _observe(self, bucket: str, said: Remaining, limits: RateLimits) -> None:
        if self.store is not None:
            await self.store.observe(bucket, said, limits, now=self._clock())

    def _from_allowance(self, bucket: str, take: Amounts) -> bool:
        allowance = self._allowance.get(bucket)
        if allowance is None or self._clock() >= allowance.until:
            return False
        if not allowance.amounts.covers(take):
            return False
        allowance.amounts = allowance.amounts + (-take)
        return True

    def _orphaned(
        self, bucket: str, done: asyncio.Future[Acquired], *, taken: Amounts, carry: Amounts
    ) -> None:
        """A take whose caller was cancelled: nobody uses what it took, so it is given back;
        a take that did not happen leaves its carry to the next one."""
        granted = not done.cancelled() and done.exception() is None and done.result().granted
        back = -taken if granted else carry
        self._carry[bucket] = self._carry.get(bucket, NOTHING) + back

    def _return_allowance(self, bucket: str) -> Amounts:
        """What is left of this process's allowance, as a give-back for the next take."""
        allowance = self._allowance.pop(bucket, None)
        return NOTHING if allowance is None else -allowance.amounts

    def _prefetch(self, bucket: str, take: Amounts, limits: RateLimits) -> Amounts:
        """More to reserve with this call: nothing unless the bucket was more than half full
        after this process's last take; then up to ``prefetch_calls - 1`` more requests and
        their output, and input tokens by share of the capacity (a run's prompt grows with
        every step, so later calls need more than this one). Never more than an eighth of a
        dimension's capacity, so a process cannot hoard what others need."""
        most = self.options.prefetch_calls - 1
        remaining = self._remaining.get(bucket)
        if most <= 0 or remaining is None:
            return NOTHING
        fullness = min(
            remaining.requests / limits.requests,
            remaining.input_tokens / limits.input_tokens,
            remaining.output_tokens / limits.output_tokens,
        )
        if fullness <= 0.5:
            return NOTHING
        share = (fullness - 0.5) / 4
        calls = min(round((fullness - 0.5) * 2 * most), int(share * limits.requests))
        if take.output_tokens:
            calls = min(calls, int(share * limits.output_tokens) // take.output_tokens)
        if calls <= 0:
            return NOTHING
        input_tokens = max(int(share * limits.input_tokens), calls * take.input_tokens)
        room = limits.input_tokens - take.input_tokens
        return Amounts(calls, max(0, min(input_tokens, room)), calls * take.output_tokens)

    async def _wait(
        self, model: str, wait_s: float, reason: str, trip: _Trip, max_wait_s: float | None
    ) -> None:
        pause = self._jitter(wait_s)
        if max_wait_s is not None and trip.throttled_s + pause > max_wait_s:
            raise ThrottledTooLong(pause)
        self.observer.throttled(model, pause, reason)
        trip.throttled_s += pause
        await self._sleep(pause)

    def _give_back(self, bucket: str, reserved: Amounts, *, admitted: bool = False) -> None:
        """A call refused before admission took nothing from the provider's limits; one that
        may have been admitted took its request and input, never the output it did not
        produce."""
        back = Amounts(0, 0, reserved.output_tokens) if admitted else reserved
        if not back.is_zero:
            self._carry[bucket] = self._carry.get(bucket, NOTHING) + (-back)

    async def _reconcile(self, bucket: str, reserved: Amounts, response: ModelResponse) -> None:
        if not reserved.is_zero:
            delta = reconciliation(reserved, response.usage)
            self._carry[bucket] = self._carry.get(bucket, NOTHING) + delta
        info = response.rate_limits
        if info is None or self.store is None:
            return
        told = reported_limits(info, self.limits.period_s)
        if told is not None and told != self._learned.get(bucket):
            self._learned[bucket] = told
            await self._best_effort(self.store.learn_limits, bucket, told)
        limits = self._limits_of(bucket)
        if limits is None:
            return
        if reserved.is_zero:
            # Served before its limits were known: it counts all the same.
            used = Amounts(1, counted_input(response.usage), response.usage.output_tokens)
            self._carry[bucket] = self._carry.get(bucket, NOTHING) + used
        full = Remaining(limits.requests, limits.input_tokens, limits.output_tokens)
        said = reported_remaining(info, full)
        ours = self._remaining.get(bucket)
        if said is not None and ours is not None and _holds_more(ours, said, limits):
            await self._best_effort(self._observe, bucket, said, limits)

    async def _stored_limits(self, bucket: str, model: str) -> RateLimits | None:
        """Limits another process learned for a model nothing configures (looked up at most
        once a period while there are none, so an unlimited model costs no read per call)."""
        assert self.store is not None
        now = self._clock()
        if now < self._looked_up.get(bucket, float("-inf")) + self.limits.period_s:
            return None
        self._looked_up[bucket] = now
        learned = await self.store.learned_limits(bucket)
        if learned is not None:
            self._learned[bucket] = learned
        return self._limits_for(bucket, model)

    def _limits_for(self, bucket: str, model: str) -> RateLimits | None:
        return tightest(self.limits.configured(model), self._learned.get(bucket))

    def _limits_of(self, bucket: str) -> RateLimits | None:
        model = bucket[len(self.key_id) + 1 :]
        return self._limits_for(bucket, model)


def _at_most(take: Amounts, limits: RateLimits) -> Amounts:
    return Amounts(
        min(take.requests, limits.requests),
        min(take.input_tokens, limits.input_tokens),
        min(take.output_tokens, limits.output_tokens),
    )


def _holds_more(ours: Remaining, said: Remaining, limits: RateLimits) -> bool:
    """Whether the provider reports clearly less left than the bucket held after our take
    (others' takes since then explain a little; someone outside explains more)."""
    slack = (
        limits.requests * OBSERVE_SLACK,
        limits.input_tokens * OBSERVE_SLACK,
        limits.output_tokens * OBSERVE_SLACK,
    )
    said_values = (said.requests, said.input_tokens, said.output_tokens)
    ours_values = (ours.requests, ours.input_tokens, ours.output_tokens)
    return any(v < o - s for v, o, s in zip(said_values, ours_values, slack, strict=True))


def _jitter(wait_s: float) -> float:
    """Spread waiters a little so a refused crowd does not come back at the same instant."""
    return wait_s + random.uniform(0.0, min(0.25, wait_s * 0.1))
