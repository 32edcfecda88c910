"""The case-events topic itself: created with its retention and message size, and what it holds
(each partition's first and end offsets), asked of the broker."""

from __future__ import annotations

import time

from infra.kafka.clients import Security, admin, consumer
from infra.settings import KAFKA_MAX_MESSAGE_BYTES


def ensure_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1,
                 max_message_bytes: int = KAFKA_MAX_MESSAGE_BYTES, security: Security | None = None) -> None:
    """Create the case-events topic (unlimited retention, ``max.message.bytes``) unless it
    exists. The relay and the workers both call it, so neither depends on the other having
    started first."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    client = admin(bootstrap, security, client_id="caselog-admin", request_timeout_ms=10_000)
    try:
        if topic not in client.list_topics():
            configs = {"retention.ms": "-1", "retention.bytes": "-1", "max.message.bytes": str(max_message_bytes)}
            client.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replication,
                                           topic_configs=configs)])
    except TopicAlreadyExistsError:
        pass
    finally:
        client.close()


def high_water_marks(bootstrap: str, topic: str, timeout: float = 15.0,
                     security: Security | None = None) -> dict[int, tuple[int, int]] | None:
    """Partition -> (first offset kept, offset after the last message) of a topic; None when it
    does not exist. Some brokers (tansu) report a partition's end offset as its last batch's
    base offset + 1, so the end is read: from the reported end - 1 until a poll brings nothing."""
    from kafka import TopicPartition

    reader = consumer(bootstrap, security, enable_auto_commit=False, group_id=None,
                      allow_auto_create_topics=False,  # a broker default topic would hide the loss
                      client_id="caselog-relay-check", request_timeout_ms=int(timeout * 1000) + 1000)
    try:
        found = reader.partitions_for_topic(topic)
        if not found:
            return None
        parts = [TopicPartition(topic, p) for p in sorted(found)]
        begins, ends = reader.beginning_offsets(parts), reader.end_offsets(parts)
        marks = {tp.partition: (begins[tp], ends[tp]) for tp in parts}
        unread = [tp for tp in parts if ends[tp] > begins[tp]]
        if not unread:
            return marks
        reader.assign(unread)
        for tp in unread:
            reader.seek(tp, max(ends[tp] - 1, begins[tp]))
        limit = time.monotonic() + timeout
        while unread:
            got = reader.poll(timeout_ms=300, max_records=100_000)
            for tp in list(unread):
                position = reader.position(tp)
                marks[tp.partition] = (begins[tp], max(ends[tp], position))
                if position >= ends[tp] and not got.get(tp):
                    unread.remove(tp)
            if unread and time.monotonic() > limit:
                raise TimeoutError(f"could not read the end of {topic} within {timeout:.0f}s")
        return marks
    finally:
        reader.close()



def broker_reachable(bootstrap: str, sec: Security | None = None, timeout: float = 3.0) -> None:
    """Raise unless a broker of ``bootstrap`` answers (its cluster metadata) within about ``timeout``
    seconds (/readyz), reached with the deployment's security settings."""
    ms = int(timeout * 1000)
    reader = consumer(bootstrap, sec, client_id="caselog-readiness", group_id=None, bootstrap_timeout_ms=ms,
                           request_timeout_ms=ms + 1000, connections_max_idle_ms=ms + 2000)
    try:
        reader.bootstrap(timeout_ms=ms)
    finally:
        reader.close()
