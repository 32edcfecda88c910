"""The published contract, generated from the code: a JSON Schema per event type (the
CloudEvent on the topic, with its ``data``) and an AsyncAPI 3.0 document for the topic."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from domain.chain import ENVELOPE_FIELDS
from domain.events import EVENT_TYPES
from infra.kafka.message import short_type
from infra.settings import Settings


def data_schema(cls: type) -> dict[str, Any]:
    full = TypeAdapter(cls).json_schema()
    props = {k: v for k, v in full["properties"].items() if k not in ENVELOPE_FIELDS}
    return {"type": "object", "title": f"{cls.__name__} data", "properties": props,
            "required": [k for k in full.get("required", []) if k in props], "additionalProperties": False}


def cloud_event_schema(name: str, cls: type, deployment: str) -> dict[str, Any]:
    version = getattr(cls, "class_version", 1)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": name,
        "description": (cls.__doc__ or "").strip() or f"caselog {name} event",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "caseversion", "position", "data"],
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
            "data": {
                "type": "object",
                "required": ["case_id", "version", "type", "occurred_at", "actor", "data", "hash"],
                "properties": {
                    "case_id": {"type": "string"}, "version": {"type": "integer"}, "type": {"const": name},
                    "occurred_at": {"type": "string", "format": "date-time"}, "actor": {"type": "object"},
                    "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "data": data_schema(cls),
                },
            },
        },
    }


def event_schemas(settings: Settings) -> dict[str, dict]:
    return {name: cloud_event_schema(name, cls, settings.deployment) for name, cls in sorted(EVENT_TYPES.items())}


def asyncapi(settings: Settings) -> dict[str, Any]:
    schemas = event_schemas(settings)
    messages = {name: {"name": name, "contentType": "application/cloudevents+json", "payload": schema,
                       "correlationId": {"location": "$message.payload#/subject"}} for name, schema in schemas.items()}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "caselog case events", "version": "1.0.0",
                 "description": "Every prior-authorization case event, as a CloudEvents 1.0 structured JSON message keyed by case id."},
        "channels": {"caseEvents": {"address": settings.topic,
                                    "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages}}},
        "operations": {"publishCaseEvents": {"action": "send", "channel": {"$ref": "#/channels/caseEvents"},
                                             "messages": [{"$ref": f"#/channels/caseEvents/messages/{name}"} for name in messages]}},
        "components": {"messages": messages},
    }
