"""The published contract, generated from the code: a JSON Schema per event type (the
CloudEvent on the topic, with its ``data`` as the deployment's ``CASELOG_KAFKA_PHI`` mode publishes it:
minimum necessary or full, ``infra/kafka/disclosure.py``) and an AsyncAPI 3.0 document for the topic."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from domain.chain import ENVELOPE_FIELDS
from domain.events import EVENT_TYPES
from infra.kafka.disclosure import minimum_schema
from infra.kafka.message import short_type
from infra.settings import Settings


def data_schema(cls: type) -> dict[str, Any]:
    full = TypeAdapter(cls).json_schema()
    props = {k: v for k, v in full["properties"].items() if k not in ENVELOPE_FIELDS}
    return {"type": "object", "title": f"{cls.__name__} data", "properties": props,
            "required": [k for k in full.get("required", []) if k in props], "additionalProperties": False}


HASH_NOTE = {
    "full": "the event's SHA-256 chain hash as stored (the chain is checked in the store: caselog verify)",
    "minimum": "the event's SHA-256 chain hash, over the full record, which this topic does not carry: it identifies"
               " the event, nothing here can be checked against it",
}


def cloud_event_schema(name: str, cls: type, deployment: str, phi: str = "full") -> dict[str, Any]:
    version = getattr(cls, "class_version", 1)
    data = data_schema(cls) if phi == "full" else minimum_schema(name, data_schema(cls))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": name,
        "description": (cls.__doc__ or "").strip() or f"caselog {name} event",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "caseversion",
                     "position", "phi", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid", "description": "stable across re-publication"},
            "source": {"type": "string", "pattern": "^caselog/", "examples": [f"caselog/{deployment}"]},
            "type": {"const": f"caselog.case.{short_type(name)}.v{version}"},
            "subject": {"type": "string", "format": "uuid", "description": "the case id (also the Kafka key)"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "caseversion": {"type": "integer", "minimum": 1, "description": "keep the highest per case to dedupe"},
            "position": {"type": "integer", "minimum": 1, "description": "global store position"},
            "phi": {"const": phi, "description": "what data discloses: minimum (member pseudonymized; no names, dates"
                    " of birth, free text or document names) or full (the record as stored); CASELOG_KAFKA_PHI"},
            "data": {
                "type": "object",
                "required": ["case_id", "version", "type", "occurred_at", "actor", "data", "hash"],
                "properties": {
                    "case_id": {"type": "string"}, "version": {"type": "integer"}, "type": {"const": name},
                    "occurred_at": {"type": "string", "format": "date-time"}, "actor": {"type": "object"},
                    "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": HASH_NOTE[phi]},
                    "data": data,
                },
            },
        },
    }


def event_schemas(settings: Settings) -> dict[str, dict]:
    """Every event type's schema as this deployment publishes it (CASELOG_KAFKA_PHI)."""
    return {name: cloud_event_schema(name, cls, settings.deployment, settings.kafka_phi)
            for name, cls in sorted(EVENT_TYPES.items())}


DISCLOSES = {
    "minimum": "This topic carries the minimum necessary (CASELOG_KAFKA_PHI=minimum, phi: minimum): the member is a"
               " keyed pseudonym; names, dates of birth, free-text clinical answers, notes, reasons, rationales and"
               " document names are left out.",
    "full": "This topic carries the full record (CASELOG_KAFKA_PHI=full, phi: full), member data included: keep it"
            " internal (TLS, SASL and ACLs).",
}


def asyncapi(settings: Settings) -> dict[str, Any]:
    schemas = event_schemas(settings)
    messages = {name: {"name": name, "contentType": "application/cloudevents+json", "payload": schema,
                       "correlationId": {"location": "$message.payload#/subject"}} for name, schema in schemas.items()}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "caselog case events", "version": "1.0.0",
                 "description": "Every prior-authorization case event, as a CloudEvents 1.0 structured JSON message"
                                f" keyed by case id. {DISCLOSES[settings.kafka_phi]}"},
        "channels": {"caseEvents": {"address": settings.topic,
                                    "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages}}},
        "operations": {"publishCaseEvents": {"action": "send", "channel": {"$ref": "#/channels/caseEvents"},
                                             "messages": [{"$ref": f"#/channels/caseEvents/messages/{name}"} for name in messages]}},
        "components": {"messages": messages},
    }
