"""The published contract, generated from the code: a JSON Schema per event type (the
CloudEvent on the topic, with its ``data``) and an AsyncAPI 3.0 document for the topic.

Each event's properties come from its class (``domain.events``: its fields, which are required,
which may be null, its docstring as the description); what a field holds (instants, enums, the
items of a list, the parts of an object) comes from ``FIELDS`` below, by field name, with
``BY_EVENT`` where one name means another thing in one event (``outcome``, ``level``, ``channel``).
The data is as the deployment's ``CASELOG_KAFKA_PHI`` mode publishes it: minimum necessary or full
(``infra/kafka/disclosure.py``)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from domain.chain import ENVELOPE_FIELDS
from domain.events import EVENT_TYPES
from domain.policy import FEDERAL_EXTENSIONS, POLICY_IDS
from domain.vocabulary import (APPEAL_OUTCOMES, CHANNELS, LETTER_CHANNELS, LINE_DECISIONS, LINES_OF_BUSINESS,
                               NOTICE_CHANNELS, OUTCOMES, P2P_LEVELS, RECIPIENTS, RECONSIDERATION_OUTCOMES,
                               RENTAL_UNITS, UPDATE_KINDS)
from infra.kafka.disclosure import minimum_schema
from infra.kafka.message import dataschema, event_type
from infra.settings import Settings

JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"


def _instant(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "description": f"{description} (ISO 8601, UTC offset)"}


def _text(description: str, **more: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **more}


def _enum(values: tuple[str, ...], description: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values), "description": description}


def _object(description: str, properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with the parts caselog names; it may carry more (what the request carried)."""
    return {"type": "object", "description": description, "properties": properties, "required": list(required),
            "additionalProperties": True}


def _list(items: dict[str, Any], description: str) -> dict[str, Any]:
    return {"type": "array", "items": items, "description": description}


UUID = {"type": "string", "format": "uuid"}
DATE = {"type": "string", "format": "date"}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
DOCUMENT = _object("a clinical document, by content", {
    "document_id": {**SHA256, "description": "the id POST /documents returned (its sha256)"},
    "name": _text("file name"), "media_type": _text("media type"),
    "size": {"type": "integer", "minimum": 0, "description": "bytes"}, "sha256": SHA256}, ("sha256",))
LINE = _object("the decision on one requested code", {
    "code": _text("procedure or HCPCS code"),
    "units_requested": {"type": "integer", "minimum": 0}, "units_approved": {"type": "integer", "minimum": 0},
    "decision": _enum(LINE_DECISIONS, "this line's decision"),
    "rental": _enum(RENTAL_UNITS, "DME rentals: approved units count days or months")},
    ("code", "units_requested", "units_approved", "decision"))
REVIEWER = _object("the reviewer who decided", {"id": _text("reviewer id"),
                                                 "credential": _text("MD, DO, RN, NP or PA")}, ("id",))
ACTOR = _object("who acted: kind provider, reviewer, auditor, ops, admin, system (the policy's rules) or scheduler",
                {"kind": _text("provider, reviewer, auditor, ops, admin, system or scheduler"),
                 "id": _text("the user, NPI, rules (rules:<policy>@<version>) or scheduler id"),
                 "credential": _text("a reviewer's credential")}, ("kind", "id"))
EXTENSION_REASONS = tuple(sorted(set().union(*(rule.reasons for rule in FEDERAL_EXTENSIONS.values()))))

FIELDS: dict[str, dict[str, Any]] = {
    # the request
    "case_number": _text("the case number: 10 digits", pattern="^[0-9]{10}$"),
    "policy": _enum(POLICY_IDS, "the policy row (plan/program) the case is governed by"),
    "policy_version": {"type": "integer", "minimum": 1, "description": "the version of the policy row in force"},
    "line_of_business": _enum(LINES_OF_BUSINESS, "line of business"),
    "member": _object("the member (the minimum-necessary topic pseudonymises or leaves out its parts)", {
        "id": _text("member id"), "first_name": _text("given name"), "last_name": _text("family name"),
        "dob": {**DATE, "description": "date of birth"}}),
    "ordering_provider": _object("the ordering provider", {
        "npi": _text("NPI"), "tin": _text("TIN"), "name": _text("name"), "phone": _text("phone"), "fax": _text("fax"),
        "notify_by_email": {"type": "boolean", "description": "e-notification for web-initiated cases"}}),
    "site": _object("the rendering site", {
        "npi": _text("NPI"), "tin": _text("TIN"), "name": _text("name"),
        "place_of_service": _text("two-digit CMS place-of-service code")}),
    "service": _object("what is requested", {
        "date_of_service": {**DATE, "description": "date of service"},
        "place_of_service": _text("two-digit CMS place-of-service code"),
        "observation": {"type": "boolean", "description": "23-hour observation"},
        "procedures": _list(_object("a requested code", {
            "code": _text("procedure or HCPCS code"), "units": {"type": "integer", "minimum": 1},
            "modifiers": _list({"type": "string"}, "modifiers")}, ("code", "units")), "requested codes"),
        "diagnoses": _list({"type": "string"}, "ICD-10 codes")}),
    "clinical": {"type": "object", "description": "answers to the program's clinical questions (free-form)"},
    "draft": {"type": "object", "description": "the fields of the request entered so far (free-form)"},
    "documents": _list(DOCUMENT, "documents attached"),
    "urgent_requested": {"type": "boolean", "description": "the requester marked it urgent"},
    "urgent": {"type": "boolean", "description": "processed as urgent"},
    "urgent_note": _text("why an urgent request is processed as standard"),
    "retro": {"type": "boolean", "description": "requested after the date of service"},
    "channel": _enum(CHANNELS, "how the request came in"),
    "predecessor_case_id": {**UUID, "description": "the authorization this case changes (a clinical update)"},
    # clocks
    "received_at": _instant("when the request was received (the decision clock starts)"),
    "decision_due_at": _instant("the hard limit for the decision"),
    "decision_warning_at": _instant("75% of the time from receipt to decision_due_at"),
    "decision_target_at": _instant("the target: 2 business days after complete clinical information"),
    "expires_at": _instant("when the draft expires unless submitted"),
    "due_at": _instant("when the requested information is due"),
    "deadline": _instant("the deadline that passed"),
    "days": {"type": "integer", "minimum": 1, "description": "calendar days added to the decision clock"},
    # holds, information, P2P
    "requested_items": _list({"type": "string"}, "what the hold asks for"),
    "notes": _text("notes"),
    "p2p_id": _text("the peer-to-peer call's id"),
    "slot": _instant("when the call is"),
    "contact": _object("whom to call", {"name": _text("name"), "phone": _text("phone"),
                                        "instructions": _text("instructions")}),
    "also_cases": _list({**UUID, "description": "a case id"}, "other cases the call covers"),
    # decisions
    "lines": _list(LINE, "the decision on each requested code"),
    "rationale": _text("why"),
    "guidelines": _list({"type": "string"}, "guidelines applied"),
    "technique": _text("approved radiation technique"),
    "fractions": {"type": "integer", "minimum": 1, "description": "approved fractions"},
    "igrt": {"type": "boolean", "description": "image-guided radiation therapy approved"},
    "site_of_care_redirect": {"type": "boolean", "description": "approved at a redirected site of care"},
    "reviewer": REVIEWER,
    "rule": {"type": "object", "description": "the policy rule that approved it, as its condition"},
    "authorization_number": _text("the authorization number: A + the case number", pattern="^A[0-9]{10}$"),
    "valid_from": _instant("the authorization's first instant"),
    "valid_to": _instant("the authorization's last instant"),
    "previous_valid_to": _instant("the authorization's end before the extension"),
    "appeal_deadline": _instant("the last instant to appeal"),
    "next_appeal_deadline": _instant("the last instant to appeal at the next level"),
    "reconsideration_deadline": _instant("the last instant to ask for a reconsideration"),
    "reconsideration_open": {"type": "boolean", "description": "a reconsideration may be requested"},
    "alternative_deadline": _instant("the last instant to accept the recommended alternative"),
    "filed_at": _instant("when the appeal was filed"),
    # the authorization after approval
    "kind": _enum(UPDATE_KINDS, "what changes: site, code_correction and contact in place; the others open a "
                                "new linked case"),
    "changes": {"type": "object", "description": "the new values (free-form)"},
    "successor_case_id": {**UUID, "description": "the new linked case"},
    # correspondence
    "recipient": _enum(RECIPIENTS, "to whom"),
    "letter_kind": _text("which letter: determination_<outcome>, approval, request_for_information, "
                         "pre_denial_notice, timeframe_extension, appeal_<outcome>, reconsideration_<outcome>, "
                         "alternative_accepted, authorization_updated, authorization_extended, "
                         "authorization_withdrawn"),
    "address": {"type": "object", "description": "where it went: NPI and fax, facility, or member id"},
    "reason": _text("why"),
}

BY_EVENT: dict[tuple[str, str], dict[str, Any]] = {
    ("CaseDetermined", "outcome"): _enum(OUTCOMES, "the decision"),
    ("ReconsiderationDecided", "outcome"): _enum(RECONSIDERATION_OUTCOMES, "the reconsideration's decision"),
    ("AppealDecided", "outcome"): _enum(APPEAL_OUTCOMES, "the appeal's decision"),
    ("P2PCompleted", "outcome"): _text("what the call concluded"),
    ("P2PScheduled", "level"): _enum(P2P_LEVELS, "the kind of call"),
    ("P2PScheduled", "reviewer"): _text("the reviewer taking the call"),
    ("AppealFiled", "level"): {"type": "integer", "minimum": 1, "description": "the appeal level"},
    ("AppealDecided", "level"): {"type": "integer", "minimum": 1, "description": "the appeal level"},
    ("PreDenialNoticeGiven", "channel"): _enum(NOTICE_CHANNELS, "how the provider was told"),
    ("LetterIssued", "channel"): _enum(LETTER_CHANNELS, "how it was sent"),
    ("DecisionTimeframeExtended", "reason"): _enum(EXTENSION_REASONS, "a reason the line of business allows"),
    ("HoldReleased", "reason"): _enum(("clinical_uploaded", "p2p_completed"), "what released the hold"),
    ("AuthorizationUpdated", "kind"): _enum(("site", "code_correction", "contact"), "what changed in place"),
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}], "description": schema.get("description", "")}


def _may_be_null(generated: dict[str, Any]) -> bool:
    return any(option.get("type") == "null" for option in generated.get("anyOf", []))


def field_schema(event: str, name: str, generated: dict[str, Any]) -> dict[str, Any]:
    """What a field of an event holds: the table's schema when it names it (null allowed where the
    class allows it), else the schema of its Python type."""
    known = BY_EVENT.get((event, name)) or FIELDS.get(name)
    if known is None:
        return generated
    return _nullable(known) if _may_be_null(generated) else known


def data_schema(cls: type) -> dict[str, Any]:
    full = TypeAdapter(cls).json_schema()
    props = {k: field_schema(cls.__name__, k, v) for k, v in full["properties"].items() if k not in ENVELOPE_FIELDS}
    return {"type": "object", "title": f"{cls.__name__} data", "properties": props,
            "required": [k for k in full.get("required", []) if k in props], "additionalProperties": False}


def description(cls: type) -> str:
    """The event's docstring, as one paragraph."""
    return " ".join((cls.__doc__ or "").split())


HASH_NOTE = {
    "full": "the event's SHA-256 chain hash as stored (the chain is checked in the store: caselog verify)",
    "minimum": "the event's SHA-256 chain hash, over the full record, which this topic does not carry: it identifies"
               " the event, nothing here can be checked against it",
}


def cloud_event_schema(name: str, cls: type, deployment: str, phi: str = "full") -> dict[str, Any]:
    version = getattr(cls, "class_version", 1)
    data = data_schema(cls) if phi == "full" else minimum_schema(name, data_schema(cls))
    return {
        "$schema": JSON_SCHEMA,
        "$id": dataschema(name, version),
        "title": name,
        "description": description(cls),
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
                     "caseversion", "position", "phi", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid", "description": "stable across re-publication"},
            "source": {"type": "string", "pattern": "^caselog/", "examples": [f"caselog/{deployment}"]},
            "type": {"const": event_type(name, version), "description": "caselog.case.<event>.v<class version>"},
            "subject": {"type": "string", "format": "uuid", "description": "the case id (also the Kafka key)"},
            "time": {"type": "string", "format": "date-time", "description": "when it occurred"},
            "datacontenttype": {"const": "application/json"},
            "dataschema": {"const": dataschema(name, version), "description": "this schema's $id"},
            "caseversion": {"type": "integer", "minimum": 1, "description": "keep the highest per case to dedupe"},
            "position": {"type": "integer", "minimum": 1, "description": "global store position"},
            "phi": {"const": phi, "description": "what data discloses: minimum (member pseudonymized; no names, dates"
                    " of birth, free text or document names) or full (the record as stored); CASELOG_KAFKA_PHI"},
            "data": {
                "type": "object",
                "required": ["case_id", "version", "type", "occurred_at", "actor", "data", "hash"],
                "properties": {
                    "case_id": {**UUID, "description": "the case"},
                    "version": {"type": "integer", "minimum": 1, "description": "the event's place in its case"},
                    "type": {"const": name},
                    "occurred_at": {"type": "string", "format": "date-time"},
                    "actor": ACTOR,
                    "hash": {**SHA256, "description": HASH_NOTE[phi]},
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
    messages = {name: {"name": name, "title": name, "summary": schema["description"].split(". ")[0],
                       "contentType": "application/cloudevents+json", "payload": schema,
                       "correlationId": {"location": "$message.payload#/subject"}} for name, schema in schemas.items()}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "caselog case events", "version": "1.0.0",
                 "description": "Every prior-authorization case event, as a CloudEvents 1.0 structured JSON message"
                                f" keyed by case id. {DISCLOSES[settings.kafka_phi]}"},
        "channels": {"caseEvents": {"address": settings.topic,
                                    "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages}}},
        "operations": {"publishCaseEvents": {"action": "send", "channel": {"$ref": "#/channels/caseEvents"},
                                             "messages": [{"$ref": f"#/channels/caseEvents/messages/{name}"}
                                                          for name in messages]}},
        "components": {"messages": messages},
    }
