"""The ``switchyard`` command line (``docs/cli.md``).

- API commands (``runs``, ``agents``, ``jobs``, ``pipelines``, ``usage``) are HTTP clients of
  a local or a deployed stack: ``--url``/``--api-key`` or
  ``SWITCHYARD_URL``/``SWITCHYARD_API_KEY``.
- Operator commands (``keys``, ``dlq``) act on the stack's AWS resources directly, found from
  its outputs document (``shared.cli.operator``).
- ``dev`` runs the local stack (``devstack.cli``); ``tour`` runs the offline one-shot demo.

Every command prints a readable summary, or with ``--json`` machine-readable JSON on stdout.
A failure is one line on stderr, ``switchyard: error: <message>``, and exit status 1
(argparse's usage errors: 2). The API key is never printed.

Start-up stays light: the command modules import only the standard library at the top;
boto3, pydantic and the agents are imported by the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from shared.cli import agents, dlq, jobs, keys, runs, tour, usage
from shared.cli.client import DEFAULT_URL, KEY_ENV, URL_ENV, CliError
from shared.errors import SwitchyardError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV = "SWITCHYARD_DEBUG"

EPILOG = f"""\
API commands find the API in --url or ${URL_ENV} (default {DEFAULT_URL}) and send the key
in --api-key or ${KEY_ENV}. Operator commands (keys, dlq) find the stack's resources in
--outputs FILE, $SWITCHYARD_OUTPUTS, ./.switchyard/local-outputs.json or ./cdk-outputs.json.
See docs/cli.md."""


def _api_options(*, top: bool) -> argparse.ArgumentParser:
    """``--url``, ``--api-key``, ``--json``: on the top-level parser with their defaults, and
    on every API command without (so ``switchyard --url X runs list`` and ``switchyard runs
    list --url X`` both work, and neither position overrides the other with a default)."""
    parent = argparse.ArgumentParser(add_help=False)
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    group = parent.add_argument_group("API")
    group.add_argument(
        "--url", metavar="URL", help=f"the API (default ${URL_ENV} or {DEFAULT_URL})", **unset
    )
    group.add_argument(
        "--api-key", metavar="KEY", help=f"the API key (default ${KEY_ENV})", **unset
    )
    _json_option(parent, top=top)
    return parent


def _json_option(parser: argparse.ArgumentParser, *, top: bool) -> argparse.ArgumentParser:
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON", **unset)
    return parser


def _register_dev(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # devstack.cli imports only argparse/os/sys at the top; the stack itself loads in run().
    from devstack.cli import add_arguments

    dev = sub.add_parser(
        "dev",
        help="run the local stack (gateway, workers, moto) until Ctrl-C",
        description="The whole stack on this machine, offline; prints SWITCHYARD_URL and a key.",
    )
    add_arguments(dev)
    dev.set_defaults(handler=_run_dev)


def _run_dev(args: argparse.Namespace) -> int:
    from devstack.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchyard",
        description="Run AI agents durably on AWS: submit and follow runs, operate the stack.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_api_options(top=True)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    api = _api_options(top=False)
    output = _json_option(argparse.ArgumentParser(add_help=False), top=False)
    runs.register(sub, api)
    agents.register(sub, api)
    jobs.register(sub, api)
    jobs.register_pipelines(sub, api)
    usage.register(sub, api)
    keys.register(sub, output)
    dlq.register(sub, output)
    _register_dev(sub)
    tour.register(sub)
    return parser


def _one_line(message: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return " ".join(message.split()) or "failed"


def _fail(message: str, args: argparse.Namespace | None) -> int:
    secrets = [getattr(args, "api_key", None) or "", os.environ.get(KEY_ENV, "")]
    print(f"switchyard: error: {_one_line(message, secrets)}", file=sys.stderr, flush=True)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse has said why
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.handler(args)
        return code
    except CliError as exc:
        return _fail(exc.message, args)
    except SwitchyardError as exc:
        return _fail(exc.message, args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep the interpreter's own
        # final flush of stdout from complaining.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        return _fail(
            f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)", args
        )


__all__ = ["EXIT_ERROR", "EXIT_USAGE", "build_parser", "main"]
