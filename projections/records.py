"""The one shape every projection reads, whether the event came from the store's
notification log or from a Kafka CloudEvent: the same ``event_record`` readers see."""

from __future__ import annotations

from typing import Any, TypedDict

from domain.chain import ENVELOPE_FIELDS, decode_state, stored_data


class EventRecord(TypedDict):
    position: int
    case_id: str
    version: int
    type: str
    occurred_at: str
    actor: dict
    data: dict[str, Any]
    hash: str
    class_version: int  # the version of its class the event was written at (the shape of ``data``)


def from_stored(position: int, case_id: str, version: int, topic: str, state: bytes | dict,
                owned: bool = False) -> EventRecord:
    """``state``: decoded (``CaseLog.stored_state``), or the plaintext bytes of a store with no cipher.
    ``owned``: the caller hands ``state`` over (decoded for this record alone), so its data are the
    state itself with the envelope taken out, not a copy."""
    state = decode_state(state)
    if owned:
        return _owned(position, case_id, version, topic, state)
    cid = str(case_id)
    if len(cid) == 32:  # SQLite keeps UUIDs as hex
        cid = f"{cid[:8]}-{cid[8:12]}-{cid[12:16]}-{cid[16:20]}-{cid[20:]}"
    return {
        "position": position,
        "case_id": cid,
        "version": version,
        "type": topic.rsplit(":", 1)[-1],
        "occurred_at": state["timestamp"] if isinstance(state["timestamp"], str) else state["timestamp"].isoformat(),
        "actor": state.get("actor") or {},
        "data": stored_data(state),
        "hash": state.get("hash", ""),
        "class_version": int(state.get("class_version", 1)),  # eventsourcing stores it above version 1
    }


def _owned(position: int, case_id: Any, version: int, topic: str, state: dict) -> EventRecord:
    cid = case_id if isinstance(case_id, str) else str(case_id)
    if len(cid) == 32:  # SQLite keeps UUIDs as hex
        cid = f"{cid[:8]}-{cid[8:12]}-{cid[12:16]}-{cid[16:20]}-{cid[20:]}"
    pop = state.pop
    timestamp = pop("timestamp")
    hash_ = pop("hash", "")
    actor = pop("actor", None) or {}
    class_version = int(pop("class_version", 1))
    for name in ENVELOPE_FIELDS:
        pop(name, None)
    return {
        "position": position,
        "case_id": cid,
        "version": version,
        "type": topic.rsplit(":", 1)[-1],
        "occurred_at": timestamp if isinstance(timestamp, str) else timestamp.isoformat(),
        "actor": actor,
        "data": state,
        "hash": hash_,
        "class_version": class_version,
    }
