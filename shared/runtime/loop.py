"""The durable agent loop.

One step = one model call plus the tool calls it asks for. Each model response is journaled
as soon as it arrives (so a journaled model call is never repeated, and the tool_use ids, hence
the idempotency keys, are fixed before any tool runs). Tool results ride along with the next
model response in the same write, which keeps writes at about one per step; they are journaled
on their own at once when re-running them would be costly: a side-effecting tool, a slow batch,
or the run pausing or ending. A tool interrupted before its result is journaled runs again on
resume with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.agents.definition import Agent, Limits
from shared.agents.registry import AgentRegistry
from shared.agents.tools import ToolContext
from shared.errors import (
    JournalConflictError,
    LeaseHeldError,
    LeaseLostError,
    ProviderError,
    SwitchyardError,
)
from shared.journal.base import Journal, RunPatch
from shared.models.events import EventType
from shared.models.journal import JournalRecord, RecordKind, ToolResult
from shared.models.messages import ModelRequest
from shared.models.run import Lease, Run, RunError, RunStatus
from shared.providers.base import Provider
from shared.providers.pricing import PriceTable, price_usage
from shared.runtime.events import EventBuilder, preview
from shared.runtime.limits import (
    RepeatedCalls,
    daily_budget_exceeded,
    exceeded,
    timeout_error,
)
from shared.runtime.observer import NullObserver, NullUsage, RunObserver, UsageSink
from shared.runtime.redact import Redactor
from shared.runtime.state import RunState, render_input, replay, result_block

if TYPE_CHECKING:  # imported when first used: the API's async submit path never calls a model
    from shared.gateway import GatewayCall, ModelGateway

logger = logging.getLogger("switchyard.runtime")

HeartbeatHook = Callable[[Lease], Awaitable[None]]
# A tenant's daily budget in USD, or None for none.
DailyBudget = Callable[[str], float | None]
# Earlier turns of the run's thread, as Messages API messages, to put before its input.
HistoryLoader = Callable[[Run], Awaitable[list[dict[str, Any]]]]
START_ATTEMPTS = 3


@dataclass(frozen=True)
class RuntimeOptions:
    lease_ttl_s: float = 30.0
    # Read-only tool results are journaled with the next model response unless the batch took
    # longer than this: past it, re-running the tools after a crash costs more than a write.
    flush_tools_after_s: float = 2.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AgentRuntime:
    """Executes runs against a journal. Any number of runs may execute concurrently."""

    def __init__(
        self,
        journal: Journal,
        provider: Provider,
        registry: AgentRegistry,
        *,
        options: RuntimeOptions | None = None,
        prices: PriceTable | None = None,
        owner: str | None = None,
        secrets: Mapping[str, str] | None = None,
        on_heartbeat: HeartbeatHook | None = None,
        history: HistoryLoader | None = None,
        observer: RunObserver | None = None,
        gateway: ModelGateway | None = None,
        usage: UsageSink | None = None,
        daily_budget: DailyBudget | None = None,
    ) -> None:
        self.journal = journal
        if gateway is None:
            from shared.gateway import ModelGateway

            gateway = ModelGateway(provider)
        self.gateway = gateway
        self.usage: UsageSink = usage or NullUsage()
        self.daily_budget = daily_budget
        self.registry = registry
        self.options = options or RuntimeOptions()
        self.prices = prices or PriceTable()
        self.owner = owner or f"runtime-{uuid.uuid4().hex[:12]}"
        self.secrets: Mapping[str, str] = secrets or {}
        self.on_heartbeat = on_heartbeat
        self.history = history
        self.observer: RunObserver = observer or NullObserver()
        self._cancelled: set[str] = set()
        self._inflight: set[str] = set()
        self._draining = False

    def cancel_local(self, run_id: str) -> None:
        """Ask an execution in this process to stop at its next step boundary."""
        self._cancelled.add(run_id)

    def is_cancelled_locally(self, run_id: str) -> bool:
        return run_id in self._cancelled

    def drain(self) -> None:
        """Hand every run this runtime executes back at its next step boundary (SIGTERM):
        journaled as it stands, lease released, status ``queued``, for another worker."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    async def execute(self, run_id: str, *, deadline: float | None = None) -> Run:
        """Run (or resume) ``run_id`` until it finishes or pauses; return the stored run.

        With ``deadline`` (a ``time.monotonic()`` instant), the run is handed back at the
        first step boundary past it: journaled as it stands, lease released, status
        ``queued``, for the caller to enqueue (the sync shape's promotion to async).

        Raises ``LeaseHeldError`` if another worker (or this one, already) is executing the
        run, and ``LeaseLostError`` or ``JournalConflictError`` if this runtime was fenced off
        mid-run (it stops at once).
        """
        if run_id in self._inflight:
            # A duplicate delivery to the same worker must not start a second execution.
            raise LeaseHeldError(f"run {run_id} is already executing in this process")
        self._inflight.add(run_id)
        try:
            result = await self._execute(run_id, deadline)
            self.observer.run_stopped(result)
            await self.usage.flush()
            return result
        finally:
            self._inflight.discard(run_id)
            self._cancelled.discard(run_id)

    async def _execute(self, run_id: str, deadline: float | None) -> Run:
        run = await self.journal.get_run(run_id)
        if run.status.is_terminal:
            return run
        waiting = run.status is RunStatus.AWAITING_APPROVAL and not _has_decision(run)
        if waiting and not run.cancel_requested:
            return run
        agent = self.registry.get(run.agent)
        patch = RunPatch(status=RunStatus.RUNNING, updated_at=_utcnow())
        if run.started_at is None:
            patch = patch.model_copy(update={"started_at": _utcnow()})
        lease = await self.journal.acquire_lease(
            run_id, self.owner, self.options.lease_ttl_s, patch=patch
        )
        run = run.model_copy(update={"started_at": run.started_at or patch.started_at})
        return await _Execution(self, agent, run, lease, deadline).execute()


def _has_decision(run: Run) -> bool:
    return bool(run.pending_approval and run.pending_approval.get("decision"))


class _Paused(Exception):
    """Internal: the run released its lease to wait for a human."""


class _HandedOver(Exception):
    """Internal: the caller's deadline passed; the run goes back to the queue."""


class _Execution:
    """One lease-holding pass over one run."""

    def __init__(
        self, rt: AgentRuntime, agent: Agent, run: Run, lease: Lease, deadline: float | None
    ) -> None:
        self.rt = rt
        self.deadline = deadline
        self.journal = rt.journal
        self.agent = agent
        self.run = run
        self.lease = lease
        self.limits: Limits = agent.limits.tightened(run.budget)
        self.state = RunState()
        self.messages: list[dict[str, Any]] = []
        self.unjournaled: list[ToolResult] = []
        self.cancel_requested = run.cancel_requested
        self.lease_lost: SwitchyardError | None = None
        self.started_mono = time.monotonic()
        # timeout_s bounds working time: time spent waiting for a human does not count.
        since_start = (_utcnow() - run.started_at).total_seconds() if run.started_at else 0.0
        self.elapsed_before = max(0.0, since_start - run.paused_s)
        self.redactor = Redactor(rt.secrets.values())
        self.tool_specs = [t.spec() for t in agent.tools]
        self.last_model_ms = 0.0
        self.repeats = RepeatedCalls()

    # ---- lifecycle -------------------------------------------------------------------------

    async def execute(self) -> Run:
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"heartbeat-{self.run.run_id}")
        try:
            await self._load()
            if not self.state.finished:
                await self._announce_start()
                self.rt.observer.run_started(
                    self.run, step=self.state.step, resumed=self.state.step > 0
                )
            if self.state.finished:
                return await self._release_finished()
            await self._apply_approval_decision()
            return await self._loop()
        except _Paused:
            return await self.journal.get_run(self.run.run_id)
        except _HandedOver:
            return await self.journal.release_lease(self.lease, self._requeue_patch())
        except (LeaseLostError, JournalConflictError):
            # Fenced off: another worker owns the run now. Touch nothing and stop.
            raise
        except ProviderError as exc:
            if not exc.retryable:
                # Provider messages can echo credentials; scrub them like tool output.
                message = self.redactor.redact(str(exc))
                return await self._finish(
                    RunStatus.FAILED, error=RunError(code=exc.code, message=message)
                )
            await self._release_for_retry()
            raise
        except BaseException:
            await self._release_for_retry()
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _load(self) -> None:
        self.state = replay(await self.journal.records(self.run.run_id))
        earlier = await self.rt.history(self.run) if self.rt.history is not None else []
        self.messages = earlier + self.state.messages(self.run.input)
        self.repeats = RepeatedCalls(first=len(earlier))

    async def _announce_start(self) -> None:
        """Journal the ``running`` event.

        Our lease is the newest, so a conflict here means a predecessor whose lease expired
        appended at the seq we read before noticing. Its record continues the same journal:
        adopt it and try again. Conflicts after that mean this runtime is the stale one.
        """
        for attempt in range(START_ATTEMPTS):
            try:
                await self._append(
                    RecordKind.STARTED,
                    lambda ev: ev.add(
                        EventType.RUN_STATUS,
                        status=RunStatus.RUNNING.value,
                        step=self.state.step,
                        resumed=self.state.step > 0,
                        worker=self.rt.owner,
                    ),
                )
                return
            except JournalConflictError:
                if attempt == START_ATTEMPTS - 1:
                    raise
                await self._load()
                if self.state.finished:
                    return

    async def _heartbeat(self) -> None:
        interval = self.rt.options.lease_ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                self.lease, stored = await self.journal.renew_lease(
                    self.lease, self.rt.options.lease_ttl_s
                )
            except LeaseLostError as exc:
                self.lease_lost = exc
                return
            self.cancel_requested = self.cancel_requested or stored.cancel_requested
            if self.rt.on_heartbeat is not None:
                try:
                    await self.rt.on_heartbeat(self.lease)
                except Exception:
                    # A failing hook (e.g. a visibility extension) must not stop lease renewal.
                    logger.exception("heartbeat hook failed for run %s", self.run.run_id)

    async def _release_for_retry(self) -> None:
        """Give the run back unfinished so a redelivery resumes it from the journal."""
        if self.lease_lost is not None:
            return
        with contextlib.suppress(SwitchyardError):
            await asyncio.shield(self.journal.release_lease(self.lease, self._requeue_patch()))

    def _requeue_patch(self) -> RunPatch:
        """Back to the queue unfinished, with progress so far visible on the run item."""
        return RunPatch(
            status=RunStatus.QUEUED,
            steps=self.state.step,
            usage=self.state.usage,
            updated_at=_utcnow(),
        )

    async def _release_finished(self) -> Run:
        s = self.state
        assert s.status is not None
        return await self.journal.release_lease(
            self.lease, self._final_patch(s.status, s.output, s.error)
        )

    def _final_patch(self, status: RunStatus, output: Any, error: RunError | None) -> RunPatch:
        now = _utcnow()
        return RunPatch(
            status=status,
            output=output,
            error=error,
            steps=self.state.step,
            usage=self.state.usage,
            pending_approval=None,
            finished_at=now,
            updated_at=now,
        )

    # ---- the loop --------------------------------------------------------------------------

    async def _loop(self) -> Run:
        try:
            return await self._steps()
        except _Timeout:
            return await self._finish(RunStatus.FAILED, error=timeout_error(self.limits))

    async def _steps(self) -> Run:
        while True:
            stop = await self._boundary()
            if stop is not None:
                return stop
            pending = self.state.pending_tool_uses()
            if pending:
                looping = self.repeats.check(
                    self.messages, len(self.messages) - 1, pending, self.limits
                )
                if looping is not None:
                    return await self._finish(RunStatus.FAILED, error=looping)
                await self._run_tools(pending)
                continue
            over = await self._daily_budget()
            if over is not None:
                return await self._finish(RunStatus.FAILED, error=over)
            call = await self._call_model()
            done = await self._journal_response(call)
            if done is not None:
                return done

    async def _boundary(self) -> Run | None:
        """Before a model call or a tool batch: stop if fenced, cancelled or out of budget.

        The stored cancel flag is read at both points, so a cancel sent while the model was
        thinking stops the tools it asked for. Limits are checked before tools too: once no
        further model call is allowed, running the last response's tools (side effects
        included) would produce results nobody reads.
        """
        if self.lease_lost is not None:
            raise self.lease_lost
        if self.rt.is_cancelled_locally(self.run.run_id):
            self.cancel_requested = True
        if not self.cancel_requested:
            self.cancel_requested = await self.journal.cancel_requested(self.run.run_id)
        if self.cancel_requested:
            return await self._finish(
                RunStatus.CANCELLED,
                error=RunError(code="cancelled", message="run cancelled on request"),
            )
        limit = exceeded(
            self.limits, steps=self.state.step, usage=self.state.usage, elapsed_s=self._elapsed()
        )
        if limit is not None:
            return await self._finish(RunStatus.FAILED, error=limit)
        past_deadline = self.deadline is not None and time.monotonic() >= self.deadline
        if past_deadline or self.rt.draining:
            await self._flush_tools()
            raise _HandedOver()
        return None

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.started_mono)

    def _remaining(self) -> float:
        return max(0.0, self.limits.timeout_s - self._elapsed())

    # ---- model -----------------------------------------------------------------------------

    async def _daily_budget(self) -> RunError | None:
        """The tenant's daily budget, checked before each model call (counters are shared
        by every process, flushed every few seconds: see ``shared.usage``)."""
        if self.rt.daily_budget is None:
            return None
        budget = self.rt.daily_budget(self.run.tenant)
        if budget is None:
            return None
        spent = await self.rt.usage.spent_today(self.run.tenant)
        return daily_budget_exceeded(self.run.tenant, spent_usd=spent, budget_usd=budget)

    async def _call_model(self) -> GatewayCall:
        from shared.gateway import ThrottledTooLong

        remaining_tokens = self.limits.max_output_tokens - self.state.usage.output_tokens
        request = ModelRequest(
            model=self.agent.model,
            system=self.agent.system,
            messages=self.messages,
            tools=self.tool_specs,
            max_tokens=max(1, min(self.limits.max_tokens_per_call, remaining_tokens)),
        )
        # A sync run does not sit in its API call waiting for rate limits: past its
        # deadline it goes to the async track instead.
        max_wait = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        try:
            started = time.monotonic()
            step = self.state.step + 1
            with self.rt.observer.span("model_call", model=self.agent.model, step=step):
                async with asyncio.timeout(self._remaining()):
                    call = await self.rt.gateway.call(
                        request, self.agent.models, max_wait_s=max_wait
                    )
            # The model's own time: waits for rate limits are reported on their own.
            self.last_model_ms = (time.monotonic() - started - call.throttled_s) * 1000
            return call
        except ThrottledTooLong:
            await self._flush_tools()
            raise _HandedOver() from None
        except TimeoutError:
            raise _Timeout() from None

    async def _journal_response(self, call: GatewayCall) -> Run | None:
        response = call.response
        usage = price_usage(response.model, response.usage, self.rt.prices)
        step = self.state.step + 1
        uses = response.tool_uses()
        final = not uses
        output = response.text() if final else None
        carried = self.unjournaled
        total = self.state.usage + usage

        def events(ev: EventBuilder) -> None:
            ev.tool_results(carried)
            ev.add(
                EventType.STEP_COMPLETED,
                step=step,
                model=response.model,
                stop_reason=response.stop_reason,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens,
                cache_creation_input_tokens=usage.cache_creation_input_tokens,
                cost_usd=usage.cost_usd,
                total_cost_usd=total.cost_usd,
                text=preview(response.text()) if response.text() else None,
                **_gateway_fields(call),
            )
            for use in uses:
                ev.add(
                    EventType.TOOL_CALLED,
                    step=step,
                    tool_use_id=use["id"],
                    name=use["name"],
                    input=preview(use.get("input", {})),
                )
            if final:
                ev.add(EventType.RUN_STATUS, status=RunStatus.SUCCEEDED.value, step=step)

        await self._append(
            RecordKind.MODEL,
            events,
            step=step,
            model=response.model,
            response={
                "id": response.id,
                "content": response.content,
                "stop_reason": response.stop_reason,
            },
            usage=usage,
            tool_results=carried,
            status=RunStatus.SUCCEEDED if final else None,
            output=output,
        )
        self.unjournaled = []
        self.messages.append({"role": "assistant", "content": response.content})
        self.rt.observer.step_completed(
            self.run, step=step, model=response.model, latency_ms=self.last_model_ms, usage=usage
        )
        self.rt.usage.record(
            tenant=self.run.tenant,
            agent=self.run.agent,
            usage=usage,
            at=_utcnow(),
            runs=1 if step == 1 else 0,
        )
        await self.rt.usage.flush()
        if final:
            return await self._release_finished()
        return None

    # ---- tools -----------------------------------------------------------------------------

    async def _run_tools(self, pending: list[dict[str, Any]]) -> None:
        needs_approval = [
            u
            for u in pending
            if (t := self.agent.tool(u["name"])) is not None
            and t.requires_approval
            and u["id"] not in self.state.decisions
        ]
        if needs_approval:
            await self._pause_for_approval(needs_approval)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._remaining()):
                if len(pending) == 1:  # the common case; skips a task per call
                    results = [await self._run_tool(pending[0])]
                else:
                    results = await asyncio.gather(*(self._run_tool(u) for u in pending))
        except TimeoutError:
            raise _Timeout() from None
        elapsed = time.monotonic() - started
        # Results of earlier flushes stay in state.results; collect this batch in call order.
        all_uses = [b for b in self.state.last_response["content"] if b.get("type") == "tool_use"]  # type: ignore[index]
        for result in results:
            self.state.results[result.tool_use_id] = result
        self.unjournaled.extend(results)
        self.messages.append(
            {
                "role": "user",
                "content": [result_block(self.state.results[u["id"]]) for u in all_uses],
            }
        )
        costly = any(
            (t := self.agent.tool(u["name"])) is not None and t.side_effect for u in pending
        )
        if costly or elapsed > self.rt.options.flush_tools_after_s:
            await self._flush_tools()

    async def _flush_tools(self) -> None:
        carried = self.unjournaled
        if not carried:
            return
        await self._append(
            RecordKind.TOOLS,
            lambda ev: ev.tool_results(carried),
            step=self.state.step,
            tool_results=carried,
        )
        self.unjournaled = []

    async def _run_tool(self, use: dict[str, Any]) -> ToolResult:
        step = self.state.step
        key = f"{self.run.run_id}:{step}:{use['id']}"
        tool = self.agent.tool(use["name"])

        def result(content: str, *, is_error: bool = False) -> ToolResult:
            return ToolResult(
                step=step,
                tool_use_id=use["id"],
                name=use["name"],
                content=self.redactor.redact(content),
                is_error=is_error,
                idempotency_key=key if tool is not None and tool.side_effect else None,
            )

        if tool is None:
            return result(f"Error: no tool named {use['name']!r}", is_error=True)
        raw_input = use.get("input") or {}
        decision = self.state.decisions.get(use["id"])
        if decision is not None:
            if decision.get("decision") != "approve":
                comment = decision.get("comment")
                return result(
                    "The user rejected this tool call" + (f": {comment}" if comment else "."),
                    is_error=True,
                )
            raw_input = decision.get("edited_input") or raw_input
        ctx = ToolContext(
            run_id=self.run.run_id,
            tenant=self.run.tenant,
            step=step,
            tool_use_id=use["id"],
            idempotency_key=key,
            _secrets=self.rt.secrets,
        )
        started = time.monotonic()
        outcome: ToolResult | None = None
        try:
            with self.rt.observer.span("tool_call", tool=tool.name, step=step):
                outcome = result(await tool.invoke(raw_input, ctx))
            return outcome
        except SwitchyardError as exc:
            detail = f"{exc.message}: {exc.details}" if exc.details else exc.message
            outcome = result(f"Error: {detail}", is_error=True)
            return outcome
        except Exception as exc:
            # The model sees the failure and may recover; the message is scrubbed of secrets.
            outcome = result(f"Error: {type(exc).__name__}: {exc}", is_error=True)
            return outcome
        finally:
            if outcome is not None:
                self.rt.observer.tool_completed(
                    self.run,
                    step=step,
                    name=tool.name,
                    latency_ms=(time.monotonic() - started) * 1000,
                    is_error=outcome.is_error,
                )

    # ---- approval --------------------------------------------------------------------------

    async def _pause_for_approval(self, uses: list[dict[str, Any]]) -> None:
        await self._flush_tools()
        calls = [
            {"tool_use_id": u["id"], "name": u["name"], "input": u.get("input", {})} for u in uses
        ]
        ids = [u["id"] for u in uses]
        if not set(ids) <= self.state.approval_requested:

            def events(ev: EventBuilder) -> None:
                ev.add(EventType.APPROVAL_REQUESTED, step=self.state.step, calls=calls)
                ev.add(EventType.RUN_STATUS, status=RunStatus.AWAITING_APPROVAL.value)

            await self._append(
                RecordKind.APPROVAL, events, step=self.state.step, data={"requested": ids}
            )
        await self.journal.release_lease(
            self.lease,
            RunPatch(
                status=RunStatus.AWAITING_APPROVAL,
                pending_approval={
                    "step": self.state.step,
                    "calls": calls,
                    "decision": None,
                    "requested_at": _utcnow().isoformat(),
                },
                steps=self.state.step,
                usage=self.state.usage,
                updated_at=_utcnow(),
            ),
        )
        raise _Paused()

    async def _apply_approval_decision(self) -> None:
        pending = self.run.pending_approval
        if not pending or not pending.get("decision"):
            return
        decision = pending["decision"]
        ids = [c["tool_use_id"] for c in pending["calls"]]
        decisions = {i: decision for i in ids if i not in self.state.decisions}
        if decisions:

            def events(ev: EventBuilder) -> None:
                ev.add(
                    EventType.APPROVAL_DECIDED,
                    step=self.state.step,
                    decision=decision.get("decision"),
                    comment=decision.get("comment"),
                    tool_use_ids=list(decisions),
                )

            await self._append(
                RecordKind.APPROVAL, events, step=self.state.step, data={"decisions": decisions}
            )
        await self.journal.update_run(
            self.run.run_id, RunPatch(pending_approval=None), lease=self.lease
        )

    # ---- ending ----------------------------------------------------------------------------

    async def _finish(
        self, status: RunStatus, *, output: Any = None, error: RunError | None = None
    ) -> Run:
        carried = self.unjournaled

        def events(ev: EventBuilder) -> None:
            ev.tool_results(carried)
            data: dict[str, Any] = {"status": status.value, "step": self.state.step}
            if error is not None:
                data["error"] = error.model_dump(exclude_none=True)
            ev.add(EventType.RUN_STATUS, **data)

        await self._append(
            RecordKind.FINISHED,
            events,
            step=self.state.step,
            tool_results=carried,
            status=status,
            output=output,
            error=error,
        )
        self.unjournaled = []
        return await self._release_finished()

    # ---- journal ---------------------------------------------------------------------------

    async def _append(
        self, kind: RecordKind, events: Callable[[EventBuilder], None], **fields: Any
    ) -> None:
        if self.lease_lost is not None:
            raise self.lease_lost
        at = _utcnow()
        builder = EventBuilder(self.state.next_seq, at)
        events(builder)
        record = JournalRecord(
            seq=self.state.next_seq,
            kind=kind,
            at=at,
            fence=self.lease.fence,
            events=builder.events,
            **fields,
        )
        with self.rt.observer.span("journal_append", kind=kind.value, seq=record.seq):
            await self.journal.append(self.run.run_id, record)
        self.state.apply(record)


def _gateway_fields(call: GatewayCall) -> dict[str, Any]:
    """What the gateway went through for a step, when it went through anything."""
    fields: dict[str, Any] = {}
    if call.fallbacks:
        fields["fallbacks"] = [{"model": f.model, "reason": f.reason} for f in call.fallbacks]
    if call.throttled_s:
        fields["throttled_ms"] = round(call.throttled_s * 1000)
    if call.rate_limited:
        fields["rate_limited"] = call.rate_limited
    return fields


class _Timeout(Exception):
    """Internal: the run's deadline passed during a model or tool call."""


__all__ = ["AgentRuntime", "RuntimeOptions", "render_input"]
