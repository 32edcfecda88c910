"""What the case-events topic discloses of each event (``CASELOG_KAFKA_PHI``).

``minimum`` (the default) publishes what a subscriber needs to follow a case (its numbers, status,
dates, codes, decisions, the providers and site) and no more: the member is a keyed pseudonym (HMAC-SHA256
of the member id under the deployment's pseudonym key: the same member, the same pseudonym, on every
event and every re-publication, and no way back to the id without the key); names, dates of birth,
free-text clinical answers, notes, reasons and rationales, and document names are left out. ``full``
publishes the record as stored.

The rules are one table, by data field (``FIELDS``, with per-event exceptions in ``OVERRIDES``), read both
by the relay (``published_data``) and by the schema generator (``minimum_schema``), so the JSON Schemas
describe what is actually sent. A field the table does not name is withheld: a new event field is not
published in minimum mode until someone decides it may be.

The message keeps the event's ``hash``, but in minimum mode it covers the full record, which the
subscriber does not have: it identifies the event and nothing on the topic can be checked against it.
Each message says which it is in the CloudEvents extension ``phi`` (``minimum`` or ``full``; messages
published before this existed are full).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

from domain.chain import ENVELOPE_FIELDS, stored_data

MODES = ("minimum", "full")
PSEUDONYM = {"type": "string", "pattern": "^[0-9a-f]{64}$",
             "description": "HMAC-SHA256 of the member id under the deployment's pseudonym key (hex)"}
DOCUMENT_FIELDS = ("document_id", "sha256", "media_type", "size")
SERVICE_FIELDS = ("procedures", "diagnoses", "date_of_service")

Pseudonym = Callable[[str], str]


@dataclass(frozen=True)
class Rule:
    """How one data field is published in minimum mode: its value, and its JSON Schema, from the full ones."""

    value: Callable[[Any, Pseudonym], Any]
    schema: Callable[[dict], dict]


KEEP = Rule(lambda value, _: value, lambda schema: schema)
WITHHELD = None


def _member(value: Any, pseudonym: Pseudonym) -> Any:
    return {"pseudonym": pseudonym(str(value.get("id")))} if isinstance(value, dict) else None


def _documents(value: Any, _: Pseudonym) -> Any:
    return [{k: d[k] for k in DOCUMENT_FIELDS if k in d} for d in value if isinstance(d, dict)] \
        if isinstance(value, list) else []


def _service_changes(value: Any, _: Pseudonym) -> Any:
    return {k: v for k, v in value.items() if k in SERVICE_FIELDS} if isinstance(value, dict) else {}


def _address(value: Any, pseudonym: Pseudonym) -> Any:
    if not isinstance(value, dict) or "member_id" not in value:
        return value
    rest = {k: v for k, v in value.items() if k != "member_id"}
    return {**rest, "member_pseudonym": pseudonym(str(value["member_id"]))}


MEMBER = Rule(_member, lambda _: {"type": "object", "properties": {"pseudonym": PSEUDONYM}, "required": ["pseudonym"],
                                  "additionalProperties": False, "description": "the member, pseudonymized"})
DOCUMENTS = Rule(_documents, lambda _: {
    "type": "array", "description": "the documents attached, without their names",
    "items": {"type": "object", "additionalProperties": False, "properties": {
        "document_id": {"type": "string"}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "media_type": {"type": "string"}, "size": {"type": "integer"}}}})
SERVICE_CHANGES = Rule(_service_changes, lambda _: {
    "type": "object", "description": "the service fields changed (other clinical changes are withheld)",
    "propertyNames": {"enum": list(SERVICE_FIELDS)}})
ADDRESS = Rule(_address, lambda schema: {
    **schema, "description": "where the letter went; a member's as member_pseudonym",
    "properties": {"member_pseudonym": PSEUDONYM}, "not": {"required": ["member_id"]}})

# Every data field of every event type, by name, as minimum mode publishes it.
FIELDS: dict[str, Rule | None] = {
    # the member and what would identify them or their condition in free text
    "member": MEMBER, "draft": WITHHELD, "clinical": WITHHELD, "notes": WITHHELD, "reason": WITHHELD,
    "rationale": WITHHELD, "requested_items": WITHHELD, "documents": DOCUMENTS, "address": ADDRESS,
    # the case: numbers, policy, service codes and dates, providers and site
    "case_number": KEEP, "policy": KEEP, "policy_version": KEEP, "line_of_business": KEEP, "ordering_provider": KEEP,
    "site": KEEP, "service": KEEP, "urgent_requested": KEEP, "urgent": KEEP, "urgent_note": KEEP, "retro": KEEP,
    "channel": KEEP, "predecessor_case_id": KEEP, "successor_case_id": KEEP, "also_cases": KEEP,
    # its clock
    "expires_at": KEEP, "received_at": KEEP, "decision_due_at": KEEP, "decision_warning_at": KEEP,
    "decision_target_at": KEEP, "due_at": KEEP, "slot": KEEP, "days": KEEP, "deadline": KEEP, "filed_at": KEEP,
    "appeal_deadline": KEEP, "reconsideration_deadline": KEEP, "reconsideration_open": KEEP,
    "alternative_deadline": KEEP, "next_appeal_deadline": KEEP, "previous_valid_to": KEEP,
    # decisions and the authorization
    "rule": KEEP, "lines": KEEP, "outcome": KEEP, "authorization_number": KEEP, "valid_from": KEEP, "valid_to": KEEP,
    "guidelines": KEEP, "technique": KEEP, "fractions": KEEP, "igrt": KEEP, "site_of_care_redirect": KEEP,
    "reviewer": KEEP, "level": KEEP, "kind": KEEP, "changes": KEEP,
    # peer to peer and letters
    "p2p_id": KEEP, "contact": KEEP, "recipient": KEEP, "letter_kind": KEEP,
}
# A clinical change's ``changes`` carry clinical answers beside the service codes (domain.case.successor_request).
OVERRIDES: dict[tuple[str, str], Rule | None] = {("AuthorizationSuperseded", "changes"): SERVICE_CHANGES}


def rule_for(type_name: str, name: str) -> Rule | None:
    key = (type_name, name)
    return OVERRIDES[key] if key in OVERRIDES else FIELDS.get(name, WITHHELD)


@lru_cache(maxsize=256)
def published_fields(type_name: str) -> dict[str, Rule]:
    """The fields an event of ``type_name`` publishes in minimum mode, each with its rule (``rule_for``
    of every name the tables know, the withheld left out): looked up once per type, not per field.
    Never a name of the stored envelope (``domain.chain.ENVELOPE_FIELDS``, ``class_version``), so
    a stored state can be read as the event's data (``Disclosure.stored``)."""
    names = (set(FIELDS) | {name for t, name in OVERRIDES if t == type_name}) - {*ENVELOPE_FIELDS, "class_version"}
    return {name: rule for name in names if (rule := rule_for(type_name, name)) is not None}


@dataclass(frozen=True)
class Disclosure:
    """What the relay publishes of each event: ``mode`` minimum or full; ``key`` keys the member pseudonym."""

    mode: str = "minimum"
    key: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: one of {', '.join(MODES)}, not {self.mode!r}")
        if self.mode == "minimum" and len(self.key) < 16:
            raise ValueError("minimum mode needs a pseudonym key of at least 16 bytes")

    def pseudonym(self, member_id: str) -> str:
        return hmac.new(self.key, member_id.encode(), hashlib.sha256).hexdigest()

    def data(self, type_name: str, data: dict[str, Any]) -> dict[str, Any]:
        """The ``data`` of an event of ``type_name`` as published."""
        if self.mode == "full":
            return data
        return self._minimum(type_name, data)

    def stored(self, type_name: str, state: dict[str, Any]) -> dict[str, Any]:
        """``data(type_name, stored_data(state))`` of a stored event's decoded state, without the copy
        of its data in between (the relay's per-event path): minimum mode never publishes a name of
        the envelope."""
        if self.mode == "full":
            return stored_data(state)
        return self._minimum(type_name, state)

    def _minimum(self, type_name: str, data: dict[str, Any]) -> dict[str, Any]:
        rules, out = published_fields(type_name), {}
        for name, value in data.items():
            rule = rules.get(name)
            if rule is KEEP:
                out[name] = value
            elif rule is not None:
                out[name] = rule.value(value, self.pseudonym)
        return out


def pseudonym_key(configured: str | None, secret: str) -> bytes:
    """CASELOG_PSEUDONYM_KEY, else a key derived from the token signing secret (so every relay of a
    deployment pseudonymizes alike; set the variable to keep pseudonyms when that secret is rotated)."""
    if configured:
        return configured.encode()
    return hmac.new(secret.encode(), b"caselog member pseudonym v1", hashlib.sha256).digest()


def minimum_schema(type_name: str, full: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of an event's ``data`` as minimum mode publishes it, from the full one."""
    props, kept, rules = {}, [], published_fields(type_name)
    for name, schema in full["properties"].items():
        rule = rules.get(name)
        if rule is not None:
            props[name] = rule.schema(schema)
            kept.append(name)
    withheld = sorted(set(full["properties"]) - set(kept))
    note = f"; withheld: {', '.join(withheld)}" if withheld else ""
    return {**full, "title": f"{full['title']} (minimum necessary{note})", "properties": props,
            "required": [k for k in full.get("required", []) if k in props]}
