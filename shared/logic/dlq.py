"""Dead letters: runs whose queue message was received ``maxReceiveCount`` times without the
run finishing (a worker crashing on it every time, a run that cannot make progress).

Three use cases:

- :func:`handle_dead_letter` marks the run ``failed`` with ``error.code = "dead_lettered"``
  and the receive count, keeping journal and run item in step (see :func:`mark_dead_lettered`).
  It never deletes the message: dead letters stay for an operator to inspect and redrive.
- :func:`settle_dead_letter` is what the DLQ function does with each record it is handed by
  its SQS event-source mapping: mark the run, then move the message to the dead-letter queue
  operators read (``SWITCHYARD_DLQ_URL``). Lambda deletes every record it reports processed,
  so the message is kept by re-sending it there before reporting success.
- :func:`redrive` sends dead letters back to the runs queue. A run marked ``dead_lettered``
  is reopened first (status ``queued``, error cleared) and resumes from its journal where it
  stopped; journaled steps are not repeated.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel

from shared.errors import JournalConflictError, LeaseHeldError, RunNotFoundError
from shared.journal.base import Journal, RunPatch
from shared.logic.service import Services
from shared.models.events import EventType
from shared.models.journal import JournalRecord, RecordKind
from shared.models.run import Run, RunError, RunStatus
from shared.observability import count, get_logger, new_metrics
from shared.queue.base import QueueMessage, RunMessage
from shared.runtime.events import EventBuilder
from shared.runtime.state import RunState, replay

DEAD_LETTERED = "dead_lettered"
APPEND_ATTEMPTS = 3
PAGE = 10

logger = get_logger("switchyard-dlq")
metrics = new_metrics("switchyard-dlq")


def _now() -> datetime:
    return datetime.now(UTC)


def is_dead_lettered(run: Run) -> bool:
    return (
        run.status is RunStatus.FAILED and run.error is not None and run.error.code == DEAD_LETTERED
    )


def dead_letter_error(message: QueueMessage) -> RunError:
    sent_at = datetime.fromtimestamp(message.sent_at_ms / 1000, UTC) if message.sent_at_ms else None
    return RunError(
        code=DEAD_LETTERED,
        message=(
            f"the run's queue message was received {message.receive_count} times without the "
            "run finishing, and was moved to the dead-letter queue; an operator can redrive it"
        ),
        details={
            "receive_count": message.receive_count,
            "message_id": message.message_id,
            "sent_at": sent_at.isoformat() if sent_at else None,
        },
    )


# ---- journal primitives ----------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """The run after a write under its lease; ``changed`` is False when the run was no
    longer in the state the write was for (it moved on meanwhile), so nothing was written."""

    run: Run
    changed: bool


async def _write_under_lease(
    journal: Journal,
    run_id: str,
    *,
    owner: str,
    lease_ttl_s: float,
    wanted: Callable[[Run], bool],
    record: Callable[[RunState], JournalRecord | None],
    patch: Callable[[RunState], RunPatch],
) -> Written | None:
    """Take the run's lease; if the run is still ``wanted``, append ``record(state)`` at the
    journal's next seq (re-reading if a stale writer slipped a record in first) and release
    the lease applying ``patch(state)`` in the same write. ``None`` if another owner holds a
    live lease."""
    try:
        lease = await journal.acquire_lease(run_id, owner, lease_ttl_s)
    except LeaseHeldError:
        return None
    released = False
    try:
        current = await journal.get_run(run_id)
        if not wanted(current):
            run = await journal.release_lease(lease)
            released = True
            return Written(run, changed=False)
        for attempt in range(APPEND_ATTEMPTS):
            state = replay(await journal.records(run_id))
            entry = record(state)
            if entry is None:
                break
            try:
                await journal.append(run_id, entry.model_copy(update={"fence": lease.fence}))
                state.apply(entry)
                break
            except JournalConflictError:
                if attempt == APPEND_ATTEMPTS - 1:
                    raise
        run = await journal.release_lease(lease, patch(state))
        released = True
        return Written(run, changed=True)
    finally:
        if not released:
            try:
                await journal.release_lease(lease)
            except Exception:  # best effort: the lease expires on its own
                logger.warning("could not release the lease", extra={"run_id": run_id})


async def mark_dead_lettered(
    journal: Journal, run_id: str, error: RunError, *, owner: str, lease_ttl_s: float
) -> Written | None:
    """End a run ``failed`` from outside any execution of it; ``None`` if a live lease is
    held by someone else (the run is executing after all: try again later), unchanged
    (``changed=False``) if it has ended meanwhile.

    Like the runtime's own ending (``_finish`` in ``shared/runtime/loop.py``): a ``finished``
    record carrying the ``run.status: failed`` event with the error, appended under the run's
    lease, then the run item patched ``failed`` as the lease is released. One difference: the
    record sets no terminal ``status`` for replay. The run's execution did not end — the
    platform gave up delivering it — so replay still sees the run where it stopped, and a
    redrive resumes it from there. If the journal already holds a terminal record (a worker
    journaled the end, then died before updating the run item), that outcome is adopted.
    """

    def record(state: RunState) -> JournalRecord | None:
        if state.finished:
            return None
        at = _now()
        events = EventBuilder(state.next_seq, at)
        events.add(
            EventType.RUN_STATUS,
            status=RunStatus.FAILED.value,
            step=state.step,
            error=error.model_dump(exclude_none=True),
        )
        return JournalRecord(
            seq=state.next_seq,
            kind=RecordKind.FINISHED,
            at=at,
            step=state.step,
            error=error,
            data={DEAD_LETTERED: True},
            events=events.events,
        )

    def patch(state: RunState) -> RunPatch:
        now = _now()
        adopted = state.finished and state.status is not None
        return RunPatch(
            status=state.status if adopted else RunStatus.FAILED,
            output=state.output if adopted else None,
            error=state.error if adopted else error,
            steps=state.step,
            usage=state.usage,
            pending_approval=None,
            finished_at=now,
            updated_at=now,
        )

    return await _write_under_lease(
        journal,
        run_id,
        owner=owner,
        lease_ttl_s=lease_ttl_s,
        wanted=lambda run: not run.status.is_terminal,
        record=record,
        patch=patch,
    )


async def reopen_dead_lettered(
    journal: Journal, run: Run, *, owner: str, lease_ttl_s: float, reason: str = "redrive"
) -> Written | None:
    """Put a run marked ``dead_lettered`` back to ``queued`` (error and finish time cleared),
    with a record carrying the ``queued`` event. The time it spent dead-lettered is added to
    ``paused_s``, so it does not count against the agent's ``timeout_s``."""
    now = _now()
    dead_for = (now - run.finished_at).total_seconds() if run.finished_at else 0.0

    def record(state: RunState) -> JournalRecord:
        events = EventBuilder(state.next_seq, now)
        events.add(
            EventType.RUN_STATUS, status=RunStatus.QUEUED.value, step=state.step, reason=reason
        )
        return JournalRecord(
            seq=state.next_seq,
            kind=RecordKind.CREATED,
            at=now,
            step=state.step,
            data={reason: True},
            events=events.events,
        )

    def patch(state: RunState) -> RunPatch:
        return RunPatch(
            status=RunStatus.QUEUED,
            error=None,
            finished_at=None,
            paused_s=run.paused_s + max(0.0, dead_for),
            updated_at=_now(),
        )

    return await _write_under_lease(
        journal,
        run.run_id,
        owner=owner,
        lease_ttl_s=lease_ttl_s,
        wanted=is_dead_lettered,
        record=record,
        patch=patch,
    )


def _owner(role: str) -> str:
    # Never the caller's own owner id: a worker that holds a run's live lease must not
    # "take" it again through this path.
    return f"{role}-{uuid.uuid4().hex[:12]}"


# ---- handling --------------------------------------------------------------------------------


async def _completed(svc: Services, run: Run) -> None:
    """What ``execute_run`` does when a run ends: free its thread, fire its hook."""
    if run.thread_id:
        await svc.control.finish_thread_run(run.tenant, run.thread_id, run.run_id, _now())
    if svc.on_complete is not None:
        outcome = svc.on_complete(run)
        if inspect.isawaitable(outcome):
            await outcome


async def handle_dead_letter(svc: Services, message: QueueMessage) -> Run | None:
    """Mark the dead letter's run failed (``dead_lettered``) and return it.

    Idempotent: a run already finished is returned as it is. ``None`` means another worker
    holds a live lease on the run: leave the message, it is handled again later.
    ``RunNotFoundError`` if the run does not exist (any more). The message is not deleted.
    """
    run_id = message.body.run_id
    run = await svc.journal.get_run(run_id)
    if run.status.is_terminal:
        return run
    written = await mark_dead_lettered(
        svc.journal,
        run_id,
        dead_letter_error(message),
        owner=_owner("dlq"),
        lease_ttl_s=svc.settings.lease_ttl_s,
    )
    if written is None:
        logger.info("dead letter's run is leased; leaving it for later", extra={"run_id": run_id})
        count(metrics, "DeadLettersDeferred")
        return None
    marked = written.run
    if not written.changed:  # it finished meanwhile, and whoever finished it reported it
        return marked
    logger.warning(
        "run dead-lettered",
        extra={
            "run_id": run_id,
            "tenant": marked.tenant,
            "agent": marked.agent,
            "status": marked.status.value,
            "receive_count": message.receive_count,
        },
    )
    count(metrics, "RunsDeadLettered", agent=marked.agent)
    await _completed(svc, marked)
    return marked


class DeadLetterSink(Protocol):
    """Where a handled dead letter is kept: a ``RunQueue`` whose queue is the DLQ."""

    async def send(self, message: RunMessage, *, delay_s: int = 0) -> str: ...


class Settled(StrEnum):
    KEPT = "kept"  # the run is marked; the message is in the DLQ for redrive
    DROPPED = "dropped"  # nothing to redrive: the run finished on its own, or is gone
    RETRY = "retry"  # the run is leased by a live worker: deliver the record again later


async def settle_dead_letter(svc: Services, message: QueueMessage, dlq: DeadLetterSink) -> Settled:
    """One record of the DLQ function's event-source mapping (see the module docstring)."""
    try:
        run = await handle_dead_letter(svc, message)
    except RunNotFoundError:
        logger.warning("dead letter for an unknown run", extra={"run_id": message.body.run_id})
        count(metrics, "DeadLettersDropped")
        return Settled.DROPPED
    if run is None:
        return Settled.RETRY
    if is_dead_lettered(run):
        await dlq.send(message.body)
        return Settled.KEPT
    logger.info(
        "dead letter's run already finished; nothing to redrive",
        extra={"run_id": run.run_id, "status": run.status.value},
    )
    count(metrics, "DeadLettersDropped")
    return Settled.DROPPED


# ---- listing and redrive ---------------------------------------------------------------------


class DeadLetter(BaseModel):
    """A message in the DLQ with the run it names (``None`` if the run is gone)."""

    message_id: str
    run_id: str
    receive_count: int
    sent_at_ms: int
    run: Run | None


RedriveAction = Literal["redriven", "requeued", "discarded", "skipped"]


class RedriveOutcome(BaseModel):
    run_id: str
    message_id: str
    action: RedriveAction
    reason: str | None = None


async def _pages(svc: Services, limit: int) -> AsyncIterator[QueueMessage]:
    """Dead letters, each at most once, until ``limit`` or the queue seems empty.

    A received dead letter stays invisible for the DLQ's visibility timeout, so a second
    page shows other messages; two pages without a new message end the walk."""
    seen: set[str] = set()
    idle = 0
    while len(seen) < limit and idle < 2:
        page = await svc.queue.dead_letters(max_messages=min(PAGE, limit - len(seen)))
        fresh = [m for m in page if m.message_id not in seen]
        if not fresh:
            idle += 1
            continue
        idle = 0
        for message in fresh:
            seen.add(message.message_id)
            yield message


async def list_dead_letters(svc: Services, *, limit: int = 100) -> list[DeadLetter]:
    """What is in the DLQ (messages are received, not deleted)."""
    out: list[DeadLetter] = []
    async for message in _pages(svc, limit):
        try:
            run: Run | None = await svc.journal.get_run(message.body.run_id)
        except RunNotFoundError:
            run = None
        out.append(
            DeadLetter(
                message_id=message.message_id,
                run_id=message.body.run_id,
                receive_count=message.receive_count,
                sent_at_ms=message.sent_at_ms,
                run=run,
            )
        )
    return out


async def redrive_message(svc: Services, message: QueueMessage) -> RedriveOutcome:
    """Send one dead letter back to the runs queue (reopening its run) or discard it."""
    run_id = message.body.run_id

    def outcome(action: RedriveAction, reason: str | None = None) -> RedriveOutcome:
        return RedriveOutcome(
            run_id=run_id, message_id=message.message_id, action=action, reason=reason
        )

    try:
        run = await svc.journal.get_run(run_id)
    except RunNotFoundError:
        await svc.queue.delete_dead_letter(message.receipt)
        return outcome("discarded", "the run no longer exists")
    action: RedriveAction = "requeued"
    if run.status.is_terminal:
        if not is_dead_lettered(run):
            await svc.queue.delete_dead_letter(message.receipt)
            return outcome("discarded", f"the run already {run.status.value}")
        if run.thread_id:
            # Its thread moved on when it failed (later turns may build on that); reopening
            # it would break the thread's one-run-at-a-time order.
            await svc.queue.delete_dead_letter(message.receipt)
            return outcome("discarded", "the run belongs to a thread, which has moved on")
        reopened = await reopen_dead_lettered(
            svc.journal, run, owner=_owner("redrive"), lease_ttl_s=svc.settings.lease_ttl_s
        )
        if reopened is None:
            return outcome("skipped", "the run is leased by a worker")
        action = "redriven"
    # Reopened before sending: a worker never receives a message for a run still failed.
    # Should the send fail, the message stays here and the next redrive sends it (the run
    # is queued by then, so it goes back as it is).
    await svc.queue.redrive(message)
    await svc.queue.delete_dead_letter(message.receipt)
    count(metrics, "DeadLettersRedriven")
    return outcome(action)


async def redrive(
    svc: Services, *, run_ids: Collection[str] | None = None, limit: int = 100
) -> list[RedriveOutcome]:
    """Send dead letters (all, or those of ``run_ids``) back to the runs queue.

    - a run marked ``dead_lettered`` is reopened (``queued``) and resumes from its journal;
    - a run not finished (not marked yet) goes back as it is;
    - a message whose run finished otherwise, no longer exists, or is a thread's (its thread
      moved on) is discarded: there is nothing to run.
    """
    outcomes: list[RedriveOutcome] = []
    async for message in _pages(svc, limit):
        if run_ids is not None and message.body.run_id not in run_ids:
            continue
        outcomes.append(await redrive_message(svc, message))
    return outcomes


__all__ = [
    "DEAD_LETTERED",
    "DeadLetter",
    "DeadLetterSink",
    "RedriveOutcome",
    "Settled",
    "Written",
    "handle_dead_letter",
    "is_dead_lettered",
    "list_dead_letters",
    "mark_dead_lettered",
    "redrive",
    "redrive_message",
    "reopen_dead_lettered",
    "settle_dead_letter",
]
