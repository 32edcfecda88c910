"""What every command carries (``Context``: now, actor, command identity) and the small helpers
every decision uses: ISO instants, the plan's business calendar, required fields, due instants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from domain.calendar import BusinessCalendar
from domain.errors import FieldError, InvalidInput, RuleViolation

UTC = timezone.utc


def iso(instant: datetime | None) -> str | None:
    return instant.astimezone(UTC).isoformat() if instant is not None else None


@lru_cache(maxsize=8)
def calendar_for(tz: str) -> BusinessCalendar:
    return BusinessCalendar(tz)


@dataclass(frozen=True)
class Context:
    """Who is acting, when, and as which command (for idempotency)."""

    now: datetime
    actor: dict
    command: dict | None = None

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("Context.now must be timezone-aware")
        object.__setattr__(self, "now", self.now.astimezone(UTC))


def require(value: Any, field: str, message: str = "is required") -> Any:
    """``value``, or a refusal naming ``field`` when it is missing or empty."""
    if value is None or value == "" or value == [] or value == {}:
        raise InvalidInput(FieldError(field, message))
    return value


def due(ctx: Context, instant: datetime) -> None:
    """Refuse a deadline command before its instant (a scheduler firing early records nothing)."""
    if ctx.now < instant:
        raise RuleViolation("deadline-not-due", f"not due until {iso(instant)}")
