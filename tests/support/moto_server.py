"""A moto server on 127.0.0.1 for tests whose processes share AWS state over HTTP."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

from moto.server import ThreadedMotoServer

from shared.dal.local import provision

__all__ = ["free_port", "moto_server_url", "provision"]


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
