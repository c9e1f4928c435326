"""The CLI's HTTP client: JSON over ``urllib.request``, one exception for every failure.

Where the API is and which key to send: ``--url`` / ``--api-key``, else the environment
(``SWITCHYARD_URL`` / ``SWITCHYARD_API_KEY``, the two lines ``make dev`` prints), else
``http://127.0.0.1:8000`` and no key. The key goes in the ``Authorization`` header and
nowhere else: no message of this module ever repeats it.

Failures become :class:`ApiError` (the API answered with an error: status, code, message) or
:class:`CliError` (the API could not be reached, or answered something that is not JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "SWITCHYARD_URL"
KEY_ENV = "SWITCHYARD_API_KEY"
# A long-poll holds up to 20 s and the gateway cuts an integration at 30 s: leave room.
DEFAULT_TIMEOUT_S = 40.0
USER_AGENT = "switchyard-cli/1"
_UNSET: Any = object()
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")

# What API Gateway's own answers (``{"message": ...}``, no ``error`` object) mean.
_GATEWAY_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}
_GATEWAY_HINTS = {
    401: "no API key was sent: set SWITCHYARD_API_KEY or pass --api-key",
    403: "the API key was refused (malformed, unknown or revoked)",
    503: "the API did not answer in time; retry",
}


class CliError(Exception):
    """A failure to report as one line (``switchyard: error: <message>``), exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(CliError):
    """The API answered with an error: its status, its ``error.code`` and ``error.message``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}{_detail_suffix(code, details)}")
        self.status = status
        self.code = code
        self.api_message = message
        self.details = details


def _detail_suffix(code: str, details: Any) -> str:
    """What ``details`` adds that a person needs, kept to one line."""
    if isinstance(details, list) and details and all(isinstance(d, dict) for d in details):
        problems = [
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', '')}".strip(": ")
            for d in details[:3]
        ]
        more = f" (+{len(details) - 3} more)" if len(details) > 3 else ""
        return f" ({'; '.join(problems)}{more})"
    if isinstance(details, dict):
        if code == "unknown_agent" and isinstance(details.get("known"), list):
            return f" (known: {', '.join(str(k) for k in details['known'])})"
        for name in ("active_run_id", "run_id", "status", "request_id"):
            if details.get(name):
                return f" ({name}: {details[name]})"
    return ""


@dataclass(frozen=True)
class Answer:
    """A successful answer: status, headers (lower-case names), parsed JSON body."""

    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Client:
    url: str = DEFAULT_URL
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        self.url = self.url.strip().rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"invalid API URL {self.url!r}: expected http(s)://host[:port][/path]")
        if self.api_key is not None and not _HEADER_SAFE.fullmatch(self.api_key):
            raise CliError(
                "the API key has characters a header cannot carry (spaces, line breaks, "
                "non-ASCII): check SWITCHYARD_API_KEY / --api-key"
            )

    @classmethod
    def from_options(
        cls, url: str | None, api_key: str | None, env: Mapping[str, str] | None = None
    ) -> Client:
        environ = os.environ if env is None else env
        return cls(
            url=url or environ.get(URL_ENV) or DEFAULT_URL,
            api_key=api_key or environ.get(KEY_ENV) or None,
        )

    # ---- requests ------------------------------------------------------------------------------

    def get(self, path: str, *, query: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.call("GET", path, query=query, **kw).body

    def post(self, path: str, body: Any = _UNSET, **kw: Any) -> Any:
        return self.call("POST", path, body=body, **kw).body

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = _UNSET,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        """Send one request; the parsed JSON answer, or ``ApiError``/``CliError``."""
        import http.client
        import urllib.error
        import urllib.request

        target = self.url + path
        pairs = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if pairs:
            target += "?" + urlencode(pairs, quote_via=quote)
        sent = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        data = None
        if body is not _UNSET:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if self.api_key:
            sent["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(target, data=data, headers=sent, method=method)  # noqa: S310 (scheme checked in __post_init__)
        timeout = timeout_s or self.timeout_s
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                raw = response.read()
                status = response.status
                answer_headers = {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            with exc:
                raw_error = exc.read()
            raise _api_error(exc.code, raw_error) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason, timeout) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc, timeout) from None
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            raise CliError(
                f"{method} {path}: the answer (HTTP {status}) is not JSON; "
                f"is {self.url} a Switchyard API?"
            ) from None
        return Answer(status, answer_headers, parsed)

    def _unreachable(self, reason: object, timeout_s: float) -> CliError:
        if isinstance(reason, ConnectionRefusedError):
            return CliError(
                f"cannot connect to {self.url} (connection refused): is the stack running? "
                "Start the local one with `make dev`, or point SWITCHYARD_URL / --url at yours"
            )
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return CliError(f"no answer from {self.url} within {timeout_s:g} s")
        text = getattr(reason, "strerror", None) or str(reason)
        return CliError(f"cannot reach {self.url}: {text}")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _api_error(status: int, raw: bytes) -> ApiError:
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            message = str(error.get("message") or f"HTTP {status}")
            return ApiError(status, error["code"], message, error.get("details"))
        if isinstance(payload.get("message"), str):  # API Gateway's own answer
            code = _GATEWAY_CODES.get(status, f"http_{status}")
            hint = _GATEWAY_HINTS.get(status)
            message = payload["message"] + (f": {hint}" if hint else "")
            return ApiError(status, code, message)
    text = raw.decode(errors="replace").strip().splitlines()
    first = text[0][:200] if text else "(empty body)"
    return ApiError(status, _GATEWAY_CODES.get(status, f"http_{status}"), f"HTTP {status}: {first}")


def client_of(args: argparse.Namespace) -> Client:
    """The client for a parsed command line (``--url``, ``--api-key``, else the environment)."""
    return Client.from_options(getattr(args, "url", None), getattr(args, "api_key", None))


def url_configured(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> bool:
    """Whether the user named an API (``--url`` or ``SWITCHYARD_URL``), not just the default."""
    environ = os.environ if env is None else env
    return bool(getattr(args, "url", None) or environ.get(URL_ENV))


def path_part(value: str) -> str:
    """``value`` as one path segment (an id with ``/`` or ``?`` cannot reach another route)."""
    return quote(value, safe="")


__all__ = [
    "DEFAULT_URL",
    "KEY_ENV",
    "URL_ENV",
    "Answer",
    "ApiError",
    "CliError",
    "Client",
    "client_of",
    "path_part",
    "url_configured",
]
