"""The per-case SHA-256 hash chain over each event's canonical body.

The body is what is stored: ``case_id``, ``version``, ``type``, ``occurred_at``, ``actor``,
``command``, ``prev_hash`` and ``data`` (every other stored field), serialized by orjson
with sorted keys. ``verify`` recomputes it from the stored rows, before any upcasting,
so changing an event's shape later never breaks an old chain.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Iterable

import orjson

GENESIS = "0" * 64
ENVELOPE_FIELDS = ("originator_id", "originator_version", "timestamp", "actor", "command", "prev_hash", "hash")


def canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def event_hash(
    *,
    case_id: str,
    version: int,
    type_name: str,
    occurred_at: datetime | str,
    actor: dict,
    command: dict | None,
    prev_hash: str,
    data: dict[str, Any],
) -> str:
    if isinstance(occurred_at, datetime):
        occurred_at = occurred_at.isoformat()
    body = {
        "case_id": str(case_id),
        "version": version,
        "type": type_name,
        "occurred_at": occurred_at,
        "actor": actor,
        "command": command,
        "prev_hash": prev_hash,
        "data": data,
    }
    return hashlib.sha256(canonical(body)).hexdigest()


def decode_state(raw: bytes | dict[str, Any], cipher: Any = None, compressor: Any = None) -> dict[str, Any]:
    """A stored event's state as it was written, the body the chain hashes: decrypted by ``cipher`` and
    decompressed by ``compressor`` when the store has them (an eventsourcing mapper's), then parsed with
    orjson, no upcasting, no conversion. Every reader of stored rows goes through here (verify and the
    seals, the projections, the relay, the published-size check), so an encrypted store reads as any other."""
    if isinstance(raw, dict):
        return raw
    if cipher is not None:
        raw = cipher.decrypt(raw)
    if compressor is not None:
        raw = compressor.decompress(raw)
    return orjson.loads(raw)


def stored_data(state: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` part of a stored event state (envelope fields and class_version removed)."""
    return {k: v for k, v in state.items() if k not in ENVELOPE_FIELDS and k != "class_version"}


class ChainBreak(Exception):
    def __init__(self, case_id: str, version: int, reason: str):
        super().__init__(f"case {case_id} version {version}: {reason}")
        self.case_id = case_id
        self.version = version
        self.reason = reason


class ChainWalker:
    """Feeds stored events (in any interleaving of cases, each case in version order) and
    raises ChainBreak at the first event whose hash, predecessor or version is wrong."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, str]] = {}
        self.events = 0

    @property
    def cases(self) -> int:
        return len(self._last)

    def feed(self, case_id: str, version: int, type_name: str, state: dict[str, Any]) -> None:
        last_version, last_hash = self._last.get(case_id, (0, GENESIS))
        if version != last_version + 1:
            raise ChainBreak(case_id, version, f"expected version {last_version + 1} (an event is missing)")
        if state.get("prev_hash") != last_hash:
            raise ChainBreak(case_id, version, "prev_hash does not match the previous event's hash")
        expected = event_hash(
            case_id=case_id,
            version=version,
            type_name=type_name,
            occurred_at=state.get("timestamp"),
            actor=state.get("actor"),
            command=state.get("command"),
            prev_hash=last_hash,
            data=stored_data(state),
        )
        if state.get("hash") != expected:
            raise ChainBreak(case_id, version, "hash does not match the event's content (altered)")
        self._last[case_id] = (version, expected)
        self.events += 1

    def accept(self, case_id: str, version: int, event_hash: str) -> None:
        """Take this event as the case's last without checking it (to go on after a reported break,
        or to start from heads vouched for elsewhere, e.g. by a seal)."""
        self._last[case_id] = (version, event_hash)

    def walk(self, rows: Iterable[tuple[str, int, str, dict[str, Any]]]) -> None:
        for row in rows:
            self.feed(*row)
