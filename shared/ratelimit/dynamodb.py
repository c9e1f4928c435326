"""The DynamoDB rate-limit store: one item per bucket in the journal's single table.

``RATE#{bucket}`` / ``RATE`` holds the GCRA state (``shared.ratelimit.gcra``): ``r``, ``i``,
``o`` (each dimension's theoretical arrival time, integer microseconds since the epoch),
``blk`` (no take before it: a provider's retry-after), and the limits the provider reported
(``lr``, ``li``, ``lo``, ``lp``). It carries no index keys and expires a day after its last
take (``expires_at``): an idle bucket is a full one, whatever it held.

A take is one UpdateItem. Each dimension is either advanced (``SET r = r + :cost``, guarded
by ``r BETWEEN :now AND :ceiling``) or, when idle, set (``SET r = :value``, guarded by
``r < :now``), all under one condition with the block's. Which form to use comes from the
item as this process last saw it (every write returns it); a guess proven wrong by the
condition gets the item back with the failure (``ALL_OLD``) and is tried again, so the
common busy case costs one write and never conflicts with other processes' takes, whose
increments commute. A refused take writes nothing when this process's last view already
shows it would not fit; otherwise the failed condition (one write unit) tells it so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, ParamSpec, TypeVar

from shared.config import Settings
from shared.dal.dynamodb import ConditionFailedError, Item, RunTable
from shared.dal.schema import PK, SK, TTL_ATTRIBUTE
from shared.errors import JournalError, RateLimitError
from shared.journal.dynamodb import DAY_S, BlockingCalls
from shared.ratelimit import gcra
from shared.ratelimit.base import NOTHING, Acquired, Amounts, RateLimits, Remaining
from shared.ratelimit.gcra import BucketState

P = ParamSpec("P")
T = TypeVar("T")

BUCKET_SK = "RATE"
DEFAULT_MAX_WORKERS = 8
# Conditions proven wrong in a row before a take gives up for now (a short wait): only
# writers racing on an idle bucket's first take can get there.
MAX_TRIES = 4
RETRY_WAIT_S = 0.05
_TAT = ("r", "i", "o")
_BLOCK = "blk"
_LIMITS = ("lr", "li", "lo", "lp")


def bucket_pk(bucket: str) -> str:
    return f"RATE#{bucket}"


class DynamoRateLimitStore:
    """``RateLimitStore`` on the Switchyard table (``RunTable``)."""

    def __init__(
        self,
        table: RunTable,
        *,
        executor: Executor | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        self.table = table
        self._io = BlockingCalls(executor, max_workers=max_workers, thread_name_prefix="rates")
        # The item as this process last saw it, per bucket: which write form to try first.
        self._seen: dict[str, BucketState] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> DynamoRateLimitStore:
        table = RunTable(
            settings.table_name, region=settings.region, max_pool_connections=max_workers
        )
        return cls(table, max_workers=max_workers)

    def close(self) -> None:
        self._io.close()

    # ---- the RateLimitStore protocol ---------------------------------------------------------

    async def acquire(
        self,
        bucket: str,
        take: Amounts,
        limits: RateLimits,
        *,
        now: float,
        carry: Amounts = NOTHING,
    ) -> Acquired:
        return await self._call(self._acquire, bucket, take, limits, now, carry)

    async def adjust(self, bucket: str, delta: Amounts, limits: RateLimits, *, now: float) -> None:
        await self._call(self._adjust, bucket, delta, limits)

    async def block(self, bucket: str, until: float) -> None:
        await self._call(self._block, bucket, until)

    async def observe(
        self, bucket: str, remaining: Remaining, limits: RateLimits, *, now: float
    ) -> None:
        await self._call(self._observe, bucket, remaining, limits, now)

    async def learn_limits(self, bucket: str, limits: RateLimits) -> None:
        await self._call(self._learn_limits, bucket, limits)

    async def learned_limits(self, bucket: str) -> RateLimits | None:
        item = await self._call(self.table.get, _key(bucket), consistent=False)
        return _state(item).limits

    # ---- blocking implementations --------------------------------------------------------------

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await self._io(fn, *args, **kwargs)
        except JournalError as exc:  # RunTable's errors, as this store's
            raise RateLimitError(f"rate-limit store: {exc.message}", details=exc.details) from exc

    def _acquire(
        self, bucket: str, take: Amounts, limits: RateLimits, now: float, carry: Amounts
    ) -> Acquired:
        now_us = gcra.to_us(now)
        state = self._seen.get(bucket, BucketState())
        for _ in range(MAX_TRIES):
            plan = gcra.plan_take(state, take, limits, now_us, carry)
            if not plan.granted:
                return Acquired(False, plan.wait_s, plan.remaining, state.limits)
            update, condition, values = _take_expression(plan, now_us)
            values[":ttl"] = int(now) + DAY_S
            try:
                item = self.table.update(
                    _key(bucket),
                    update=f"{update}, {TTL_ATTRIBUTE} = :ttl",
                    condition=condition,
                    values=values,
                    return_failed_item=True,
                )
            except ConditionFailedError as exc:
                state = _state(exc.item)
                self._seen[bucket] = state
                continue
            state = _state(item)
            self._seen[bucket] = state
            return Acquired(True, 0.0, gcra.remaining(state, limits, now_us), state.limits)
        return Acquired(False, RETRY_WAIT_S, gcra.remaining(state, limits, now_us), state.limits)

    def _adjust(self, bucket: str, delta: Amounts, limits: RateLimits) -> None:
        period = gcra.to_us(limits.period_s)
        amounts = (delta.requests, delta.input_tokens, delta.output_tokens)
        limit = (limits.requests, limits.input_tokens, limits.output_tokens)
        parts: list[str] = []
        values: dict[str, Any] = {}
        for attr, amount, cap in zip(_TAT, amounts, limit, strict=True):
            if amount:
                parts.append(f"{attr} :{attr}")
                values[f":{attr}"] = gcra.cost_us(amount, cap, period, clamp=False)
        if parts:
            self.table.update(
                _key(bucket), update="ADD " + ", ".join(parts), values=values, return_values="NONE"
            )
            self._seen[bucket] = gcra.adjusted(self._seen.get(bucket, BucketState()), delta, limits)

    def _block(self, bucket: str, until: float) -> None:
        # A failed condition means it is blocked for longer already.
        with contextlib.suppress(ConditionFailedError):
            self.table.update(
                _key(bucket),
                update=f"SET {_BLOCK} = :until",
                condition=f"attribute_not_exists({_BLOCK}) OR {_BLOCK} < :until",
                values={":until": gcra.to_us(until)},
                return_values="NONE",
            )

    def _observe(self, bucket: str, remaining: Remaining, limits: RateLimits, now: float) -> None:
        state = self._seen.get(bucket, BucketState())
        floors = gcra.floor_tat(remaining, limits, gcra.to_us(now))
        sets: list[str] = []
        guards: list[str] = []
        values: dict[str, Any] = {}
        for attr, current, floor in zip(_TAT, state.tat, floors, strict=True):
            if current is None or current < floor:
                sets.append(f"{attr} = :{attr}")
                guards.append(f"(attribute_not_exists({attr}) OR {attr} < :{attr})")
                values[f":{attr}"] = floor
        if not sets:
            return
        try:
            item = self.table.update(
                _key(bucket),
                update="SET " + ", ".join(sets),
                condition=" AND ".join(guards),
                values=values,
            )
        except ConditionFailedError:
            return  # someone took more meanwhile: the bucket already holds less
        self._seen[bucket] = _state(item)

    def _learn_limits(self, bucket: str, limits: RateLimits) -> None:
        item = self.table.update(
            _key(bucket),
            update="SET lr = :lr, li = :li, lo = :lo, lp = :lp",
            values={
                ":lr": limits.requests,
                ":li": limits.input_tokens,
                ":lo": limits.output_tokens,
                ":lp": limits.period_s,
            },
        )
        self._seen[bucket] = _state(item)


def _key(bucket: str) -> dict[str, str]:
    return {PK: bucket_pk(bucket), SK: BUCKET_SK}


def _take_expression(plan: gcra.TakePlan, now_us: int) -> tuple[str, str, dict[str, Any]]:
    sets: list[str] = []
    guards = [f"(attribute_not_exists({_BLOCK}) OR {_BLOCK} <= :now)"]
    values: dict[str, Any] = {":now": now_us}
    for attr, dim in zip(_TAT, plan.dimensions, strict=True):
        if dim.idle:
            sets.append(f"{attr} = :{attr}")
            guards.append(f"(attribute_not_exists({attr}) OR {attr} < :{attr}_min)")
        else:
            sets.append(f"{attr} = {attr} + :{attr}")
            guards.append(f"{attr} BETWEEN :{attr}_min AND :{attr}_max")
            values[f":{attr}_max"] = dim.ceiling
        values[f":{attr}_min"] = dim.floor
        values[f":{attr}"] = dim.value
    return "SET " + ", ".join(sets), " AND ".join(guards), values


def _state(item: Item | None) -> BucketState:
    if not item:
        return BucketState()
    tat = tuple(_int(item.get(attr)) for attr in _TAT)
    limits = None
    if all(item.get(attr) is not None for attr in _LIMITS):
        limits = RateLimits(
            requests=int(item["lr"]),
            input_tokens=int(item["li"]),
            output_tokens=int(item["lo"]),
            period_s=float(item["lp"]),
        )
    return BucketState(
        tat=(tat[0], tat[1], tat[2]), blocked_until=_int(item.get(_BLOCK)) or 0, limits=limits
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
