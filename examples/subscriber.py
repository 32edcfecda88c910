"""An example subscriber of caselog's case events, for downstream teams (claims, plan portals,
letter vendors). It needs only kafka-python and the CloudEvents SDK:

    pip install kafka-python 'cloudevents>=2'
    python subscriber.py --bootstrap 127.0.0.1:9094 --group claims-sync --state claims-sync.json

Each message on the topic (default ``caselog.case-events``) is a CloudEvents 1.0 structured JSON
event keyed by case id: ``type`` is ``caselog.case.<event>.v<N>``, ``subject`` the case id,
``caseversion`` the event's place in its case, ``dataschema`` the URI of its JSON Schema
(``caselog schema`` writes them), ``data`` the event.

Delivery is at least once: after a relay restart the unacknowledged tail comes again, with the
same ids. So the subscriber keeps the highest ``caseversion`` it handled per case and drops
anything at or below it; with ``--state`` that memory survives restarts (written before the
offsets are committed, so a crash between the two re-delivers what the state already drops).
One case stays in one partition, so its events arrive in order.

It prints one JSON line per event handled; replace ``handle`` with your own work."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Iterator

from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat
from kafka import KafkaConsumer

HANDLED_VERSIONS = {1}  # the event shapes this code knows (the .v<N> of the type)


class CaseVersions:
    """The highest caseversion handled per case: a re-delivery is at or below it."""

    def __init__(self, path: str | None = None):
        self.path = path
        self.highest: dict[str, int] = {}
        if path and os.path.exists(path):
            with open(path) as f:
                self.highest = json.load(f)

    def is_new(self, case_id: str, version: int) -> bool:
        return version > self.highest.get(case_id, 0)

    def handled(self, case_id: str, version: int) -> None:
        self.highest[case_id] = version

    def save(self) -> None:
        if self.path:
            with open(self.path + ".tmp", "w") as f:
                json.dump(self.highest, f)
            os.replace(self.path + ".tmp", self.path)  # never a half-written state


def handle(event) -> None:
    """Your work goes here. This one prints what happened, and for a determination its outcome."""
    kind, _, version = event.get_type().removeprefix("caselog.case.").rpartition(".v")
    data = event.get_data()
    line = {"case_id": event.get_subject(), "caseversion": int(event.get_extension("caseversion")), "event": kind,
            "type": event.get_type(), "id": event.get_id(), "time": event.get_time().isoformat()}
    if kind == "determined":
        line["outcome"] = data["data"]["outcome"]
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def events(consumer: KafkaConsumer, versions: CaseVersions, idle_exit: float | None) -> Iterator:
    """The new events of each poll, in order; the offsets are committed once each poll is handled."""
    last = time.monotonic()
    while idle_exit is None or time.monotonic() - last < idle_exit:
        batch = consumer.poll(timeout_ms=500)
        if not consumer.assignment():
            last = time.monotonic()  # still joining the group: not idle yet
        for messages in batch.values():
            for message in messages:
                last = time.monotonic()
                headers = {k: v for k, v in (message.headers or [])}
                event = from_structured(KafkaMessage(headers=headers, key=message.key, value=message.value),
                                        JSONFormat())
                case_id, version = event.get_subject(), int(event.get_extension("caseversion"))
                if not versions.is_new(case_id, version):
                    continue  # a re-delivery
                if int(event.get_type().rpartition(".v")[2]) not in HANDLED_VERSIONS:
                    print(f"skipping {event.get_type()}: a newer shape than this code knows", file=sys.stderr)
                else:
                    yield event
                versions.handled(case_id, version)
        if batch:
            versions.save()
            if consumer.config.get("group_id"):
                consumer.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port")
    parser.add_argument("--topic", default="caselog.case-events")
    parser.add_argument("--group", default=None, help="consumer group (offsets committed); none: read from the start")
    parser.add_argument("--state", default=None, help="a JSON file keeping the highest caseversion per case")
    parser.add_argument("--idle-exit", type=float, default=None, help="exit after this many seconds without a message")
    parser.add_argument("--max-poll-interval", type=float, default=300.0,
                        help="seconds one poll's handling may take before the group gives its partitions to another "
                        "member (max.poll.interval.ms; some brokers also wait this long for a group to form)")
    args = parser.parse_args(argv)
    poll_ms = int(args.max_poll_interval * 1000)
    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id=args.group,
                             enable_auto_commit=False, auto_offset_reset="earliest", client_id="caselog-subscriber",
                             max_poll_interval_ms=poll_ms, session_timeout_ms=min(10_000, poll_ms),
                             heartbeat_interval_ms=min(3_000, poll_ms // 3))
    try:
        for event in events(consumer, CaseVersions(args.state), args.idle_exit):
            handle(event)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
