"""Usage reports: tokens and cost of a tenant's agents over a time window (``GET /v1/usage``).

``UsageQuery`` is the request (its query string), validated whole: timestamps are read as
ISO-8601 and made UTC (no offset means UTC), the window defaults to the 24 hours before now,
and a window that is empty, inverted or longer than ``MAX_WINDOW`` is refused, all as
validation errors on ``from``. ``UsageReport`` is what ``shared.logic.usage`` answers: the
usage counters (``shared.usage``) of the whole UTC hours the window touches.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW_DAYS = 31
MAX_WINDOW = timedelta(days=MAX_WINDOW_DAYS)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware and in UTC; a timestamp without an offset is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class GroupBy(StrEnum):
    AGENT = "agent"
    TENANT = "tenant"


class UsageQuery(BaseModel):
    """``GET /v1/usage``'s query: which hours to count and how to group them.

    ``to`` is declared before ``from`` so that ``from``'s default and checks can see it.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    group_by: GroupBy = Field(
        default=GroupBy.AGENT, description="`agent` (default) or `tenant`: one group per value"
    )
    to: UtcDatetime = Field(
        default_factory=utcnow,
        description="End of the window, exclusive: ISO-8601, UTC unless it has an offset, "
        "rounded up to the hour. Default: now",
    )
    from_: UtcDatetime = Field(
        default=None,  # becomes 24 hours before ``to`` (``_default_from``)
        validate_default=True,
        json_schema_extra=_no_default,
        alias="from",
        description="Start of the window, inclusive: ISO-8601, UTC unless it has an offset, "
        f"rounded down to the hour. Default: 24 hours before `to`. At most {MAX_WINDOW_DAYS} "
        "days before `to`",
    )

    @field_validator("from_", mode="before")
    @classmethod
    def _default_from(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        to = info.data.get("to")
        # ``to`` is missing only if it was invalid: that error is enough, any value does here.
        return (to if isinstance(to, datetime) else utcnow()) - DEFAULT_WINDOW

    @field_validator("from_")
    @classmethod
    def _window(cls, value: datetime, info: ValidationInfo) -> datetime:
        to = info.data.get("to")
        if not isinstance(to, datetime):  # ``to`` was invalid: that error is enough
            return value
        if value >= to:
            raise ValueError("from must be before to (to defaults to now)")
        if to - value > MAX_WINDOW:
            raise ValueError(f"from must be at most {MAX_WINDOW_DAYS} days before to")
        return value


class UsageTotals(BaseModel):
    """What the agents used, summed: runs, model steps, tokens and what they cost."""

    runs: int = Field(
        default=0,
        description="Runs that made their first model call in the window (each run counts "
        "once, in that hour, whatever it used later)",
    )
    steps: int = Field(default=0, description="Model steps taken in the window, by any run")
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_usd: float = 0.0


class _Keyed(BaseModel):
    key: str = Field(description="The agent's name (group_by=agent) or the tenant")


class UsageGroup(UsageTotals, _Keyed):  # bases in this order put ``key`` first
    """The totals of one agent (or of the tenant)."""


class UsageReport(BaseModel):
    """``GET /v1/usage``: the window, one group per key (most expensive first), the total."""

    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(
        alias="from", description="Start of the window counted: `from` rounded down to the hour"
    )
    to: datetime = Field(
        description="End of the window counted (exclusive): `to` rounded up to the hour"
    )
    group_by: GroupBy
    groups: list[UsageGroup] = Field(
        description="Groups that used anything in the window: by cost_usd descending, then key"
    )
    total: UsageTotals
