"""Reading the case-events topic: every partition from the beginning (or the end), parsed back
into CloudEvents with the cloudevents Kafka binding, deduplicated by caseversion, and merged
across partitions in store order (each partition is in position order once deduplicated)."""

from __future__ import annotations

import heapq
import time
from typing import Iterator

from consumers.dedupe import CaseVersionDeduper
from infra.kafka import clients
from infra.kafka.clients import Security
from infra.kafka.message import disclosed, parse_message, record_of
from projections.records import EventRecord


def consumer(bootstrap: str, security: Security | None = None):
    return clients.consumer(bootstrap, security, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                            client_id="caselog-reader")


def partitions_of(bootstrap: str, topic: str, security: Security | None = None) -> list[int]:
    c = consumer(bootstrap, security)
    try:
        found = sorted(c.partitions_for_topic(topic) or [])
    finally:
        c.close()
    if not found:
        raise RuntimeError(f"topic {topic!r} does not exist on {bootstrap}")
    return found


def partition_stream(bootstrap: str, topic: str, partition: int, idle_seconds: float = 30.0, settle_ms: int = 500,
                     security: Security | None = None) -> Iterator[tuple]:
    """(offset, headers, key, value) of one partition, from the beginning to its end now.

    The end is where the reported end offset has been passed *and* a further poll brings
    nothing: some brokers (tansu) report the base offset of the last batch as the end."""
    from kafka import TopicPartition

    c = consumer(bootstrap, security)
    tp = TopicPartition(topic, partition)
    try:
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        stalled = time.monotonic() + idle_seconds
        while True:
            got = c.poll(timeout_ms=settle_ms, max_records=2000).get(tp, [])
            if got:
                stalled = time.monotonic() + idle_seconds
                for m in got:
                    yield m.offset, dict(m.headers or []), m.key, m.value
            elif c.position(tp) >= end:
                return
            elif time.monotonic() > stalled:
                raise RuntimeError(f"partition {partition} of {topic} stopped before offset {end}")
    finally:
        c.close()


def read_topic(bootstrap: str, topic: str, security: Security | None = None,
               require_full: bool = False) -> Iterator[EventRecord]:
    """Every event on the topic once (deduplicated), in store order, in bounded memory. ``require_full``
    (to build read models): a minimum-necessary event raises WithheldRecord."""
    deduper = CaseVersionDeduper()

    def deduped(stream: Iterator) -> Iterator[EventRecord]:
        for _, headers, key, value in stream:
            event = parse_message(value, headers, key)
            if deduper.accept_event(event):
                yield record_of(event, require_full=require_full)

    streams = [deduped(partition_stream(bootstrap, topic, p, security=security))
               for p in partitions_of(bootstrap, topic, security)]
    yield from heapq.merge(*streams, key=lambda r: r["position"])


def disclosures(bootstrap: str, topic: str, security: Security | None = None) -> set[str]:
    """What the first message of each partition discloses (minimum or full): enough to refuse, before
    anything is dropped, to build read models from a topic published in minimum mode."""
    found = set()
    for p in partitions_of(bootstrap, topic, security):
        stream = partition_stream(bootstrap, topic, p, security=security)
        try:
            for _, headers, key, value in stream:
                try:
                    found.add(disclosed(parse_message(value, headers, key)))
                except Exception:  # noqa: BLE001 - not one of ours (the workers set those aside): the next
                    continue
                break
        finally:
            stream.close()
    return found
