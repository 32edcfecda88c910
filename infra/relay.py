"""The Kafka relay (outbox): publishes every stored event, in store order, to the case-events
topic as a CloudEvents 1.0 structured JSON message, and records its position only after the
broker acknowledged. A crash re-publishes at most the unacknowledged tail, with the same
CloudEvents ``id``; subscribers dedupe by ``caseversion`` (see ``consumers/dedupe.py``).

SQLite has no subscription, so the relay polls; on PostgreSQL it also listens (the
eventsourcing subscription, LISTEN/NOTIFY) to wake early, and polls anyway, since a lost
NOTIFY must not stall it. While the broker is down, writes go on; the relay retries with
backoff and reports its lag.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import datetime
from typing import Any, Callable
from uuid import NAMESPACE_URL, uuid5

import orjson
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from infra.database import Database
from infra.heartbeat import Heartbeat
from projections.records import EventRecord, from_stored
from projections.runner import ensure_tracking, tracked_position

log = logging.getLogger("caselog.relay")
EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "https://caselog/events")


def event_id(case_id: str, version: int) -> str:
    """The CloudEvents id of a stored event: the same on every re-publication."""
    return str(uuid5(EVENT_ID_NAMESPACE, f"{case_id}:{version}"))


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


def cloud_event(record: EventRecord, deployment: str, class_version: int = 1) -> CloudEvent:
    data = {k: record[k] for k in ("case_id", "version", "type", "occurred_at", "actor", "data", "hash")}
    return CloudEvent(
        attributes={
            "specversion": "1.0",
            "id": event_id(record["case_id"], record["version"]),
            "source": f"caselog/{deployment}",
            "type": f"caselog.case.{short_type(record['type'])}.v{class_version}",
            "subject": record["case_id"],
            "time": datetime.fromisoformat(record["occurred_at"]),
            "datacontenttype": "application/json",
            "caseversion": record["version"],
            "position": record["position"],
        },
        data=data,
    )


def to_message(record: EventRecord, deployment: str) -> KafkaMessage:
    return to_structured(cloud_event(record, deployment), OrjsonFormat(), key_mapper=lambda e: e.get_subject())


def parse_message(value: bytes, headers: dict[str, bytes] | None = None, key: bytes | None = None):
    """A Kafka message value back into a CloudEvent (the cloudevents package's Kafka binding)."""
    message = KafkaMessage(headers=headers or {"content-type": b"application/cloudevents+json"}, key=key, value=value)
    return from_structured(message, JSONFormat())


def ensure_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1) -> None:
    """Create the case-events topic (unlimited retention) unless it exists. The relay and the
    workers both call it, so neither depends on the other having started first."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="caselog-admin", request_timeout_ms=10_000)
    try:
        if topic not in admin.list_topics():
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replication,
                                          topic_configs={"retention.ms": "-1", "retention.bytes": "-1"})])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


class Relay:
    TRACKING = "relay"

    def __init__(self, recorder: Any, db: Database, *, bootstrap: str, topic: str, partitions: int, deployment: str,
                 replication: int = 1, batch: int = 1000, poll_seconds: float = 0.2, producer_config: dict | None = None):
        self.recorder = recorder
        self.db = db
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.replication = replication
        self.deployment = deployment
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.producer_config = producer_config or {}
        self.name = f"{self.TRACKING}:{topic}"
        self._producer = None
        self._wake = threading.Event()
        self.published = 0
        self.last_error: str | None = None
        with db.schema() as cur:
            ensure_tracking(cur, self.name)

    # ---- position and lag ------------------------------------------------------------------

    def position(self) -> int:
        return tracked_position(self.db, self.name)

    def lag(self) -> int:
        return (self.recorder.max_notification_id() or 0) - self.position()

    def _record(self, position: int) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE caselog_tracking SET position = ? WHERE projection = ? AND position < ?", (position, self.name, position))

    # ---- Kafka -----------------------------------------------------------------------------

    def ensure_topic(self) -> None:
        ensure_topic(self.bootstrap, self.topic, self.partitions, self.replication)

    def producer(self):
        if self._producer is None:
            from kafka import KafkaProducer

            config = {"bootstrap_servers": self.bootstrap, "acks": "all", "enable_idempotence": True, "linger_ms": 5,
                      "max_in_flight_requests_per_connection": 5, "retries": 2**31 - 1, "request_timeout_ms": 10_000,
                      "client_id": "caselog-relay", **self.producer_config}
            self._producer = KafkaProducer(**config)
        return self._producer

    def publish_once(self, timeout: float = 15.0) -> int:
        """Publish the next batch after the recorded position; record it once acknowledged."""
        start = self.position() + 1
        rows = self.recorder.select_notifications(start, self.batch)
        if not rows:
            return 0
        producer = self.producer()
        futures = []
        for n in rows:
            record = from_stored(n.id, n.originator_id, n.originator_version, n.topic, n.state)
            message = to_message(record, self.deployment)
            futures.append(producer.send(self.topic, key=message.key if isinstance(message.key, bytes) else str(message.key).encode(),
                                         value=message.value, headers=list(message.headers.items())))
        producer.flush(timeout=timeout)
        for f in futures:
            f.get(timeout=timeout)  # raises if the broker did not acknowledge
        self._record(rows[-1].id)
        self.published += len(rows)
        return len(rows)

    def _listen(self, stop: threading.Event) -> None:
        """PostgreSQL only: wake the loop on NOTIFY (the loop polls anyway)."""
        try:
            with self.recorder.subscribe(gt=self.position()) as subscription:
                for _ in subscription:
                    self._wake.set()
                    if stop.is_set():
                        return
        except Exception as exc:  # noqa: BLE001 - polling carries on without the subscription
            log.info("subscription ended (%s); polling only", exc)

    def _watch(self, stop: threading.Event, report: Callable[[str], None], every: float = 5.0) -> None:
        """Report the lag while the relay is behind and not moving (a frozen or lost broker
        blocks a send without raising at once)."""
        last = self.position()
        while not stop.wait(every):
            try:
                now, lag = self.position(), self.lag()
            except Exception:  # noqa: BLE001 - the store may be closing
                continue
            if lag > 0 and now == last:
                report(f"relay: lag {lag} events, no acknowledgement for {every:.0f}s"
                       + (f" ({self.last_error})" if self.last_error else " (waiting for the broker)"))
            last = now

    def run(self, stop: threading.Event, report: Callable[[str], None] | None = None, heartbeat: Heartbeat | None = None) -> None:
        if self.db.dialect == "postgres":
            threading.Thread(target=self._listen, args=(stop,), daemon=True, name="relay-listen").start()
        if report is not None:
            threading.Thread(target=self._watch, args=(stop, report), daemon=True, name="relay-lag").start()
        backoff, topic_ready = 0.5, False
        while not stop.is_set():
            if heartbeat is not None:
                heartbeat.beat()
            try:
                if not topic_ready:
                    self.ensure_topic()
                    topic_ready = True
                sent = self.publish_once()
                backoff = 0.5
                self.last_error = None
                if sent:
                    continue
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
            except Exception as exc:  # noqa: BLE001 - the broker may be down: back off and retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._reset_producer()
                log.warning("relay: broker unavailable (%s); retrying in %.1fs", self.last_error, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _reset_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception:  # noqa: BLE001
                pass
            self._producer = None

    def close(self) -> None:
        self._reset_producer()
