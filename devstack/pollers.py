"""Pollers standing in for the template's Lambda event-source mappings (SQS → function).

Each mapping gets a thread that long-polls its queue, invokes the function in this process
with the batch as an SQS event, and deletes what the function processed, as Lambda does:
with ``ReportBatchItemFailures`` the records the function lists in ``batchItemFailures``
stay on the queue; a function that raises leaves the whole batch, which reappears after
its visibility timeout (and, past the queue's ``maxReceiveCount``, goes to its DLQ).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from devstack.invocation import Invoker
from devstack.topology import EventSource
from shared.dal.event_source import SqsEventSource

logger = logging.getLogger("switchyard.devstack")

Report = Callable[[str], None]


def processed(
    records: list[dict[str, Any]], answer: Any, report_failures: bool
) -> list[dict[str, Any]]:
    """The records a function's answer lets the mapping delete."""
    if not report_failures or not isinstance(answer, dict):
        return records
    failed = {
        str(item.get("itemIdentifier"))
        for item in answer.get("batchItemFailures") or []
        if isinstance(item, dict)
    }
    return [r for r in records if r["messageId"] not in failed]


class QueuePoller:
    def __init__(
        self,
        source: EventSource,
        functions: Invoker,
        *,
        region: str,
        report: Report | None = None,
        wait_s: int = 1,
    ) -> None:
        self.source = source
        self.functions = functions
        self.queue = SqsEventSource(source.queue_url, region=region)
        self.report = report or (lambda line: None)
        self.wait_s = wait_s
        self.delivered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"poller-{source.function.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def poll_once(self) -> int:
        """One receive and its invocation; returns how many records were delivered."""
        records = self.queue.receive(self.source.batch_size, wait_s=self.wait_s)
        if not records:
            return 0
        try:
            answer = self.functions.invoke(self.source.function, {"Records": records})
        except Exception:
            logger.exception("%s failed on %d records", self.source.function.name, len(records))
            self.report(f"{self.source.function.name}: failed on {len(records)} message(s)")
            return len(records)
        done = processed(records, answer, self.source.report_failures)
        if done:
            self.queue.delete(done)
        self.delivered += len(records)
        self.report(
            f"{self.source.function.name}: {len(records)} message(s), {len(done)} processed"
        )
        return len(records)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("poller %s", self.source.function.name)
                self._stop.wait(1.0)
