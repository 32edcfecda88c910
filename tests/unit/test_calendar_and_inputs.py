"""The pure parts: business calendar, input rules, hash chain, policy table."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from domain.calendar import BusinessCalendar
from domain.approval import add_months
from domain.chain import GENESIS, ChainBreak, ChainWalker, event_hash
from domain.errors import InvalidInput, NotApplicable, UnknownPolicy
from domain.policy import POLICY_TABLE, policy_in_force
from domain.validation import check_icd10, npi_check_digit, npi_is_valid, procedure_kind

UTC = timezone.utc
cal = BusinessCalendar()


def test_business_days_skip_weekends_and_us_federal_holidays():
    assert cal.add_business_days_to_date(date(2026, 7, 2), 1) == date(2026, 7, 6)  # Fri 3 Jul observed holiday
    assert cal.add_business_days_to_date(date(2026, 11, 25), 1) == date(2026, 11, 27)  # Thanksgiving
    assert not cal.is_business_day(date(2026, 12, 25))
    assert cal.add_business_days(datetime(2026, 3, 13, 15, tzinfo=UTC), 2) == datetime(2026, 3, 17, 15, tzinfo=UTC)


def test_business_days_keep_the_local_wall_clock_across_daylight_saving():
    # 10:00 New York on Friday 6 March (EST) -> 10:00 New York on Tuesday 10 March (EDT)
    assert cal.add_business_days(datetime(2026, 3, 6, 15, tzinfo=UTC), 2) == datetime(2026, 3, 10, 14, tzinfo=UTC)


def test_end_of_day_is_local_midnight_minus_a_second():
    assert cal.end_of_day(date(2026, 1, 15)) == datetime(2026, 1, 16, 4, 59, 59, tzinfo=UTC)


def test_npi_luhn_with_80840_prefix():
    assert npi_is_valid("1234567893")
    assert not npi_is_valid("1234567890")
    assert npi_is_valid("123456789" + npi_check_digit("123456789"))
    assert not npi_is_valid("12345")


def test_icd10_normalises_case():
    assert check_icd10("d", "c50.912") == "C50.912"
    with pytest.raises(InvalidInput):
        check_icd10("d", "C5")


def test_procedure_kinds():
    assert procedure_kind("77412", ()) == "cpt"
    assert procedure_kind("0275T", ()) == "cpt"
    assert procedure_kind("E0601", ()) == "hcpcs"
    assert procedure_kind("RCBREA", ("RC*",)) == "program"
    assert procedure_kind("RC", ("RC*",)) is None
    assert procedure_kind("SPINE", ("RC*",)) is None


def test_add_months_clamps_to_the_month_end():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 3, 10), 8) == date(2026, 11, 10)
    assert add_months(date(2026, 6, 15), 12) == date(2027, 6, 15)


def test_policy_rows_are_effective_dated_and_every_row_is_data():
    assert policy_in_force("healthspring-ma/radiation-oncology", date(2025, 12, 31)).version == 1
    assert policy_in_force("healthspring-ma/radiation-oncology", date(2026, 1, 1)).version == 2
    with pytest.raises(NotApplicable):
        policy_in_force("cigna-commercial/dme", date(2026, 3, 6))
    with pytest.raises(UnknownPolicy):
        policy_in_force("nobody/nothing", date(2026, 1, 1))
    assert len({r.key for r in POLICY_TABLE}) == len(POLICY_TABLE)


def _state(prev: str, version: int, data: dict) -> dict:
    h = event_hash(case_id="c1", version=version, type_name="T", occurred_at="2026-01-01T00:00:00+00:00",
                   actor={"kind": "x"}, command=None, prev_hash=prev, data=data)
    return {"timestamp": "2026-01-01T00:00:00+00:00", "actor": {"kind": "x"}, "command": None, "prev_hash": prev, "hash": h, **data}


def test_chain_walker_finds_altered_missing_and_reordered_events():
    one = _state(GENESIS, 1, {"a": 1})
    two = _state(one["hash"], 2, {"b": 2})
    ChainWalker().walk([("c1", 1, "T", one), ("c1", 2, "T", two)])
    with pytest.raises(ChainBreak, match="altered"):
        ChainWalker().walk([("c1", 1, "T", {**one, "a": 2})])
    with pytest.raises(ChainBreak, match="missing"):
        ChainWalker().walk([("c1", 2, "T", two)])
    with pytest.raises(ChainBreak, match="prev_hash"):
        ChainWalker().walk([("c1", 1, "T", one), ("c1", 2, "T", {**two, "prev_hash": GENESIS})])
