"""The relay keeps a batch in flight while it sends the next, and still records a position only
once every event up to it was acknowledged: against a producer whose acknowledgements the test
holds back or fails, on both stores."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError

from infra.bootstrap import disclosure
from infra.demo.samples import later, request
from infra.kafka.relay import Relay
from tests.support import DME, PROVIDER


class Ack:
    """A send's future: done when the producer acknowledges it (or fails it)."""

    def __init__(self, position: int):
        self.position, self.is_done, self.exception = position, False, None

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def get(self, timeout=None):
        if not self.is_done:
            raise KafkaTimeoutError("no acknowledgement")
        if self.exception is not None:
            raise self.exception
        return self.position


class Producer:
    """Acknowledges what was sent when flushed or when the relay waits for it; the positions in
    ``failing`` fail (an outage) instead."""

    def __init__(self, failing: set[int] = frozenset()):
        self.sent: list[Ack] = []
        self.failing = set(failing)

    def partitions_for(self, topic):
        return {0, 1, 2}

    def send(self, topic, key, value, headers, partition):
        import orjson

        ack = Ack(orjson.loads(value)["position"])
        self.sent.append(ack)
        return ack

    def acknowledge(self) -> None:
        for ack in self.sent:
            if not ack.is_done:
                ack.is_done = True
                if ack.position in self.failing:
                    ack.exception = KafkaTimeoutError(f"position {ack.position} not acknowledged")

    def flush(self, timeout=None):
        self.acknowledge()

    def close(self, timeout=None):
        pass


def relay_with(system, fake: Producer, **options) -> Relay:
    s = system.settings
    relay = Relay(system.app.recorder, system.db, bootstrap="unused:9092", topic=s.topic, partitions=3,
                  deployment=s.deployment, decode=system.app.stored_state, disclosure=disclosure(s), **options)
    relay._producer = fake
    recorded = relay._record

    def record(position: int) -> None:  # the guarantee: nothing recorded that was not acknowledged
        assert all(a.succeeded() for a in fake.sent if a.position <= position), position
        recorded(position)

    relay._record = record
    return relay


def submit_cases(system, count: int) -> int:
    for n in range(count):
        system.app.submit(request(DME, date_of_service=later(system.clock.now(), 10), member_no=n), actor=PROVIDER)
    return system.app.max_position()


def test_a_batch_is_recorded_only_once_acknowledged_while_the_next_is_in_flight(system):
    total = submit_cases(system, 6)
    fake = Producer()
    relay = relay_with(system, fake, batch=2)
    assert relay.publish_once() == 2 and relay.position() == 0  # sent, not acknowledged: nothing recorded
    fake.acknowledge()
    assert relay.publish_once() == 2 and relay.position() == 2  # the first settled, the second in flight
    while relay.lag() > 0:
        fake.acknowledge()
        relay.publish_once()
    assert relay.position() == total
    assert sorted(a.position for a in fake.sent) == list(range(1, total + 1)), "each event sent once"


def test_a_read_that_reaches_the_end_of_the_log_settles_everything(system):
    total = submit_cases(system, 3)
    fake = Producer()
    relay = relay_with(system, fake, batch=total + 10)
    assert relay.publish_once() == total  # flushed (acknowledged) and recorded in the same call
    assert relay.position() == total and not relay._inflight


def test_an_unacknowledged_event_is_sent_again_with_everything_after_it(system):
    total = submit_cases(system, 6)
    assert total >= 6
    fake = Producer(failing={5})
    relay = relay_with(system, fake, batch=2)
    relay.publish_once()
    fake.acknowledge()
    relay.publish_once()  # settles 1-2
    fake.acknowledge()
    relay.publish_once()  # settles 3-4; 5-6 go out
    fake.acknowledge()  # 5 fails
    with pytest.raises(KafkaTimeoutError):
        while relay.lag() > 0:
            relay.publish_once()
            fake.acknowledge()
    assert relay.position() == 4, "recorded up to the event before the one that failed"
    assert not relay._inflight, "what was not settled is forgotten"
    again = Producer()  # the run loop makes a new producer after an outage
    relay = relay_with(system, again, batch=2)
    while relay.lag() > 0:
        again.acknowledge()
        relay.publish_once()
    assert relay.position() == total
    assert [a.position for a in again.sent] == list(range(5, total + 1)), "sent again from the event that failed"


def test_nothing_in_flight_is_recorded_when_the_topic_check_resets_the_position(system):
    total = submit_cases(system, 9)
    fake = Producer()
    relay = relay_with(system, fake, batch=3)
    relay.publish_once()
    fake.acknowledge()
    relay.publish_once()
    assert relay.position() == 3 and relay._inflight
    relay.settle()  # what check_topic does first
    assert relay.position() == 6 and not relay._inflight
    while relay.lag() > 0:
        relay.publish_once()
    assert relay.position() == total
