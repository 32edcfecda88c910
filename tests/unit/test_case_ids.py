"""A new case's id is a UUIDv7 from the command's instant: ids sort as their cases were created, as
UUIDs and as the text both stores keep them in, and stay unguessable."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest

from application.case_ids import new_case_id

NOW = datetime(2026, 12, 8, 9, 30, 15, 123456, tzinfo=timezone.utc)


def created_at_ms(case_id: UUID) -> int:
    return case_id.int >> 80  # RFC 9562: the first 48 bits


def test_an_id_is_a_version_7_uuid_carrying_its_instant_in_milliseconds():
    case_id = new_case_id(NOW)
    assert case_id.version == 7 and case_id.variant == "specified in RFC 4122"
    assert created_at_ms(case_id) == 1796722215123  # 2026-12-08T09:30:15.123Z
    assert UUID(str(case_id)) == case_id


def test_ids_of_later_instants_sort_after_earlier_ones_as_uuids_as_text_and_as_hex():
    instants = [NOW + timedelta(milliseconds=k) for k in range(0, 5000, 7)] + [NOW + timedelta(days=400 * k) for k in range(1, 30)]
    ids = [new_case_id(t) for t in instants]
    assert sorted(ids) == ids
    assert sorted(map(str, ids)) == list(map(str, ids))
    assert sorted(i.hex for i in ids) == [i.hex for i in ids]  # SQLite keeps UUIDs as hex


def test_ids_made_in_one_millisecond_differ_in_74_random_bits():
    ids = {new_case_id(NOW) for _ in range(10_000)}
    assert len(ids) == 10_000
    randoms = {(i.int >> 64) & 0xFFF for i in ids}, {i.int & ((1 << 62) - 1) for i in ids}
    assert len(randoms[0]) > 3000 and len(randoms[1]) == 10_000


def test_an_instant_outside_the_48_bit_millisecond_range_is_refused():
    with pytest.raises(ValueError, match="outside"):
        new_case_id(datetime(1969, 12, 31, 23, 59, tzinfo=timezone.utc))
    assert created_at_ms(new_case_id(datetime(1970, 1, 1, tzinfo=timezone.utc))) == 0
