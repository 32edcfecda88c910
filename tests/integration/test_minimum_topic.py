"""The topic carries the minimum necessary unless told otherwise (issue 12), read back from a real
Kafka-protocol broker with a plain Kafka client; the read models need the full record."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import replace

import orjson

from infra.bootstrap import bootstrap, read_models
from infra.settings import Settings
from tests.integration.test_at_rest import NAMES, caselog, submit_member


def read_back(bootstrap_servers: str, topic: str, expected: int, timeout: float = 60.0) -> list:
    """Every message on ``topic``, with a plain kafka-python consumer."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or [])]
        reader.assign(parts)
        reader.seek_to_beginning(*parts)
        got, limit = [], time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < limit:
            for records in reader.poll(timeout_ms=500).values():
                got.extend(records)
        assert len(got) == expected, f"{len(got)} of {expected} messages on {topic}"
        return got
    finally:
        reader.close()


def publish(system) -> int:
    relay = system.relay()
    try:
        relay.ensure_topic()
        while relay.lag() > 0:
            relay.publish_once()
    finally:
        relay.close()
    return system.app.max_position()



def test_the_topic_carries_no_member_name_or_dob_by_default_and_the_full_record_when_told(broker, tmp_path, clock):
    import jsonschema_rs

    from consumers.worker import ProjectionWorker
    from infra.identity import load_secret
    from infra.kafka.schema import event_schemas
    from infra.store.database import Database
    from infra.store.runner import ProjectionRunner

    settings = replace(Settings(data_dir=tmp_path / "store"), kafka_bootstrap=broker[0], topic="phi.minimum",
                       topic_partitions=2)
    system = bootstrap(settings, clock=clock)
    try:
        first = submit_member(system, 42)
        second = submit_member(system, 42)  # the same member again
        other = submit_member(system, 43, first="Ottoline", last="Quenby")
        events = publish(system)
        minimum = read_back(broker[0], "phi.minimum", events)
        schemas = {n: jsonschema_rs.validator_for(s) for n, s in event_schemas(settings).items()}
        pseudonyms = {}
        for m in minimum:
            for secret in (*NAMES, b"Ottoline", b"Quenby", b"M00000042", b"M00000043"):
                assert secret not in m.value, (secret, m.value[:300])
            body = orjson.loads(m.value)
            assert body["phi"] == "minimum"
            errors = [e.message for e in schemas[body["data"]["type"]].iter_errors(body)]
            assert not errors, errors
            if body["data"]["type"] == "CaseSubmitted":
                pseudonyms[body["subject"]] = body["data"]["data"]["member"]["pseudonym"]
                assert [d["sha256"] for d in body["data"]["data"]["documents"]]
                assert not any("name" in d for d in body["data"]["data"]["documents"])
        key = hmac.new(load_secret(settings.data_dir).encode(), b"caselog member pseudonym v1", hashlib.sha256).digest()
        assert pseudonyms[first] == pseudonyms[second] == hmac.new(key, b"M00000042", hashlib.sha256).hexdigest()
        assert pseudonyms[other] != pseudonyms[first]

        # The read models cannot be built from it: the workers set it aside, replay refuses, nothing is lost.
        reads = Settings(data_dir=tmp_path / "reads")
        reads_db = Database(reads)
        models = read_models()
        worker = ProjectionWorker(ProjectionRunner(reads_db, None, models), models, "phi.minimum")
        assert worker.apply(minimum) == 0
        with reads_db.transaction() as cur:
            assert cur.execute("SELECT count(*) FROM worklist").fetchone()[0] == 0
            rejects = cur.execute("SELECT error FROM caselog_worker_rejects").fetchall()
        assert len(rejects) == events and all("CASELOG_KAFKA_PHI=full" in r[0] for r in rejects)
        system.catch_up()
        refused = caselog(settings, "replay", "--source", "kafka")
        assert refused.returncode == 1 and "carries the minimum necessary" in refused.stderr, refused.stderr
        with system.db.transaction() as cur:
            assert cur.execute("SELECT count(*) FROM worklist").fetchone()[0] == 3, "the worklist was dropped"

        # CASELOG_KAFKA_PHI=full publishes the record as stored, and the workers build the read models from it.
        full_settings = replace(settings, topic="phi.full", kafka_phi="full")
        system.settings = full_settings
        publish(system)
        full = read_back(broker[0], "phi.full", events)
        values = b"".join(m.value for m in full)
        assert all(name in values for name in NAMES)
        full_schemas = {n: jsonschema_rs.validator_for(s) for n, s in event_schemas(full_settings).items()}
        for m in full:
            body = orjson.loads(m.value)
            assert body["phi"] == "full" and not list(full_schemas[body["data"]["type"]].iter_errors(body))
        worker = ProjectionWorker(ProjectionRunner(reads_db, None, models), models, "phi.full")
        assert worker.apply(full) == events * len(models)
        with reads_db.transaction() as cur:
            rows = cur.execute("SELECT member_name FROM worklist ORDER BY member_name").fetchall()
        assert [r[0] for r in rows] == ["Hopperfield, Gracelyn", "Hopperfield, Gracelyn", "Quenby, Ottoline"]
        reads_db.close()
    finally:
        system.close()
