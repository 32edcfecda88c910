"""Relay shards (``caselog relay --shard I/N``): N relay processes share a topic's partitions, each
with its own position, and together publish every stored event once, each case in order; a change
of layout starts from the slowest position recorded and loses nothing. On SQLite and PostgreSQL
against a real Kafka-protocol broker (tansu)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from bench.loader import load
from infra.bootstrap import bootstrap
from infra.kafka.relay import Relay, Shard, relay_position
from infra.kafka.message import case_id_text
from tests.integration.test_kafka import check_topic_equals_store, drain
from tests.integration.test_relay_robustness import delete_topic, held_on_topic, submit
from tests.support import PROVIDER


def positions(system, topic: str) -> dict[str, int]:
    """Every relay position row of ``topic``."""
    with system.db.read() as cur:
        rows = cur.execute("SELECT projection, position FROM caselog_tracking").fetchall()
    return {name: position for name, position in rows if name.startswith(f"{Relay.TRACKING}:{topic}")}


def shard_events(system, relay: Relay) -> int:
    """How many stored events are of the cases ``relay``'s shard publishes (its partitions)."""
    relay._read_partitions()
    return sum(1 for n in system.app.recorder.select_notifications(1, 10**9) if relay._owns(n.originator_id))


def test_two_shards_publish_every_event_once_each_case_in_order_each_its_own_partitions(kafka_store, clock):
    system = bootstrap(kafka_store, clock=clock)
    shards = [system.relay(Shard(0, 2)), system.relay(Shard(1, 2))]
    try:
        load(system, 200)
        total = system.app.max_position()
        for relay in shards:
            drain(relay)
        ids = check_topic_equals_store(system, kafka_store)
        assert len(ids) == total and set(ids.values()) == {1}, "every event once"
        assert [relay.published for relay in shards] == [shard_events(system, relay) for relay in shards]
        assert all(relay.published for relay in shards), "3 partitions: shard 0 has 0 and 2, shard 1 has 1"
        topic = kafka_store.topic
        assert positions(system, topic) == {f"relay:{topic}#0/2": total, f"relay:{topic}#1/2": total}
        assert relay_position(system.db, topic) == total
    finally:
        for relay in shards:
            relay.close()
        system.close()


def test_a_change_of_layout_starts_every_shard_where_the_slowest_relay_stood_and_loses_nothing(kafka_store, clock):
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
        for n in range(9, 13):
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


def test_each_shard_republishes_its_partitions_when_the_topic_lost_its_data(kafka_store, clock):
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


def test_relay_processes_of_two_shards_one_killed_and_restarted_publish_every_event(kafka_store, clock):
    system = bootstrap(kafka_store, clock=clock)
    try:
        load(system, 1500)
        total = system.app.max_position()
        env = {**os.environ, "CASELOG_DATA_DIR": str(kafka_store.data_dir), "CASELOG_KAFKA_BOOTSTRAP": kafka_store.kafka_bootstrap,
               "CASELOG_TOPIC": kafka_store.topic, "CASELOG_TOPIC_PARTITIONS": "3"}
        env.pop("CASELOG_DATABASE_URL", None)
        if kafka_store.database_url:
            env["CASELOG_DATABASE_URL"] = kafka_store.database_url

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
        for shard in ("0/2", "1/2"):
            health = subprocess.run([sys.executable, "-m", "infra.cli", "alive", "relay", "--shard", shard], env=env,
                                    capture_output=True, text=True)
            assert health.returncode == 0, health.stderr
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
    for text in ("2/2", "-1/2", "1", "a/b", "0/0", "0/65", "1/2/3", ""):
        try:
            Shard.parse(text)
        except ValueError:
            continue
        raise AssertionError(f"{text!r} was taken for a shard")
    assert case_id_text("0" * 32) == "00000000-0000-0000-0000-000000000000"
