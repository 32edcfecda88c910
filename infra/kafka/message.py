"""The case-events topic's message format, both ways: a stored event as a CloudEvents 1.0
structured JSON message (key: the case id), its ``data`` as the deployment discloses it
(``infra/kafka/disclosure.py``, named in the extension ``phi``), and a message back into a CloudEvent
and into the record projections read. The relay writes with it; the workers, ``caselog tail`` and
``replay --source kafka`` read with it."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import orjson
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from infra.kafka.disclosure import Disclosure
from projections.records import EventRecord, from_stored

EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "https://caselog/events")
SCHEMA_BASE = "https://caselog.dev/schemas/"
TYPE_VERSION = re.compile(r"\.v([0-9]+)$")
FULL = Disclosure("full")
SIZING = Disclosure("minimum", b"\0" * 32)  # pseudonyms have one length whatever the key: enough to measure


class WithheldRecord(ValueError):
    """A message of a minimum-necessary topic where the full record is needed (the read models)."""


def event_id(case_id: str, version: int) -> str:
    """The CloudEvents id of a stored event: the same on every re-publication."""
    return str(uuid5(EVENT_ID_NAMESPACE, f"{case_id}:{version}"))


_ID_PREFIX = hashlib.sha1(EVENT_ID_NAMESPACE.bytes)  # the name-based UUID's hash, fed the namespace
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # a hex digit with RFC 4122's variant bits


def _event_id(case_id: str, version: int) -> str:
    """``event_id`` without the UUID object (the relay computes one per event): RFC 4122's name-based
    SHA-1 UUID in the canonical text form, its version digit (5) and variant bits set in the text."""
    h = _ID_PREFIX.copy()
    h.update(f"{case_id}:{version}".encode())
    x = h.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


@lru_cache(maxsize=1024)
def short_type(name: str) -> str:
    """CaseHeld -> held, HoldReleased -> hold_released, P2PScheduled -> p2p_scheduled."""
    base = (name[4:] if name.startswith("Case") else name).replace("P2P", "P2p")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base).lower()


class OrjsonFormat(JSONFormat):
    """The CloudEvents JSON format, serialized with orjson."""

    def write(self, event: Any) -> bytes:
        attributes = dict(event.get_attributes())
        if isinstance(attributes.get("time"), datetime):
            attributes["time"] = attributes["time"].isoformat().replace("+00:00", "Z")
        attributes["data"] = event.get_data()
        return orjson.dumps(attributes)


@lru_cache(maxsize=1024)
def event_type(name: str, class_version: int) -> str:
    """The CloudEvents type of an event class at a version: caselog.case.held.v1."""
    return f"caselog.case.{short_type(name)}.v{class_version}"


@lru_cache(maxsize=1024)
def dataschema(name: str, class_version: int) -> str:
    """The URI naming the JSON Schema of that type (the ``$id`` of what ``caselog schema`` writes for it)."""
    return f"{SCHEMA_BASE}{event_type(name, class_version)}.json"


def cloud_event(record: EventRecord, deployment: str, disclosure: Disclosure = FULL) -> CloudEvent:
    """The CloudEvent of a stored event; its type and dataschema name the class version the event
    was written at, which is the shape of its ``data``."""
    data = {k: record[k] for k in ("case_id", "version", "type", "occurred_at", "actor", "data", "hash")}
    version = record.get("class_version", 1)
    data["data"] = disclosure.data(record["type"], record["data"])
    return CloudEvent(
        attributes={
            "specversion": "1.0",
            "id": event_id(record["case_id"], record["version"]),
            "source": f"caselog/{deployment}",
            "type": event_type(record["type"], version),
            "subject": record["case_id"],
            "time": datetime.fromisoformat(record["occurred_at"]),
            "datacontenttype": "application/json",
            "dataschema": dataschema(record["type"], version),
            "caseversion": record["version"],
            "position": record["position"],
            "phi": disclosure.mode,
        },
        data=data,
    )


def to_message(record: EventRecord, deployment: str, disclosure: Disclosure) -> KafkaMessage:
    event = cloud_event(record, deployment, disclosure=disclosure)
    return to_structured(event, OrjsonFormat(), key_mapper=lambda e: e.get_subject())


STRUCTURED = [("content-type", OrjsonFormat.CONTENT_TYPE.encode())]


def message_fields(record: EventRecord, deployment: str, disclosure: Disclosure) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of ``record``'s message, byte for byte what ``kafka_fields(to_message(...))``
    gives, built without the CloudEvent object and its validation (the attributes are caselog's own, of
    fixed shapes). Raises where ``to_message`` does on what a stored event holds (a timestamp that is
    not ISO 8601 or has no zone, data orjson cannot write)."""
    return _fields(record["position"], record["case_id"], record["version"], record["type"], record["occurred_at"],
                   record["actor"], disclosure.data(record["type"], record["data"]), record["hash"],
                   record.get("class_version", 1), deployment, disclosure.mode)


def case_id_text(originator_id: Any) -> str:
    """A stored event's case id as its message's key and subject write it (canonical UUID text)."""
    cid = str(originator_id)
    if len(cid) == 32:  # SQLite keeps UUIDs as hex
        cid = f"{cid[:8]}-{cid[8:12]}-{cid[12:16]}-{cid[16:20]}-{cid[20:]}"
    return cid


def stored_message_fields(position: int, originator_id: Any, version: int, topic: str, state: dict,
                          deployment: str, disclosure: Disclosure) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``message_fields(from_stored(...))`` of a stored event's decoded state, without the record in
    between: the relay's per-event path."""
    cid = case_id_text(originator_id)
    occurred = state["timestamp"]
    type_name = topic.rsplit(":", 1)[-1]
    return _fields(position, cid, version, type_name,
                   occurred if isinstance(occurred, str) else occurred.isoformat(), state.get("actor") or {},
                   disclosure.stored(type_name, state), state.get("hash", ""), int(state.get("class_version", 1)),
                   deployment, disclosure.mode)


# An instant as Python writes a UTC one (``isoformat``), which its CloudEvent ``time`` repeats with Z:
# six fractional digits only when they are not all zero (isoformat leaves those out); hours to 23 (Python
# 3.14 reads 24:00 as the next day's midnight, which it writes as such).
_UTC_ISOFORMAT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-9]{2}:[0-9]{2}(?:\.(?!000000)[0-9]{6})?\+00:00")


def cloud_time(occurred_at: str) -> str:
    """The CloudEvent ``time`` of a stored instant, as ``to_message`` writes it (RFC 3339, UTC as Z);
    raises where it does (not ISO 8601, no time zone)."""
    when = datetime.fromisoformat(occurred_at)  # validates, also what the pattern lets through
    if _UTC_ISOFORMAT.fullmatch(occurred_at):  # (nearly every event: re-writing it would give it back)
        return occurred_at[:-6] + "Z"
    if when.tzinfo is None:  # what the CloudEvent's validation refuses
        raise ValueError(f"time {occurred_at!r} must be timezone aware")
    return when.isoformat().replace("+00:00", "Z")


def _fields(position: int, case_id: str, version: int, type_name: str, occurred_at: str, actor: dict, data: dict,
            hash_: str, class_version: int, deployment: str, mode: str) -> tuple[bytes, bytes, list]:
    """The message of an event whose ``data`` is as published (disclosed in ``mode``)."""
    value = orjson.dumps({
        "specversion": "1.0",
        "id": _event_id(case_id, version),
        "source": f"caselog/{deployment}",
        "type": event_type(type_name, class_version),
        "subject": case_id,
        "time": cloud_time(occurred_at),
        "datacontenttype": "application/json",
        "dataschema": dataschema(type_name, class_version),
        "caseversion": version,
        "position": position,
        "phi": mode,
        "data": {"case_id": case_id, "version": version, "type": type_name, "occurred_at": occurred_at, "actor": actor,
                 "data": data, "hash": hash_},
    })
    return case_id.encode(), value, list(STRUCTURED)


def kafka_fields(message: KafkaMessage) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of a message, as the producer takes them."""
    key = message.key if isinstance(message.key, bytes) else str(message.key).encode()
    return key, message.value, list(message.headers.items())


def published_size(stored: Any, deployment: str) -> int:
    """The bytes a stored event (its plaintext state) takes on the topic (key, value and headers), in
    whichever mode takes more (a deployment may run a full and a minimum relay); raises when it cannot
    be encoded. The position is taken at its widest, so the size is an upper bound."""
    record = from_stored(2**53, stored.originator_id, stored.originator_version, stored.topic, stored.state)
    sizes = []
    for disclosure in (FULL, SIZING):
        key, value, headers = kafka_fields(to_message(record, deployment, disclosure))
        sizes.append(len(key) + len(value) + sum(len(k) + len(v) for k, v in headers))
    return max(sizes)


ENVELOPE_BYTES = 1024  # a CloudEvent's attributes, key and headers around an event's own fields, at most
SAFE_NESTING = 200  # brackets in a stored event below which its CloudEvent nests well within orjson's 254 levels


def size_within(stored: Any, deployment: str, limit: int) -> int:
    """``published_size``, or a cheaper upper bound when that bound is within ``limit``: the message
    holds the stored state's fields once (re-encoded by the same orjson: the same bytes) plus its
    envelope, and a state with few brackets nests too shallowly to fail encoding. Anything nearer
    the limit or more deeply nested is encoded in full."""
    state = stored.state
    bound = len(state) + ENVELOPE_BYTES + 2 * len(deployment)
    if bound <= limit and state.count(b"{") + state.count(b"[") <= SAFE_NESTING:
        return bound
    return published_size(stored, deployment)


def parse_message(value: bytes, headers: dict[str, bytes] | None = None, key: bytes | None = None):
    """A Kafka message value back into a CloudEvent (the cloudevents package's Kafka binding)."""
    message = KafkaMessage(headers=headers or {"content-type": b"application/cloudevents+json"}, key=key, value=value)
    return from_structured(message, JSONFormat())


def disclosed(event) -> str:
    """What a CloudEvent of the topic discloses: minimum or full (published before ``phi`` existed: full)."""
    return event.get_extension("phi") or "full"


def record_of(event, *, require_full: bool = False) -> EventRecord:
    """A CloudEvent from the topic as the record projections read (the same as from the store).
    ``require_full``: a minimum-necessary event raises WithheldRecord (the read models need the full one)."""
    if require_full and disclosed(event) != "full":
        raise WithheldRecord(f"event {event.get_id()} carries the minimum necessary (phi={disclosed(event)}): the read"
                             " models need the full record, published by a relay with CASELOG_KAFKA_PHI=full")
    data = event.get_data()
    return {
        "position": int(event.get_extension("position")),
        "case_id": data["case_id"],
        "version": int(data["version"]),
        "type": data["type"],
        "occurred_at": data["occurred_at"],
        "actor": data["actor"],
        "data": data["data"],
        "hash": data["hash"],
        "class_version": int(found.group(1)) if (found := TYPE_VERSION.search(event.get_type())) else 1,
    }
