"""A moto server on 127.0.0.1 for tests whose processes share AWS state over HTTP, and the
synthesized stack deployed into it (``shared.dal.local.deploy_template``)."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from moto.server import ThreadedMotoServer

from shared.dal.local import DeployedStack, deploy_template, reset_moto

__all__ = ["free_port", "fresh_moto_server", "moto_server_url", "template_on_moto_server"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_server_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def fresh_moto_server() -> Iterator[str]:
    """A moto server with nothing in it. Moto keeps its state per process, not per server (and
    shares it with ``mock_aws``), so the state is reset before and after."""
    with moto_server_url() as url:
        reset_moto(url)
        try:
            yield url
        finally:
            reset_moto(url)


@contextlib.contextmanager
def template_on_moto_server(
    stack_settings: Mapping[str, Any] | None = None, **deploy: Any
) -> Iterator[DeployedStack]:
    """The synthesized stack (its table, buckets and queues unless ``resource_types`` says
    otherwise) deployed into a fresh moto server; ``endpoint_url`` of the result is the
    server's. ``.settings()`` is ``Settings`` pointed at the stack's resources."""
    with fresh_moto_server() as url:
        yield deploy_template(stack_settings, endpoint_url=url, **deploy)
