"""The clock: the only place that reads the time. The manual clock moves only when told."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
# How far the manual (test) clock may go: a move of at most a few years, and never past 2100, so
# that every deadline computed from it (appeal windows, authorizations valid for years) stays a date.
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
LONGEST_MOVE = timedelta(days=5 * 366)


class SystemClock:
    manual = False

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    manual = True

    def __init__(self, start: datetime | None = None):
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("the manual clock's start must carry a time zone")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, instant: datetime) -> datetime:
        if instant.tzinfo is None:
            raise ValueError("an instant must carry a time zone")
        with self._lock:
            if instant < self._now:
                raise ValueError("the clock only moves forward")
            self._now = instant.astimezone(UTC)
            return self._now
