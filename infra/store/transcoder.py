"""orjson transcoder for stored events (after the eventsourcing aggregate7 example).

Event data are JSON values already (instants as ISO strings); the only typed field is the
envelope ``timestamp``, restored to a datetime on the way out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Transcoder


class OrjsonTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)

    def decode(self, data: bytes) -> Any:
        obj = orjson.loads(data)
        if isinstance(obj, dict):
            ts = obj.get("timestamp")
            if isinstance(ts, str):
                obj["timestamp"] = datetime.fromisoformat(ts)
            oid = obj.get("originator_id")
            if isinstance(oid, str) and len(oid) == 36:
                obj["originator_id"] = UUID(oid)
        return obj
