"""The relay's own encoder (``message_fields``) writes byte for byte the message the cloudevents
package's binding writes (``kafka_fields(to_message(...))``): the message format is a contract."""

from __future__ import annotations

import uuid

import orjson
import pytest

from infra.demo.workload import run_demo
from infra.kafka.disclosure import Disclosure
from infra.kafka.message import _event_id, event_id, kafka_fields, message_fields, stored_message_fields, to_message
from projections.records import from_stored

DISCLOSURES = [Disclosure("full"), Disclosure("minimum", b"k" * 32)]


def record(**changes) -> dict:
    base = {"position": 7, "case_id": "0b3c5a5e-7b33-4d1d-957a-5924402f638c", "version": 3, "type": "CaseHeld",
            "occurred_at": "2026-03-10T14:00:00+00:00", "actor": {"kind": "reviewer", "id": "dr-okafor"},
            "data": {"requested_items": ["notes"], "due_at": "2026-03-12T14:00:00+00:00", "member_id": "M1"},
            "hash": "0" * 64, "class_version": 1}
    return {**base, **changes}


def test_event_ids_are_the_uuid5_of_the_case_and_version():
    for _ in range(2000):
        case_id, version = str(uuid.uuid4()), int.from_bytes(uuid.uuid4().bytes[:2], "big")
        assert _event_id(case_id, version) == event_id(case_id, version)


@pytest.mark.parametrize("disclosure", DISCLOSURES, ids=lambda d: d.mode)
def test_every_stored_event_of_the_demo_encodes_as_the_cloudevents_binding_does(system, disclosure):
    run_demo(system)
    rows = system.app.recorder.select_notifications(1, 10**6)
    assert len(rows) > 100
    for n in rows:
        state = system.app.stored_state(n.state)
        r = from_stored(n.id, n.originator_id, n.originator_version, n.topic, state)
        expected = kafka_fields(to_message(r, "default", disclosure))
        assert message_fields(r, "default", disclosure) == expected, n.id
        assert stored_message_fields(n.id, n.originator_id, n.originator_version, n.topic, state, "default",
                                     disclosure) == expected, n.id


@pytest.mark.parametrize("changes", [
    {}, {"class_version": 2}, {"type": "P2PScheduled"}, {"occurred_at": "2026-03-10T14:00:00.123456+00:00"},
    {"occurred_at": "2026-03-10T09:00:00-05:00"}, {"occurred_at": "2026-03-10T14:00:00Z"}, {"actor": {}},
    {"occurred_at": "2026-03-10T14:00:00.000000+00:00"}, {"occurred_at": "2026-03-10T14:00:00.120+00:00"},
    {"occurred_at": "2026-03-10 14:00:00+00:00"}, {"occurred_at": "2026-W11-2T14:00:00+00:00"},
    {"occurred_at": "2026-03-10T14:00:00.000001+00:00"}, {"occurred_at": "2026-03-10T14:00+00:00"},
    {"data": {}}, {"data": {"notes": "é \u2028 \"quoted\"", "n": 1.5, "big": 2**60, "none": None}},
])
@pytest.mark.parametrize("disclosure", DISCLOSURES, ids=lambda d: d.mode)
def test_edge_records_encode_alike(changes, disclosure):
    r = record(**changes)
    assert message_fields(r, "prod-east", disclosure) == kafka_fields(to_message(r, "prod-east", disclosure))


@pytest.mark.parametrize("changes", [{"occurred_at": "2026-03-10T14:00:00"}, {"occurred_at": "yesterday"},
                                     {"occurred_at": "2026-02-30T14:00:00+00:00"},
                                     {"occurred_at": "2026-03-10T25:00:00+00:00"},
                                     {"data": {"deep": orjson.loads("[" * 300 + "]" * 300)}}])
def test_what_the_binding_cannot_encode_the_encoder_refuses_too(changes):
    r = record(**changes)
    with pytest.raises(Exception):
        to_message(r, "default", DISCLOSURES[0])
    with pytest.raises(Exception):
        message_fields(r, "default", DISCLOSURES[0])


@pytest.mark.parametrize("occurred_at", ["2026-03-10T24:00:00+00:00", "2026-03-10T23:59:59.999999+00:00",
                                         "2026-03-10T14:00:60+00:00", "0001-01-01T00:00:00+00:00"])
def test_an_instant_at_the_edge_of_the_day_encodes_as_the_binding_does_or_is_refused_by_both(occurred_at):
    """Whatever this Python's fromisoformat makes of it (3.14 reads 24:00 as the next midnight)."""
    r = record(occurred_at=occurred_at)
    try:
        expected = kafka_fields(to_message(r, "default", DISCLOSURES[0]))
    except Exception:  # noqa: BLE001 - refused by the binding: the encoder refuses it too
        with pytest.raises(Exception):
            message_fields(r, "default", DISCLOSURES[0])
    else:
        assert message_fields(r, "default", DISCLOSURES[0]) == expected
