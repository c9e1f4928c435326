"""A module listed as an agent module that defines no Agent."""

from __future__ import annotations

NOT_AN_AGENT = {"name": "ghost"}
