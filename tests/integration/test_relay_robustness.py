"""No stored event stops the relay, and a topic that lost data is filled again (issue 10), on
SQLite and PostgreSQL against a real Kafka-protocol broker (tansu)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from uuid import uuid4

import pytest

from consumers.dedupe import CaseVersionDeduper
from domain.case import Case, Context
from domain.errors import EventTooLarge, InvalidInput
from infra.bootstrap import bootstrap, disclosure
from infra.kafka.message import parse_message, published_size
from infra.kafka.topic import high_water_marks
from infra.kafka.relay import Relay, stored_event_count
from infra.demo.samples import later, request
from infra.settings import SettingError, Settings
from tests.integration.test_kafka import check_topic_equals_store, drain, topic_messages
from tests.support import DME, PROVIDER, metric, recorded

TOPIC_LIMIT = 16_384  # a topic (and producer) limit far below the application's bound


def submit(system, member: int, **extra) -> str:
    body = request(DME, date_of_service=later(system.clock.now(), 10), member_no=member, **extra)
    return system.app.submit(body, actor=PROVIDER).view["case_id"]


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"finding": value}
    return value


def store_unencodable(system) -> str:
    """A submission the store takes but whose CloudEvent orjson cannot write (nested one level
    too deep for its limit once wrapped), saved past the application's check, as events stored
    before that check existed were."""
    ctx = Context(system.clock.now(), PROVIDER, None)
    for depth in range(240, 260):
        case_id = uuid4()
        body = request(DME, date_of_service=later(system.clock.now(), 10), member_no=99, clinical=nested(depth))
        try:
            case = Case.submit(ctx, case_id=case_id, case_number="0000000000", request=body)
            system.app.mapper.to_stored_event(case.pending_events[0])
        except (TypeError, ValueError, InvalidInput):
            continue  # the domain or the store refuses this depth itself
        try:
            published_size(system.app.mapper.to_stored_event(case.pending_events[0]), "default")
        except TypeError:
            number = system.app.registry.case_number(str(case_id))
            case = Case.submit(ctx, case_id=case_id, case_number=number, request=body)
            system.app.save(case)
            return str(case_id)
    pytest.fail("no nesting depth is stored yet cannot be published: store the bad event another way")


def env_of(settings, **extra) -> dict:
    env = {**os.environ, "CASELOG_DATA_DIR": str(settings.data_dir),
           "CASELOG_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "CASELOG_TOPIC": settings.topic,
           "CASELOG_TOPIC_PARTITIONS": str(settings.topic_partitions), **extra}
    env.pop("CASELOG_DATABASE_URL", None)
    if settings.database_url:
        env["CASELOG_DATABASE_URL"] = settings.database_url
    return env


def caselog(settings, *args: str, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env_of(settings, **extra),
                          capture_output=True, text=True, timeout=120)


def relay_of(system, **options) -> Relay:
    s = system.settings
    return Relay(system.app.recorder, system.db, bootstrap=s.kafka_bootstrap, topic=s.topic,
                 partitions=s.topic_partitions, deployment=s.deployment, decode=system.app.stored_state,
                 disclosure=disclosure(s), **options)


def held_on_topic(settings) -> int:
    return sum(end for _, end in (high_water_marks(settings.kafka_bootstrap, settings.topic) or {}).values())


def on_topic(settings) -> list[tuple[str, int]]:
    """(case id, version) of every message on the topic, in each partition's order."""
    out = []
    for _, m in topic_messages(settings.kafka_bootstrap, settings.topic):
        event = parse_message(m.value, m.headers, m.key)
        out.append((event.get_subject(), int(event.get_extension("caseversion"))))
    return out


def delete_topic(settings) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    try:
        admin.delete_topics([settings.topic])
        limit = time.monotonic() + 20
        while settings.topic in admin.list_topics():
            assert time.monotonic() < limit, "the topic was not deleted"
            time.sleep(0.1)
    finally:
        admin.close()


def test_events_the_broker_refuses_or_cannot_encode_are_parked_and_the_events_after_them_flow(kafka_store, clock):
    from fastapi.testclient import TestClient

    from infra.http.app import create_app

    from dataclasses import replace

    s = replace(kafka_store, kafka_phi="full")  # the large clinical answer is published (minimum mode withholds it)
    system = bootstrap(s, clock=clock)
    relay = relay_of(system, max_message_bytes=TOPIC_LIMIT)
    try:
        first = submit(system, 1)
        large = submit(system, 2, clinical={"notes": "x" * 40_000})  # within the application's bound, over the topic's
        deep = store_unencodable(system)
        after = submit(system, 3)
        drain(relay)
        system.app.cancel(large, "no longer needed", actor=PROVIDER)  # the large case's next event waits behind it
        system.app.cancel(first, "no longer needed", actor=PROVIDER)
        last = submit(system, 4)
        drain(relay)

        assert relay.position() == system.app.max_position() and relay.lag() == 0
        parked = {(p["case_id"], p["version"]): p for p in relay.parked_events()}
        assert set(parked) == {(large, 1), (large, 2), (deep, 1)}
        assert "MessageSizeTooLargeError" in parked[(large, 1)]["reason"]
        assert "held behind the case's parked version 1" in parked[(large, 2)]["reason"]
        assert "cannot be encoded" in parked[(deep, 1)]["reason"] and "Recursion limit" in parked[(deep, 1)]["reason"]
        assert (parked[(large, 1)]["type"], parked[(large, 2)]["type"]) == ("CaseSubmitted", "CaseCancelled")
        assert sorted(on_topic(s)) == sorted([(first, 1), (first, 2), (after, 1), (last, 1)])
        metrics = TestClient(create_app(system)).get("/metrics").text
        assert metric(metrics, "caselog_relay_parked") == 3

        # the fix: the topic takes large messages again (CASELOG_TOPIC_MAX_MESSAGE_BYTES back to its default)
        done = caselog(s, "relay", "--retry-parked", CASELOG_KAFKA_PHI="full")
        assert done.returncode == 1, done.stderr  # the unencodable event can only stay parked
        assert "published 2 parked events; 1 still parked" in done.stdout
        assert f"case {deep} version 1" in done.stderr and "cannot be encoded" in done.stderr
        assert [(p["case_id"], p["version"]) for p in relay.parked_events()] == [(deep, 1)]
        messages = on_topic(s)
        assert [m for m in messages if m[0] == large] == [(large, 1), (large, 2)], "a case reaches the topic in order"
        assert len(messages) == len(set(messages)) == system.app.max_position() - 1
    finally:
        relay.close()
        system.close()


def test_a_command_whose_event_would_not_fit_the_topic_is_refused_and_records_nothing(store, clock):
    from dataclasses import replace

    from tests.e2e.http_support import make_api

    system = bootstrap(replace(store, max_event_bytes=64 * 1024), clock=clock)
    try:
        case = submit(system, 1)
        before = recorded(system)
        with pytest.raises(EventTooLarge) as refused:
            submit(system, 2, clinical={"notes": "x" * 70_000})
        assert "CaseSubmitted" in refused.value.errors[0].message and refused.value.errors[0].field == "body"
        with pytest.raises(EventTooLarge):
            system.app.cancel(case, "x" * 70_000, actor=PROVIDER)
        with pytest.raises(InvalidInput, match="cannot be stored and published as JSON"):
            submit(system, 3, clinical=nested(251))
        assert recorded(system) == before, "a refused command recorded something (an event or a case number)"

        api = make_api(system)
        document = api.upload()
        before = recorded(system)
        # within the body's own bounds (clinical answers of at most 10,000 characters each), too big for the topic
        body = request(DME, date_of_service=later(system.clock.now(), 10), member_no=5,
                       clinical={f"note_{i}": "x" * 10_000 for i in range(8)}, documents=[document])
        answer = api.post("/cases", body)
        assert answer.status_code == 413, answer.text
        assert answer.json()["type"].endswith("/event-too-large") and answer.json()["errors"][0]["field"] == "body"
        assert recorded(system) == before
        assert submit(system, 6)  # an ordinary command still goes through
    finally:
        system.close()


def test_the_event_bound_must_leave_room_below_the_topic_message_limit():
    assert Settings.from_env({}).max_event_bytes == 512 * 1024
    assert Settings.from_env({"CASELOG_TOPIC_MAX_MESSAGE_BYTES": "65536"}).max_event_bytes == 65536 - 1024
    with pytest.raises(SettingError, match="CASELOG_MAX_EVENT_BYTES"):
        Settings.from_env({"CASELOG_MAX_EVENT_BYTES": "1048576"})


def test_a_topic_recreated_empty_is_republished_from_the_start_with_the_same_ids(kafka_store, clock):
    s = kafka_store
    system = bootstrap(s, clock=clock)
    relay = relay_of(system, check_seconds=0.5)
    stop, reports = threading.Event(), []
    runner = threading.Thread(target=relay.run, args=(stop,), kwargs={"report": reports.append})
    try:
        cases = [submit(system, n) for n in range(1, 13)]
        for case in cases[::3]:
            system.app.cancel(case, "no longer needed", actor=PROVIDER)
        total = system.app.max_position()
        runner.start()

        def topic_holds(count: int) -> None:
            limit = time.monotonic() + 60
            while relay.position() < total or held_on_topic(s) < count:
                assert time.monotonic() < limit, f"the relay did not fill the topic (at {relay.position()} of {total})"
                time.sleep(0.2)

        topic_holds(total)
        first_ids = set(check_topic_equals_store(system, s))
        delete_topic(s)  # Kafka lost its data: the topic comes back empty while the relay runs
        topic_holds(total)
        ids = check_topic_equals_store(system, s)
        assert set(ids) == first_ids and set(ids.values()) == {1}, "every event once more, with the same ids"
        assert any("lost data; republishing every event from position 0" in line for line in reports), reports
        deduper = CaseVersionDeduper()
        seen = [m for m in on_topic(s) if deduper.accept(*m)]
        assert len(seen) == total == stored_event_count(system.db, system.app.recorder)
    finally:
        stop.set()
        runner.join(timeout=60)
        relay.close()
        system.close()


def test_replay_from_a_topic_holding_fewer_events_than_the_store_exits_1_and_replaces_nothing(kafka_store, clock):
    from dataclasses import replace

    s = replace(kafka_store, kafka_phi="full")  # the read models need the full record
    system = bootstrap(s, clock=clock)
    relay = system.relay()
    try:
        for n in range(1, 6):
            submit(system, n)
        drain(relay)
        system.catch_up()
        worklist = collections.Counter(system.runner.position(p) for p in system.in_process)
        with system.db.transaction() as cur:
            rows = cur.execute("SELECT count(*) FROM worklist").fetchone()[0]
        assert rows == 5
        delete_topic(s)
        relay.ensure_topic()  # recreated empty
        done = caselog(s, "replay", "--source", "kafka")
        assert done.returncode == 1, (done.stdout, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "holds 0 messages, fewer than the 5 events in the store" in lines[0], done.stderr
        with system.db.transaction() as cur:
            assert cur.execute("SELECT count(*) FROM worklist").fetchone()[0] == rows, "the worklist was emptied"
        assert collections.Counter(system.runner.position(p) for p in system.in_process) == worklist
        relay.check_topic()  # the relay republishes, and the replay then goes through
        drain(relay)
        again = caselog(s, "replay", "--source", "kafka")
        assert again.returncode == 0, again.stderr
        assert f"from {system.app.max_position()} events (kafka)" in again.stdout, again.stdout
    finally:
        relay.close()
        system.close()
