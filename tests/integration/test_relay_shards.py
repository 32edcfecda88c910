"""Relay shards (``caselog relay --shard I/N``): N relay processes share a topic's partitions, each
with its own position, and together publish every stored event once, each case in order; a change
of layout starts from the slowest position recorded and loses nothing. On SQLite and PostgreSQL
against a real Kafka-protocol broker (tansu)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from bench.loader import load
from infra.bootstrap import bootstrap
from infra.kafka.message import case_id_text
from infra.kafka.relay import Relay, RelayStopped, Shard, relay_position, topic_positions
from infra.kafka.topic import ensure_topic
from tests.integration.test_kafka import check_topic_equals_store, drain, topic_messages
from tests.integration.test_relay_robustness import caselog, delete_topic, env_of, held_on_topic, submit
from tests.support import PROVIDER


@pytest.fixture
def sharded_store(kafka_store):
    """A topic of 6 partitions: two shards (0, 2, 4 and 1, 3, 5) or three (0, 3 and 1, 4 and 2, 5)."""
    return replace(kafka_store, topic_partitions=6)


def positions(system, topic: str) -> dict[str, int]:
    """Every relay position row of ``topic``."""
    with system.db.read() as cur:
        return topic_positions(cur, topic)


def shard_events(system, relay: Relay) -> int:
    """How many stored events are of the cases ``relay``'s shard publishes (its partitions)."""
    relay._read_partitions()
    return sum(1 for n in system.app.recorder.select_notifications(1, 10**9) if relay._owns(n.originator_id))


def test_two_shards_publish_every_event_once_each_case_in_order_each_its_own_partitions(sharded_store, clock):
    kafka_store = sharded_store
    system = bootstrap(kafka_store, clock=clock)
    shards = [system.relay(Shard(0, 2)), system.relay(Shard(1, 2))]
    try:
        load(system, 200)
        total = system.app.max_position()
        drain(shards[0])
        on_topic = {p for p, _ in topic_messages(kafka_store.kafka_bootstrap, kafka_store.topic)}
        assert on_topic == {0, 2, 4}, "shard 0 of 2 sent to its partitions only, and to each of them"
        drain(shards[1])
        ids = check_topic_equals_store(system, kafka_store)
        assert len(ids) == total and set(ids.values()) == {1}, "every event once"
        assert [relay.published for relay in shards] == [shard_events(system, relay) for relay in shards]
        topic = kafka_store.topic
        assert positions(system, topic) == {f"relay:{topic}#0/2": total, f"relay:{topic}#1/2": total}
        assert relay_position(system.db, topic) == total
    finally:
        for relay in shards:
            relay.close()
        system.close()


def test_a_change_of_layout_starts_every_shard_where_the_slowest_relay_stood_and_loses_nothing(sharded_store, clock):
    kafka_store = sharded_store
    topic = kafka_store.topic
    system = bootstrap(kafka_store, clock=clock)
    one = system.relay()
    shards = [system.relay(Shard(0, 2)), system.relay(Shard(1, 2))]
    again = system.relay()
    try:
        cases = [submit(system, n) for n in range(1, 9)]
        drain(one)
        first = system.app.max_position()
        assert positions(system, topic) == {f"relay:{topic}": first}
        for case in cases[::2]:
            system.app.cancel(case, "no longer needed", actor=PROVIDER)
        shards[0].publish_once()  # the first shard to publish makes every row of its layout
        assert positions(system, topic) == {f"relay:{topic}#0/2": system.app.max_position(), f"relay:{topic}#1/2": first}
        assert relay_position(system.db, topic) == first, "the lag is the slowest shard's"
        drain(shards[1])
        ids = check_topic_equals_store(system, kafka_store)
        assert set(ids.values()) == {1}, "the shards started where the one relay stopped: nothing twice"

        behind = system.app.max_position()
        for n in range(9, 25):  # (16 cases: some of them shard 0's)
            submit(system, n)
        drain(shards[0])  # shard 1 stays at ``behind``
        again.publish_once()
        assert positions(system, topic) == {f"relay:{topic}": system.app.max_position()}
        drain(again)
        ids = check_topic_equals_store(system, kafka_store)
        assert len(ids) == system.app.max_position()
        twice = {i for i, count in ids.items() if count == 2}
        sent_past = [n for n in system.app.recorder.select_notifications(behind + 1, 10**9)
                     if shards[0]._owns(n.originator_id)]
        assert sent_past and len(twice) == len(sent_past), \
            "published again: only what shard 0 sent past the slowest shard's position"
    finally:
        for relay in (one, *shards, again):
            relay.close()
        system.close()


def test_from_two_shards_to_three_nothing_is_lost_and_a_shard_of_the_old_layout_stops(sharded_store, clock):
    kafka_store, topic = sharded_store, sharded_store.topic
    system = bootstrap(kafka_store, clock=clock)
    two = [system.relay(Shard(i, 2)) for i in range(2)]
    three = [system.relay(Shard(i, 3)) for i in range(3)]
    try:
        cases = [submit(system, n) for n in range(1, 13)]
        drain(two[0])
        behind = system.app.max_position()
        two[1].publish_once()  # both rows recorded: shard 1 of 2 at ``behind`` too
        for case in cases:
            system.app.cancel(case, "no longer needed", actor=PROVIDER)
        drain(two[0])  # shard 1 of 2 stays at ``behind``
        for relay in three:
            drain(relay)
        assert positions(system, topic) == {f"relay:{topic}#{i}/3": system.app.max_position() for i in range(3)}
        ids = check_topic_equals_store(system, kafka_store)
        assert len(ids) == system.app.max_position(), "every event on the topic"
        sent_past = [n for n in system.app.recorder.select_notifications(behind + 1, 10**9) if two[0]._owns(n.originator_id)]
        assert sent_past and sum(c - 1 for c in ids.values()) == len(sent_past), \
            "published twice: only what shard 0 of 2 had sent past shard 1's position"
        submit(system, 13)
        with pytest.raises(RelayStopped, match="another layout"):
            drain(two[1])  # its row is gone: it neither goes on blind nor starts again from 0
        with pytest.raises(RelayStopped, match="another layout"):
            two[0]._write(system.app.max_position())  # nor records a position
        assert set(positions(system, topic)) == {f"relay:{topic}#{i}/3" for i in range(3)}, "no row made again"
    finally:
        for relay in (*two, *three):
            relay.close()
        system.close()


def test_shards_stop_on_a_topic_whose_partitions_they_cannot_share_and_record_nothing(sharded_store, clock):
    """Partitions that N does not divide would move cases between shards as partitions are added (a case of
    a slower shard moved to a faster one is skipped by both): the shard stops; the CLI refuses at once."""
    kafka_store = sharded_store
    system = bootstrap(kafka_store, clock=clock)
    ensure_topic(kafka_store.kafka_bootstrap, kafka_store.topic, 3)  # made earlier with 3 partitions
    shard = system.relay(Shard(0, 2))
    try:
        load(system, 10)
        stop, stopped = threading.Event(), []

        def run() -> None:
            try:
                shard.run(stop)
            except RelayStopped as exc:
                stopped.append(str(exc))

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        runner.join(30)
        stop.set()
        runner.join(30)
        assert stopped and "3 partitions" in stopped[0], "the shard stopped by itself, saying why"
        assert shard.published == 0 and held_on_topic(kafka_store) == 0
        assert positions(system, kafka_store.topic) == {f"relay:{kafka_store.topic}#{i}/2": 0 for i in range(2)}
        refused = caselog(kafka_store, "relay", "--shard", "0/4")
        assert refused.returncode == 2 and "--shard" in refused.stderr and "divide" in refused.stderr, refused.stderr
        assert positions(system, kafka_store.topic) == {f"relay:{kafka_store.topic}#{i}/2": 0 for i in range(2)}
    finally:
        shard.close()
        system.close()


def test_each_shard_republishes_its_partitions_when_the_topic_lost_its_data(sharded_store, clock):
    kafka_store = sharded_store
    system = bootstrap(kafka_store, clock=clock)
    shards = [system.relay(Shard(i, 2)) for i in range(2)]
    stop, reports = threading.Event(), []
    runners = []
    for relay in shards:
        relay.check_seconds = 0.5
        runners.append(threading.Thread(target=relay.run, args=(stop,), kwargs={"report": reports.append}))
    try:
        load(system, 60)
        total = system.app.max_position()
        for runner in runners:
            runner.start()

        def topic_holds(count: int) -> None:
            limit = time.monotonic() + 60
            while relay_position(system.db, kafka_store.topic) < total or held_on_topic(kafka_store) < count:
                assert time.monotonic() < limit, "the shards did not fill the topic"
                time.sleep(0.2)

        topic_holds(total)
        first_ids = set(check_topic_equals_store(system, kafka_store))
        delete_topic(kafka_store)
        topic_holds(total)
        ids = check_topic_equals_store(system, kafka_store)
        assert set(ids) == first_ids and set(ids.values()) == {1}, "every event once more, with the same ids"
        for shard in ("0/2", "1/2"):
            assert any(f"(the partitions of shard {shard})" in line and "lost data" in line for line in reports), reports
    finally:
        stop.set()
        for runner in runners:
            runner.join(timeout=60)
        for relay in shards:
            relay.close()
        system.close()


def test_relay_processes_of_two_shards_one_killed_and_restarted_publish_every_event(sharded_store, clock):
    kafka_store = sharded_store
    system = bootstrap(kafka_store, clock=clock)
    try:
        load(system, 1500)
        total = system.app.max_position()
        env = env_of(kafka_store)

        def start(shard: str) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-m", "infra.cli", "relay", "--shard", shard], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        procs = [start("0/2"), start("1/2")]
        row = f"relay:{kafka_store.topic}#0/2"
        limit = time.monotonic() + 60
        while positions(system, kafka_store.topic).get(row, 0) < total // 4 and time.monotonic() < limit:
            time.sleep(0.01)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        assert 0 < positions(system, kafka_store.topic)[row] < total, "killed outside the run"
        procs[0] = start("0/2")
        limit = time.monotonic() + 120
        while relay_position(system.db, kafka_store.topic) < total and time.monotonic() < limit:
            time.sleep(0.2)
        for shard, answer in (("0/2", 0), ("1/2", 0), ("1/3", 1)):  # (no shard 1 of 3 ran)
            health = subprocess.run([sys.executable, "-m", "infra.cli", "alive", "relay", "--shard", shard], env=env,
                                    capture_output=True, text=True)
            assert health.returncode == answer, health.stderr
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        ids = check_topic_equals_store(system, kafka_store)
        assert len(ids) == total
        assert set(positions(system, kafka_store.topic).values()) == {total}
    finally:
        system.close()


def test_a_shard_is_i_of_n():
    assert Shard.parse("1/3") == Shard(1, 3) and Shard.parse("0/1") == Shard()
    assert [p for p in range(6) if Shard(1, 2).owns(p)] == [1, 3, 5]
    assert Shard().tracking_name("t") == "relay:t" and Shard(1, 2).tracking_name("t") == "relay:t#1/2"
    assert (Shard().component, Shard(1, 2).component) == ("relay", "relay-1of2")
    assert Shard(0, 2).fits(6) and Shard(0, 3).fits(6) and not Shard(0, 4).fits(6) and not Shard(0, 2).fits(0)
    for text in ("2/2", "-1/2", "1", "a/b", "0/0", "0/65", "1/2/3", "", "\u00b2/2", "\u0663/4"):
        try:
            Shard.parse(text)
        except ValueError:
            continue
        raise AssertionError(f"{text!r} was taken for a shard")
    assert case_id_text("0" * 32) == "00000000-0000-0000-0000-000000000000"


def test_a_case_keeps_its_shard_when_partitions_are_added_in_multiples_of_n(sharded_store, clock):
    """A case's partition is its key's hash mod the partitions; with N dividing them its shard is the hash
    mod N, whatever their number: partitions added (6 to 12) move no case to another shard."""
    system = bootstrap(sharded_store, clock=clock)
    relay = system.relay(Shard(1, 3))
    try:
        keys = [case_id_text(f"{n:032x}") for n in range(2000)]
        owned = []
        for partitions in (3, 6, 12):
            relay._all_partitions, relay._partitions = list(range(partitions)), {}
            owned.append({key for key in keys if relay._owns(key)})
        assert owned[0] == owned[1] == owned[2] and 500 < len(owned[0]) < 830
    finally:
        relay.close()
        system.close()


def test_a_shard_counts_its_events_once_across_restarts(sharded_store, clock):
    """The topic check compares a shard's partitions with the events of its cases: counted once, kept in the
    store (a fact of the log), so a restarted shard does not read the whole log again before it publishes."""
    system = bootstrap(sharded_store, clock=clock)
    first, beats = system.relay(Shard(1, 2)), []
    try:
        load(system, 40)
        drain(first)
        assert first.check_topic(beat=lambda: beats.append(1)) is False and beats, "counted, beating meanwhile"
        position = first.position()
        with system.db.read() as cur:
            assert cur.execute("SELECT position, events FROM caselog_relay_counted WHERE shard = '1/2'").fetchone() == \
                (position, shard_events(system, first))
        again = system.relay(Shard(1, 2))
        try:
            again._read_partitions()
            again._owns = lambda originator_id: pytest.fail("the restarted shard read the log again")  # (parked: none)
            assert again._acknowledged(position) == shard_events(system, first)
        finally:
            again.close()
    finally:
        first.close()
        system.close()
