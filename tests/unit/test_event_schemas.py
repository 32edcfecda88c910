"""The event schemas as subscribers read them (`caselog schema`): written for them, typed, and
naming the class version an event was written at."""

from __future__ import annotations

import jsonschema
import pytest

from domain.events import EVENT_TYPES
from infra.kafka.message import cloud_event, record_of
from infra.kafka.schema import FIELDS, asyncapi, event_schemas
from infra.settings import Settings


@pytest.fixture(scope="module")
def schemas():
    return event_schemas(Settings())


def test_each_event_is_described_for_subscribers_not_by_its_signature(schemas):
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        text = schema["description"]
        assert len(text) > 40 and "actor:" not in text and not text.startswith(name + "("), (name, text)


def test_every_field_is_typed_and_described(schemas):
    for name, schema in schemas.items():
        data = schema["properties"]["data"]["properties"]["data"]
        for field, prop in data["properties"].items():
            where = f"{name}.{field}"
            assert prop.get("description"), where
            options = prop.get("anyOf", [prop])
            assert all("type" in o or "enum" in o or "const" in o for o in options), where
            for o in options:
                if o.get("type") == "array":
                    assert o.get("items"), where
            if field.endswith(("_at", "_to", "_from", "deadline")) or field in ("slot",):
                assert options[0].get("format") == "date-time", where
        assert set(data["properties"]) <= set(FIELDS) | {"outcome", "level"}, name


def test_vocabularies_are_enums(schemas):
    submitted = schemas["CaseSubmitted"]["properties"]["data"]["properties"]["data"]["properties"]
    assert submitted["line_of_business"]["enum"] == ["medicare", "medicaid", "duals", "commercial"]
    assert submitted["documents"]["items"]["properties"]["sha256"]["pattern"]
    determined = schemas["CaseDetermined"]["properties"]["data"]["properties"]["data"]["properties"]
    assert "alternative_recommended" in determined["outcome"]["enum"]
    decisions = determined["lines"]["items"]["properties"]["decision"]["enum"]
    assert decisions == ["approved", "partially_approved", "denied"]
    appeal = schemas["AppealDecided"]["properties"]["data"]["properties"]["data"]["properties"]
    assert appeal["outcome"]["enum"] == ["upheld", "overturned", "partially_overturned"]
    doc = asyncapi(Settings())
    assert doc["components"]["messages"]["CaseHeld"]["summary"]


def test_the_type_and_dataschema_carry_the_class_version_the_event_was_written_at(monkeypatch):
    record = {"position": 7, "case_id": "0b3c5a5e-7b33-4d1d-957a-5924402f638c", "version": 3, "type": "CaseHeld",
              "occurred_at": "2026-03-10T14:00:00+00:00", "actor": {"kind": "reviewer", "id": "dr-okafor"},
              "data": {"requested_items": ["notes"], "due_at": "2026-03-12T14:00:00+00:00"}, "hash": "0" * 64,
              "class_version": 1}
    assert cloud_event(record, "default").get_type() == "caselog.case.held.v1"
    event = cloud_event({**record, "class_version": 2}, "default")
    assert event.get_type() == "caselog.case.held.v2"
    assert event.get_dataschema() == "https://caselog.dev/schemas/caselog.case.held.v2.json"
    assert record_of(event)["class_version"] == 2
    monkeypatch.setattr(EVENT_TYPES["CaseHeld"], "class_version", 2, raising=False)
    schema = event_schemas(Settings())["CaseHeld"]
    assert schema["properties"]["type"]["const"] == "caselog.case.held.v2"
    assert schema["$id"] == event.get_dataschema()
