"""The worker process: ``python -m workers.main``.

Reads Settings from the environment, builds the services on AWS (DynamoDB + S3 journal, SQS
runs queue; moto when ``AWS_ENDPOINT_URL`` points at it), and consumes the runs queue until
SIGTERM or SIGINT, then drains (``workers.consumer``) and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Sequence

from shared.config import Settings
from shared.errors import ConfigError
from shared.logic.service import Services
from shared.logic.webhooks import WebhookSender, completion_hook
from shared.observability import get_logger
from shared.wiring import build_services
from workers.consumer import SERVICE, Consumer
from workers.health import HealthFile

WEBHOOK_DRAIN_S = 3.0


def worker_owner() -> str:
    """The lease owner name: which task and process executed a step, in every journal."""
    return f"worker-{socket.gethostname()}-{os.getpid()}"


async def serve(
    svc: Services, *, health: HealthFile | None = None, webhooks: WebhookSender | None = None
) -> int:
    consumer = Consumer(svc, health=health)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stop)
    try:
        await consumer.run()
        if webhooks is not None:
            # Deliveries still retrying get what is left of the stop timeout.
            await webhooks.drain(timeout_s=WEBHOOK_DRAIN_S)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def _close(resource: object) -> None:
    close = getattr(resource, "close", None)
    if callable(close):
        close()


def main(argv: Sequence[str] | None = None) -> int:
    del argv  # configured through the environment only, like every Switchyard entry point
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    logger = get_logger(SERVICE, level=settings.log_level)
    if not settings.queue_url:
        logger.error("SWITCHYARD_QUEUE_URL is not set: nothing to consume")
        return 2
    webhooks = completion_hook(settings, background=True)
    svc = build_services(
        settings,
        backend="aws",
        owner=worker_owner(),
        on_complete=webhooks,
        service_name=SERVICE,
    )
    health = HealthFile(settings.worker_health_file)
    try:
        return asyncio.run(serve(svc, health=health, webhooks=webhooks))
    except Exception:
        logger.exception("worker failed")
        return 1
    finally:
        health.remove()
        _close(svc.queue)
        _close(svc.journal)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
