"""The minimum necessary on the topic (issue 12): every field of every event is classified, the member is
a keyed pseudonym, names, dates of birth, free text and document names are left out, and the schema
describes what is sent."""

from __future__ import annotations

from domain.events import EVENT_TYPES
from infra.kafka.disclosure import FIELDS, OVERRIDES, Disclosure, minimum_schema
from infra.kafka.schema import data_schema


def test_every_field_of_every_event_is_classified_for_the_minimum_topic():
    """A new event field is withheld until someone decides it may be published: here is where."""
    unclassified = sorted(f"{name}.{field}" for name, cls in EVENT_TYPES.items()
                          for field in data_schema(cls)["properties"]
                          if field not in FIELDS and (name, field) not in OVERRIDES)
    assert unclassified == [], f"classify these in infra/kafka/disclosure.py FIELDS: {unclassified}"


def test_the_minimum_record_pseudonymizes_the_member_and_leaves_out_what_identifies_them():
    submitted = {
        "case_number": "1000000001", "member": {"id": "M00000042", "first_name": "Grace", "last_name": "Hopperfield",
                                                "dob": "1958-04-02", "phone": "555-0199"},
        "service": {"diagnoses": ["G47.33"], "procedures": [{"code": "E0601", "units": 1}]},
        "clinical": {"history": "snores since the accident", "nccn_preferred_regimen": False},
        "documents": [{"document_id": "ab" * 32, "name": "hopperfield-sleep-study.pdf", "sha256": "ab" * 32,
                       "media_type": "application/pdf", "size": 10}],
        "urgent": False, "some_future_field": "withheld until classified",
    }
    minimum = Disclosure("minimum", b"k" * 32)
    out = minimum.data("CaseSubmitted", submitted)
    text = repr(out)
    for secret in ("M00000042", "Grace", "Hopperfield", "1958-04-02", "555-0199", "accident", "sleep-study"):
        assert secret not in text
    assert out["member"] == {"pseudonym": minimum.pseudonym("M00000042")}
    assert out["member"] == Disclosure("minimum", b"k" * 32).data("CaseSubmitted", submitted)["member"], "stable"
    assert out["member"] != Disclosure("minimum", b"o" * 32).data("CaseSubmitted", submitted)["member"], "keyed"
    assert out["service"] == submitted["service"] and out["documents"][0]["sha256"] == "ab" * 32
    assert "clinical" not in out and "some_future_field" not in out
    assert Disclosure("full").data("CaseSubmitted", submitted) == submitted
    letter = minimum.data("LetterIssued", {"recipient": "member", "address": {"member_id": "M00000042"}})
    assert letter["address"] == {"member_pseudonym": minimum.pseudonym("M00000042")}
    change = minimum.data("AuthorizationSuperseded", {"kind": "units", "changes": {"diagnoses": ["X"], "why": "pain"}})
    assert change["changes"] == {"diagnoses": ["X"]}
    for name in ("ClinicalUploaded", "PreDenialNoticeGiven", "CaseDetermined", "AppealFiled", "CaseCancelled"):
        free = minimum.data(name, {"notes": "n", "rationale": "r", "reason": "why"})
        assert free == {}, name


def test_the_minimum_schema_is_what_the_minimum_record_holds():
    import jsonschema_rs

    full = data_schema(EVENT_TYPES["CaseSubmitted"])
    schema = minimum_schema("CaseSubmitted", full)
    assert "clinical" not in schema["properties"] and "withheld: clinical" in schema["title"]
    validator = jsonschema_rs.validator_for(schema["properties"]["member"])
    assert validator.is_valid({"pseudonym": "0" * 64})
    assert not validator.is_valid({"pseudonym": "0" * 64, "last_name": "Hopperfield"})


def test_a_stored_state_publishes_as_its_data_would_and_never_its_envelope(monkeypatch):
    """The relay discloses straight from the stored state (``Disclosure.stored``): the same as disclosing
    its data, even were a name of the envelope ever classified as a field to keep."""
    from domain.chain import ENVELOPE_FIELDS, stored_data
    from infra.kafka import disclosure

    monkeypatch.setitem(disclosure.FIELDS, "actor", disclosure.KEEP)  # a mistaken row of the table
    disclosure.published_fields.cache_clear()
    state = {"timestamp": "2026-03-10T14:00:00+00:00", "originator_id": "c1", "originator_version": 2,
             "actor": {"kind": "reviewer", "id": "dr-okafor"}, "command": {"name": "hold"}, "prev_hash": "0" * 64,
             "hash": "1" * 64, "class_version": 2, "due_at": "2026-03-12T14:00:00+00:00", "notes": "call the member"}
    try:
        for mode in (Disclosure("minimum", b"k" * 32), Disclosure("full")):
            published = mode.stored("CaseHeld", state)
            assert published == mode.data("CaseHeld", stored_data(state)), mode.mode
            assert not set(published) & {*ENVELOPE_FIELDS, "class_version"}, mode.mode
        assert Disclosure("minimum", b"k" * 32).stored("CaseHeld", state) == {"due_at": "2026-03-12T14:00:00+00:00"}
    finally:
        disclosure.published_fields.cache_clear()
