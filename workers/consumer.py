"""The runs-queue consumer: long-poll, execute each run in its own task, ack late.

For every message (``{run_id}``) the consumer calls ``shared.logic.service.execute_run`` and
acts on what it returns; it never touches AWS itself (the queue and journal are injected):

| outcome | the message |
| --- | --- |
| run finished (succeeded, failed, cancelled) or paused (awaiting_approval) | deleted |
| run already finished when received (a duplicate delivery) | deleted, no work |
| another message for a run already executing in this process | deleted, no work |
| the message being executed here came back (an extension failed) | hidden again |
| ``queued``: the run waits for an earlier run of its thread | re-sent with a delay, then deleted |
| ``queued``: handed back at a step boundary while draining | made visible at once |
| another worker holds the lease | hidden until that lease would expire, then retried |
| an exception (a crash, a retryable provider error) | left: redelivered, DLQ at last |

Pipeline stages (``shared/logic/stages.py``) ride the same queue. A dispatch message (an
agent stage, with its task token) creates its run on first receipt, then executes like any
run; while it executes, the heartbeat also heartbeats the token (at most every quarter of the
stage's HeartbeatSeconds), and a token found closed (the job moved on) cancels the run. A
``resume`` message (a paused stage run's new token) is attached to the run's attempt and
deleted: nothing executes until a reviewer decides. A duplicate of a finished stage run's
message answers its token again (a crash may have come between journal and answer).

A run waiting for its thread is re-sent rather than hidden again, so waiting behind a long
run does not use up the message's receive count and land it in the DLQ.

While a run executes, every runtime heartbeat (each ``lease_ttl_s / 3``) also extends its
message's visibility to ``lease_ttl_s``, so a healthy long run never reappears, and a crashed
worker's message reappears about when its lease expires. The runtime is shared by all runs of
the process, so its one ``on_heartbeat`` hook finds the run's receipt in a map by run id.

Draining (``stop()``, on SIGTERM): no more receives; every in-flight run stops at its next step
boundary (``AgentRuntime.drain``) or finishes; after ``drain_timeout_s`` the rest are cancelled
(the runtime releases their leases); every message not acked is made visible at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from shared.errors import LeaseHeldError, QueueError, RunNotFoundError, RuntimeStateError
from shared.logic.runs import request_cancel
from shared.logic.service import Services, execute_run
from shared.logic.stages import (
    attach_resume_token,
    begin_stage_run,
    heartbeat_stage,
    report_stage,
)
from shared.models.job import AttemptStatus
from shared.models.run import Lease, Run, RunStatus
from shared.observability import bind_run, count, get_logger, milliseconds, new_metrics
from shared.queue.base import QueueMessage
from workers.health import HealthFile

SERVICE = "switchyard-worker"
# With every slot busy the loop still wakes this often (to stamp the health file).
IDLE_TICK_S = 5.0
# How long cancelled runs get to release their leases and messages when the drain ends.
CANCEL_GRACE_S = 5.0
RECEIVE_ERROR_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class Outcome(StrEnum):
    """What the consumer did with one message."""

    FINISHED = "finished"  # terminal: deleted
    PAUSED = "paused"  # awaiting approval: deleted
    DUPLICATE = "duplicate"  # already finished, or already executing here: deleted
    MISSING = "missing"  # no such run: deleted
    THREAD_WAIT = "thread_wait"  # re-sent with a delay, deleted
    HANDED_OVER = "handed_over"  # draining: released at a step boundary, visible again
    LEASE_HELD = "lease_held"  # another worker has it: hidden until its lease expires
    ERROR = "error"  # left for redelivery (and eventually the DLQ)
    CANCELLED = "cancelled"  # drain timed out: released, visible again
    RELEASED = "released"  # received while draining: visible again, not started
    REDELIVERED = "redelivered"  # the message being executed came back: hidden again
    ATTACHED = "attached"  # a paused stage run's new task token, stored: deleted


class Delivery:
    """A received message and its current receipt (the newest one, if it came back)."""

    __slots__ = ("message", "receipt")

    def __init__(self, message: QueueMessage) -> None:
        self.message = message
        self.receipt = message.receipt


@dataclass(frozen=True)
class ConsumerOptions:
    concurrency: int = 64
    receive_batch: int = 10
    receive_wait_s: float = 20.0
    visibility_s: int = 30
    drain_timeout_s: float = 25.0
    thread_backoff_s: int = 5
    # No new runs while a model call would wait longer than this for rate limits.
    backpressure_wait_s: float = 5.0

    @classmethod
    def from_services(cls, svc: Services) -> ConsumerOptions:
        s = svc.settings
        return cls(
            concurrency=s.worker_concurrency,
            receive_batch=s.worker_receive_batch,
            receive_wait_s=s.worker_receive_wait_s,
            visibility_s=max(1, math.ceil(s.lease_ttl_s)),
            drain_timeout_s=s.worker_drain_timeout_s,
            thread_backoff_s=s.worker_thread_backoff_s,
            backpressure_wait_s=s.backpressure_wait_s,
        )


class Consumer:
    def __init__(
        self,
        svc: Services,
        options: ConsumerOptions | None = None,
        *,
        health: HealthFile | None = None,
        logger: Logger | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.svc = svc
        self.queue = svc.queue
        self.options = options or ConsumerOptions.from_services(svc)
        self.health = health
        self.logger = logger or get_logger(SERVICE, level=svc.settings.log_level)
        self.metrics = metrics or new_metrics(SERVICE)
        self._clock = clock
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Outcome]] = set()
        # run_id -> the message this process is executing it for (one per run).
        self._in_flight: dict[str, Delivery] = {}
        # run_id -> when its stage token was last heartbeaten (monotonic seconds).
        self._token_beats: dict[str, float] = {}
        self.outcomes: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.max_in_flight = 0
        self._held_back = False
        self.held_back_ticks = 0  # receive-loop turns skipped for rate limits
        runtime = svc.runtime()
        self._chained_heartbeat = runtime.on_heartbeat
        runtime.on_heartbeat = self._on_heartbeat

    # ---- lifecycle -----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop receiving and drain (safe to call from a signal handler, more than once)."""
        if not self._stopping.is_set():
            self.logger.info("stop requested: draining", extra={"in_flight": self.in_flight})
            self._stopping.set()
            self.svc.runtime().drain()

    async def run(self) -> None:
        """Consume until ``stop()``, then drain. Returns once every run is released."""
        self.logger.info(
            "worker ready",
            extra={
                "owner": self.svc.runtime().owner,
                "concurrency": self.options.concurrency,
                "visibility_s": self.options.visibility_s,
            },
        )
        stop_waiter = asyncio.create_task(self._stopping.wait(), name="stop-waiter")
        flusher = asyncio.create_task(self._flush_usage(), name="usage-flush")
        receiving: asyncio.Task[list[QueueMessage]] | None = None
        errors = 0
        try:
            while not self.stopping:
                self._stamp()
                free = self.options.concurrency - self.in_flight
                pressure = self._backpressure()
                if free <= 0 or pressure > 0:
                    await asyncio.wait(
                        {*self._tasks, stop_waiter},
                        timeout=min(IDLE_TICK_S, pressure) if pressure > 0 else IDLE_TICK_S,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    continue
                receiving = asyncio.create_task(
                    self.queue.receive(
                        max_messages=min(self.options.receive_batch, free),
                        wait_s=self.options.receive_wait_s,
                        visibility_s=self.options.visibility_s,
                    ),
                    name="receive",
                )
                await asyncio.wait({receiving, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    break  # stopping; the drain deals with what the poll still returns
                got = receiving
                receiving = None
                try:
                    messages = got.result()
                except QueueError as exc:
                    delay = RECEIVE_ERROR_BACKOFF_S[min(errors, len(RECEIVE_ERROR_BACKOFF_S) - 1)]
                    errors += 1
                    self.logger.error("receive failed", extra={"error": str(exc), "retry_s": delay})
                    await asyncio.wait({stop_waiter}, timeout=delay)
                    continue
                errors = 0
                for message in messages:
                    self._start(message)
        finally:
            stop_waiter.cancel()
            flusher.cancel()
            await self._drain(receiving)
            await self._write_counts()
            self._stamp()
        self.logger.info("worker stopped", extra={"outcomes": self._outcome_counts()})

    def _backpressure(self) -> float:
        """Seconds to hold off receiving: the rate limits would make new runs wait longer
        than ``backpressure_wait_s`` for their first call, so they stay in the queue (where
        any worker with room, or this one later, takes them) instead of holding a slot and
        a lease here. 0: receive."""
        pressure = self.svc.runtime().gateway.pressure_s()
        if pressure <= self.options.backpressure_wait_s:
            self._held_back = False
            return 0.0
        self.held_back_ticks += 1
        if not self._held_back:
            self._held_back = True
            count(self.metrics, "WorkerBackpressure")
            self.logger.info(
                "rate limits saturated: not taking new runs",
                extra={"wait_s": round(pressure, 1), "in_flight": self.in_flight},
            )
        return pressure - self.options.backpressure_wait_s

    def _start(self, message: QueueMessage) -> None:
        if self.stopping:
            task = asyncio.create_task(self._release_unstarted(message))
        else:
            task = asyncio.create_task(self.handle(message), name=f"run-{message.body.run_id}")
        self._tasks.add(task)
        self.max_in_flight = max(self.max_in_flight, len(self._tasks))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Outcome]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self.outcomes[Outcome.CANCELLED] += 1
            return
        exc = task.exception()
        if exc is not None:  # handle() catches everything it can; this is a consumer bug
            self.logger.error("message task crashed", exc_info=exc)
            return
        self.outcomes[task.result()] += 1

    async def _drain(self, receiving: asyncio.Task[list[QueueMessage]] | None) -> None:
        self.svc.runtime().drain()
        deadline = time.monotonic() + self.options.drain_timeout_s
        if receiving is not None:
            # A long poll in flight may still hand us messages: give them straight back.
            done, _ = await asyncio.wait({receiving}, timeout=self.options.drain_timeout_s)
            if done and not receiving.cancelled() and receiving.exception() is None:
                for message in receiving.result():
                    self._start(message)
            elif not done:
                receiving.cancel()  # they reappear after their visibility timeout
        pending = set(self._tasks)
        if pending:
            self.logger.info("draining in-flight runs", extra={"in_flight": len(pending)})
            remaining = max(0.0, deadline - time.monotonic())
            _, pending = await asyncio.wait(pending, timeout=remaining)
        if pending:
            self.logger.warning("drain timeout: cancelling runs", extra={"cancelled": len(pending)})
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=CANCEL_GRACE_S)

    async def _flush_usage(self) -> None:
        """Write the usage counts every ``usage_flush_s``, steps or none: a worker idle in a
        long poll still publishes what its last runs used (the recorder never raises)."""
        while True:
            await asyncio.sleep(self.svc.settings.usage_flush_s)
            await self.svc.usage.flush()

    async def _write_counts(self) -> None:
        """What this process still holds of usage counts and rate-limit reconciliations."""
        await self.svc.usage.flush(force=True)
        await self.svc.runtime().gateway.flush()

    def _stamp(self) -> None:
        if self.health is not None:
            try:
                self.health.touch()
            except OSError as exc:
                self.logger.warning("cannot stamp the health file", extra={"error": str(exc)})

    def _outcome_counts(self) -> dict[str, int]:
        return {k.value: v for k, v in self.outcomes.items() if v}

    # ---- one message ---------------------------------------------------------------------

    async def handle(self, message: QueueMessage) -> Outcome:
        """Execute the message's run and ack it (or not) according to the outcome."""
        run_id = message.body.run_id
        if message.body.resume:
            # Never a duplicate of an executing copy: the new token must reach the attempt,
            # even while the run's pause is still being acknowledged here.
            return await self._attach(Delivery(message))
        current = self._in_flight.get(run_id)
        if current is not None:
            return await self._while_executing(current, message)
        delivery = Delivery(message)
        self._in_flight[run_id] = delivery
        try:
            return await self._execute(delivery)
        except asyncio.CancelledError:
            # The drain timed out: the runtime released the lease (if it held one); make the
            # message visible now rather than after its timeout.
            await asyncio.shield(self._hide(delivery, 0))
            self.logger.warning("run cancelled by the drain; released", extra=_ids(message))
            raise
        finally:
            self._in_flight.pop(run_id, None)
            self._token_beats.pop(run_id, None)

    async def _while_executing(self, current: Delivery, message: QueueMessage) -> Outcome:
        """A message for a run this process is executing right now."""
        if message.message_id == current.message.message_id:
            # The same message came back (a visibility extension failed): keep it hidden and
            # ack it late through its newest receipt, as SQS requires.
            current.receipt = message.receipt
            await self._hide(current, self.options.visibility_s)
            self.logger.warning(
                "message reappeared while its run executes here", extra=_ids(message)
            )
            return Outcome.REDELIVERED
        # Another copy (a duplicate send): the copy being executed is acked late, this one
        # adds nothing.
        await self._delete(Delivery(message))
        self.logger.info("duplicate delivery: already executing here", extra=_ids(message))
        return Outcome.DUPLICATE

    async def _execute(self, delivery: Delivery) -> Outcome:
        message = delivery.message
        run_id = message.body.run_id
        try:
            run = await self._stage_run(message) or await self.svc.journal.get_run(run_id)
        except RunNotFoundError:
            self.logger.error("message for a run that does not exist", extra=_ids(message))
            await self._delete(delivery)
            return Outcome.MISSING
        except Exception:
            self.logger.exception("cannot read the run; leaving the message", extra=_ids(message))
            return Outcome.ERROR
        bind_run(self.logger, run_id=run.run_id, tenant=run.tenant, agent=run.agent, step=run.steps)
        if run.status.is_terminal:
            try:
                await report_stage(self.svc, run)
            except Exception:
                self.logger.exception("cannot answer the stage; leaving the message")
                return Outcome.ERROR
            await self._delete(delivery)
            self.logger.info("duplicate delivery: run already finished", extra=_ids(message))
            return Outcome.DUPLICATE
        wait_ms = max(0.0, self._clock() * 1000 - message.sent_at_ms)
        milliseconds(self.metrics, "QueueWait", wait_ms, agent=run.agent)
        count(self.metrics, "RunsStarted", agent=run.agent)
        self.logger.info(
            "executing run",
            extra={**_ids(message), "status": run.status.value, "queue_wait_ms": int(wait_ms)},
        )
        started = time.monotonic()
        try:
            result = await execute_run(self.svc, run_id)
        except LeaseHeldError as exc:
            count(self.metrics, "RunsLeaseHeld", agent=run.agent)
            return await self._lease_held(delivery, exc)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            # Anything a run throws (a crashing tool included) must not take the worker down.
            count(self.metrics, "RunErrors", agent=run.agent)
            self.logger.exception(
                "run attempt failed; the message will be redelivered",
                extra={**_ids(message), "error_type": type(exc).__name__},
            )
            return Outcome.ERROR
        return await self._ack(delivery, result, time.monotonic() - started)

    async def _stage_run(self, message: QueueMessage) -> Run | None:
        """A stage dispatch's run, created on first receipt (None: not a dispatch)."""
        if message.body.stage is None:
            return None
        try:
            return await self.svc.journal.get_run(message.body.run_id)
        except RunNotFoundError:
            pass
        run = await begin_stage_run(self.svc, message.body)
        if run is None:  # the stage could not start; its token was failed with the cause
            raise RunNotFoundError(f"stage run {message.body.run_id} was not started")
        self.logger.info(
            "stage run created",
            extra={**_ids(message), "job_id": message.body.stage.job_id},
        )
        return run

    async def _attach(self, delivery: Delivery) -> Outcome:
        try:
            await attach_resume_token(self.svc, delivery.message.body)
        except Exception:
            self.logger.exception(
                "cannot attach the stage's resume token; leaving the message",
                extra=_ids(delivery.message),
            )
            return Outcome.ERROR
        await self._delete(delivery)
        self.logger.info("paused stage run: resume token attached", extra=_ids(delivery.message))
        return Outcome.ATTACHED

    async def _ack(self, delivery: Delivery, run: Run, elapsed_s: float) -> Outcome:
        message = delivery.message
        extra = {**_ids(message), "status": run.status.value, "steps": run.steps}
        if run.status.is_terminal:
            await self._delete(delivery)
            count(self.metrics, "RunsFinished", agent=run.agent)
            if run.status is RunStatus.FAILED:
                count(self.metrics, "RunsFailed", agent=run.agent)
            milliseconds(self.metrics, "RunAttemptDuration", elapsed_s * 1000, agent=run.agent)
            error = run.error.code if run.error else None
            self.logger.info("run finished", extra={**extra, "error_code": error})
            return Outcome.FINISHED
        if run.status is RunStatus.AWAITING_APPROVAL:
            await self._delete(delivery)
            count(self.metrics, "RunsPaused", agent=run.agent)
            self.logger.info("run paused for approval", extra=extra)
            return Outcome.PAUSED
        if run.status is RunStatus.QUEUED and self._stopping.is_set():
            await self._hide(delivery, 0)
            self.logger.info("run handed over at a step boundary (draining)", extra=extra)
            return Outcome.HANDED_OVER
        if run.status is RunStatus.QUEUED:
            await self._requeue(delivery, self.options.thread_backoff_s)
            self.logger.info(
                "run waits for its thread's turn",
                extra={**extra, "retry_in_s": self.options.thread_backoff_s},
            )
            return Outcome.THREAD_WAIT
        self.logger.warning("run returned unfinished; leaving the message", extra=extra)
        return Outcome.ERROR

    async def _lease_held(self, delivery: Delivery, exc: LeaseHeldError) -> Outcome:
        details: Any = exc.details
        expires_ms = details.get("expires_at_ms") if isinstance(details, dict) else None
        if expires_ms is None:
            # Nothing to wait for: it reappears after its usual period.
            self.logger.info("run is leased elsewhere", extra=_ids(delivery.message))
            return Outcome.LEASE_HELD
        # Reappear when that lease would expire: at once resumable if its holder crashed.
        remaining_s = max(0.0, int(expires_ms) / 1000 - self._clock())
        hide_s = max(1, math.ceil(remaining_s))
        await self._hide(delivery, hide_s)
        self.logger.info(
            "run is leased by another worker; retrying when its lease expires",
            extra={**_ids(delivery.message), "retry_in_s": hide_s},
        )
        return Outcome.LEASE_HELD

    async def _release_unstarted(self, message: QueueMessage) -> Outcome:
        await self._hide(Delivery(message), 0)
        return Outcome.RELEASED

    # ---- queue operations (failures are logged: the message then simply reappears) -------

    async def _delete(self, delivery: Delivery) -> None:
        try:
            await self.queue.delete(delivery.receipt)
        except QueueError as exc:
            self.logger.warning(
                "delete failed", extra={**_ids(delivery.message), "error": str(exc)}
            )

    async def _hide(self, delivery: Delivery, timeout_s: int) -> None:
        """Set the message's visibility timeout (0: visible again at once)."""
        try:
            await self.queue.change_visibility(delivery.receipt, timeout_s)
        except QueueError as exc:
            self.logger.warning(
                "visibility change failed",
                extra={**_ids(delivery.message), "error": str(exc), "timeout_s": timeout_s},
            )

    async def _requeue(self, delivery: Delivery, delay_s: int) -> None:
        """A fresh copy with a delay, then the old one deleted (a crash in between leaves a
        duplicate, which the next delivery drops)."""
        try:
            await self.queue.send(delivery.message.body, delay_s=delay_s)
        except QueueError as exc:
            self.logger.warning(
                "re-send failed", extra={**_ids(delivery.message), "error": str(exc)}
            )
            await self._hide(delivery, delay_s)
            return
        await self._delete(delivery)

    async def _on_heartbeat(self, lease: Lease) -> None:
        """The runtime renewed a lease: keep that run's message hidden as long."""
        try:
            delivery = self._in_flight.get(lease.run_id)
            if delivery is not None:
                await self.queue.change_visibility(delivery.receipt, self.options.visibility_s)
                await self._beat_stage(delivery)
            if self._chained_heartbeat is not None:
                await self._chained_heartbeat(lease)
        except Exception as exc:
            # Never let the hook kill the runtime's heartbeat (the lease would lapse).
            self.logger.warning("visibility heartbeat failed", extra={"error": str(exc)})

    async def _beat_stage(self, delivery: Delivery) -> None:
        """Heartbeat a dispatch's task token; a closed token cancels the run."""
        body = delivery.message.body
        if body.stage is None or body.task_token is None:
            return
        now = time.monotonic()
        last = self._token_beats.get(body.run_id)
        if last is not None and now - last < body.stage.heartbeat_s / 4:
            return
        self._token_beats[body.run_id] = now
        if await heartbeat_stage(self.svc, body.task_token):
            return
        attempt = await self.svc.jobs.get_attempt(body.stage.job_id, body.stage.stage, body.run_id)
        if (
            attempt is None
            or attempt.task_token != body.task_token
            or attempt.status is not AttemptStatus.RUNNING
        ):
            # The run paused and its stage waits on a newer token (this is a stale copy of
            # the dispatch executing the approved run): not a reason to stop it.
            return
        self.logger.warning(
            "the job no longer waits for this stage run: cancelling it",
            extra=_ids(delivery.message),
        )
        with contextlib.suppress(RuntimeStateError):
            await request_cancel(self.svc.journal, body.run_id)


def _ids(message: QueueMessage) -> dict[str, Any]:
    return {
        "run_id": message.body.run_id,
        "message_id": message.message_id,
        "receive_count": message.receive_count,
    }


__all__ = ["Consumer", "ConsumerOptions", "Outcome"]
