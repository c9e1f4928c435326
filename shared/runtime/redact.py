"""Scrub secret values out of text before it reaches the journal, events or logs."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[REDACTED]"
# Short values would mask ordinary words; secrets that short are not worth the false hits.
MIN_SECRET_CHARS = 6


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True
        )

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
