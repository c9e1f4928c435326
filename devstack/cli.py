"""`switchyard dev` (what `make dev` runs): start the local stack, print how to use it, run
until Ctrl-C, stop everything. Only argparse/os at import: the CLI builds this parser always.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_PORT = 8000


def _port_default() -> int:
    raw = os.environ.get("SWITCHYARD_PORT", "")
    if not raw:
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        return -1  # reported as a one-line error by run()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"gateway port on 127.0.0.1 (default $SWITCHYARD_PORT or {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes to supervise (default 2)"
    )
    parser.add_argument(
        "--demo", action="store_true", help="seed a demo tour: one run of each example agent"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.2,
        help="offline model delay per call, seconds (default 0.2)",
    )
    parser.add_argument(
        "--state-dir",
        default=".switchyard",
        help="where worker logs and the outputs file go (default .switchyard)",
    )


def run(args: argparse.Namespace) -> int:
    from devstack.console import serve
    from devstack.stack_settings import DevOptions

    port = args.port if args.port is not None else _port_default()
    if not 0 < port < 65536:
        print(
            f"switchyard: error: invalid port {os.environ.get('SWITCHYARD_PORT', port)!r} "
            "(SWITCHYARD_PORT or --port: 1-65535)",
            file=sys.stderr,
        )
        return 2
    if args.workers < 0 or args.latency < 0:
        print("switchyard: error: --workers and --latency cannot be negative", file=sys.stderr)
        return 2
    from pathlib import Path

    options = DevOptions(
        port=port,
        workers=args.workers,
        offline_latency_s=args.latency,
        state_dir=Path(args.state_dir),
    )
    return serve(options, demo=args.demo)
