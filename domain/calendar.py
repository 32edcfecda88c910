"""The business calendar: weekends and US federal holidays, in the plan's time zone.

Every business-day rule goes through here; results are absolute UTC instants.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

UTC = timezone.utc
# Where the plans of the policy table keep their calendars (a row may name another); also the
# calendar that decides which row is in force on the day a request is received.
PLAN_TIME_ZONE = "America/New_York"


@lru_cache(maxsize=8)
def _federal_holidays(year_from: int, year_to: int) -> holidays.HolidayBase:
    return holidays.country_holidays("US", years=range(year_from, year_to + 1))


class BusinessCalendar:
    def __init__(self, tz: str = PLAN_TIME_ZONE):
        self.tz = ZoneInfo(tz)
        self._holidays = _federal_holidays(1990, 2100)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self._holidays

    def add_business_days_to_date(self, day: date, n: int) -> date:
        step = 1 if n >= 0 else -1
        remaining = abs(n)
        while remaining:
            day += timedelta(days=step)
            if self.is_business_day(day):
                remaining -= 1
        return day

    def add_business_days(self, instant: datetime, n: int) -> datetime:
        """The same local wall-clock time ``n`` business days later (from a non-business
        day, counting starts at the next business day)."""
        local = instant.astimezone(self.tz)
        day = self.add_business_days_to_date(local.date(), n)
        return datetime.combine(day, local.timetz().replace(tzinfo=None), self.tz).astimezone(UTC)

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.tz).date()

    def end_of_day(self, day: date | datetime) -> datetime:
        """The last instant of a local calendar day (used by 'expires at the end of the day')."""
        if isinstance(day, datetime):
            day = self.local_date(day)
        return datetime.combine(day, time(23, 59, 59), self.tz).astimezone(UTC)

    def start_of_day(self, day: date) -> datetime:
        return datetime.combine(day, time(0, 0), self.tz).astimezone(UTC)
