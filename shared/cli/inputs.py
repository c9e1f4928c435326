"""A run's or a job's input from the command line, and JSON options.

``--input TEXT`` sends a string; ``--input-json JSON`` sends JSON (``@PATH`` or ``@-`` reads
it from a file or stdin); ``--input-file PATH`` sends a file's text (``-``: stdin).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.cli.client import CliError

NO_INPUT: Any = object()


def add_input_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--input", metavar="TEXT", help="the input, as a string")
    group.add_argument(
        "--input-json",
        metavar="JSON",
        help="the input as JSON; @PATH reads it from a file, @- from stdin",
    )
    group.add_argument(
        "--input-file", metavar="PATH", help="the input: a file's text (- reads stdin)"
    )


def read_text(path: str, option: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"cannot read {option} {path}: {reason}") from None


def parse_json(text: str, option: str) -> Any:
    """``text`` as JSON (``@PATH``/``@-``: read it first); a one-line error otherwise."""
    if text.startswith("@"):
        text = read_text(text[1:], option)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"{option} is not valid JSON: {exc}") from None


def json_object(text: str, option: str) -> dict[str, Any]:
    value = parse_json(text, option)
    if not isinstance(value, dict):
        raise CliError(f"{option} must be a JSON object")
    return value


def read_input(args: argparse.Namespace) -> Any:
    """The input the options name, or ``NO_INPUT`` when none was given."""
    if args.input is not None:
        return args.input
    if args.input_json is not None:
        return parse_json(args.input_json, "--input-json")
    if args.input_file is not None:
        return read_text(args.input_file, "--input-file")
    return NO_INPUT
