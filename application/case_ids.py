"""The ids of new cases: time-ordered, so each new case's rows land at the end of every index keyed
by case id (the event store's, each read model's) instead of at a random place in it. With random
(version 4) ids a rebuild of 10^6 events spent ~14 us an event inserting its final rows, most of it in
those key indexes, against ~7 with ids in creation order; the whole rebuild took 46.7 s against 38.9
(bench/RESULTS.md, 2026-12-08).

A UUIDv7 (RFC 9562, section 5.7): 48 bits of Unix time in milliseconds, then 74 random bits (the
version and variant fields between them). The time is the command's ``now`` from the application's
clock, not the system clock that ``uuid6.uuid7()`` and Python 3.14's ``uuid.uuid7()`` read: commands
carry ``now``, and under a manual clock (tests, the benchmarks' loader) ids stay in the clock's order.
Ids made in one millisecond are ordered among themselves at random; 74 random bits keep them
unguessable. An id shows when its case was created (to the millisecond), as the case view does."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from uuid import UUID

_TIME_LIMIT = 1 << 48
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def new_case_id(now: datetime) -> UUID:
    """A fresh time-ordered id for a case created at ``now`` (an aware datetime)."""
    ms = (now - _EPOCH) // _MS  # exact: no float rounding at a millisecond's edge
    if not 0 <= ms < _TIME_LIMIT:
        raise ValueError(f"{now.isoformat()} is outside a UUIDv7's time range")
    random = secrets.randbits(74)
    rand_a, rand_b = random >> 62, random & ((1 << 62) - 1)
    return UUID(int=ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)

